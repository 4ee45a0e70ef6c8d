//! The pending log end to end, without Postgres: appended rows are searched at once (with the
//! same BM25 scores as if they were in a segment), drains move them into segments exactly
//! once, and concurrent appenders, drains and readers never lose a row while the log's space
//! is reused.
//!
//! The extension keeps the log's bytes in the index relation's pages (`src/am/log_pages.rs`,
//! tested through SQL in `tests/tests/pending_log.rs`); here they are a ring buffer in memory
//! with the same contract: a fixed capacity, space before the manifest's `log.from` reused,
//! reads of reused bytes answered `None`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hybrid_engine::config::{ColumnKind, ColumnSpec, IndexConfig};
use hybrid_engine::manifest::{Identity, Manifest};
use hybrid_engine::query::DefaultOperator;
use hybrid_engine::text::maintenance;
use hybrid_engine::text::pending::{self, encode_payload, frame, LogSource};
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
    let mut v: Vec<(u64, f32)> =
        s.top_ctids(&*query, 100, 0).unwrap().into_iter().map(|(sc, c)| ((c >> 16) - 1, sc)).collect();
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

/// A log in memory: `capacity` bytes reused in a ring, like the relation's pages.
struct MemoryLog {
    capacity: u64,
    state: parking_lot::Mutex<(Vec<u8>, u64)>,
}

impl MemoryLog {
    fn new(capacity: u64) -> MemoryLog {
        MemoryLog { capacity, state: parking_lot::Mutex::new((vec![0; capacity as usize], 0)) }
    }

    /// Appends a record of `docs`, draining first when the ring has no room for it (as the
    /// extension's appender does).
    fn append(&self, dir: &Path, docs: &[&Document]) {
        let payload = encode_payload(docs.iter().copied());
        loop {
            let from = Manifest::read(dir).unwrap().hybrid.log.from;
            {
                let mut st = self.state.lock();
                let tail = st.1.max(from);
                let record = frame(&payload, tail);
                assert!(record.len() as u64 <= self.capacity, "record larger than the log");
                if tail + record.len() as u64 - from <= self.capacity {
                    for (i, b) in record.iter().enumerate() {
                        let at = ((tail + i as u64) % self.capacity) as usize;
                        st.0[at] = *b;
                    }
                    st.1 = tail + record.len() as u64;
                    return;
                }
            }
            pending::drain(dir, self).unwrap();
        }
    }
}

impl LogSource for MemoryLog {
    fn tail(&self) -> hybrid_engine::Result<u64> {
        Ok(self.state.lock().1)
    }
    fn read(&self, from: u64, to: u64) -> hybrid_engine::Result<Option<Vec<u8>>> {
        let st = self.state.lock();
        if st.1 > from + self.capacity {
            return Ok(None);
        }
        Ok(Some((from..to).map(|o| st.0[(o % self.capacity) as usize]).collect()))
    }
    fn make_durable(&self) -> hybrid_engine::Result<()> {
        Ok(())
    }
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
    let log = MemoryLog::new(1 << 20);
    let mut idx = TextIndex::open_with(&dir, &log).unwrap();
    for d in &docs[3..] {
        log.append(&dir, &[d]);
    }
    assert!(idx.refresh_with(&log).unwrap(), "an append is a change");
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
    let drained = pending::drain(&dir, &log).unwrap();
    assert_eq!(drained.docs, 3);
    let m = Manifest::read(&dir).unwrap();
    assert_eq!(m.num_docs(), 6);
    assert_eq!(pending::pending_docs(&log, &m).unwrap(), 0);
    assert!(idx.refresh_with(&log).unwrap());
    assert_eq!(idx.pending_docs(), 0);
    assert_eq!(ids(&idx, "search"), vec![0, 2, 3, 5]);
    // A second drain has nothing to do.
    assert_eq!(pending::drain(&dir, &log).unwrap().docs, 0);
    // A fresh reader agrees.
    assert_eq!(ids(&TextIndex::open_with(&dir, &log).unwrap(), "postgres"), vec![0, 1, 4]);
}

#[test]
fn readers_catch_up_with_many_appends_in_few_segments() {
    let dir = new_index("chunks");
    let log = MemoryLog::new(1 << 20);
    let mut idx = TextIndex::open_with(&dir, &log).unwrap();
    for i in 0..40u64 {
        log.append(&dir, &[&doc(i, &format!("row number{i} common"))]);
        idx.refresh_with(&log).unwrap();
        assert_eq!(ids(&idx, &format!("number{i}")), vec![i]);
        assert!(idx.snapshot().searcher().segment_readers().len() <= 5);
    }
    assert_eq!(ids(&idx, "common").len(), 40);
}

#[test]
fn concurrent_appends_drains_and_reuse_lose_nothing() {
    let dir = new_index("race");
    let writers = 4u64;
    let per_writer = 600u64;
    // Room for a few dozen records: the space is reused many times during the test.
    let log = Arc::new(MemoryLog::new(256 << 10));
    let done = Arc::new(AtomicBool::new(false));
    // A drainer that drains as fast as it can.
    let drainer = {
        let (dir, done, log) = (dir.clone(), done.clone(), log.clone());
        std::thread::spawn(move || {
            let mut drains = 0;
            while !done.load(Ordering::SeqCst) {
                drains += usize::from(pending::drain(&dir, &*log).unwrap().docs > 0);
            }
            drains
        })
    };
    // A reader that checks it never sees fewer committed rows than before.
    let reader = {
        let (dir, done, log) = (dir.clone(), done.clone(), log.clone());
        std::thread::spawn(move || {
            let mut idx = TextIndex::open_with(&dir, &*log).unwrap();
            let mut seen = 0;
            while !done.load(Ordering::SeqCst) {
                idx.refresh_with(&*log).unwrap();
                let n = ids(&idx, "row").len();
                assert!(n >= seen, "rows went missing: {n} after {seen}");
                seen = n;
            }
        })
    };
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (dir, log) = (dir.clone(), log.clone());
            std::thread::spawn(move || {
                // Long rows, so the log's space is reused during the test.
                let filler = "padding ".repeat(1000);
                for i in 0..per_writer {
                    let id = w * per_writer + i;
                    log.append(&dir, &[&doc(id, &format!("row {filler}"))]);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let drains = drainer.join().unwrap();
    reader.join().unwrap();
    assert!(drains > 0, "the log was never drained");
    assert!(log.tail().unwrap() > 4 * log.capacity, "the log's space was not reused");
    let idx = TextIndex::open_with(&dir, &*log).unwrap();
    let all = ids(&idx, "row");
    let found: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(found.len() as u64, writers * per_writer, "every row");
    assert_eq!(all.len(), found.len(), "each once");
    let m = Manifest::read(&dir).unwrap();
    assert_eq!(m.num_docs() + pending::pending_docs(&*log, &m).unwrap(), writers * per_writer);
}
