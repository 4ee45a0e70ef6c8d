//! Fixtures shared by the snapshot tests: real index folders with deterministic rows, and
//! their search results.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};

use hybrid_engine::config::{ColumnKind, ColumnSpec, IndexConfig};
use hybrid_engine::manifest::{Identity, Manifest};
use hybrid_engine::query::DefaultOperator;
use hybrid_engine::snapshot::{IndexIdentity, PgPosition, Retention, StoreOptions};
use hybrid_engine::text::reader::TextIndex;
use hybrid_engine::text::writer::{publish_segments, IndexBuilder, SegmentBuilder};
use hybrid_engine::text::{Document, KeyValue};
use std::time::Duration;

pub fn tempdir(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("hybrid-snap-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

pub fn config() -> IndexConfig {
    IndexConfig::from_create_index(
        &[
            ColumnSpec { name: "id".into(), kind: ColumnKind::Integer },
            ColumnSpec { name: "title".into(), kind: ColumnKind::Text },
            ColumnSpec { name: "body".into(), kind: ColumnKind::Text },
        ],
        Some("id"),
        None,
    )
    .unwrap()
}

/// splitmix64: deterministic documents without a rand dependency.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Row `i`: words drawn from a skewed vocabulary of 300, so queries match many rows with
/// different scores.
pub fn doc(i: u64) -> Document {
    let words = |seed: u64, n: u64| -> String {
        (0..n)
            .map(|j| {
                let r = mix(seed * 7919 + j);
                format!("w{}", (r % 300) * (r % 300) / 300)
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    Document {
        ctid: ((i + 1) << 16) | 1,
        key: KeyValue::I64(i as i64),
        texts: vec![Some(words(i * 2, 4)), Some(words(i * 2 + 1, 40 + i % 30))],
        vectors: vec![],
    }
}

/// Builds an index of rows `0..n` in `dir` (one indexing thread: the same segments and file
/// sizes every run).
pub fn build(dir: &FsPath, n: u64) -> Manifest {
    let mut b = IndexBuilder::create(dir, &config(), &Identity { index_oid: 1, created_xid: 2 }, 1, 40 << 20).unwrap();
    for i in 0..n {
        b.add(&doc(i)).unwrap();
    }
    b.finish().unwrap()
}

/// Publishes rows `from..to` as one new segment.
pub fn add_segment(dir: &FsPath, from: u64, to: u64) -> Manifest {
    let m = Manifest::read(dir).unwrap();
    let mut sb = SegmentBuilder::new(dir, &m, 8 << 20).unwrap();
    for i in from..to {
        sb.add(&doc(i)).unwrap();
    }
    publish_segments(dir, vec![sb.finish().unwrap().unwrap()]).unwrap()
}

/// Options for fast tests: short timeouts and backoff; small multipart threshold and parts,
/// so multipart uploads happen on small indexes.
pub fn opts() -> StoreOptions {
    StoreOptions {
        request_timeout: Duration::from_secs(5),
        max_attempts: 3,
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        multipart_threshold: 64 << 10,
        part_size: 32 << 10,
        ..Default::default()
    }
}

pub fn ident(uuid: &str) -> IndexIdentity {
    IndexIdentity { uuid: uuid.into(), name: "docs_idx".into(), table: "public.docs".into(), key: "id".into() }
}

pub fn pos(lsn: u64) -> PgPosition {
    PgPosition { lsn, timeline: 1, system_identifier: 7_000_000_000_000_000_001 }
}

pub fn keep(n: usize) -> Retention {
    Retention { keep_last: n, collect_garbage: true }
}

/// Every match of `q` (ctid, score bits), best first, ties by ctid: equal lists mean the same
/// hits with the same BM25 scores.
pub fn search(dir: &FsPath, q: &str) -> Vec<(u64, u32)> {
    let idx = TextIndex::open(dir).unwrap();
    let snap = idx.snapshot();
    let query = snap.compile(q, Some(1), DefaultOperator::Or).unwrap();
    let mut hits: Vec<(u64, u32)> =
        snap.top_ctids(&*query, 10_000, 0).unwrap().into_iter().map(|(s, c)| (c, s.to_bits())).collect();
    hits.sort_by(|a, b| f32::from_bits(b.1).total_cmp(&f32::from_bits(a.1)).then(a.0.cmp(&b.0)));
    hits
}

pub const QUERIES: &[&str] = &["w1 w7", "w42", "w3 AND w5", "\"w0 w0\"", "w100 OR w150 OR w299"];

pub fn all_results(dir: &FsPath) -> Vec<Vec<(u64, u32)>> {
    QUERIES.iter().map(|q| search(dir, q)).collect()
}

/// Names and contents of the regular files of a folder (not recursing).
pub fn folder_contents(dir: &FsPath) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap()))
        .collect()
}
