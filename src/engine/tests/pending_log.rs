//! The pending log end to end, without Postgres: appended rows are searched at once (with the
//! same BM25 scores as if they were in a segment), drains move them into segments exactly
//! once, rotation retires drained logs, torn appends are skipped, and concurrent appenders,
//! drains and readers never lose a row.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hybrid_engine::config::{ColumnKind, ColumnSpec, IndexConfig};
use hybrid_engine::manifest::{Identity, Manifest};
use hybrid_engine::query::DefaultOperator;
use hybrid_engine::text::maintenance;
use hybrid_engine::text::pending::{self, append, encode_payload, log_path};
use hybrid_engine::text::reader::TextIndex;
use hybrid_engine::text::writer::{create_index_dir, publish_segments, SegmentBuilder};
use hybrid_engine::text::{Document, KeyValue};

fn tempdir(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("hybrid-pending-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p.join("index")
}

fn config() -> IndexConfig {
    IndexConfig::from_create_index(
        &[
            ColumnSpec { name: "id".into(), kind: ColumnKind::Integer },
            ColumnSpec { name: "body".into(), kind: ColumnKind::Text },
        ],
        Some("id"),
        None,
    )
    .unwrap()
}

fn doc(i: u64, body: &str) -> Document {
    Document { ctid: (i + 1) << 16 | 1, key: KeyValue::I64(i as i64), texts: vec![Some(body.into())], vectors: vec![] }
}

fn new_index(name: &str) -> PathBuf {
    let dir = tempdir(name);
    create_index_dir(&dir, &config(), &Identity { index_oid: 1, created_xid: 2 }).unwrap();
    dir
}

fn ids(idx: &TextIndex, q: &str) -> Vec<u64> {
    let s = idx.snapshot();
    let query = s.compile(q, Some(0), DefaultOperator::Or).unwrap();
    let mut v: Vec<u64> = s.matching_ctids(&*query).unwrap().into_iter().map(|c| (c >> 16) - 1).collect();
    v.sort();
    v
}

fn scores(idx: &TextIndex, q: &str) -> Vec<(u64, f32)> {
    let s = idx.snapshot();
    let query = s.compile(q, Some(0), DefaultOperator::Or).unwrap();
    let mut v: Vec<(u64, f32)> = s.top_ctids(&*query, 100, 0).unwrap().into_iter().map(|(sc, c)| ((c >> 16) - 1, sc)).collect();
    v.sort_by_key(|x| x.0);
    v
}

fn publish_as_segment(dir: &Path, docs: &[Document]) {
    let m = Manifest::read(dir).unwrap();
    let mut b = SegmentBuilder::new(dir, &m, 1 << 20).unwrap();
    for d in docs {
        b.add(d).unwrap();
    }
    publish_segments(dir, vec![b.finish().unwrap().unwrap()]).unwrap();
}

const BODIES: &[&str] = &[
    "postgres full text search with a gin index",
    "rust extension for postgres written with pgrx",
    "tantivy search engine in rust",
    "vector search with an hnsw graph",
    "postgres vacuum removes dead rows",
    "bm25 ranking of search results",
];

#[test]
fn appended_rows_are_searched_at_once_and_scored_as_in_a_segment() {
    let dir = new_index("scores");
    let docs: Vec<Document> = BODIES.iter().enumerate().map(|(i, b)| doc(i as u64, b)).collect();
    // Half in a segment, half in the log.
    publish_as_segment(&dir, &docs[..3]);
    let mut idx = TextIndex::open(&dir).unwrap();
    for d in &docs[3..] {
        append(&dir, &encode_payload([d])).unwrap();
    }
    assert!(idx.refresh().unwrap(), "an append is a change");
    assert_eq!(idx.pending_docs(), 3);
    assert_eq!(ids(&idx, "postgres"), vec![0, 1, 4]);
    assert_eq!(ids(&idx, "search"), vec![0, 2, 3, 5]);
    let mixed = scores(&idx, "postgres search");

    // The same rows all in one segment score the same: statistics are the index's, not the
    // segment's.
    let other = new_index("scores-ref");
    publish_as_segment(&other, &docs[..3]);
    publish_as_segment(&other, &docs[3..]);
    let reference = scores(&TextIndex::open(&other).unwrap(), "postgres search");
    assert_eq!(mixed.len(), reference.len());
    for (a, b) in mixed.iter().zip(&reference) {
        assert_eq!(a.0, b.0);
        assert!((a.1 - b.1).abs() < 1e-5, "{mixed:?} vs {reference:?}");
    }

    // Draining moves them into a segment, once.
    let _lock = maintenance::try_lock_maintenance(&dir).unwrap().unwrap();
    let drained = pending::drain(&dir).unwrap();
    assert_eq!(drained.docs, 3);
    let m = Manifest::read(&dir).unwrap();
    assert_eq!(m.num_docs(), 6);
    assert_eq!(pending::pending_docs(&dir, &m).unwrap(), 0);
    assert!(idx.refresh().unwrap());
    assert_eq!(idx.pending_docs(), 0);
    assert_eq!(ids(&idx, "search"), vec![0, 2, 3, 5]);
    // A second drain has nothing to do.
    assert_eq!(pending::drain(&dir).unwrap().docs, 0);
    // A fresh reader agrees.
    assert_eq!(ids(&TextIndex::open(&dir).unwrap(), "postgres"), vec![0, 1, 4]);
}

#[test]
fn readers_catch_up_with_many_appends_in_few_segments() {
    let dir = new_index("chunks");
    let mut idx = TextIndex::open(&dir).unwrap();
    for i in 0..40u64 {
        append(&dir, &encode_payload([&doc(i, &format!("row number{i} common"))])).unwrap();
        idx.refresh().unwrap();
        assert_eq!(ids(&idx, &format!("number{i}")), vec![i]);
        assert!(idx.snapshot().searcher().segment_readers().len() <= 5);
    }
    assert_eq!(ids(&idx, "common").len(), 40);
}

#[test]
fn a_torn_append_is_skipped_and_later_rows_still_count() {
    let dir = new_index("torn");
    append(&dir, &encode_payload([&doc(0, "before the crash")])).unwrap();
    // A crashed append: half a record at the end of the log.
    let seq = Manifest::read(&dir).unwrap().hybrid.log.seq;
    let path = log_path(&dir, seq);
    let len = std::fs::metadata(&path).unwrap().len();
    let torn = pending::frame(&encode_payload([&doc(1, "torn by the crash")]), len);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&torn[..torn.len() / 2]).unwrap();
    }
    let mut idx = TextIndex::open(&dir).unwrap();
    assert_eq!(ids(&idx, "crash"), vec![0]);
    append(&dir, &encode_payload([&doc(2, "after the crash")])).unwrap();
    idx.refresh().unwrap();
    assert_eq!(ids(&idx, "crash"), vec![0, 2]);
    let _lock = maintenance::try_lock_maintenance(&dir).unwrap().unwrap();
    assert_eq!(pending::drain(&dir).unwrap().docs, 2);
    idx.refresh().unwrap();
    assert_eq!(ids(&idx, "crash"), vec![0, 2]);
}

