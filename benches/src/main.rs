//! pg_hybrid's benchmarks, measured side by side with the anchors in one cluster and one run.
//!
//! ```text
//! pg_hybrid_bench all [--data DIR] [--fresh] [--json FILE]        (`make bench`: both suites, one table of targets)
//! pg_hybrid_bench fulltext [--corpus debian|large] [--data DIR] [--fresh] [--queries N] [--repeats N]
//!                          [--clients N] [--duration S] [--pgbench-seconds N] [--dir DIR] [--port N] [--json FILE]
//! pg_hybrid_bench snapshots [--corpus debian|large] [--data DIR] [--store file|s3] [--json FILE]
//! pg_hybrid_bench vectors [--data DIR] [--stride N] [--queries N] [--exact-queries N] [--clients N]
//!                         [--ef 10,20,...] [--perf DIR] [--json FILE]
//! ```
//! Needs pg_hybrid installed (`make install`); starts its own throw-away cluster; fetches the data
//! with `scripts/fetch-data.sh` when it is missing.

mod all;
mod cluster;
mod fulltext;
mod snapshots;
mod stats;
mod vectors;

use std::path::PathBuf;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let data = PathBuf::from(arg(&args, "--data").unwrap_or_else(|| "/var/tmp/pg_hybrid/data".into()));
    // The GloVe reader shared with the tests finds the data through this variable.
    std::env::set_var("PGH_DATA_DIR", &data);
    match args.first().map(String::as_str) {
        Some("fulltext") => fulltext::cli(&args, &data),
        Some("snapshots") => {
            let corpus = arg(&args, "--corpus").unwrap_or_else(|| "debian".into());
            let docs = fulltext::load_corpus(&data, &corpus);
            let store = arg(&args, "--store").unwrap_or_else(|| "file".into());
            let report = snapshots::run_on(&corpus, &docs, &store);
            snapshots::print(&report);
            if let Some(path) = arg(&args, "--json") {
                std::fs::write(&path, serde_json::to_string_pretty(&report).expect("json")).expect("write json");
                println!("results written to {path}");
            }
        }
        Some("vectors") => {
            let report = vectors::run(&vectors::Options::from_args(&args));
            vectors::print(&report);
            if let Some(path) = arg(&args, "--json") {
                std::fs::write(&path, serde_json::to_string_pretty(&report).expect("json")).expect("write json");
                println!("results written to {path}");
            }
        }
        Some("all") => all::run(&args, &data),
        _ => {
            eprintln!("usage: pg_hybrid_bench all [--data DIR] [--fresh] [--json FILE]");
            eprintln!("       {}", fulltext::USAGE);
            eprintln!("       pg_hybrid_bench vectors [--data DIR] [--stride N] [--queries N] [--exact-queries N] [--clients N] [--ef 10,20,...] [--perf DIR] [--json FILE]");
            std::process::exit(2);
        }
    }
}
