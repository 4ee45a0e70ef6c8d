//! Publishing a new manifest: what every writing transaction does at commit, under the index's
//! publish lock. One iteration replaces one segment entry of a 20-segment manifest: take the
//! lock, read and parse the manifest, write the new one to a temporary file, fsync it, rename it
//! over the old one and fsync the folder. The folder is under the temporary directory
//! (`TMPDIR`), so the fsyncs cost what that file system's cost.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use hybrid_engine::config::{ColumnKind, ColumnSpec, IndexConfig};
use hybrid_engine::manifest::{self, Identity, SegmentEntry};
use hybrid_engine::tantivy::index::SegmentId;
use hybrid_engine::text::writer::create_index_dir;

fn publish(c: &mut Criterion) {
    let root = std::env::temp_dir().join(format!("hybrid-bench-publish-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let dir = root.join("index");
    let config = IndexConfig::from_create_index(
        &[
            ColumnSpec { name: "id".into(), kind: ColumnKind::Integer },
            ColumnSpec { name: "title".into(), kind: ColumnKind::Text },
            ColumnSpec { name: "body".into(), kind: ColumnKind::Text },
        ],
        Some("id"),
        None,
    )
    .unwrap();
    create_index_dir(&dir, &config, &Identity { index_oid: 1, created_xid: 2 }).unwrap();
    let entry = || SegmentEntry { segment_id: SegmentId::generate_random(), max_doc: 1000, deletes: None };
    manifest::publish(&dir, |m| {
        m.segments.extend((0..20).map(|_| entry()));
        Ok(())
    })
    .unwrap();

    let mut g = c.benchmark_group("publish");
    g.bench_function("one_segment_20", |bench| {
        bench.iter(|| {
            manifest::publish(&dir, |m| {
                m.segments.pop();
                m.segments.push(entry());
                Ok(())
            })
            .unwrap()
            .hybrid
            .generation
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&root);
}

criterion_group! { name = benches; config = common::quick(); targets = publish }
criterion_main!(benches);
