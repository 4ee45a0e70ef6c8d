//! Compiles a parsed query into a tantivy query for one index.
//!
//! Words are analysed with the analyzer of the field they search, exactly as indexed values were,
//! so `Running` finds documents containing `runs`. A word the analyzer turns into several tokens
//! (`e-mail`) becomes a phrase; a word it drops entirely (a stop word) is left out of the query,
//! as search engines do.

use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, EmptyQuery, FuzzyTermQuery, Occur, PhrasePrefixQuery, PhraseQuery, Query,
    TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::Term;

use super::ast::{self, FieldRef, Span};
use super::prefix::PrefixQuery;
use crate::analyzer::tokens;
use crate::config::{IndexConfig, TextFieldConfig, TokenizerKind, KEYWORD_SUFFIX};
use crate::error::{Error, Result};
use crate::schema::Fields;

/// What a query is compiled against.
pub struct Context<'a> {
    pub config: &'a IndexConfig,
    pub fields: &'a Fields,
    /// One analyzer per text field, in config order.
    pub analyzers: &'a [TextAnalyzer],
    /// The field a term without `field:` searches; `None` means every text field.
    pub default_field: Option<usize>,
    /// The query text, for error positions.
    pub query_text: &'a str,
}

/// Where a leaf of the query looks.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The analysed text field at this position.
    Text(usize),
    /// The raw keyword twin of the text field at this position.
    Keyword(usize),
}

/// Compiles `ast` into a tantivy query. A query that can match nothing (only stop words)
/// compiles to a query matching nothing.
///
/// `col @@@ query` is never true where `col` is NULL. A query that can match a row without a
/// term of the default field (`NOT x`, `*`, `title:x` searched through `body`) is therefore
/// restricted to rows where the default field is present.
pub fn compile(ast: &ast::Query, ctx: &Context<'_>) -> Result<Box<dyn Query>> {
    let q = compile_node(ast, ctx)?.unwrap_or_else(|| Box::new(EmptyQuery));
    let Some(i) = ctx.default_field else { return Ok(q) };
    let name = &ctx.config.text_fields[i].name;
    if requires_field(ast, name) {
        return Ok(q);
    }
    let present: Box<dyn Query> =
        Box::new(TermQuery::new(Term::from_field_text(ctx.fields.present, name), IndexRecordOption::Basic));
    Ok(Box::new(BooleanQuery::new(vec![(Occur::Must, q), (Occur::Must, present)])))
}

/// Whether every match of `q` holds a term of field `name` (so the field is not NULL).
fn requires_field(q: &ast::Query, name: &str) -> bool {
    let own = |f: &Option<FieldRef>| f.as_ref().is_none_or(|f| f.name == name);
    match q {
        ast::Query::Term { field, .. }
        | ast::Query::Phrase { field, .. }
        | ast::Query::Prefix { field, .. }
        | ast::Query::Fuzzy { field, .. } => own(field),
        ast::Query::All { .. } => false,
        ast::Query::Boost { query, .. } => requires_field(query, name),
        ast::Query::Boolean { clauses } => {
            let musts: Vec<_> = clauses.iter().filter(|(o, _)| *o == ast::Occur::Must).collect();
            if !musts.is_empty() {
                musts.iter().any(|(_, c)| requires_field(c, name))
            } else {
                let shoulds: Vec<_> = clauses.iter().filter(|(o, _)| *o == ast::Occur::Should).collect();
                !shoulds.is_empty() && shoulds.iter().all(|(_, c)| requires_field(c, name))
            }
        }
    }
}

