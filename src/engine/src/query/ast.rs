//! AST of `pg_hybrid`'s search query language.
//!
//! The parser (`super::parser::parse`) turns a query string such as
//! `postgres AND (rust OR "index access method")` into a [`Query`]. The query
//! compiler turns that into tantivy queries; this module knows nothing about
//! tantivy or Postgres.
//!
//! # Shape guarantees of a parsed query
//!
//! A [`Query`] returned by `parse` is *normalized*:
//!
//! * Field prefixes on groups have been pushed down: `title:(a body:b)` gives
//!   the leaves `title:a` and `body:b`. Only leaves carry fields, so the
//!   compiler never has to track an inherited field.
//! * No [`Query::Boolean`] is empty, and none has exactly one clause unless
//!   that clause is [`Occur::MustNot`] (a pure negation such as `NOT a`, which
//!   the compiler must turn into "all documents minus `a`").
//! * Needless nesting is flattened, in ways that preserve which documents
//!   match: a boolean whose clauses are all `Should` is spliced into a
//!   parent `Should` position (`a OR (b OR c)` is `a OR b OR c`); a boolean
//!   with `Must` and no `Should` clauses is spliced into a parent `Must`
//!   position (`a AND (b AND NOT c)` is `a AND b AND NOT c`); a pure
//!   negation in a `Must` position is spliced too (`a AND (NOT c)` is
//!   `a AND NOT c`) unless the parent has `Should` clauses and no other
//!   `Must` clause (`a OR +(NOT b)` stays as it is: it matches every
//!   document without `b`, while `a -b` would only match those with `a`).
//! * A boolean may contain only `MustNot` clauses; it then means "all
//!   documents except those". A boolean that mixes `Should` and `Must` clauses
//!   follows Lucene semantics: the `Must` clauses decide what matches and the
//!   `Should` clauses only add to the score.
//!
//! Spans are byte offsets into the original query string and always lie on
//! UTF-8 character boundaries.

use std::fmt;

/// A half-open byte range `start..end` into the query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
}

impl Span {
    /// Creates a span.
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// True for a zero-length span (used for "end of query" errors).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The smallest span covering both `self` and `other`.
    pub fn to(&self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }

    /// The text of this span in `query`, or `None` if it does not fit.
    pub fn slice<'q>(&self, query: &'q str) -> Option<&'q str> {
        query.get(self.start..self.end)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// How a clause takes part in a [`Query::Boolean`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Occur {
    /// The clause must match (`+a`, either side of `AND`).
    Must,
    /// The clause may match and adds to the score (`a OR b`, plain `a b`
    /// with the `Or` default operator).
    Should,
    /// The clause must not match (`-a`, `NOT a`).
    MustNot,
}

/// A field name written in the query (`title:` in `title:rust`).
///
/// The name is not validated against the index; the compiler does that and
/// can point at [`FieldRef::span`] when the field does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldRef {
    /// The name as written, without the colon. Always matches
    /// `[A-Za-z_][A-Za-z0-9_]*`.
    pub name: String,
    /// Span of the name (without the colon). For a field pushed down from a
    /// group this is the span of the group's field prefix.
    pub span: Span,
}

/// A parsed search query.
///
/// Leaf spans cover the leaf's own syntax: the word or quoted phrase and any
/// `*` / `~N` suffix. They exclude a field prefix (see [`FieldRef::span`]),
/// a `+`/`-`/`NOT` operator and a `^boost`.
///
/// Text is unescaped (`http\://x` gives `http://x`) but not analyzed: the
/// compiler runs the field's tokenizer over it.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// A single term: `rust`, `title:rust`.
    Term { field: Option<FieldRef>, text: String, span: Span },
    /// A phrase: `"index access method"`, `"a b"~2` (slop 2), `"a b"*`
    /// (phrase prefix: the last word is a prefix). `slop` is 0 when not given.
    Phrase { field: Option<FieldRef>, text: String, slop: u32, prefix: bool, span: Span },
    /// A prefix term: `postg*`. `text` excludes the `*`.
    Prefix { field: Option<FieldRef>, text: String, span: Span },
    /// A fuzzy term: `postgers~` (distance 1) or `postgers~2`; `distance`
    /// is in `0..=2`.
    Fuzzy { field: Option<FieldRef>, text: String, distance: u8, span: Span },
    /// `*`: all documents. `title:*` (or a `*` inside `title:(...)`) carries
    /// the field; the compiler may treat it as "documents with a value in
    /// this field" or simply as all documents.
    All { field: Option<FieldRef>, span: Span },
    /// A boolean combination; see the module docs for its guarantees.
    Boolean { clauses: Vec<(Occur, Query)> },
    /// `query^boost`; `boost` is finite and greater than zero.
    Boost { query: Box<Query>, boost: f32 },
}

impl Query {
    /// The field of a leaf query (`None` for booleans, boosts and leaves
    /// without a field).
    pub fn field(&self) -> Option<&FieldRef> {
        match self {
            Query::Term { field, .. }
            | Query::Phrase { field, .. }
            | Query::Prefix { field, .. }
            | Query::Fuzzy { field, .. }
            | Query::All { field, .. } => field.as_ref(),
            Query::Boolean { .. } | Query::Boost { .. } => None,
        }
    }

