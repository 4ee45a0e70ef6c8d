//! Evaluates a query against one row's values, without an index.
//!
//! Two users: `col @@@ 'query'` on a column without a hybrid index (one value, the default
//! analysis), and the search scan's recheck of a row that a concurrent UPDATE changed (all the
//! index's fields, each with its own analysis). The query means exactly what it means in an
//! index: the same analysis, phrases with slop, prefixes (typed or stemmed), fuzzy terms with
//! transpositions, keyword twins, Lucene boolean semantics, and no match where the searched
//! column is NULL.

use std::cell::RefCell;

use tantivy::tokenizer::TextAnalyzer;

use super::ast::{FieldRef, Occur, Query};
use super::DefaultOperator;
use crate::analyzer::{build_analyzer, tokens};
use crate::config::{TextFieldConfig, KEYWORD_SUFFIX};
use crate::error::{Error, Result};

/// Whether `text` matches `query` when analysed as a field configured by `field`.
pub fn matches_text(query: &str, text: &str, field: &TextFieldConfig) -> Result<bool> {
    matches_row(query, 0, std::slice::from_ref(field), &[Some(text)])
}

/// Whether a row matches `query` searched through field `default_field`, given the
/// configuration and value (None for NULL) of every text field of the index.
pub fn matches_row(
    query: &str,
    default_field: usize,
    fields: &[TextFieldConfig],
    values: &[Option<&str>],
) -> Result<bool> {
    if values.get(default_field).copied().flatten().is_none() {
        return Ok(false);
    }
    let ast = super::parse(query, DefaultOperator::Or)?;
    let row = Row {
        query,
        default_field,
        fields,
        values,
        analyzers: RefCell::new(vec![None; fields.len()]),
        tokens: RefCell::new(vec![None; fields.len()]),
    };
    row.eval(&ast)
}

/// Where a leaf looks.
#[derive(Clone, Copy)]
enum Target {
    Text(usize),
    Keyword(usize),
}

struct Row<'a> {
    query: &'a str,
    default_field: usize,
    fields: &'a [TextFieldConfig],
    values: &'a [Option<&'a str>],
    analyzers: RefCell<Vec<Option<TextAnalyzer>>>,
    tokens: RefCell<Vec<Option<Vec<(usize, String)>>>>,
}

