//! The default analyzer (simple tokenizer, lower case, English stemmer) on real text: the
//! bodies of the Debian package descriptions corpus (`scripts/fetch-data.sh`), or generated
//! text of the same shape if it is missing. Throughput in bytes of text.

mod common;

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hybrid_engine::analyzer::build_analyzer;
use hybrid_engine::config::TextFieldConfig;

/// About 1 MB of text.
const BYTES: usize = 1 << 20;

fn texts() -> (&'static str, Vec<String>) {
    let path = Path::new(common::DATA).join("debian/docs.jsonl");
    if let Ok(all) = std::fs::read_to_string(&path) {
        let mut out = Vec::new();
        let mut total = 0;
        for line in all.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            for key in ["title", "body"] {
                if let Some(s) = v.get(key).and_then(|s| s.as_str()) {
                    total += s.len();
                    out.push(s.to_string());
                }
            }
            if total >= BYTES {
                return ("debian", out);
            }
        }
    }
    // Words of English-like length, with some punctuation and capitals.
    let words = [
        "The",
        "package",
        "provides",
        "a",
        "library",
        "for",
        "parsing",
        "configuration",
        "files,",
        "written",
        "in",
        "C.",
        "It",
        "includes",
        "documentation",
        "and",
        "examples;",
        "development",
        "headers",
        "are",
        "separate.",
        "Running",
        "databases",
        "quickly",
        "with",
        "utilities",
        "(server)",
        "client-side",
    ];
    let mut s = 7u64;
    let mut out = Vec::new();
    let mut total = 0;
    while total < BYTES {
        let mut doc = String::new();
        for _ in 0..120 {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            doc.push_str(words[(s >> 33) as usize % words.len()]);
            doc.push(' ');
        }
        total += doc.len();
        out.push(doc);
    }
    ("generated", out)
}

fn tokenize(c: &mut Criterion) {
    let (name, docs) = texts();
    let bytes: usize = docs.iter().map(String::len).sum();
    let mut analyzer = build_analyzer(&TextFieldConfig::default_for("body")).expect("analyzer");
    let mut g = c.benchmark_group("tokenize");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function(format!("default/{name}"), |bench| {
        bench.iter(|| {
            let mut tokens = 0usize;
            for d in &docs {
                let mut stream = analyzer.token_stream(d);
                while stream.advance() {
                    tokens += stream.token().text.len();
                }
            }
            tokens
        })
    });
    g.finish();
}

criterion_group! { name = benches; config = common::quick(); targets = tokenize }
criterion_main!(benches);
