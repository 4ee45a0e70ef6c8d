//! `pg_hybrid_bench all` (what `make bench` runs): every workload of the project's targets in
//! one run — full text on the ~350k-document corpus, vectors on GloVe-50, snapshots of the
//! Debian descriptions to a local folder and to S3 (moto_server on loopback) — then one table
//! of every target with what this run measured, and one JSON file with everything.
//!
//! The data comes from the project's own `scripts/fetch-data.sh` (parts already fetched are
//! skipped); the full-text tables and indexes are kept in the benchmark cluster between runs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::{cluster, fulltext, snapshots, vectors};

/// One target of either suite, as the combined table shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub suite: &'static str,
    pub target: String,
    pub goal: String,
    pub measured: String,
    pub holds: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub date: String,
    pub total_s: f64,
    pub targets: Vec<Row>,
    pub fulltext: fulltext::Report,
    pub vectors: vectors::Report,
    pub snapshots: Vec<snapshots::Report>,
}

fn fetch(data: &Path, parts: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/fetch-data.sh");
    let ok = std::process::Command::new(script).arg(data).args(parts).status().expect("run scripts/fetch-data.sh");
    assert!(ok.success(), "scripts/fetch-data.sh {} {} failed", data.display(), parts.join(" "));
}

pub fn run(args: &[String], data: &Path) {
    let started = Instant::now();
    fetch(data, &["large", "glove50"]); // large includes debian

    // Full text: the large corpus unless told otherwise.
    let mut ft_args = args.to_vec();
    if crate::arg(args, "--corpus").is_none() {
        ft_args.extend(["--corpus".to_string(), "large".to_string()]);
    }
    let ft_opts = fulltext::Options::from_args(&ft_args, data);
    let ft = fulltext::run(&ft_opts);
    fulltext::print(&ft);

    let v = vectors::run(&vectors::Options::from_args(args));
    vectors::print(&v);

    // Snapshots: throughput and what a snapshot after a 1% update sends, on the Debian
    // descriptions (the corpus the snapshot issue names).
    let debian = fulltext::load_corpus(data, "debian");
    let snaps: Vec<snapshots::Report> = ["file", "s3"]
        .iter()
        .map(|store| {
            let r = snapshots::run_on("debian", &debian, store);
            snapshots::print(&r);
            r
        })
        .collect();

    let mut targets: Vec<Row> = ft
        .targets
        .iter()
        .map(|t| Row {
            suite: "full text",
            target: t.name.clone(),
            goal: t.goal.clone(),
            measured: t.measured.clone(),
            holds: t.holds,
        })
        .collect();
    targets.extend(v.targets.iter().map(|t| Row {
        suite: "vectors",
        target: t.name.clone(),
        goal: String::new(),
        measured: t.value.clone(),
        holds: t.ok,
    }));
    let report = Report {
        date: cluster::today(),
        total_s: started.elapsed().as_secs_f64(),
        targets,
        fulltext: ft,
        vectors: v,
        snapshots: snaps,
    };

    println!("\n### Targets ({}, one run of `make bench`, {:.0} min)\n", report.date, report.total_s / 60.0);
    println!("| suite | target | measured | holds |");
    println!("|---|---|---|---|");
    for t in &report.targets {
        let target = if t.goal.is_empty() { t.target.clone() } else { format!("{}: {}", t.target, t.goal) };
        println!("| {} | {} | {} | {} |", t.suite, target, t.measured, if t.holds { "yes" } else { "**no**" });
    }
    let json = crate::arg(args, "--json").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../bench-results"))
            .join(format!("bench-{}.json", report.date))
    });
    if let Some(parent) = json.parent() {
        std::fs::create_dir_all(parent).expect("create the results folder");
    }
    std::fs::write(&json, serde_json::to_string_pretty(&report).expect("json")).expect("write json");
    println!("\nresults written to {}", json.display());
}
