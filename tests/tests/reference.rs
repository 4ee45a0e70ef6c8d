//! Results agree with an independent reference.
//!
//! The reference is tantivy itself, in this process, with nothing of pg_hybrid in between: the
//! same ~64,000 real Debian package descriptions indexed in RAM with an analyzer assembled here
//! (Unicode words, lowercase, English stems: pg_hybrid's default), searched with tantivy's own
//! `QueryParser`. For a few hundred queries drawn from the corpus (common and rare words,
//! AND/OR/NOT, phrases, field queries) the set of matching keys must be equal, and the top-10 by
//! score must agree (same scores, same keys up to ties).
//!
//! The corpus comes from `scripts/fetch-data.sh DIR debian` (Debian's archive); DIR is
//! `$PGH_DATA_DIR` or `/var/tmp/pg_hybrid/data`, and is fetched if missing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::PathBuf;

use pg_hybrid_tests::{Rng, TestCluster};
use tantivy::collector::{DocSetCollector, TopDocs};
use tantivy::query::QueryParser;
use tantivy::schema::{IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer};
use tantivy::{Index, TantivyDocument};

struct Doc {
    id: i64,
    title: String,
    body: String,
}

fn corpus() -> Vec<Doc> {
    let dir = PathBuf::from(std::env::var("PGH_DATA_DIR").unwrap_or_else(|_| "/var/tmp/pg_hybrid/data".into()));
    let file = dir.join("debian/docs.jsonl");
    if !file.exists() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/fetch-data.sh");
        let ok = std::process::Command::new(script).arg(&dir).arg("debian").status().expect("run fetch-data.sh");
        assert!(ok.success(), "fetching the Debian corpus failed");
    }
    let f = std::io::BufReader::new(std::fs::File::open(&file).expect("corpus"));
    f.lines()
        .enumerate()
        .map(|(i, line)| {
            let v: serde_json::Value = serde_json::from_str(&line.expect("line")).expect("json");
            Doc {
                id: i as i64 + 1,
                title: v["title"].as_str().unwrap_or("").to_string(),
                body: v["body"].as_str().unwrap_or("").to_string(),
            }
        })
        .collect()
}

/// The reference index: plain tantivy, configured here.
fn reference(docs: &[Doc]) -> (Index, QueryParser, tantivy::schema::Field) {
    let mut b = Schema::builder();
    let id = b.add_i64_field("id", NumericOptions::default().set_fast());
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("english")
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let title = b.add_text_field("title", text.clone());
    let body = b.add_text_field("body", text);
    let index = Index::create_in_ram(b.build());
    index.tokenizers().register(
        "english",
        TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(255))
            .filter(LowerCaser)
            .filter(Stemmer::default())
            .build(),
    );
    let mut w = index.writer_with_num_threads(1, 200 << 20).unwrap();
    for d in docs {
        let mut doc = TantivyDocument::new();
        doc.add_i64(id, d.id);
        doc.add_text(title, &d.title);
        doc.add_text(body, &d.body);
        w.add_document(doc).unwrap();
    }
    w.commit().unwrap();
    let parser = QueryParser::for_index(&index, vec![body]);
    (index, parser, id)
}

/// Queries drawn from the corpus itself.
fn queries(docs: &[Doc], n: usize) -> Vec<String> {
    let mut rng = Rng::new(20261122);
    let words_of = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.len() >= 3 && w.chars().all(|c| c.is_ascii_lowercase()))
            .map(str::to_string)
            .collect()
    };
    let mut out = Vec::new();
    while out.len() < n {
        let d = &docs[rng.below(docs.len() as u64) as usize];
        let words = words_of(&d.body);
        let twords = words_of(&d.title);
        if words.len() < 4 || twords.is_empty() {
            continue;
        }
        let w = |rng: &mut Rng| words[rng.below(words.len() as u64) as usize].clone();
        let other = words_of(&docs[rng.below(docs.len() as u64) as usize].body);
        let q = match out.len() % 8 {
            0 => w(&mut rng),
            1 => format!("{} AND {}", w(&mut rng), w(&mut rng)),
            2 => format!(
                "{} OR {} OR {}",
                w(&mut rng),
                w(&mut rng),
                other.first().cloned().unwrap_or_else(|| w(&mut rng))
            ),
            3 => {
                let i = rng.below(words.len() as u64 - 1) as usize;
                format!("\"{} {}\"", words[i], words[i + 1])
            }
            4 => format!("title:{} AND {}", twords[rng.below(twords.len() as u64) as usize], w(&mut rng)),
            // tantivy's parser reads `a AND NOT b` as `+a +(-b)`, which matches nothing; the
            // Lucene form means the same in both languages.
            5 => format!("+{} -{}", w(&mut rng), other.first().cloned().unwrap_or_else(|| "zzzz".into())),
            6 => format!("({} OR {}) AND {}", w(&mut rng), w(&mut rng), w(&mut rng)),
            _ => {
                let i = rng.below(words.len() as u64 - 2) as usize;
                format!("{} {} {}", words[i], words[i + 1], words[i + 2])
            }
        };
        out.push(q);
    }
    out
}

