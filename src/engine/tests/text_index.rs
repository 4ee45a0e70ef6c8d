//! The text index end to end, without Postgres: build, append segments, search, delete, merge.

use std::path::PathBuf;

use hybrid_engine::config::{ColumnKind, ColumnSpec, IndexConfig};
use hybrid_engine::manifest::{Identity, Manifest};
use hybrid_engine::query::DefaultOperator;
use hybrid_engine::text::maintenance::{self, MergePolicy};
use hybrid_engine::text::reader::TextIndex;
use hybrid_engine::text::snippet::Snippets;
use hybrid_engine::text::writer::{publish_segments, IndexBuilder, SegmentBuilder};
use hybrid_engine::text::{Document, KeyValue};
use hybrid_engine::Error;

fn tempdir(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("hybrid-text-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p.join("index")
}

fn config(fields: Option<&str>) -> IndexConfig {
    IndexConfig::from_create_index(
        &[
            ColumnSpec { name: "id".into(), kind: ColumnKind::Integer },
            ColumnSpec { name: "title".into(), kind: ColumnKind::Text },
            ColumnSpec { name: "body".into(), kind: ColumnKind::Text },
        ],
        Some("id"),
        fields,
    )
    .unwrap()
}

const CORPUS: &[(&str, &str)] = &[
    ("PostgreSQL", "PostgreSQL is an object-relational database system written in C"),
    ("Rust", "Rust is a systems programming language focused on safety and speed"),
    ("pgrx", "pgrx lets you write Postgres extensions in Rust, including an index access method"),
    ("tantivy", "tantivy is a full-text search engine library written in Rust"),
    ("Hybrid search", "hybrid search fuses BM25 ranking with vector similarity search"),
    ("GIN", "GIN is the generalized inverted index of Postgres used for full text search"),
    ("Bloom", "the bloom contrib module is a small index access method for Postgres"),
    ("Running", "runners run and keep running through databases"),
];

fn doc(i: usize) -> Document {
    let (t, b) = CORPUS[i];
    Document {
        ctid: (i as u64 + 1) << 16 | 1,
        key: KeyValue::I64(i as i64),
        texts: vec![Some(t.into()), Some(b.into())],
        vectors: vec![],
    }
}

fn build(dir: &PathBuf, cfg: &IndexConfig) -> Manifest {
    let mut b = IndexBuilder::create(dir, cfg, &Identity { index_oid: 1, created_xid: 2 }, 2, 40 << 20).unwrap();
    for i in 0..CORPUS.len() {
        b.add(&doc(i)).unwrap();
    }
    b.finish().unwrap()
}

fn keys(idx: &TextIndex, q: &str, field: Option<usize>) -> Vec<u64> {
    let idx = idx.snapshot();
    let query = idx.compile(q, field, DefaultOperator::Or).unwrap();
    let mut v: Vec<u64> = idx.matching_ctids(&*query).unwrap().into_iter().map(|c| (c >> 16) - 1).collect();
    v.sort();
    v
}

#[test]
fn build_and_search_every_query_form() {
    let dir = tempdir("forms");
    let m = build(&dir, &config(Some(r#"{"title": {"keyword": true}}"#)));
    assert_eq!(m.num_docs(), CORPUS.len() as u64);
    let idx = TextIndex::open(&dir).unwrap();
    let body = Some(1);
    assert_eq!(keys(&idx, "rust", body), vec![1, 2, 3]);
    assert_eq!(keys(&idx, "postgres AND rust", body), vec![2]);
    assert_eq!(keys(&idx, "postgres AND (rust OR \"index access method\")", body), vec![2, 6]);
    assert_eq!(keys(&idx, "\"index access method\"", body), vec![2, 6]);
    assert_eq!(keys(&idx, "postgres NOT rust", body), vec![5, 6]);
    assert_eq!(keys(&idx, "title:rust", body), vec![1]);
    assert_eq!(keys(&idx, "title__kw:\"Hybrid search\"", body), vec![4]);
    assert_eq!(keys(&idx, "title__kw:hybrid", body), Vec::<u64>::new());
    assert_eq!(keys(&idx, "postgre*", body), vec![0, 2, 5, 6], "matches stems shorter than the prefix");
    assert_eq!(keys(&idx, "databa*", body), vec![0, 7]);
    assert_eq!(keys(&idx, "prog*", body), vec![1]);
    assert_eq!(keys(&idx, "langauge~1", body), vec![1]);
    assert_eq!(keys(&idx, "run", body), vec![7], "stemming: running/runs -> run");
    assert_eq!(keys(&idx, "RUNNING", body), vec![7]);
    assert_eq!(keys(&idx, "rust^3 postgres", body), vec![1, 2, 3, 5, 6]);
    assert_eq!(keys(&idx, "*", body).len(), CORPUS.len());
    // Without a default field, bare words search every text field.
    assert_eq!(keys(&idx, "bloom", None), vec![6]);
}

#[test]
fn errors_carry_positions_and_hints() {
    let dir = tempdir("errors");
    build(&dir, &config(None));
    let idx = TextIndex::open(&dir).unwrap().snapshot();
    match idx.compile("postgres AND (rust", Some(1), DefaultOperator::Or) {
        Err(Error::QuerySyntax { position, .. }) => assert_eq!(position, 14),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("should fail"),
    }
    match idx.compile("rust AND colour:red", Some(1), DefaultOperator::Or) {
        Err(Error::UnknownField { position: Some(p), hint: Some(h), .. }) => {
            assert_eq!(p, 10);
            assert!(h.contains("title, body"), "{h}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("should fail"),
    }
    match idx.compile("title__kw:x", Some(1), DefaultOperator::Or) {
        Err(Error::UnknownField { message, .. }) => assert!(message.contains("no keyword twin")),
        other => panic!("{:?}", other.err()),
    }
}

/// The same documents written as one segment or as one segment per document score the same:
/// BM25 statistics are computed over the whole index, not per segment.
#[test]
fn scores_do_not_depend_on_segmentation() {
    let cfg = config(None);
    let one = tempdir("one");
    build(&one, &cfg);
    let many = tempdir("many");
    hybrid_engine::text::writer::create_index_dir(&many, &cfg, &Identity::default()).unwrap();
    for i in 0..CORPUS.len() {
        let m = Manifest::read(&many).unwrap();
        let mut b = SegmentBuilder::new(&many, &m, 1 << 20).unwrap();
        b.add(&doc(i)).unwrap();
        publish_segments(&many, vec![b.finish().unwrap().unwrap()]).unwrap();
    }
    assert_eq!(Manifest::read(&many).unwrap().segments.len(), CORPUS.len());
    let a = TextIndex::open(&one).unwrap().snapshot();
    let b = TextIndex::open(&many).unwrap().snapshot();
    for q in ["rust", "postgres index", "\"access method\"", "search OR engine"] {
        let qa = a.compile(q, Some(1), DefaultOperator::Or).unwrap();
        let qb = b.compile(q, Some(1), DefaultOperator::Or).unwrap();
        let mut ra = a.top_ctids(&*qa, 10, 0).unwrap();
        let mut rb = b.top_ctids(&*qb, 10, 0).unwrap();
        ra.sort_by_key(|x| x.1);
        rb.sort_by_key(|x| x.1);
        assert_eq!(ra.len(), rb.len(), "{q}");
        for (x, y) in ra.iter().zip(&rb) {
            assert_eq!(x.1, y.1);
            assert!((x.0 - y.0).abs() < 1e-5, "{q}: {} vs {}", x.0, y.0);
        }
    }
}

#[test]
fn top_k_pages_by_descending_score() {
    let dir = tempdir("topk");
    build(&dir, &config(None));
    let idx = TextIndex::open(&dir).unwrap().snapshot();
    let q = idx.compile("postgres rust search", Some(1), DefaultOperator::Or).unwrap();
    let all = idx.top_ctids(&*q, 100, 0).unwrap();
    assert!(all.windows(2).all(|w| w[0].0 >= w[1].0));
    let first = idx.top_ctids(&*q, 3, 0).unwrap();
    let rest = idx.top_ctids(&*q, 100, 3).unwrap();
    let joined: Vec<_> = first.iter().chain(&rest).cloned().collect();
    assert_eq!(joined, all);
}

#[test]
fn deletes_then_merge_shrink_the_index_and_readers_follow() {
    let dir = tempdir("vacuum");
    let cfg = config(None);
    hybrid_engine::text::writer::create_index_dir(&dir, &cfg, &Identity::default()).unwrap();
    for i in 0..CORPUS.len() {
        let m = Manifest::read(&dir).unwrap();
        let mut b = SegmentBuilder::new(&dir, &m, 1 << 20).unwrap();
        b.add(&doc(i)).unwrap();
        publish_segments(&dir, vec![b.finish().unwrap().unwrap()]).unwrap();
    }
    let mut reader = TextIndex::open(&dir).unwrap();
    assert_eq!(keys(&reader, "rust", Some(1)), vec![1, 2, 3]);
    let _lock = maintenance::lock_maintenance(&dir, || {}).unwrap();
    let dead = [doc(2).ctid, doc(5).ctid];
    let stats =
        maintenance::bulk_delete(&dir, &hybrid_engine::text::pending::NoLog, &mut |c| dead.contains(&c), &mut |_| {})
            .unwrap();
    assert_eq!(stats.deleted, 2);
    assert_eq!(stats.remaining, CORPUS.len() as u64 - 2);
    assert!(reader.refresh().unwrap());
    assert_eq!(keys(&reader, "rust", Some(1)), vec![1, 3]);
    let m = Manifest::read(&dir).unwrap();
    assert_eq!(m.num_docs(), CORPUS.len() as u64 - 2);
    // Fully deleted one-document segments are dropped from the manifest outright.
    assert_eq!(m.segments.len(), CORPUS.len() - 2);
    let merges =
        maintenance::merge_until_settled(&dir, &MergePolicy { merge_factor: 3, ..Default::default() }, || {}).unwrap();
    assert!(merges >= 1);
    let m = Manifest::read(&dir).unwrap();
    assert!(m.segments.len() < CORPUS.len() - 2, "{}", m.segments.len());
    assert_eq!(m.num_docs(), CORPUS.len() as u64 - 2);
    assert!(reader.refresh().unwrap());
    assert_eq!(keys(&reader, "rust", Some(1)), vec![1, 3]);
    maintenance::merge_all(&dir, &hybrid_engine::text::pending::NoLog).unwrap();
    let m = Manifest::read(&dir).unwrap();
    assert_eq!(m.segments.len(), 1);
    // Only the live segment's files and our own files remain.
    let files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let prefix = m.segments[0].segment_id.uuid_string();
    for f in &files {
        assert!(f.starts_with(&prefix) || !f.chars().take(32).all(|c| c.is_ascii_hexdigit()), "stray file {f}");
    }
}

#[test]
fn snippets_highlight_query_words() {
    let dir = tempdir("snip");
    build(&dir, &config(None));
    let idx = TextIndex::open(&dir).unwrap().snapshot();
    let q = idx.compile("rust extensions", Some(1), DefaultOperator::Or).unwrap();
    let s = Snippets::new(&idx, &*q, 1, 150).unwrap();
    let out = s.render(CORPUS[2].1, "<b>", "</b>");
    assert!(out.contains("<b>extensions</b>"), "{out}");
    assert!(out.contains("<b>Rust</b>"), "{out}");
    let none = s.render("nothing to see here", "[", "]");
    assert_eq!(none, "nothing to see here");
}

/// `col @@@ q` is never true where `col` is NULL, whatever q (SQL strictness), even for queries
/// that match without a term of `col`.
#[test]
fn null_fields_never_match() {
    let dir = tempdir("nulls");
    let cfg = config(None);
    let mut b = IndexBuilder::create(&dir, &cfg, &Identity::default(), 1, 40 << 20).unwrap();
    b.add(&Document {
        ctid: 1 << 16 | 1,
        key: KeyValue::I64(1),
        texts: vec![Some("rust".into()), None],
        vectors: vec![],
    })
    .unwrap();
    b.add(&Document {
        ctid: 2 << 16 | 1,
        key: KeyValue::I64(2),
        texts: vec![Some("rust".into()), Some("postgres".into())],
        vectors: vec![],
    })
    .unwrap();
    b.finish().unwrap();
    let idx = TextIndex::open(&dir).unwrap();
    assert_eq!(keys(&idx, "NOT postgres", Some(1)), Vec::<u64>::new());
    assert_eq!(keys(&idx, "*", Some(1)), vec![1]);
    assert_eq!(keys(&idx, "title:rust", Some(1)), vec![1], "the title matches, but body is NULL in row 0");
    assert_eq!(keys(&idx, "title:rust", Some(0)), vec![0, 1]);
    assert_eq!(keys(&idx, "NOT postgres", Some(0)), vec![0, 1], "no title contains postgres");
}