    /// The span of a leaf query (`None` for booleans and boosts).
    pub fn span(&self) -> Option<Span> {
        match self {
            Query::Term { span, .. }
            | Query::Phrase { span, .. }
            | Query::Prefix { span, .. }
            | Query::Fuzzy { span, .. }
            | Query::All { span, .. } => Some(*span),
            Query::Boolean { .. } | Query::Boost { .. } => None,
        }
    }

    /// True for term, phrase, prefix, fuzzy and all-documents queries.
    pub fn is_leaf(&self) -> bool {
        self.span().is_some()
    }
}

/// Prints a canonical form that parses back to an equal query (apart from
/// spans) whatever the default operator:
///
/// * leaves print as `field:text`, with special characters escaped;
/// * a boolean without `Should` clauses prints as `(a AND NOT b)`, any other
///   boolean as `(+a OR b OR -c)`;
/// * a boost prints as `a^2` (a boost of a boost is parenthesized).
impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn field(f: &mut fmt::Formatter<'_>, field: &Option<FieldRef>) -> fmt::Result {
            match field {
                Some(field) => write!(f, "{}:", field.name),
                None => Ok(()),
            }
        }
        match self {
            Query::Term { field: fl, text, .. } => {
                field(f, fl)?;
                write_escaped_term(f, text)
            }
            Query::Prefix { field: fl, text, .. } => {
                field(f, fl)?;
                write_escaped_term(f, text)?;
                f.write_str("*")
            }
            Query::Fuzzy { field: fl, text, distance, .. } => {
                field(f, fl)?;
                write_escaped_term(f, text)?;
                write!(f, "~{distance}")
            }
            Query::Phrase { field: fl, text, slop, prefix, .. } => {
                field(f, fl)?;
                f.write_str("\"")?;
                for c in text.chars() {
                    if c == '"' || c == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("\"")?;
                if *slop > 0 {
                    write!(f, "~{slop}")?;
                }
                if *prefix {
                    f.write_str("*")?;
                }
                Ok(())
            }
            Query::All { field: fl, .. } => {
                field(f, fl)?;
                f.write_str("*")
            }
            Query::Boolean { clauses } => {
                let conjunctive = clauses.iter().all(|(occur, _)| *occur != Occur::Should);
                f.write_str("(")?;
                for (i, (occur, query)) in clauses.iter().enumerate() {
                    if i > 0 {
                        f.write_str(if conjunctive { " AND " } else { " OR " })?;
                    }
                    match (occur, conjunctive) {
                        (Occur::MustNot, true) => f.write_str("NOT ")?,
                        (Occur::MustNot, false) => f.write_str("-")?,
                        (Occur::Must, false) => f.write_str("+")?,
                        (Occur::Must, true) | (Occur::Should, _) => {}
                    }
                    write!(f, "{query}")?;
                }
                f.write_str(")")
            }
            Query::Boost { query, boost } => {
                if let Query::Boost { .. } = **query {
                    write!(f, "({query})^{boost}")
                } else {
                    write!(f, "{query}^{boost}")
                }
            }
        }
    }
}

/// Characters that end a bare word and must be escaped inside one.
pub(crate) fn is_special(c: char) -> bool {
    matches!(c, '(' | ')' | '"' | ':' | '^' | '~' | '*' | '\\')
}

/// Writes `text` so that the lexer reads it back as one word with that text
/// and not as an operator.
fn write_escaped_term(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    let keyword = matches!(text, "AND" | "OR" | "NOT");
    for (i, c) in text.chars().enumerate() {
        let escape = is_special(c) || c.is_whitespace() || (i == 0 && (keyword || c == '+' || c == '-'));
        if escape {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    Ok(())
}

/// The default operator between clauses written next to each other
/// (`a b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DefaultOperator {
    /// `a b` means `a OR b`.
    #[default]
    Or,
    /// `a b` means `a AND b`.
    And,
}

/// A syntax error in a search query.
///
/// `message` says what is wrong and `hint` how to fix it; both are lowercase
/// without a trailing period, ready for a Postgres `ERROR`/`HINT`. `span`
/// points at the offending part of the query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// What is wrong, e.g. `unterminated phrase`.
    pub message: String,
    /// How to fix it, e.g. `close the phrase with a double quote (")`.
    pub hint: Option<String>,
    /// The offending part of the query (byte offsets).
    pub span: Span,
}

impl ParseError {
    /// An error without a hint.
    pub fn new(message: impl Into<String>, span: Span) -> ParseError {
        ParseError { message: message.into(), hint: None, span }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> ParseError {
        self.hint = Some(hint.into());
        self
    }

    /// The 1-based *character* position of `span.start` in `query`, as
    /// Postgres expects for an error's cursor position. Never panics: a
    /// start at or beyond the end gives the position just after the last
    /// character (spans produced by the parser always lie on character
    /// boundaries).
    pub fn position(&self, query: &str) -> usize {
        query.char_indices().take_while(|(i, _)| *i < self.span.start).count() + 1
    }
}
