//! pg_hybrid's benchmarks, measured side by side with the anchors in one cluster and one run.
//!
//! ```text
//! pg_hybrid_bench fulltext [--corpus debian|large] [--data DIR] [--queries N] [--repeats N] [--json FILE]
//! pg_hybrid_bench snapshots [--corpus debian|large] [--data DIR] [--store file] [--json FILE]
//! ```
//! Needs pg_hybrid installed (`make install`); starts its own throw-away cluster; fetches the data
//! with `scripts/fetch-data.sh` when it is missing.

mod fulltext;
mod snapshots;
mod stats;

use std::path::PathBuf;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let data = PathBuf::from(arg(&args, "--data").unwrap_or_else(|| "/var/tmp/pg_hybrid/data".into()));
    match args.first().map(String::as_str) {
        Some("fulltext") => {
            let corpus = arg(&args, "--corpus").unwrap_or_else(|| "debian".into());
            let per_class: usize = arg(&args, "--queries").map_or(20, |v| v.parse().expect("--queries N"));
            let repeats: usize = arg(&args, "--repeats").map_or(5, |v| v.parse().expect("--repeats N"));
            let docs = fulltext::load_corpus(&data, &corpus);
            let report = fulltext::run(&corpus, &docs, per_class, repeats);
            fulltext::print(&report);
            if let Some(path) = arg(&args, "--json") {
                std::fs::write(&path, serde_json::to_string_pretty(&report).expect("json")).expect("write json");
                println!("results written to {path}");
            }
        }
        Some("snapshots") => {
            let corpus = arg(&args, "--corpus").unwrap_or_else(|| "debian".into());
            let docs = fulltext::load_corpus(&data, &corpus);
            let store = arg(&args, "--store").unwrap_or_else(|| "file".into());
            let (label, settings) = match store.as_str() {
                "file" => ("file:// (local disk)".to_string(), Vec::new()),
                other => {
                    eprintln!("unknown --store {other}: file");
                    std::process::exit(2);
                }
            };
            let report = snapshots::run(&corpus, &docs, &label, &settings);
            snapshots::print(&report);
            if let Some(path) = arg(&args, "--json") {
                std::fs::write(&path, serde_json::to_string_pretty(&report).expect("json")).expect("write json");
                println!("results written to {path}");
            }
        }
        _ => {
            eprintln!("usage: pg_hybrid_bench fulltext [--corpus debian|large] [--data DIR] [--queries N] [--repeats N] [--json FILE]");
            std::process::exit(2);
        }
    }
}