fn compile_node(node: &ast::Query, ctx: &Context<'_>) -> Result<Option<Box<dyn Query>>> {
    match node {
        ast::Query::All { .. } => Ok(Some(Box::new(AllQuery))),
        ast::Query::Term { field, text, .. } => per_target(ctx, field.as_ref(), |t| term_query(ctx, t, text)),
        ast::Query::Phrase { field, text, slop, prefix, .. } => {
            per_target(ctx, field.as_ref(), |t| phrase_query(ctx, t, text, *slop, *prefix))
        }
        ast::Query::Prefix { field, text, .. } => per_target(ctx, field.as_ref(), |t| prefix_query(ctx, t, text)),
        ast::Query::Fuzzy { field, text, distance, .. } => {
            per_target(ctx, field.as_ref(), |t| fuzzy_query(ctx, t, text, *distance))
        }
        ast::Query::Boost { query, boost } => {
            Ok(compile_node(query, ctx)?.map(|q| Box::new(BoostQuery::new(q, *boost)) as Box<dyn Query>))
        }
        ast::Query::Boolean { clauses } => {
            let mut out: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            // A clause repeated in one boolean (`easy OR easy`) counts once, as in tantivy's
            // own query parser.
            let mut seen = std::collections::HashSet::new();
            for (occur, clause) in clauses {
                if !seen.insert((*occur as u8, clause.to_string())) {
                    continue;
                }
                if let Some(q) = compile_node(clause, ctx)? {
                    out.push((occur_of(*occur), q));
                }
            }
            if out.is_empty() {
                return Ok(None);
            }
            if out.iter().all(|(o, _)| *o == Occur::MustNot) {
                // `NOT a` alone means everything except a.
                out.push((Occur::Must, Box::new(AllQuery)));
            }
            if out.len() == 1 && out[0].0 != Occur::MustNot {
                return Ok(out.pop().map(|(_, q)| q));
            }
            Ok(Some(Box::new(BooleanQuery::new(out))))
        }
    }
}

fn occur_of(o: ast::Occur) -> Occur {
    match o {
        ast::Occur::Must => Occur::Must,
        ast::Occur::Should => Occur::Should,
        ast::Occur::MustNot => Occur::MustNot,
    }
}

