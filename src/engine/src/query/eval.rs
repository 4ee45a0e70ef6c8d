//! Evaluates a query against one text value, without an index: what `col @@@ 'query'` does when
//! the planner evaluates it row by row (a column with no hybrid index). The value is analysed
//! like a field with the given configuration, and the query means exactly what it means in an
//! index: the same analysis, phrases with slop, prefixes (typed or stemmed), fuzzy terms with
//! transpositions, Lucene boolean semantics.

use super::ast::{Occur, Query};
use super::DefaultOperator;
use crate::analyzer::{build_analyzer, tokens};
use crate::config::TextFieldConfig;
use crate::error::{Error, Result};

/// Whether `text` matches `query` when analysed as a field configured by `field`.
pub fn matches_text(query: &str, text: &str, field: &TextFieldConfig) -> Result<bool> {
    let ast = super::parse(query, DefaultOperator::Or)?;
    let mut analyzer = build_analyzer(field)?;
    let doc = tokens(&mut analyzer, text);
    let ctx = Eval { field, analyzer: &mut analyzer, doc: &doc, query };
    eval(&ast, &ctx_mut(ctx))
}

struct Eval<'a> {
    field: &'a TextFieldConfig,
    analyzer: &'a mut tantivy::tokenizer::TextAnalyzer,
    doc: &'a [(usize, String)],
    query: &'a str,
}