impl Row<'_> {
    fn target(&self, field: &Option<FieldRef>) -> Result<Target> {
        let Some(f) = field else { return Ok(Target::Text(self.default_field)) };
        if let Some(i) = self.fields.iter().position(|c| c.name == f.name) {
            return Ok(Target::Text(i));
        }
        if let Some(base) = f.name.strip_suffix(KEYWORD_SUFFIX) {
            if let Some(i) = self.fields.iter().position(|c| c.name == base && c.keyword) {
                return Ok(Target::Keyword(i));
            }
        }
        let position = self.query[..f.span.start.min(self.query.len())].chars().count() + 1;
        Err(if self.fields.len() == 1 {
            Error::UnknownField {
                message: format!("field \"{}\" can only be searched through a hybrid index", f.name),
                hint: Some(
                    "create a hybrid index on the table that covers this field, or search the column itself".into(),
                ),
                position: Some(position),
            }
        } else {
            Error::UnknownField {
                message: format!("field \"{}\" is not in this index", f.name),
                hint: None,
                position: Some(position),
            }
        })
    }

    /// Analyses `text` with field `i`'s analyzer.
    fn analyse(&self, i: usize, text: &str) -> Result<Vec<(usize, String)>> {
        let mut analyzers = self.analyzers.borrow_mut();
        if analyzers[i].is_none() {
            analyzers[i] = Some(build_analyzer(&self.fields[i])?);
        }
        Ok(tokens(analyzers[i].as_mut().expect("just built"), text))
    }

    /// The tokens of field `i`'s value (empty for NULL).
    fn doc(&self, i: usize) -> Result<Vec<(usize, String)>> {
        if let Some(t) = &self.tokens.borrow()[i] {
            return Ok(t.clone());
        }
        let t = match self.values.get(i).copied().flatten() {
            Some(v) => self.analyse(i, v)?,
            None => Vec::new(),
        };
        self.tokens.borrow_mut()[i] = Some(t.clone());
        Ok(t)
    }

    fn eval(&self, q: &Query) -> Result<bool> {
        Ok(match q {
            Query::All { .. } => true,
            Query::Boost { query, .. } => self.eval(query)?,
            Query::Boolean { clauses } => {
                let mut any_must = false;
                let mut any_should = false;
                let mut should_hit = false;
                for (occur, c) in clauses {
                    let hit = self.eval(c)?;
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
            Query::Term { field, text, .. } => match self.target(field)? {
                Target::Keyword(i) => self.values[i] == Some(text.as_str()),
                Target::Text(i) => {
                    let toks = self.analyse(i, text)?;
                    let doc = self.doc(i)?;
                    match toks.len() {
                        0 => false,
                        1 => doc.iter().any(|(_, t)| *t == toks[0].1),
                        _ if matches!(self.fields[i].tokenizer, crate::config::TokenizerKind::Ngram { .. }) => {
                            toks.iter().all(|(_, w)| doc.iter().any(|(_, t)| t == w))
                        }
                        _ => phrase(&doc, &toks, 0),
                    }
                }
            },
            Query::Phrase { field, text, slop, prefix, .. } => match self.target(field)? {
                Target::Keyword(i) => {
                    let v = self.values[i].unwrap_or("");
                    if *prefix {
                        v.starts_with(text.as_str())
                    } else {
                        v == text
                    }
                }
                Target::Text(i) => {
                    let mut toks = self.analyse(i, text)?;
                    let doc = self.doc(i)?;
                    if toks.is_empty() {
                        return Ok(false);
                    }
                    if !*prefix {
                        return Ok(if toks.len() == 1 {
                            doc.iter().any(|(_, t)| *t == toks[0].1)
                        } else {
                            phrase(&doc, &toks, *slop)
                        });
                    }
                    let last = toks.pop().expect("non-empty");
                    let word = normalise(&self.fields[i], text.split_whitespace().last().unwrap_or(text));
                    doc.iter().enumerate().any(|(k, (pos, t))| {
                        (t.starts_with(&word) || t.starts_with(&last.1))
                            && (toks.is_empty() || phrase(&doc[..k], &shifted(&toks, last.0, *pos), *slop))
                    })
                }
            },
            Query::Prefix { field, text, .. } => match self.target(field)? {
                Target::Keyword(i) => self.values[i].is_some_and(|v| v.starts_with(text.as_str())),
                Target::Text(i) => {
                    let typed = normalise(&self.fields[i], text);
                    let stem = self.analyse(i, text)?.into_iter().next().map(|(_, t)| t);
                    self.doc(i)?.iter().any(|(_, t)| {
                        t.starts_with(&typed)
                            || stem.as_ref().is_some_and(|s| typed.starts_with(s.as_str()) && t.starts_with(s.as_str()))
                    })
                }
            },
            Query::Fuzzy { field, text, distance, .. } => match self.target(field)? {
                Target::Keyword(i) => self.values[i].is_some_and(|v| damerau(text, v) <= usize::from(*distance)),
                Target::Text(i) => {
                    let toks = self.analyse(i, text)?;
                    let doc = self.doc(i)?;
                    !toks.is_empty()
                        && toks.iter().all(|(_, w)| doc.iter().any(|(_, t)| damerau(w, t) <= usize::from(*distance)))
                }
            },
        })
    }
}

/// Lowercases a word as the field does, without stemming (prefixes are matched on it).
fn normalise(cfg: &TextFieldConfig, text: &str) -> String {
    if cfg.lowercase {
        text.to_lowercase()
    } else {
        text.to_string()
    }
}

/// `toks` re-based so that the token at `from` lands just before `at`.
fn shifted(toks: &[(usize, String)], from: usize, at: usize) -> Vec<(usize, String)> {
    toks.iter().map(|(p, t)| ((p + at).saturating_sub(from), t.clone())).collect()
}

/// Whether the tokens occur in `doc` at their relative positions, allowing `slop` moves in total.
fn phrase(doc: &[(usize, String)], toks: &[(usize, String)], slop: u32) -> bool {
    let base = toks[0].0;
    let positions = |w: &str| -> Vec<usize> { doc.iter().filter(|(_, t)| t == w).map(|(p, _)| *p).collect() };
    let lists: Vec<Vec<usize>> = toks.iter().map(|(_, t)| positions(t)).collect();
    if lists.iter().any(|l| l.is_empty()) {
        return false;
    }
    lists[0].iter().any(|&start| {
        let mut budget = i64::from(slop);
        let mut prev = start;
        for (i, list) in lists.iter().enumerate().skip(1) {
            let want = (start + (toks[i].0 - base)) as i64;
            let best =
                list.iter().filter(|&&p| p > prev || (slop > 0 && p != prev)).min_by_key(|&&p| (p as i64 - want).abs());
            match best {
                Some(&p) => {
                    budget -= (p as i64 - want).abs();
                    if budget < 0 {
                        return false;
                    }
                    prev = p;
                }
                None => return false,
            }
        }
        true
    })
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
    fn rows_with_several_fields() {
        let mut title = TextFieldConfig::default_for("title");
        title.keyword = true;
        let fields = [title, TextFieldConfig::default_for("body")];
        let row = [Some("Hybrid Search"), Some("fuses rankings")];
        assert!(matches_row("title:hybrid AND ranking", 1, &fields, &row).unwrap());
        assert!(matches_row("title__kw:\"Hybrid Search\"", 1, &fields, &row).unwrap());
        assert!(!matches_row("title__kw:hybrid", 1, &fields, &row).unwrap());
        assert!(matches!(matches_row("colour:red", 1, &fields, &row), Err(Error::UnknownField { .. })));
        // The searched column is NULL: nothing matches, not even NOT or *.
        assert!(!matches_row("NOT x", 1, &fields, &[Some("t"), None]).unwrap());
        assert!(!matches_row("*", 1, &fields, &[Some("t"), None]).unwrap());
    }

    #[test]
    fn damerau_counts_transpositions_once() {
        assert_eq!(damerau("abcd", "abdc"), 1);
        assert_eq!(damerau("kitten", "sitting"), 3);
    }
}