/// Builds a leaf for each field it searches; several fields are alternatives.
fn per_target<F>(ctx: &Context<'_>, field: Option<&FieldRef>, mut build: F) -> Result<Option<Box<dyn Query>>>
where
    F: FnMut(Target) -> Result<Option<Box<dyn Query>>>,
{
    let targets = resolve(ctx, field)?;
    let mut qs: Vec<Box<dyn Query>> = Vec::new();
    for t in targets {
        if let Some(q) = build(t)? {
            qs.push(q);
        }
    }
    Ok(match qs.len() {
        0 => None,
        1 => qs.pop(),
        _ => Some(Box::new(BooleanQuery::new(qs.into_iter().map(|q| (Occur::Should, q)).collect()))),
    })
}

fn resolve(ctx: &Context<'_>, field: Option<&FieldRef>) -> Result<Vec<Target>> {
    let Some(f) = field else {
        return Ok(match ctx.default_field {
            Some(i) => vec![Target::Text(i)],
            None => (0..ctx.config.text_fields.len()).map(Target::Text).collect(),
        });
    };
    if let Some((i, _)) = ctx.config.text_field(&f.name) {
        return Ok(vec![Target::Text(i)]);
    }
    if let Some(base) = f.name.strip_suffix(KEYWORD_SUFFIX) {
        if let Some((i, cfg)) = ctx.config.text_field(base) {
            if cfg.keyword {
                return Ok(vec![Target::Keyword(i)]);
            }
            return Err(Error::UnknownField {
                message: format!("field \"{}\" has no keyword twin", base),
                hint: Some(format!(
                    "create the index with WITH (fields = '{{\"{base}\": {{\"keyword\": true}}}}') to filter on exact values of \"{base}\""
                )),
                position: Some(char_position(ctx.query_text, f.span)),
            });
        }
    }
    Err(Error::UnknownField {
        message: format!("field \"{}\" is not in this index", f.name),
        hint: Some(format!(
            "fields you can search: {}; to search for a word containing ':', escape it as \\:",
            ctx.config.queryable_field_names().join(", ")
        )),
        position: Some(char_position(ctx.query_text, f.span)),
    })
}

fn char_position(text: &str, span: Span) -> usize {
    let end = span.start.min(text.len());
    let end = (0..=end).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    text[..end].chars().count() + 1
}

fn field_config<'a>(ctx: &'a Context<'_>, i: usize) -> &'a TextFieldConfig {
    &ctx.config.text_fields[i]
}

fn analyse(ctx: &Context<'_>, i: usize, text: &str) -> Vec<(usize, String)> {
    let mut analyzer = ctx.analyzers[i].clone();
    tokens(&mut analyzer, text)
}

/// Lowercases and folds a word as the field does, without stemming (for prefixes).
fn normalise(cfg: &TextFieldConfig, text: &str) -> String {
    let mut s = if cfg.lowercase { text.to_lowercase() } else { text.to_string() };
    if cfg.ascii_folding {
        let mut analyzer = TextAnalyzer::builder(tantivy::tokenizer::RawTokenizer::default())
            .filter(tantivy::tokenizer::AsciiFoldingFilter)
            .build();
        if let Some((_, t)) = tokens(&mut analyzer, &s).into_iter().next() {
            s = t;
        }
    }
    s
}

fn keyword_field(ctx: &Context<'_>, i: usize) -> Field {
    ctx.fields.keyword[i].expect("resolve only returns keyword targets for fields with a twin")
}

fn term_query(ctx: &Context<'_>, target: Target, text: &str) -> Result<Option<Box<dyn Query>>> {
    match target {
        Target::Keyword(i) => Ok(Some(Box::new(TermQuery::new(
            Term::from_field_text(keyword_field(ctx, i), text),
            IndexRecordOption::Basic,
        )))),
        Target::Text(i) => {
            let toks = analyse(ctx, i, text);
            Ok(tokens_query(ctx, i, toks, 0))
        }
    }
}

/// One token: a term query. Several: a phrase (an AND for n-gram fields, whose grams share
/// positions).
fn tokens_query(ctx: &Context<'_>, i: usize, toks: Vec<(usize, String)>, slop: u32) -> Option<Box<dyn Query>> {
    let field = ctx.fields.text[i];
    match toks.len() {
        0 => None,
        1 => Some(Box::new(TermQuery::new(Term::from_field_text(field, &toks[0].1), IndexRecordOption::WithFreqs))),
        _ if matches!(field_config(ctx, i).tokenizer, TokenizerKind::Ngram { .. }) => {
            Some(Box::new(BooleanQuery::new(
                toks.iter()
                    .map(|(_, t)| {
                        let q: Box<dyn Query> =
                            Box::new(TermQuery::new(Term::from_field_text(field, t), IndexRecordOption::WithFreqs));
                        (Occur::Must, q)
                    })
                    .collect(),
            )))
        }
        _ => {
            let terms = toks.iter().map(|(p, t)| (*p, Term::from_field_text(field, t))).collect();
            Some(Box::new(PhraseQuery::new_with_offset_and_slop(terms, slop)))
        }
    }
}

fn phrase_query(
    ctx: &Context<'_>,
    target: Target,
    text: &str,
    slop: u32,
    prefix: bool,
) -> Result<Option<Box<dyn Query>>> {
    match target {
        Target::Keyword(i) => {
            let field = keyword_field(ctx, i);
            if prefix {
                Ok(Some(Box::new(PrefixQuery::new(field, text))))
            } else {
                Ok(Some(Box::new(TermQuery::new(Term::from_field_text(field, text), IndexRecordOption::Basic))))
            }
        }
        Target::Text(i) => {
            let toks = analyse(ctx, i, text);
            if !prefix {
                return Ok(tokens_query(ctx, i, toks, slop));
            }
            let field = ctx.fields.text[i];
            match toks.len() {
                0 => Ok(None),
                1 => {
                    // The analysed form of a partial word may be stemmed past the prefix the user
                    // typed ("runn" -> "runn", but "databases" -> "databas"); match on the
                    // normalised word as typed.
                    let last_word = text.split_whitespace().last().unwrap_or(text);
                    Ok(Some(Box::new(PrefixQuery::new(field, &normalise(field_config(ctx, i), last_word)))))
                }
                _ => {
                    let mut terms: Vec<(usize, Term)> =
                        toks.iter().map(|(p, t)| (*p, Term::from_field_text(field, t))).collect();
                    if let (Some(last), Some(word)) = (terms.last_mut(), text.split_whitespace().last()) {
                        last.1 = Term::from_field_text(field, &normalise(field_config(ctx, i), word));
                    }
                    let mut q = PhrasePrefixQuery::new_with_offset(terms);
                    q.set_max_expansions(u32::MAX);
                    Ok(Some(Box::new(q)))
                }
            }
        }
    }
}

/// `word*`. On a stemmed field the index holds stems, and the stem of a word can be shorter than
/// what the user typed (`postgres` is indexed as `postgr`, so `postgre*` would miss it). The
/// prefix therefore matches terms starting with the typed word or with its stem: it may find a
/// few extra words sharing the stem, but it does not miss the word being typed.
fn prefix_query(ctx: &Context<'_>, target: Target, text: &str) -> Result<Option<Box<dyn Query>>> {
    let (field, typed, stem) = match target {
        Target::Keyword(i) => return Ok(Some(Box::new(PrefixQuery::new(keyword_field(ctx, i), text)))),
        Target::Text(i) => {
            let typed = normalise(field_config(ctx, i), text);
            let stem = analyse(ctx, i, text).into_iter().next().map(|(_, t)| t);
            (ctx.fields.text[i], typed, stem)
        }
    };
    let typed_q: Box<dyn Query> = Box::new(PrefixQuery::new(field, &typed));
    Ok(Some(match stem {
        Some(stem) if stem != typed && !stem.is_empty() && typed.starts_with(stem.as_str()) => {
            let stem_q: Box<dyn Query> = Box::new(PrefixQuery::new(field, &stem));
            Box::new(BooleanQuery::new(vec![(Occur::Should, typed_q), (Occur::Should, stem_q)]))
        }
        _ => typed_q,
    }))
}

fn fuzzy_query(ctx: &Context<'_>, target: Target, text: &str, distance: u8) -> Result<Option<Box<dyn Query>>> {
    let (field, words) = match target {
        Target::Keyword(i) => (keyword_field(ctx, i), vec![text.to_string()]),
        Target::Text(i) => {
            let toks = analyse(ctx, i, text);
            (ctx.fields.text[i], toks.into_iter().map(|(_, t)| t).collect())
        }
    };
    let mut qs: Vec<(Occur, Box<dyn Query>)> = words
        .iter()
        .map(|w| {
            let q: Box<dyn Query> = Box::new(FuzzyTermQuery::new(Term::from_field_text(field, w), distance, true));
            (Occur::Must, q)
        })
        .collect();
    Ok(match qs.len() {
        0 => None,
        1 => qs.pop().map(|(_, q)| q),
        _ => Some(Box::new(BooleanQuery::new(qs))),
    })
}

/// All of `queries` must match (several `@@@` conditions on one index).
pub fn conjunction(mut queries: Vec<Box<dyn Query>>) -> Box<dyn Query> {
    if queries.len() == 1 {
        return queries.pop().expect("one query");
    }
    Box::new(BooleanQuery::new(queries.into_iter().map(|q| (Occur::Must, q)).collect()))
}

/// `col = 'value'` on a text field, for SQL equality conditions the index evaluates (a filter
/// of a nearest-neighbour search, say). Exact when the field keeps raw values (a keyword twin,
/// or the raw tokenizer without lowercasing): the returned flag is then true. Otherwise the
/// query matches the value's analysed words as a phrase, a superset of the equal rows, and the
/// caller must have Postgres recheck the condition.
pub fn equality(
    config: &IndexConfig,
    fields: &Fields,
    analyzers: &[TextAnalyzer],
    field: usize,
    value: &str,
) -> (Box<dyn Query>, bool) {
    if let Some(kw) = fields.keyword[field] {
        return (Box::new(TermQuery::new(Term::from_field_text(kw, value), IndexRecordOption::Basic)), true);
    }
    let cfg = &config.text_fields[field];
    if cfg.tokenizer == TokenizerKind::Raw && !cfg.lowercase && !cfg.ascii_folding && cfg.stemmer.is_none() {
        let q = TermQuery::new(Term::from_field_text(fields.text[field], value), IndexRecordOption::Basic);
        return (Box::new(q), true);
    }
    let mut analyzer = analyzers[field].clone();
    let toks = tokens(&mut analyzer, value);
    let q: Box<dyn Query> = match toks.len() {
        // No words (a stop word, an empty string): only a recheck can tell.
        0 => Box::new(AllQuery),
        1 => Box::new(TermQuery::new(Term::from_field_text(fields.text[field], &toks[0].1), IndexRecordOption::Basic)),
        _ if matches!(cfg.tokenizer, TokenizerKind::Ngram { .. }) => Box::new(BooleanQuery::new(
            toks.iter()
                .map(|(_, t)| {
                    let q: Box<dyn Query> = Box::new(TermQuery::new(
                        Term::from_field_text(fields.text[field], t),
                        IndexRecordOption::Basic,
                    ));
                    (Occur::Must, q)
                })
                .collect(),
        )),
        _ => Box::new(PhraseQuery::new_with_offset(
            toks.iter().map(|(p, t)| (*p, Term::from_field_text(fields.text[field], t))).collect(),
        )),
    };
    (q, false)
}