fn ctx_mut(e: Eval<'_>) -> std::cell::RefCell<Eval<'_>> {
    std::cell::RefCell::new(e)
}

fn eval(q: &Query, cx: &std::cell::RefCell<Eval<'_>>) -> Result<bool> {
    if let Some(f) = q.field() {
        if f.name != cx.borrow().field.name {
            let query = cx.borrow().query;
            return Err(Error::UnknownField {
                message: format!("field \"{}\" can only be searched through a hybrid index", f.name),
                hint: Some("create a hybrid index on the table that covers this field, or search the column itself".into()),
                position: Some(query[..f.span.start.min(query.len())].chars().count() + 1),
            });
        }
    }
    Ok(match q {
        Query::All { .. } => true,
        Query::Term { text, .. } => {
            let toks = analyse(cx, text);
            match toks.len() {
                0 => return Ok(false),
                1 => cx.borrow().doc.iter().any(|(_, t)| *t == toks[0].1),
                _ => phrase(cx.borrow().doc, &toks, 0),
            }
        }
        Query::Phrase { text, slop, prefix, .. } => {
            let mut toks = analyse(cx, text);
            if toks.is_empty() {
                return Ok(false);
            }
            if *prefix {
                let last = toks.pop().expect("non-empty");
                let doc = cx.borrow().doc.to_vec();
                let word = text.split_whitespace().last().unwrap_or(text).to_lowercase();
                return Ok(doc.iter().enumerate().any(|(i, (pos, t))| {
                    (t.starts_with(&word) || t.starts_with(&last.1))
                        && (toks.is_empty() || phrase(&doc[..i], &shifted(&toks, last.0, *pos), *slop))
                }));
            }
            phrase(cx.borrow().doc, &toks, *slop)
        }
        Query::Prefix { text, .. } => {
            let typed = if cx.borrow().field.lowercase { text.to_lowercase() } else { text.clone() };
            let stem = analyse(cx, text).into_iter().next().map(|(_, t)| t);
            cx.borrow().doc.iter().any(|(_, t)| {
                t.starts_with(&typed) || stem.as_ref().is_some_and(|s| typed.starts_with(s.as_str()) && t.starts_with(s.as_str()))
            })
        }
        Query::Fuzzy { text, distance, .. } => {
            let toks = analyse(cx, text);
            !toks.is_empty()
                && toks.iter().all(|(_, w)| {
                    cx.borrow().doc.iter().any(|(_, t)| damerau(w, t) <= usize::from(*distance))
                })
        }
        Query::Boost { query, .. } => eval(query, cx)?,
        Query::Boolean { clauses } => {
            let mut any_must = false;
            let mut any_should = false;
            let mut should_hit = false;
            for (occur, c) in clauses {
                let hit = eval(c, cx)?;
                match occur {
                    Occur::Must => {
                        any_must = true;
                        if !hit {
                            return Ok(false);
                        }
                    }
                    Occur::MustNot => {
                        if hit {
                            return Ok(false);
                        }
                    }
                    Occur::Should => {
                        any_should = true;
                        should_hit |= hit;
                    }
                }
            }
            // Lucene: with a required clause, optional ones only score; without, one must match.
            any_must || !any_should || should_hit
        }
    })
}

fn analyse(cx: &std::cell::RefCell<Eval<'_>>, text: &str) -> Vec<(usize, String)> {
    let mut e = cx.borrow_mut();
    tokens(e.analyzer, text)
}

/// `toks` re-based so that the token at `from` lands just before `at`.
fn shifted(toks: &[(usize, String)], from: usize, at: usize) -> Vec<(usize, String)> {
    toks.iter().map(|(p, t)| ((p + at).saturating_sub(from), t.clone())).collect()
}

/// Whether the tokens occur in `doc` at their relative positions, allowing `slop` moves in total
/// (tantivy's sloppy phrase: each term may be displaced, the sum of displacements ≤ slop).
fn phrase(doc: &[(usize, String)], toks: &[(usize, String)], slop: u32) -> bool {
    let base = toks[0].0;
    let positions = |w: &str| -> Vec<usize> { doc.iter().filter(|(_, t)| t == w).map(|(p, _)| *p).collect() };
    let lists: Vec<Vec<usize>> = toks.iter().map(|(_, t)| positions(t)).collect();
    if lists.iter().any(|l| l.is_empty()) {
        return false;
    }
    for &start in &lists[0] {
        let mut budget = slop as i64;
        let mut prev = start;
        let mut ok = true;
        for (i, list) in lists.iter().enumerate().skip(1) {
            let want = start + (toks[i].0 - base);
            // the closest occurrence after the previous term
            let best = list.iter().filter(|&&p| p > prev || (slop > 0 && p != prev)).min_by_key(|&&p| (p as i64 - want as i64).abs());
            match best {
                Some(&p) => {
                    budget -= (p as i64 - want as i64).abs();
                    if budget < 0 {
                        ok = false;
                        break;
                    }
                    prev = p;
                }
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            return true;
        }
    }
    false
}

/// Edit distance with adjacent transpositions counting one (as tantivy's fuzzy queries).
fn damerau(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for j in 0..=m {
        d[0][j] = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[n][m]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(q: &str, text: &str) -> bool {
        matches_text(q, text, &TextFieldConfig::default_for("body")).unwrap()
    }

    #[test]
    fn evaluates_like_the_index() {
        let t = "pgrx lets you write Postgres extensions in Rust, including an index access method";
        assert!(m("rust", t));
        assert!(m("postgres AND (rust OR \"index access method\")", t));
        assert!(!m("postgres AND NOT rust", t));
        assert!(m("NOT python", t));
        assert!(m("\"index method\"~1", t));
        assert!(!m("\"index method\"", t));
        assert!(m("extens*", t));
        assert!(m("postgre*", t), "the stem of postgres is shorter than the prefix");
        assert!(m("rsut~1", t));
        assert!(!m("rsut~0", t));
        assert!(m("body:rust", t));
        assert!(m("\"access met\"*", t));
        assert!(matches!(
            matches_text("title:rust", t, &TextFieldConfig::default_for("body")),
            Err(Error::UnknownField { .. })
        ));
    }

    #[test]
    fn damerau_counts_transpositions_once() {
        assert_eq!(damerau("abcd", "abdc"), 1);
        assert_eq!(damerau("kitten", "sitting"), 3);
    }
}