#[test]
fn matches_and_top10_agree_with_tantivy_on_real_documents() {
    let docs = corpus();
    assert!(docs.len() > 50_000, "the Debian corpus has ~64k documents, found {}", docs.len());
    let (index, parser, id_field) = reference(&docs);
    let searcher = index.reader().unwrap().searcher();

    let cluster = TestCluster::new("reference");
    let mut c = cluster.connect();
    c.batch_execute("CREATE TABLE packages (id bigint PRIMARY KEY, title text, body text)").unwrap();
    {
        let mut w = c.copy_in("COPY packages (id, title, body) FROM STDIN").unwrap();
        let esc = |s: &str| s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n").replace('\r', "\\r");
        for d in &docs {
            writeln!(w, "{}\t{}\t{}", d.id, esc(&d.title), esc(&d.body)).unwrap();
        }
        w.finish().unwrap();
    }
    c.batch_execute("CREATE INDEX packages_search ON packages USING hybrid (id, title, body) WITH (key_field = 'id')")
        .unwrap();

    let qs = queries(&docs, 320);
    let mut compared = 0;
    let mut nonempty = 0;
    for q in &qs {
        // Reference: every match, and the top 10 with scores.
        let tq = parser.parse_query(q).unwrap_or_else(|e| panic!("reference cannot parse {q}: {e}"));
        let addrs = searcher.search(&*tq, &DocSetCollector).unwrap();
        let expected: BTreeSet<i64> = addrs
            .iter()
            .map(|a| searcher.segment_reader(a.segment_ord).fast_fields().i64("id").unwrap().first(a.doc_id).unwrap())
            .collect();
        let top: Vec<(f32, i64)> = searcher
            .search(&*tq, &TopDocs::with_limit(10).order_by_score())
            .unwrap()
            .into_iter()
            .map(|(s, a)| {
                (s, searcher.segment_reader(a.segment_ord).fast_fields().i64("id").unwrap().first(a.doc_id).unwrap())
            })
            .collect();
        let _ = id_field;

        // pg_hybrid through SQL.
        let got: BTreeSet<i64> = c
            .query("SELECT id FROM packages WHERE body @@@ $1", &[q])
            .unwrap()
            .iter()
            .map(|r| r.get::<_, i64>(0))
            .collect();
        assert_eq!(got.len(), expected.len(), "query {q}: {} matches, reference {}", got.len(), expected.len());
        assert_eq!(got, expected, "query {q}: different matches");
        let ranked: Vec<(f32, i64)> = c
            .query(
                "SELECT hybrid.score(id), id FROM packages WHERE body @@@ $1 ORDER BY hybrid.score(id) DESC LIMIT 10",
                &[q],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, f32>(0), r.get::<_, i64>(1)))
            .collect();
        assert_eq!(ranked.len(), top.len(), "query {q}: top-10 length");
        for (i, ((s1, _), (s2, _))) in ranked.iter().zip(&top).enumerate() {
            assert!(
                (s1 - s2).abs() <= 1e-4 * s2.abs().max(1.0),
                "query {q}: score at rank {i}: {s1} vs reference {s2}"
            );
        }
        // Same keys, except that ties at the cut-off may be broken differently.
        if let Some(&(cutoff, _)) = top.last() {
            let above = |v: &[(f32, i64)]| -> BTreeSet<i64> {
                v.iter().filter(|(s, _)| *s > cutoff + 1e-4 * cutoff.abs().max(1.0)).map(|(_, id)| *id).collect()
            };
            assert_eq!(above(&ranked), above(&top), "query {q}: different top keys");
            let by_score: BTreeMap<i64, f32> = ranked.iter().map(|(s, id)| (*id, *s)).collect();
            for (_, id) in &ranked {
                assert!(expected.contains(id), "query {q}: ranked key {id} does not match");
                let _ = by_score[id];
            }
        }
        compared += 1;
        if !expected.is_empty() {
            nonempty += 1;
        }
    }
    assert_eq!(compared, qs.len());
    assert!(nonempty >= qs.len() * 3 / 4, "most queries should match something ({nonempty} of {})", qs.len());
    eprintln!("reference: {compared} queries agree ({nonempty} with matches)");
}