#[test]
fn a_folder_without_its_log_starts_a_new_one() {
    // As a folder restored from a snapshot is: the manifest names a log (and an offset in it)
    // that is not there.
    let dir = new_index("restored");
    append(&dir, &encode_payload([&doc(0, "first")])).unwrap();
    {
        let _lock = maintenance::try_lock_maintenance(&dir).unwrap().unwrap();
        pending::drain(&dir).unwrap();
    }
    let before = Manifest::read(&dir).unwrap().hybrid.log;
    assert!(before.from > 0);
    std::fs::remove_file(log_path(&dir, before.seq)).unwrap();
    let mut idx = TextIndex::open(&dir).unwrap();
    assert_eq!(ids(&idx, "first"), vec![0]);
    append(&dir, &encode_payload([&doc(1, "second")])).unwrap();
    let after = Manifest::read(&dir).unwrap().hybrid.log;
    assert_eq!((after.seq, after.from), (before.seq + 1, 0));
    idx.refresh().unwrap();
    assert_eq!(ids(&idx, "first OR second"), vec![0, 1]);
}

#[test]
fn concurrent_appends_drains_and_rotations_lose_nothing() {
    let dir = new_index("race");
    let writers = 4u64;
    let per_writer = 600u64;
    let done = Arc::new(AtomicBool::new(false));
    // A drainer that drains as fast as it can (rotating whenever the log is long and empty).
    let drainer = {
        let (dir, done) = (dir.clone(), done.clone());
        std::thread::spawn(move || {
            let mut rotations = 0;
            while !done.load(Ordering::SeqCst) {
                let _lock = maintenance::lock_maintenance(&dir, || std::thread::yield_now()).unwrap();
                rotations += usize::from(pending::drain(&dir).unwrap().rotated);
            }
            rotations
        })
    };
    // A reader that checks it never sees fewer committed rows than before.
    let reader = {
        let (dir, done) = (dir.clone(), done.clone());
        std::thread::spawn(move || {
            let mut idx = TextIndex::open(&dir).unwrap();
            let mut seen = 0;
            while !done.load(Ordering::SeqCst) {
                idx.refresh().unwrap();
                let n = ids(&idx, "row").len();
                assert!(n >= seen, "rows went missing: {n} after {seen}");
                seen = n;
            }
        })
    };
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                // Long rows, so the log passes the rotation size during the test.
                let filler = "padding ".repeat(1000);
                for i in 0..per_writer {
                    let id = w * per_writer + i;
                    append(&dir, &encode_payload([&doc(id, &format!("row {filler}"))])).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let rotations = drainer.join().unwrap();
    reader.join().unwrap();
    assert!(rotations > 0, "the log was never rotated");
    let idx = TextIndex::open(&dir).unwrap();
    let all = ids(&idx, "row");
    let found: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(found.len() as u64, writers * per_writer, "every row");
    assert_eq!(all.len(), found.len(), "each once");
    let m = Manifest::read(&dir).unwrap();
    assert_eq!(m.num_docs() + pending::pending_docs(&dir, &m).unwrap(), writers * per_writer);
    // Retired logs are gone.
    let logs = std::fs::read_dir(&dir).unwrap().filter(|e| {
        e.as_ref().unwrap().file_name().to_str().is_some_and(|n| pending::log_seq(n).is_some())
    });
    assert_eq!(logs.count(), 1);
}
