//! Lexer and recursive-descent parser for the search query language.
//!
//! Grammar (tokens are separated by optional whitespace, except that the
//! parts marked "adjacent" must touch):
//!
//! ```text
//! query   := expr EOF
//! expr    := and ( ( "OR" | <juxtaposition, default Or> ) and )*
//! and     := operand ( ( "AND" | <juxtaposition, default And> ) operand )*
//! operand := "NOT"* ( "+" | "-" )? ( FIELD ":" )? primary ( "^" NUMBER )?
//! primary := WORD ( "*" | "~" DIGITS? )?
//!          | PHRASE ( "~" DIGITS )? "*"?
//!          | "(" expr ")"
//!          | "*"
//! ```
//!
//! Adjacent: `+`/`-` and what follows, `FIELD:` and what follows, a primary
//! and its `*`, `~N` and `^N` suffixes. `AND`, `OR` and `NOT` are keywords
//! only in upper case and unescaped (`and`, `\AND` and `title:AND` are
//! words). A field name is `[A-Za-z_][A-Za-z0-9_]*` directly followed by
//! `:`. A backslash escapes any character in a word or phrase.
//!
//! Semantics follow Lucene: `NOT`, `+` and `-` give a clause its [`Occur`]
//! inside the boolean it belongs to; unmarked clauses of an `AND` are `Must`
//! and unmarked clauses of an `OR` are `Should`. So with the `Or` default,
//! `a -b +c` is "should a, must not b, must c", and `a OR NOT b` is "a but
//! not b". A boolean of only `MustNot` clauses (`NOT a`) means "all documents
//! except those".
//!
//! The parser never panics and never recurses more than
//! [`MAX_NESTING_DEPTH`] levels: deeper parentheses or longer `NOT` chains
//! are rejected with an error.

use super::ast::{is_special, DefaultOperator, FieldRef, Occur, ParseError, Query, Span};

/// Maximum nesting of parentheses and `NOT` operators.
pub const MAX_NESTING_DEPTH: usize = 256;

/// Parses `query` into a normalized [`Query`] (see the `ast` module docs).
///
/// `default_op` is the operator between clauses written next to each other
/// (`a b`); it has the precedence of the explicit operator it stands for.
///
/// # Errors
///
/// Returns a [`ParseError`] pointing at the offending part of `query` when
/// it is empty, malformed, or nested deeper than [`MAX_NESTING_DEPTH`].
pub fn parse(query: &str, default_op: DefaultOperator) -> Result<Query, ParseError> {
    parse_unnormalized(query, default_op).map(normalize)
}

/// `parse` without the final flattening (tests compare the two).
fn parse_unnormalized(query: &str, default_op: DefaultOperator) -> Result<Query, ParseError> {
    if query.trim().is_empty() {
        return Err(ParseError::new("empty search query", Span::new(0, query.len()))
            .with_hint("enter at least one search term"));
    }
    let (tokens, lex_error) = lex(query);
    let mut parser = Parser { src: query, tokens, lex_error, pos: 0, default_op, depth: 0 };
    let operand = parser.parse_expr()?;
    if let Some(tok) = parser.peek()? {
        return Err(Parser::unexpected(tok));
    }
    Ok(finalize(operand))
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    And,
    Or,
    Not,
}

impl Keyword {
    fn as_str(self) -> &'static str {
        match self {
            Keyword::And => "AND",
            Keyword::Or => "OR",
            Keyword::Not => "NOT",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// A bare word, unescaped. `keyword` is set for an unescaped `AND`, `OR`
    /// or `NOT`.
    Word {
        text: String,
        keyword: Option<Keyword>,
    },
    /// `name:`; the token's span includes the colon.
    Field(String),
    /// `"..."`, unescaped, without the quotes.
    Phrase(String),
    LParen,
    RParen,
    Colon,
    Star,
    Tilde,
    Caret,
    Plus,
    Minus,
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    kind: Kind,
    span: Span,
}

fn is_field_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Splits `src` into tokens. On a lexical error, returns the tokens before
/// it and the error; the parser reports the error when it reaches it, so
/// an earlier syntax error wins.
fn lex(src: &str) -> (Vec<Token>, Option<ParseError>) {
    let mut tokens = Vec::new();
    let mut chars = src.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let single = match c {
            '(' => Some(Kind::LParen),
            ')' => Some(Kind::RParen),
            ':' => Some(Kind::Colon),
            '*' => Some(Kind::Star),
            '~' => Some(Kind::Tilde),
            '^' => Some(Kind::Caret),
            // Only reached at the start of a token: inside a word `+` and
            // `-` are ordinary characters (`c++`, `e-mail`).
            '+' => Some(Kind::Plus),
            '-' => Some(Kind::Minus),
            _ => None,
        };
        if let Some(kind) = single {
            chars.next();
            tokens.push(Token { kind, span: Span::new(start, start + c.len_utf8()) });
            continue;
        }
        if c == '"' {
            chars.next();
            let mut text = String::new();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, escaped)) => text.push(escaped),
                        None => break,
                    },
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    _ => text.push(c),
                }
            }
            match end {
                Some(end) => tokens.push(Token { kind: Kind::Phrase(text), span: Span::new(start, end) }),
                None => {
                    let err = ParseError::new("unterminated phrase", Span::new(start, start + 1))
                        .with_hint("close the phrase with a double quote (\")");
                    return (tokens, Some(err));
                }
            }
            continue;
        }
        // A word: everything up to whitespace or a special character, with
        // backslash escapes.
        let mut text = String::new();
        let mut escaped = false;
        let mut end = start;
        while let Some(&(i, c)) = chars.peek() {
            if c.is_whitespace() || (is_special(c) && c != '\\') {
                break;
            }
            chars.next();
            if c == '\\' {
                escaped = true;
                match chars.next() {
                    Some((j, e)) => {
                        text.push(e);
                        end = j + e.len_utf8();
                    }
                    None => {
                        let err = ParseError::new("escape character at end of query", Span::new(i, i + 1))
                            .with_hint("escape a literal backslash as \\\\");
                        return (tokens, Some(err));
                    }
                }
            } else {
                text.push(c);
                end = i + c.len_utf8();
            }
        }
        if !escaped && is_field_name(&text) {
            if let Some(&(colon, ':')) = chars.peek() {
                chars.next();
                tokens.push(Token { kind: Kind::Field(text), span: Span::new(start, colon + 1) });
                continue;
            }
        }
        let keyword = match (escaped, text.as_str()) {
            (false, "AND") => Some(Keyword::And),
            (false, "OR") => Some(Keyword::Or),
            (false, "NOT") => Some(Keyword::Not),
            _ => None,
        };
        tokens.push(Token { kind: Kind::Word { text, keyword }, span: Span::new(start, end) });
    }
    (tokens, None)
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------
//
// Only two functions recurse, once per level of parentheses:
// `parse_expr` -> `parse_operand` -> `parse_expr`. Everything else (prefix
// operators, leaves, suffixes, error construction) lives in non-recursive
// helpers so that the recursive frames stay small, and the depth is capped
// at MAX_NESTING_DEPTH.

/// A clause with the occur its operator asked for (`None`: unmarked, so the
/// enclosing AND/OR decides).
struct Operand {
    modifier: Option<Occur>,
    query: Query,
}

/// The operators written before a primary: `NOT`s, a `+`/`-` and a field.
struct Prefix {
    nots: usize,
    modifier: Option<Occur>,
    field: Option<FieldRef>,
}

impl Prefix {
    /// Wraps the parsed primary into an operand.
    fn apply(self, query: Query) -> Operand {
        let mut operand = Operand { modifier: self.modifier, query };
        for _ in 0..self.nots {
            operand = Operand { modifier: Some(Occur::MustNot), query: finalize(operand) };
        }
        operand
    }
}

/// What the token after an operand means to `parse_expr`.
#[derive(Clone, Copy)]
enum Next {
    End,
    Or(Span),
    And(Span),
    Close,
    Other,
}

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token>,
    lex_error: Option<ParseError>,
    pos: usize,
    default_op: DefaultOperator,
    /// Current nesting of parentheses and NOTs.
    depth: usize,
}

const FIELD_NAME_HINT: &str = "field names consist of ASCII letters, digits and underscores and \
     do not start with a digit; to search for a literal ':', escape it as \\:";
const BOOST_HINT: &str = "write a positive number directly after '^', for example term^2 or term^0.5";
const DISTANCE_HINT: &str = "write word~ or word~N directly after the word, with N = 0, 1 or 2 \
     (the maximum edit distance is 2)";
const SLOP_HINT: &str = "write a non-negative integer directly after '~', for example \"two words\"~2";
const WILDCARD_HINT: &str = "'*' is supported only at the end of a word (prefix search) or on \
     its own (all documents); to search for a literal '*', escape it as \\*";
const COMBINE_HINT: &str = "use only one of NOT, + and - on a clause";

fn keyword_hint(op: &str) -> String {
    format!(
        "add a search term or remove {op}; to search for the word itself, write it in \
         lowercase or escape it as \\{op}"
    )
}

fn too_deep(span: Span) -> ParseError {
    ParseError::new("query nesting is too deep", span)
        .with_hint(format!("the maximum nesting depth is {MAX_NESTING_DEPTH}"))
}

fn missing_after(what: &str, span: Span) -> ParseError {
    ParseError::new(format!("missing search term after {what}"), span)
        .with_hint(format!("add a search term after {what} or remove it"))
}

fn unclosed(open: Span) -> ParseError {
    ParseError::new("unclosed parenthesis", open).with_hint("add a matching ')'")
}

fn cannot_combine(first: &str, second: &str, span: Span) -> ParseError {
    ParseError::new(format!("cannot combine {first} with {second}"), span).with_hint(COMBINE_HINT)
}

fn wildcard_not_at_end(star: Span) -> ParseError {
    ParseError::new("wildcards are only supported at the end of a word", star).with_hint(WILDCARD_HINT)
}

impl Parser<'_> {
    /// The next token; the pending lexical error once all tokens are used.
    fn peek(&self) -> Result<Option<&Token>, ParseError> {
        match self.tokens.get(self.pos) {
            Some(tok) => Ok(Some(tok)),
            None => match &self.lex_error {
                Some(err) => Err(err.clone()),
                None => Ok(None),
            },
        }
    }

    /// The next token if it starts exactly at byte `end` (no whitespace).
    fn peek_adjacent(&self, end: usize) -> Result<Option<&Token>, ParseError> {
        Ok(self.peek()?.filter(|tok| tok.span.start == end))
    }

    /// The kind of the next token if it starts exactly at byte `end`.
    fn adjacent_kind(&self, end: usize) -> Result<Option<(&Kind, Span)>, ParseError> {
        Ok(self.peek_adjacent(end)?.map(|tok| (&tok.kind, tok.span)))
    }

    fn end_error(&self) -> ParseError {
        let end = self.src.len();
        ParseError::new("unexpected end of query", Span::new(end, end)).with_hint("complete the query")
    }

    /// Error for a token found where a clause should start.
    #[inline(never)]
    fn unexpected(tok: &Token) -> ParseError {
        let span = tok.span;
        match &tok.kind {
            Kind::RParen => {
                ParseError::new("unmatched closing parenthesis", span).with_hint("remove it or add a matching '('")
            }
            Kind::Colon => ParseError::new("unexpected ':'", span).with_hint(
                "write field:term with a field name directly before the colon; to search for \
                 a literal ':', escape it as \\:",
            ),
            Kind::Tilde => ParseError::new("'~' must directly follow a term or phrase", span)
                .with_hint("write word~1 for a fuzzy term or \"two words\"~2 for a phrase with slop"),
            Kind::Caret => ParseError::new("'^' must directly follow a term, phrase or group", span)
                .with_hint("write term^2 or (a OR b)^2 to boost a clause"),
            Kind::Word { keyword: Some(kw @ (Keyword::And | Keyword::Or)), .. } => {
                ParseError::new(format!("missing search term before {}", kw.as_str()), span)
                    .with_hint(keyword_hint(kw.as_str()))
            }
            Kind::Word { keyword: Some(Keyword::Not), .. } => missing_after("NOT", span),
            Kind::Plus => {
                ParseError::new("unexpected '+'", span).with_hint("to search for a literal '+', escape it as \\+")
            }
            Kind::Minus => {
                ParseError::new("unexpected '-'", span).with_hint("to search for a literal '-', escape it as \\-")
            }
            Kind::Star => ParseError::new("unexpected '*'", span).with_hint(WILDCARD_HINT),
            Kind::Word { .. } | Kind::Field(_) | Kind::Phrase(_) | Kind::LParen => {
                ParseError::new("unexpected search term", span).with_hint("combine search terms with AND or OR")
            }
        }
    }

    /// Classifies the token after an operand.
    fn next(&self) -> Result<Next, ParseError> {
        Ok(match self.peek()? {
            None => Next::End,
            Some(tok) => match tok.kind {
                Kind::Word { keyword: Some(Keyword::Or), .. } => Next::Or(tok.span),
                Kind::Word { keyword: Some(Keyword::And), .. } => Next::And(tok.span),
                Kind::RParen => Next::Close,
                _ => Next::Other,
            },
        })
    }

    /// After a binary operator (consumed): the next token must be able to
    /// start an operand.
    #[inline(never)]
    fn expect_operand_after(&self, op: Span, name: &str) -> Result<(), ParseError> {
        match self.next()? {
            Next::End | Next::Or(_) | Next::And(_) | Next::Close => {
                Err(ParseError::new(format!("missing search term after {name}"), op).with_hint(keyword_hint(name)))
            }
            Next::Other => Ok(()),
        }
    }

    /// `expr := and (OR and)*`, `and := operand (AND operand)*`, with
    /// juxtaposition standing for the default operator. Stops before `)`
    /// or at the end.
    fn parse_expr(&mut self) -> Result<Operand, ParseError> {
        let mut or_operands = Vec::new();
        let mut and_operands = vec![self.parse_operand()?];
        while let Some(is_or) = self.parse_separator()? {
            if is_or {
                fold_and(&mut or_operands, &mut and_operands);
            }
            and_operands.push(self.parse_operand()?);
        }
        Ok(finish_expr(or_operands, and_operands))
    }

    /// After an operand: `None` at the end of the expression (end of query
    /// or `)`), otherwise whether the next operand is OR-ed (`true`) or
    /// AND-ed (`false`) to the previous one; consumes an explicit operator.
    #[inline(never)]
    fn parse_separator(&mut self) -> Result<Option<bool>, ParseError> {
        Ok(match self.next()? {
            Next::End | Next::Close => None,
            Next::Or(span) => {
                self.pos += 1;
                self.expect_operand_after(span, "OR")?;
                Some(true)
            }
            Next::And(span) => {
                self.pos += 1;
                self.expect_operand_after(span, "AND")?;
                Some(false)
            }
            Next::Other => Some(self.default_op == DefaultOperator::Or),
        })
    }

    /// `operand := NOT* ("+" | "-")? (FIELD ":")? primary suffix`.
    fn parse_operand(&mut self) -> Result<Operand, ParseError> {
        let prefix = self.parse_prefix()?;
        match self.parse_group_open(prefix.nots)? {
            None => self.finish_leaf(prefix),
            Some(open) => {
                self.depth += prefix.nots + 1;
                let inner = self.parse_expr();
                self.depth -= prefix.nots + 1;
                self.finish_group(prefix, inner, open)
            }
        }
    }

    #[inline(never)]
    fn finish_leaf(&mut self, mut prefix: Prefix) -> Result<Operand, ParseError> {
        let (query, end, bare_word) = self.parse_leaf(prefix.field.take())?;
        let query = self.parse_suffix(query, end, bare_word)?;
        Ok(prefix.apply(query))
    }

    #[inline(never)]
    fn finish_group(
        &mut self,
        prefix: Prefix,
        inner: Result<Operand, ParseError>,
        open: Span,
    ) -> Result<Operand, ParseError> {
        let (query, end, _) = self.parse_group_close(inner?, open, prefix.field.as_ref())?;
        let query = self.parse_suffix(query, end, false)?;
        Ok(prefix.apply(query))
    }

    /// Parses `NOT`s, a `+`/`-` and a field prefix, checking that something
    /// that can be searched for follows.
    #[inline(never)]
    fn parse_prefix(&mut self) -> Result<Prefix, ParseError> {
        let mut prefix = Prefix { nots: 0, modifier: None, field: None };
        let mut last_not = None;
        while let Some(tok) = self.peek()? {
            if !matches!(tok.kind, Kind::Word { keyword: Some(Keyword::Not), .. }) {
                break;
            }
            if self.depth + prefix.nots + 1 > MAX_NESTING_DEPTH {
                return Err(too_deep(tok.span));
            }
            last_not = Some(tok.span);
            prefix.nots += 1;
            self.pos += 1;
        }
        if let Some(not_span) = last_not {
            match self.peek()? {
                None => return Err(missing_after("NOT", not_span)),
                Some(tok) => match tok.kind {
                    Kind::RParen | Kind::Word { keyword: Some(Keyword::And | Keyword::Or), .. } => {
                        return Err(missing_after("NOT", not_span))
                    }
                    Kind::Plus => return Err(cannot_combine("NOT", "'+'", tok.span)),
                    Kind::Minus => return Err(cannot_combine("NOT", "'-'", tok.span)),
                    _ => {}
                },
            }
        }

        let Some(tok) = self.peek()? else {
            return Err(self.end_error());
        };
        let (modifier, sym) = match tok.kind {
            Kind::Plus => (Some(Occur::Must), "'+'"),
            Kind::Minus => (Some(Occur::MustNot), "'-'"),
            _ => (None, ""),
        };
        if modifier.is_some() {
            let op = tok.span;
            self.pos += 1;
            let Some(next) = self.peek()? else {
                return Err(missing_after(sym, op));
            };
            match &next.kind {
                Kind::Plus => return Err(cannot_combine(sym, "'+'", next.span)),
                Kind::Minus => return Err(cannot_combine(sym, "'-'", next.span)),
                Kind::Word { keyword: Some(Keyword::Not), .. } => return Err(cannot_combine(sym, "NOT", next.span)),
                Kind::RParen | Kind::Word { keyword: Some(_), .. } => return Err(missing_after(sym, op)),
                _ if next.span.start != op.end => {
                    let c = &sym[1..2];
                    return Err(ParseError::new(format!("{sym} must be directly followed by a search term"), op)
                        .with_hint(format!(
                            "remove the space after {sym}; to search for a literal {sym}, escape it \
                         as \\{c}"
                        )));
                }
                _ => {}
            }
        }
        prefix.modifier = modifier;

        let Some(tok) = self.peek()? else {
            return Err(self.end_error());
        };
        let Kind::Field(name) = &tok.kind else {
            return Ok(prefix);
        };
        let field_span = tok.span;
        let name = name.clone();
        self.pos += 1;
        let missing = || {
            ParseError::new(format!("missing search term after field '{name}'"), field_span).with_hint(format!(
                "write {name}:term, {name}:\"phrase\" or {name}:(query) with nothing between \
                     the colon and the search term"
            ))
        };
        match self.peek()? {
            None => return Err(missing()),
            Some(next) if next.span.start != field_span.end => return Err(missing()),
            Some(next) => match &next.kind {
                Kind::Field(_) => {
                    return Err(ParseError::new("a field cannot be applied to another field", next.span)
                        .with_hint("to search for a literal ':', escape it as \\:"))
                }
                Kind::Plus | Kind::Minus => {
                    let sym = if next.kind == Kind::Plus { '+' } else { '-' };
                    return Err(ParseError::new(format!("'{sym}' must come before the field"), next.span).with_hint(
                        format!(
                            "write {sym}{name}:term instead of {name}:{sym}term; to search for a \
                         literal '{sym}', escape it as \\{sym}"
                        ),
                    ));
                }
                Kind::RParen | Kind::Colon | Kind::Tilde | Kind::Caret => return Err(missing()),
                _ => {}
            },
        }
        let span = Span::new(field_span.start, field_span.end - 1);
        prefix.field = Some(FieldRef { name, span });
        Ok(prefix)
    }

    /// If the next token is `(`, consumes it and checks the depth (with
    /// `nots` pending NOTs) and that the group is neither empty nor
    /// unclosed.
    #[inline(never)]
    fn parse_group_open(&mut self, nots: usize) -> Result<Option<Span>, ParseError> {
        let open = match self.peek()? {
            Some(tok) if tok.kind == Kind::LParen => tok.span,
            _ => return Ok(None),
        };
        if self.depth + nots + 1 > MAX_NESTING_DEPTH {
            return Err(too_deep(open));
        }
        self.pos += 1;
        match self.peek()? {
            None => Err(unclosed(open)),
            Some(tok) if tok.kind == Kind::RParen => Err(ParseError::new("empty parentheses", open.to(tok.span))
                .with_hint("put a query between the parentheses or remove them")),
            Some(_) => Ok(Some(open)),
        }
    }

    /// Consumes the `)` of a group and builds its query.
    #[inline(never)]
    fn parse_group_close(
        &mut self,
        inner: Operand,
        open: Span,
        field: Option<&FieldRef>,
    ) -> Result<(Query, usize, bool), ParseError> {
        let close = match self.peek()? {
            None => return Err(unclosed(open)),
            Some(tok) if tok.kind == Kind::RParen => tok.span,
            Some(tok) => return Err(Self::unexpected(tok)),
        };
        self.pos += 1;
        let mut query = finalize(inner);
        if let Some(field) = field {
            push_field(&mut query, field);
        }
        Ok((query, close.end, false))
    }

    /// Parses a word, phrase or `*` with its `*`/`~` suffix. Returns the
    /// query, the byte offset where its syntax ends, and whether it was a
    /// bare word without a field (so that a following `:` means an invalid
    /// field name).
    #[inline(never)]
    fn parse_leaf(&mut self, field: Option<FieldRef>) -> Result<(Query, usize, bool), ParseError> {
        let Some(tok) = self.peek()? else {
            return Err(self.end_error());
        };
        let span = tok.span;
        match &tok.kind {
            // Keywords reach this point only right after a field
            // (`title:AND`), where they are plain words.
            Kind::Word { text, keyword } if keyword.is_none() || field.is_some() => {
                let text = text.clone();
                self.pos += 1;
                self.parse_word_suffix(field, text, span)
            }
            Kind::Phrase(text) => {
                let text = text.clone();
                self.pos += 1;
                self.parse_phrase_suffix(field, text, span)
            }
            Kind::Star => {
                self.pos += 1;
                if let Some((Kind::Word { .. }, _)) = self.adjacent_kind(span.end)? {
                    return Err(ParseError::new("leading wildcards are not supported", span).with_hint(WILDCARD_HINT));
                }
                Ok((Query::All { field, span }, span.end, false))
            }
            _ => Err(Self::unexpected(tok)),
        }
    }

    fn parse_word_suffix(
        &mut self,
        field: Option<FieldRef>,
        text: String,
        span: Span,
    ) -> Result<(Query, usize, bool), ParseError> {
        match self.adjacent_kind(span.end)? {
            Some((Kind::Star, star)) => {
                self.pos += 1;
                if let Some((Kind::Word { .. }, _)) = self.adjacent_kind(star.end)? {
                    return Err(wildcard_not_at_end(star));
                }
                let span = span.to(star);
                Ok((Query::Prefix { field, text, span }, span.end, false))
            }
            Some((Kind::Tilde, tilde)) => {
                self.pos += 1;
                let (distance, end) = match self.adjacent_kind(tilde.end)? {
                    Some((Kind::Word { text: n, .. }, n_span)) => {
                        if n.is_empty() || !n.chars().all(|c| c.is_ascii_digit()) {
                            return Err(ParseError::new(format!("invalid edit distance '{n}'"), n_span)
                                .with_hint(DISTANCE_HINT));
                        }
                        let distance = match n.parse::<u64>() {
                            Ok(d) if d <= 2 => d as u8,
                            _ => {
                                return Err(ParseError::new(format!("edit distance {n} is too large"), n_span)
                                    .with_hint("the maximum edit distance is 2"))
                            }
                        };
                        self.pos += 1;
                        (distance, n_span.end)
                    }
                    Some((Kind::Plus | Kind::Minus, sign)) => {
                        return Err(ParseError::new("invalid edit distance", sign).with_hint(DISTANCE_HINT))
                    }
                    _ => (1, tilde.end),
                };
                let span = Span::new(span.start, end);
                Ok((Query::Fuzzy { field, text, distance, span }, end, false))
            }
            _ => {
                let bare = field.is_none();
                Ok((Query::Term { field, text, span }, span.end, bare))
            }
        }
    }

    fn parse_phrase_suffix(
        &mut self,
        field: Option<FieldRef>,
        text: String,
        span: Span,
    ) -> Result<(Query, usize, bool), ParseError> {
        if text.trim().is_empty() {
            return Err(ParseError::new("empty phrase", span)
                .with_hint("put at least one word between the quotes or remove them"));
        }
        let mut end = span.end;
        let mut slop = 0u32;
        if let Some((Kind::Tilde, tilde)) = self.adjacent_kind(end)? {
            self.pos += 1;
            match self.adjacent_kind(tilde.end)? {
                Some((Kind::Word { text: n, .. }, n_span)) => {
                    if n.is_empty() || !n.chars().all(|c| c.is_ascii_digit()) {
                        return Err(ParseError::new(format!("invalid phrase slop '{n}'"), n_span).with_hint(SLOP_HINT));
                    }
                    slop = n.parse::<u32>().map_err(|_| {
                        ParseError::new(format!("phrase slop {n} is too large"), n_span)
                            .with_hint(format!("the maximum slop is {}", u32::MAX))
                    })?;
                    self.pos += 1;
                    end = n_span.end;
                }
                Some((Kind::Plus | Kind::Minus, sign)) => {
                    return Err(ParseError::new("invalid phrase slop", sign).with_hint(SLOP_HINT))
                }
                _ => return Err(ParseError::new("missing phrase slop after '~'", tilde).with_hint(SLOP_HINT)),
            }
        }
        let mut prefix = false;
        if let Some((Kind::Star, star)) = self.adjacent_kind(end)? {
            self.pos += 1;
            if let Some((Kind::Word { .. }, _)) = self.adjacent_kind(star.end)? {
                return Err(wildcard_not_at_end(star));
            }
            prefix = true;
            end = star.end;
        }
        let span = Span::new(span.start, end);
        Ok((Query::Phrase { field, text, slop, prefix, span }, end, false))
    }

    /// Parses an optional `^boost` after a primary ending at byte `end`,
    /// and rejects `*`, `~`, `^` or `:` glued to the finished clause.
    #[inline(never)]
    fn parse_suffix(&mut self, query: Query, end: usize, bare_word: bool) -> Result<Query, ParseError> {
        let (query, end, boosted) = match self.adjacent_kind(end)? {
            Some((Kind::Caret, caret)) => {
                self.pos += 1;
                let (boost, end) = self.parse_boost_value(caret)?;
                (Query::Boost { query: Box::new(query), boost }, end, true)
            }
            _ => (query, end, false),
        };
        let Some(tok) = self.peek_adjacent(end)? else {
            return Ok(query);
        };
        let span = tok.span;
        match tok.kind {
            Kind::Caret => Err(ParseError::new("only one boost is allowed per clause", span)
                .with_hint("multiply the boosts into one value, for example term^4")),
            Kind::Star => Err(ParseError::new("unexpected '*'", span)
                .with_hint("'*' can only follow a word (prefix search) or a phrase (phrase prefix)")),
            Kind::Tilde => Err(ParseError::new("unexpected '~'", span)
                .with_hint("'~' can only follow a word (fuzzy search) or a phrase (slop)")),
            Kind::Colon if bare_word && !boosted => {
                // `über:x`, `1a:x`: a word that is not a valid field name.
                let word_span = query.span().unwrap_or(span);
                let word = word_span.slice(self.src).unwrap_or("");
                Err(ParseError::new(format!("invalid field name '{word}'"), word_span).with_hint(FIELD_NAME_HINT))
            }
            Kind::Colon => Err(Self::unexpected(tok)),
            _ => Ok(query),
        }
    }

    /// Parses the number after `^` (already consumed).
    fn parse_boost_value(&mut self, caret: Span) -> Result<(f32, usize), ParseError> {
        let missing = || ParseError::new("missing boost value after '^'", caret).with_hint(BOOST_HINT);
        let (text, span) = match self.adjacent_kind(caret.end)? {
            Some((Kind::Word { text, .. }, span)) => (text, span),
            Some((Kind::Minus, span)) => {
                return Err(ParseError::new("boost must be greater than zero", span).with_hint(BOOST_HINT))
            }
            _ => return Err(missing()),
        };
        let well_formed = text.chars().all(|c| c.is_ascii_digit() || c == '.')
            && text.matches('.').count() <= 1
            && !text.starts_with('.')
            && !text.ends_with('.');
        let value = match text.parse::<f32>() {
            Ok(value) if well_formed => value,
            _ => return Err(ParseError::new(format!("invalid boost value '{text}'"), span).with_hint(BOOST_HINT)),
        };
        if !value.is_finite() {
            return Err(ParseError::new("boost value is too large", span)
                .with_hint(format!("the maximum boost is {}", f32::MAX)));
        }
        if value <= 0.0 {
            return Err(ParseError::new("boost must be greater than zero", span).with_hint(BOOST_HINT));
        }
        self.pos += 1;
        Ok((value, span.end))
    }
}

// ---------------------------------------------------------------------------
// AST building
// ---------------------------------------------------------------------------

/// Ends the AND in progress and adds it to the OR operands.
#[inline(never)]
fn fold_and(or_operands: &mut Vec<Operand>, and_operands: &mut Vec<Operand>) {
    let operands = std::mem::take(and_operands);
    or_operands.push(combine(operands, Occur::Must));
}

#[inline(never)]
fn finish_expr(mut or_operands: Vec<Operand>, and_operands: Vec<Operand>) -> Operand {
    or_operands.push(combine(and_operands, Occur::Must));
    combine(or_operands, Occur::Should)
}

/// Joins the operands of one AND (`unmarked` = Must) or OR (`unmarked` =
/// Should). A single operand is passed through with its modifier, so that
/// the enclosing level decides about it.
fn combine(mut operands: Vec<Operand>, unmarked: Occur) -> Operand {
    if operands.len() == 1 {
        if let Some(operand) = operands.pop() {
            return operand;
        }
    }
    let clauses = operands.into_iter().map(|op| (op.modifier.unwrap_or(unmarked), op.query)).collect();
    Operand { modifier: None, query: Query::Boolean { clauses } }
}

/// Turns an operand into a standalone query: a negated operand becomes a
/// pure-negation boolean.
fn finalize(operand: Operand) -> Query {
    match operand.modifier {
        Some(Occur::MustNot) => Query::Boolean { clauses: vec![(Occur::MustNot, operand.query)] },
        _ => operand.query,
    }
}

/// Gives `field` to every leaf under `query` that has no field of its own.
fn push_field(query: &mut Query, field: &FieldRef) {
    match query {
        Query::Term { field: f, .. }
        | Query::Phrase { field: f, .. }
        | Query::Prefix { field: f, .. }
        | Query::Fuzzy { field: f, .. }
        | Query::All { field: f, .. } => {
            if f.is_none() {
                *f = Some(field.clone());
            }
        }
        Query::Boolean { clauses } => {
            for (_, clause) in clauses {
                push_field(clause, field);
            }
        }
        Query::Boost { query, .. } => push_field(query, field),
    }
}

/// True for a boolean of only `MustNot` clauses ("all documents except").
fn is_pure_negation(query: &Query) -> bool {
    matches!(query, Query::Boolean { clauses } if clauses.iter().all(|(o, _)| *o == Occur::MustNot))
}

/// Flattens needless nesting (see the `ast` module docs). Idempotent.
///
/// * `Should` child with only `Should` clauses: spliced.
/// * `Must` child with `Must` clauses and no `Should` clause: spliced.
/// * `Must` child that is a pure negation: spliced only if the parent has
///   another real `Must` clause or no `Should` clause; otherwise it must
///   stay, because splicing would turn the parent's optional `Should`
///   clauses into required ones (`a OR +(NOT b)` matches every document
///   without `b`, `a -b` only those with `a`).
fn normalize(query: Query) -> Query {
    match query {
        Query::Boolean { clauses } => {
            let mut out = Vec::with_capacity(clauses.len());
            for (occur, clause) in clauses {
                match (occur, normalize(clause)) {
                    (Occur::Should, Query::Boolean { clauses: inner })
                        if inner.iter().all(|(o, _)| *o == Occur::Should) =>
                    {
                        out.extend(inner)
                    }
                    (Occur::Must, Query::Boolean { clauses: inner })
                        if inner.iter().all(|(o, _)| *o != Occur::Should)
                            && inner.iter().any(|(o, _)| *o == Occur::Must) =>
                    {
                        out.extend(inner)
                    }
                    (occur, clause) => out.push((occur, clause)),
                }
            }
            let negated_must = |(o, c): &(Occur, Query)| *o == Occur::Must && is_pure_negation(c);
            if out.iter().any(negated_must) {
                let real_must = out.iter().any(|c| c.0 == Occur::Must && !negated_must(c));
                let should = out.iter().any(|(o, _)| *o == Occur::Should);
                if real_must || !should {
                    out = out
                        .into_iter()
                        .flat_map(|(occur, clause)| match (occur, clause) {
                            (Occur::Must, Query::Boolean { clauses })
                                if clauses.iter().all(|(o, _)| *o == Occur::MustNot) =>
                            {
                                clauses
                            }
                            other => vec![other],
                        })
                        .collect();
                }
            }
            if out.len() == 1 && out[0].0 != Occur::MustNot {
                if let Some((_, only)) = out.pop() {
                    return only;
                }
            }
            Query::Boolean { clauses: out }
        }
        Query::Boost { query, boost } => Query::Boost { query: Box::new(normalize(*query)), boost },
        leaf => leaf,
    }
}

#[cfg(test)]
mod tests {
    use super::super::ast::{DefaultOperator, FieldRef, Occur, ParseError, Query, Span};
    use super::{parse, parse_unnormalized, MAX_NESTING_DEPTH};
    use DefaultOperator::{And, Or};

    // ----- helpers ---------------------------------------------------------

    #[track_caller]
    fn p(q: &str) -> Query {
        parse(q, Or).unwrap_or_else(|e| panic!("{q:?} failed to parse: {e:?}"))
    }

    #[track_caller]
    fn show(q: &str) -> String {
        p(q).to_string()
    }

    #[track_caller]
    fn show_and(q: &str) -> String {
        parse(q, And).unwrap_or_else(|e| panic!("{q:?} failed to parse: {e:?}")).to_string()
    }

    #[track_caller]
    fn err(q: &str) -> ParseError {
        match parse(q, Or) {
            Ok(ast) => panic!("{q:?} parsed as {ast:?}, expected an error"),
            Err(e) => {
                // Same error whatever the default operator.
                assert_eq!(parse(q, And).unwrap_err(), e, "error differs for And: {q:?}");
                e
            }
        }
    }

    /// Asserts the error message and its 1-based character position.
    #[track_caller]
    fn assert_err(q: &str, message: &str, position: usize) -> ParseError {
        let e = err(q);
        assert_eq!(e.message, message, "message for {q:?}");
        assert_eq!(e.position(q), position, "position for {q:?} ({e:?})");
        assert!(e.hint.is_some(), "missing hint for {q:?}");
        assert_message_style(&e);
        e
    }

    fn assert_message_style(e: &ParseError) {
        for text in std::iter::once(&e.message).chain(e.hint.iter()) {
            assert!(!text.ends_with('.'), "trailing period: {text:?}");
            assert!(
                !text.starts_with(|c: char| c.is_uppercase())
                    || text.starts_with("AND")
                    || text.starts_with("OR")
                    || text.starts_with("NOT"),
                "not lowercase: {text:?}"
            );
        }
    }

    fn sp(start: usize, end: usize) -> Span {
        Span::new(start, end)
    }

    fn fr(name: &str, start: usize, end: usize) -> Option<FieldRef> {
        Some(FieldRef { name: name.into(), span: sp(start, end) })
    }

    fn term(text: &str, start: usize, end: usize) -> Query {
        Query::Term { field: None, text: text.into(), span: sp(start, end) }
    }

    /// Sets every span to 0..0 so that ASTs of different strings compare.
    fn strip(q: Query) -> Query {
        let f = |f: Option<FieldRef>| f.map(|f| FieldRef { name: f.name, span: Span::default() });
        let z = Span::default();
        match q {
            Query::Term { field, text, .. } => Query::Term { field: f(field), text, span: z },
            Query::Phrase { field, text, slop, prefix, .. } => {
                Query::Phrase { field: f(field), text, slop, prefix, span: z }
            }
            Query::Prefix { field, text, .. } => Query::Prefix { field: f(field), text, span: z },
            Query::Fuzzy { field, text, distance, .. } => Query::Fuzzy { field: f(field), text, distance, span: z },
            Query::All { field, .. } => Query::All { field: f(field), span: z },
            Query::Boolean { clauses } => {
                Query::Boolean { clauses: clauses.into_iter().map(|(o, c)| (o, strip(c))).collect() }
            }
            Query::Boost { query, boost } => Query::Boost { query: Box::new(strip(*query)), boost },
        }
    }

    /// Checks the normalization invariants and that spans are in bounds and
    /// on char boundaries. Returns the depth of the tree.
    fn check_invariants(q: &Query, src: &str) -> usize {
        let span_ok = |s: Span| {
            s.start <= s.end && s.end <= src.len() && src.is_char_boundary(s.start) && src.is_char_boundary(s.end)
        };
        if let Some(field) = q.field() {
            assert!(span_ok(field.span), "field span {:?} in {src:?}", field.span);
            assert_eq!(field.span.slice(src), Some(field.name.as_str()));
        }
        match q {
            Query::Boolean { clauses } => {
                assert!(!clauses.is_empty(), "empty boolean from {src:?}");
                if clauses.len() == 1 {
                    assert_eq!(clauses[0].0, Occur::MustNot, "single clause from {src:?}");
                }
                let mut depth = 0;
                for (occur, clause) in clauses {
                    if let Query::Boolean { clauses: inner } = clause {
                        match occur {
                            Occur::Should => {
                                assert!(inner.iter().any(|(o, _)| *o != Occur::Should), "unflattened should in {src:?}")
                            }
                            Occur::Must => {
                                let pure_negation = inner.iter().all(|(o, _)| *o == Occur::MustNot);
                                let parent_should = clauses.iter().any(|(o, _)| *o == Occur::Should);
                                let parent_real_must = clauses.iter().any(|(o, c)| {
                                    *o == Occur::Must
                                        && !matches!(c, Query::Boolean { clauses: cc }
                                            if cc.iter().all(|(o, _)| *o == Occur::MustNot))
                                });
                                assert!(
                                    inner.iter().any(|(o, _)| *o == Occur::Should)
                                        || (pure_negation && parent_should && !parent_real_must),
                                    "unflattened must in {src:?}"
                                )
                            }
                            Occur::MustNot => {}
                        }
                    }
                    depth = depth.max(check_invariants(clause, src));
                }
                depth + 1
            }
            Query::Boost { query, boost } => {
                assert!(boost.is_finite() && *boost > 0.0);
                check_invariants(query, src) + 1
            }
            leaf => {
                let span = leaf.span().expect("leaf span");
                assert!(span_ok(span) && !span.is_empty(), "leaf span {span:?} in {src:?}");
                if let Query::Fuzzy { distance, .. } = leaf {
                    assert!(*distance <= 2);
                }
                1
            }
        }
    }

    /// Parses `q` with `op`; on success checks invariants and the display
    /// round trip, on failure checks the error span. Never panics for a
    /// correct parser.
    fn check_any(q: &str, op: DefaultOperator) -> bool {
        match parse(q, op) {
            Ok(ast) => {
                let depth = check_invariants(&ast, q);
                assert!(depth <= 3 * MAX_NESTING_DEPTH + 4, "depth {depth} for {q:?}");
                let printed = ast.to_string();
                for op2 in [Or, And] {
                    let again = parse(&printed, op2)
                        .unwrap_or_else(|e| panic!("display {printed:?} of {q:?} does not parse: {e:?}"));
                    assert_eq!(
                        strip(again.clone()),
                        strip(ast.clone()),
                        "round trip of {q:?} via {printed:?} with {op2:?}"
                    );
                    assert_eq!(again.to_string(), printed, "display is not a fixed point");
                }
                true
            }
            Err(e) => {
                let s = e.span;
                assert!(
                    s.start <= s.end && s.end <= q.len() && q.is_char_boundary(s.start) && q.is_char_boundary(s.end),
                    "bad error span {s:?} for {q:?}: {e:?}"
                );
                assert!(e.position(q) >= 1 && e.position(q) <= q.chars().count() + 1);
                assert!(!e.message.is_empty());
                assert_message_style(&e);
                false
            }
        }
    }

    // ----- terms and escapes -----------------------------------------------

    #[test]
    fn single_term() {
        assert_eq!(p("rust"), term("rust", 0, 4));
        assert_eq!(p("  rust\t "), term("rust", 2, 6));
    }

    #[test]
    fn term_characters() {
        assert_eq!(p("c++"), term("c++", 0, 3));
        assert_eq!(p("e-mail"), term("e-mail", 0, 6));
        assert_eq!(p("a+b"), term("a+b", 0, 3));
        assert_eq!(p("3.14"), term("3.14", 0, 4));
        assert_eq!(p("foo.bar@baz"), term("foo.bar@baz", 0, 11));
        assert_eq!(p("a!b?c"), term("a!b?c", 0, 5));
    }

    #[test]
    fn unicode_terms() {
        assert_eq!(p("café"), term("café", 0, 5));
        assert_eq!(p("日本語"), term("日本語", 0, 9));
        assert_eq!(
            p("🦀 ß"),
            Query::Boolean { clauses: vec![(Occur::Should, term("🦀", 0, 4)), (Occur::Should, term("ß", 5, 7))] }
        );
        // U+3000 ideographic space separates terms.
        assert_eq!(show("日本\u{3000}語"), "(日本 OR 語)");
    }

    #[test]
    fn lowercase_keywords_are_terms() {
        assert_eq!(show("a and b"), "(a OR and OR b)");
        assert_eq!(show("not"), "not");
        assert_eq!(show("or"), "or");
        assert_eq!(show("And Or Not"), "(And OR Or OR Not)");
        assert_eq!(show("ANDROID ORE NOTE"), "(ANDROID OR ORE OR NOTE)");
    }

    #[test]
    fn escapes() {
        assert_eq!(p(r"http\://x"), term("http://x", 0, 9));
        assert_eq!(p(r"\AND"), term("AND", 0, 4));
        assert_eq!(p(r"\(a\)"), term("(a)", 0, 5));
        assert_eq!(p(r"a\ b"), term("a b", 0, 4));
        assert_eq!(p(r"\\"), term("\\", 0, 2));
        assert_eq!(p(r"\-a"), term("-a", 0, 3));
        assert_eq!(p(r"\+a"), term("+a", 0, 3));
        assert_eq!(p(r"a\*"), term("a*", 0, 3));
        assert_eq!(p(r"\é"), term("é", 0, 3));
        assert_eq!(p(r#"say\"hi\""#), term("say\"hi\"", 0, 9));
        assert_eq!(p(r"a\~1"), term("a~1", 0, 4));
        assert_eq!(p(r"a\^2"), term("a^2", 0, 4));
        // An escaped colon after a valid name is not a field.
        assert_eq!(p(r"title\:x"), term("title:x", 0, 8));
        assert_eq!(show(r"\AND \OR \NOT"), r"(\AND OR \OR OR \NOT)");
    }

    // ----- fields ----------------------------------------------------------

    #[test]
    fn field_term() {
        assert_eq!(p("title:rust"), Query::Term { field: fr("title", 0, 5), text: "rust".into(), span: sp(6, 10) });
        assert_eq!(p("_x1:y"), Query::Term { field: fr("_x1", 0, 3), text: "y".into(), span: sp(4, 5) });
        // Keywords directly after a field are plain words.
        assert_eq!(p("title:AND"), Query::Term { field: fr("title", 0, 5), text: "AND".into(), span: sp(6, 9) });
    }

    #[test]
    fn field_phrase_prefix_fuzzy_all() {
        assert_eq!(
            p(r#"body:"a b"~2"#),
            Query::Phrase { field: fr("body", 0, 4), text: "a b".into(), slop: 2, prefix: false, span: sp(5, 12) }
        );
        assert_eq!(p("body:postg*"), Query::Prefix { field: fr("body", 0, 4), text: "postg".into(), span: sp(5, 11) });
        assert_eq!(
            p("body:postgers~2"),
            Query::Fuzzy { field: fr("body", 0, 4), text: "postgers".into(), distance: 2, span: sp(5, 15) }
        );
        assert_eq!(p("title:*"), Query::All { field: fr("title", 0, 5), span: sp(6, 7) });
    }

    #[test]
    fn field_group_pushdown() {
        let q = p(r#"title:(a body:b "c d")"#);
        assert_eq!(
            q,
            Query::Boolean {
                clauses: vec![
                    (Occur::Should, Query::Term { field: fr("title", 0, 5), text: "a".into(), span: sp(7, 8) }),
                    (Occur::Should, Query::Term { field: fr("body", 9, 13), text: "b".into(), span: sp(14, 15) }),
                    (
                        Occur::Should,
                        Query::Phrase {
                            field: fr("title", 0, 5),
                            text: "c d".into(),
                            slop: 0,
                            prefix: false,
                            span: sp(16, 21)
                        }
                    ),
                ]
            }
        );
        assert_eq!(show("a:(b:(x y) z)"), "(b:x OR b:y OR a:z)");
        assert_eq!(show("title:(a AND NOT b*)"), "(title:a AND NOT title:b*)");
        assert_eq!(show("title:(a OR *)"), "(title:a OR title:*)");
        assert_eq!(show("title:(a)^2 b"), "(title:a^2 OR b)");
        assert_eq!(show("title:((a b)^2 c~)"), "((title:a OR title:b)^2 OR title:c~1)");
        assert_eq!(show("-title:(a b)"), "(NOT (title:a OR title:b))");
    }

    // ----- phrases ---------------------------------------------------------

    #[test]
    fn phrases() {
        assert_eq!(
            p(r#""index access method""#),
            Query::Phrase { field: None, text: "index access method".into(), slop: 0, prefix: false, span: sp(0, 21) }
        );
        let phrase = |q: &str| match p(q) {
            Query::Phrase { text, slop, prefix, span, .. } => (text, slop, prefix, span),
            other => panic!("{other:?}"),
        };
        assert_eq!(phrase(r#""a b"~2"#), ("a b".into(), 2, false, sp(0, 7)));
        assert_eq!(phrase(r#""a b"*"#), ("a b".into(), 0, true, sp(0, 6)));
        assert_eq!(phrase(r#""a b"~3*"#), ("a b".into(), 3, true, sp(0, 8)));
        assert_eq!(phrase(r#""a b"~0"#), ("a b".into(), 0, false, sp(0, 7)));
        assert_eq!(phrase(r#""a b"~007"#), ("a b".into(), 7, false, sp(0, 9)));
        assert_eq!(phrase(r#""say \"hi\"""#), ("say \"hi\"".into(), 0, false, sp(0, 12)));
        assert_eq!(phrase(r#""a\\b""#), ("a\\b".into(), 0, false, sp(0, 6)));
        assert_eq!(phrase(r#""a:b (c) AND -d*""#), ("a:b (c) AND -d*".into(), 0, false, sp(0, 17)));
        assert_eq!(phrase("\"日本 語\"~1"), ("日本 語".into(), 1, false, sp(0, 14)));
        assert_eq!(phrase(r#""a b"~4294967295"#).1, u32::MAX);
    }

    #[test]
    fn phrase_next_to_other_clauses() {
        assert_eq!(show(r#"a"b c"d"#), r#"(a OR "b c" OR d)"#);
        assert_eq!(show(r#""a" "b""#), r#"("a" OR "b")"#);
        assert_eq!(show(r#""a"~2 x"#), r#"("a"~2 OR x)"#);
    }

    // ----- prefix, all, fuzzy, boost ---------------------------------------

    #[test]
    fn prefix_and_all() {
        assert_eq!(p("postg*"), Query::Prefix { field: None, text: "postg".into(), span: sp(0, 6) });
        assert_eq!(p("*"), Query::All { field: None, span: sp(0, 1) });
        assert_eq!(p(" * "), Query::All { field: None, span: sp(1, 2) });
        assert_eq!(show("* -a"), "(* OR -a)");
        assert_eq!(show("a *"), "(a OR *)");
        assert_eq!(show("é*"), "é*");
    }

    #[test]
    fn fuzzy() {
        let fuzzy = |q: &str| match p(q) {
            Query::Fuzzy { text, distance, span, .. } => (text, distance, span),
            other => panic!("{other:?}"),
        };
        assert_eq!(fuzzy("postgers~"), ("postgers".into(), 1, sp(0, 9)));
        assert_eq!(fuzzy("a~0"), ("a".into(), 0, sp(0, 3)));
        assert_eq!(fuzzy("a~1"), ("a".into(), 1, sp(0, 3)));
        assert_eq!(fuzzy("a~2"), ("a".into(), 2, sp(0, 3)));
        assert_eq!(fuzzy("a~02"), ("a".into(), 2, sp(0, 4)));
        assert_eq!(fuzzy("ü~"), ("ü".into(), 1, sp(0, 3)));
        assert_eq!(show("a~ 2"), "(a~1 OR 2)");
    }

    #[test]
    fn boost() {
        assert_eq!(p("a^2"), Query::Boost { query: Box::new(term("a", 0, 1)), boost: 2.0 });
        let boost_of = |q: &str| match p(q) {
            Query::Boost { boost, query } => (boost, *query),
            other => panic!("{other:?}"),
        };
        assert_eq!(boost_of("a^0.5").0, 0.5);
        assert_eq!(boost_of("a^1.25").0, 1.25);
        assert_eq!(boost_of("a^007").0, 7.0);
        assert!(matches!(boost_of(r#""a b"~2*^3"#), (b, Query::Phrase { slop: 2, prefix: true, .. }) if b == 3.0));
        assert!(matches!(boost_of("a*^2").1, Query::Prefix { .. }));
        assert!(matches!(boost_of("a~^2").1, Query::Fuzzy { distance: 1, .. }));
        assert!(matches!(boost_of("a~2^2").1, Query::Fuzzy { distance: 2, .. }));
        assert!(matches!(boost_of("*^3").1, Query::All { .. }));
        assert!(matches!(boost_of("(a b)^1.5").1, Query::Boolean { .. }));
        assert!(matches!(boost_of("title:a^2").1, Query::Term { field: Some(_), .. }));
        assert!(matches!(boost_of("((a)^2)^3").1, Query::Boost { .. }));
        assert_eq!(show("((a)^2)^3"), "(a^2)^3");
        assert_eq!(show("+a^2 -b^3"), "(a^2 AND NOT b^3)");
        assert_eq!(show("+a^2 b^3"), "(+a^2 OR b^3)");
        assert_eq!(show("a^0.1"), "a^0.1");
    }

    // ----- boolean structure -------------------------------------------------

    #[test]
    fn juxtaposition_default_operator() {
        assert_eq!(show("a b"), "(a OR b)");
        assert_eq!(show_and("a b"), "(a AND b)");
        assert_eq!(show("a b c"), "(a OR b OR c)");
        assert_eq!(show_and("a b c"), "(a AND b AND c)");
        assert_eq!(
            p("a b"),
            Query::Boolean { clauses: vec![(Occur::Should, term("a", 0, 1)), (Occur::Should, term("b", 2, 3))] }
        );
    }

    #[test]
    fn precedence() {
        // Default Or: implicit OR binds like OR.
        assert_eq!(show("a b AND c"), "(a OR (b AND c))");
        assert_eq!(show("a AND b OR c"), "((a AND b) OR c)");
        assert_eq!(show("a AND b c"), "((a AND b) OR c)");
        assert_eq!(show("a OR b AND c OR d"), "(a OR (b AND c) OR d)");
        assert_eq!(show("a AND b AND c"), "(a AND b AND c)");
        // Default And: implicit AND binds like AND.
        assert_eq!(show_and("a b AND c"), "(a AND b AND c)");
        assert_eq!(show_and("a AND b OR c"), "((a AND b) OR c)");
        assert_eq!(show_and("a OR b c"), "(a OR (b AND c))");
        assert_eq!(show_and("a b OR c d"), "((a AND b) OR (c AND d))");
        // NOT binds tightest.
        assert_eq!(show("NOT a AND b"), "(NOT a AND b)");
        assert_eq!(show("NOT a OR b"), "(-a OR b)");
        assert_eq!(show("a AND NOT b OR c"), "((a AND NOT b) OR c)");
        // Parentheses.
        assert_eq!(show("(a OR b) AND (c OR d)"), "((a OR b) AND (c OR d))");
        assert_eq!(show("a AND (b OR c)"), "(a AND (b OR c))");
        assert_eq!(
            show(r#"postgres AND (rust OR "index access method")"#),
            r#"(postgres AND (rust OR "index access method"))"#
        );
        assert_eq!(show("(a)AND(b)"), "(a AND b)");
    }

    #[test]
    fn not_and_modifiers() {
        assert_eq!(p("NOT a"), Query::Boolean { clauses: vec![(Occur::MustNot, term("a", 4, 5))] });
        assert_eq!(p("-a"), Query::Boolean { clauses: vec![(Occur::MustNot, term("a", 1, 2))] });
        assert_eq!(p("+a"), term("a", 1, 2));
        assert_eq!(
            p("a -b +c"),
            Query::Boolean {
                clauses: vec![
                    (Occur::Should, term("a", 0, 1)),
                    (Occur::MustNot, term("b", 3, 4)),
                    (Occur::Must, term("c", 6, 7)),
                ]
            }
        );
        assert_eq!(show("a -b +c"), "(a OR -b OR +c)");
        assert_eq!(show_and("a -b +c"), "(a AND NOT b AND c)");
        assert_eq!(show("a AND NOT b"), "(a AND NOT b)");
        assert_eq!(show("a AND -b"), "(a AND NOT b)");
        assert_eq!(show("a OR NOT b"), "(a OR -b)");
        assert_eq!(show("a NOT b"), "(a OR -b)");
        assert_eq!(show("NOT a NOT b"), "(NOT a AND NOT b)");
        assert_eq!(show("NOT NOT a"), "(NOT (NOT a))");
        assert_eq!(show("+a +b"), "(a AND b)");
        assert_eq!(show("+a b"), "(+a OR b)");
        assert_eq!(show("-(a b)"), "(NOT (a OR b))");
        assert_eq!(show("NOT (a AND b)"), "(NOT (a AND b))");
        assert_eq!(show("-\"a b\""), "(NOT \"a b\")");
        assert_eq!(show("-*"), "(NOT *)");
        assert_eq!(show("+title:a"), "title:a");
        assert_eq!(show("NOT(a)"), "(NOT a)");
        assert_eq!(show("a OR (NOT b)"), "(a OR (NOT b))");
    }

    #[test]
    fn flattening() {
        assert_eq!(p("(a)"), term("a", 1, 2));
        assert_eq!(p("((((a))))"), term("a", 4, 5));
        assert_eq!(show("a OR (b OR c)"), "(a OR b OR c)");
        assert_eq!(show("(a OR b) OR (c OR d)"), "(a OR b OR c OR d)");
        assert_eq!(show("a AND (b AND NOT c)"), "(a AND b AND NOT c)");
        assert_eq!(show("a AND (NOT c)"), "(a AND NOT c)");
        assert_eq!(show("a AND (b OR c)"), "(a AND (b OR c))");
        assert_eq!(show("a OR (b AND c)"), "(a OR (b AND c))");
        assert_eq!(show("+a (b OR c)"), "(+a OR b OR c)");
        assert_eq!(show("a OR (b -c)"), "(a OR (b OR -c))");
        assert_eq!(show("(a b)^2 c"), "((a OR b)^2 OR c)");
        assert_eq!(show("(+a)"), "a");
        assert_eq!(show("(-a)"), "(NOT a)");
        // A required pure negation keeps the should clauses optional.
        assert_eq!(show("a OR +(NOT b)"), "(a OR +(NOT b))");
        assert_eq!(show("+(NOT a) +(NOT b) c"), "(+(NOT a) OR +(NOT b) OR c)");
        assert_eq!(show("+(NOT a) +(NOT b)"), "(NOT a AND NOT b)");
        assert_eq!(show("+(NOT a) +x c"), "(-a OR +x OR c)");
        assert_eq!(show_and("x (NOT a)"), "(x AND NOT a)");
        assert_eq!(show("(NOT a) AND (NOT b) OR c"), "((NOT a AND NOT b) OR c)");
        assert_eq!(show("+(+a -b) c"), "(+a OR -b OR c)");
        assert_eq!(show("+(a -b) c"), "(+(a OR -b) OR c)");
    }

    // ----- spans and positions ----------------------------------------------

    #[test]
    fn spans_with_multibyte_text() {
        let q = "日本 title:ünï \"é\"~1 x*";
        let Query::Boolean { clauses } = p(q) else { panic!() };
        let spans: Vec<&str> = clauses.iter().map(|(_, c)| c.span().unwrap().slice(q).unwrap()).collect();
        assert_eq!(spans, ["日本", "ünï", "\"é\"~1", "x*"]);
        assert_eq!(clauses[1].1.field().unwrap().span.slice(q), Some("title"));
    }

    #[test]
    fn position_counts_characters() {
        let e = ParseError::new("x", sp(7, 8));
        assert_eq!(e.position("日本 AND"), 4);
        assert_eq!(ParseError::new("x", sp(0, 0)).position(""), 1);
        assert_eq!(ParseError::new("x", sp(3, 3)).position("abc"), 4);
        assert_eq!(ParseError::new("x", sp(99, 99)).position("abc"), 4);
        // Inside a character (never produced by the parser): no panic.
        assert_eq!(ParseError::new("x", sp(1, 1)).position("é"), 2);
        assert_eq!(assert_err("日本 AND", "missing search term after AND", 4).span, sp(7, 10));
        assert_eq!(assert_err("ü~3", "edit distance 3 is too large", 3).span, sp(3, 4));
        assert_eq!(assert_err("🦀 \"abc", "unterminated phrase", 3).span, sp(5, 6));
    }

    #[test]
    fn error_display_and_hint() {
        let e = err("\"abc");
        assert_eq!(e.to_string(), "unterminated phrase");
        assert_eq!(e.hint.as_deref(), Some("close the phrase with a double quote (\")"));
        assert_eq!(e.span, sp(0, 1));
        let e = err("a~3");
        assert!(e.hint.unwrap().contains("maximum edit distance is 2"));
    }

    // ----- errors ----------------------------------------------------------

    #[test]
    fn empty_query() {
        assert_eq!(assert_err("", "empty search query", 1).span, sp(0, 0));
        assert_eq!(assert_err("   \t\n", "empty search query", 1).span, sp(0, 5));
        assert_err("\u{3000}", "empty search query", 1);
    }

    #[test]
    fn phrase_errors() {
        assert_err("\"abc", "unterminated phrase", 1);
        assert_err("foo \"abc", "unterminated phrase", 5);
        assert_err("é \"abc", "unterminated phrase", 3);
        assert_err(r#""abc\""#, "unterminated phrase", 1);
        assert_err(r#""a" "b"#, "unterminated phrase", 5);
        assert_err("\"\"", "empty phrase", 1);
        assert_err("a \"  \"", "empty phrase", 3);
        assert_err(r#""a b"~"#, "missing phrase slop after '~'", 6);
        assert_err(r#""a b"~ 2"#, "missing phrase slop after '~'", 6);
        assert_err(r#""a b"~x"#, "invalid phrase slop 'x'", 7);
        assert_err(r#""a b"~1.5"#, "invalid phrase slop '1.5'", 7);
        assert_err(r#""a b"~-1"#, "invalid phrase slop", 7);
        assert_err(r#""a b"~99999999999"#, "phrase slop 99999999999 is too large", 7);
        assert_err(r#""a b"*~2"#, "unexpected '~'", 7);
        assert_err(r#""a b"**"#, "unexpected '*'", 7);
        assert_err(r#""a b"*c"#, "wildcards are only supported at the end of a word", 6);
    }

    #[test]
    fn escape_errors() {
        assert_err("abc\\", "escape character at end of query", 4);
        assert_err("\\", "escape character at end of query", 1);
        assert_err("é\\", "escape character at end of query", 2);
        // Inside a phrase, a trailing backslash leaves the phrase open.
        assert_err("\"abc\\", "unterminated phrase", 1);
    }

    #[test]
    fn parenthesis_errors() {
        assert_err("(a", "unclosed parenthesis", 1);
        assert_err("a (b (c)", "unclosed parenthesis", 3);
        assert_err("((a)", "unclosed parenthesis", 1);
        assert_err("(", "unclosed parenthesis", 1);
        assert_err("a)", "unmatched closing parenthesis", 2);
        assert_err("(a))", "unmatched closing parenthesis", 4);
        assert_err(")", "unmatched closing parenthesis", 1);
        assert_err(") a", "unmatched closing parenthesis", 1);
        assert_eq!(assert_err("()", "empty parentheses", 1).span, sp(0, 2));
        assert_err("a ( )", "empty parentheses", 3);
        assert_err("title:()", "empty parentheses", 7);
    }

    #[test]
    fn operator_errors() {
        assert_err("a AND", "missing search term after AND", 3);
        assert_err("a OR", "missing search term after OR", 3);
        assert_err("OR b", "missing search term before OR", 1);
        assert_err("AND", "missing search term before AND", 1);
        assert_err("a AND OR b", "missing search term after AND", 3);
        assert_err("a OR AND b", "missing search term after OR", 3);
        assert_err("a OR OR b", "missing search term after OR", 3);
        assert_err("(a AND)", "missing search term after AND", 4);
        assert_err("(OR a)", "missing search term before OR", 2);
        assert_err("NOT", "missing search term after NOT", 1);
        assert_err("a NOT", "missing search term after NOT", 3);
        assert_err("NOT NOT", "missing search term after NOT", 5);
        assert_err("NOT AND a", "missing search term after NOT", 1);
        assert_err("(NOT)", "missing search term after NOT", 2);
        assert_err("a AND NOT", "missing search term after NOT", 7);
        assert_err("+", "missing search term after '+'", 1);
        assert_err("a -", "missing search term after '-'", 3);
        assert_err("(a +)", "missing search term after '+'", 4);
        assert_err("+AND a", "missing search term after '+'", 1);
        assert_err("a - b", "'-' must be directly followed by a search term", 3);
        assert_err("+ b", "'+' must be directly followed by a search term", 1);
        assert_err("+-a", "cannot combine '+' with '-'", 2);
        assert_err("--a", "cannot combine '-' with '-'", 2);
        assert_err("-NOT a", "cannot combine '-' with NOT", 2);
        assert_err("NOT -a", "cannot combine NOT with '-'", 5);
        assert_err("NOT +a", "cannot combine NOT with '+'", 5);
    }

    #[test]
    fn field_errors() {
        assert_eq!(assert_err("title:", "missing search term after field 'title'", 1).span, sp(0, 6));
        assert_err("title: x", "missing search term after field 'title'", 1);
        assert_err("a title:", "missing search term after field 'title'", 3);
        assert_err("(title:)", "missing search term after field 'title'", 2);
        assert_err("title:~1", "missing search term after field 'title'", 1);
        assert_err("title:^2", "missing search term after field 'title'", 1);
        assert_err("a:b:c", "a field cannot be applied to another field", 3);
        assert_err("title:-a", "'-' must come before the field", 7);
        assert_err("title:+a", "'+' must come before the field", 7);
        assert_eq!(assert_err("über:x", "invalid field name 'über'", 1).span, sp(0, 5));
        assert_err("x 1a:x", "invalid field name '1a'", 3);
        assert_err(r"a\ b:c", r"invalid field name 'a\ b'", 1);
        assert_err("x :y", "unexpected ':'", 3);
        assert_err(":", "unexpected ':'", 1);
        assert_err("a^2:x", "unexpected ':'", 4);
        assert_err("a*:x", "unexpected ':'", 3);
        assert_err("(a):x", "unexpected ':'", 4);
        assert_err("title:a:b", "a field cannot be applied to another field", 7);
        assert_err("title:ü:b", "unexpected ':'", 8);
    }

    #[test]
    fn fuzzy_errors() {
        let e = assert_err("a~3", "edit distance 3 is too large", 3);
        assert_eq!(e.hint.as_deref(), Some("the maximum edit distance is 2"));
        assert_eq!(e.span, sp(2, 3));
        assert_err("a~99999999999999999999999", "edit distance 99999999999999999999999 is too large", 3);
        assert_err("a~x", "invalid edit distance 'x'", 3);
        assert_err("a~1.5", "invalid edit distance '1.5'", 3);
        assert_err("a~2b", "invalid edit distance '2b'", 3);
        assert_err("a~-1", "invalid edit distance", 3);
        assert_err("a ~2", "'~' must directly follow a term or phrase", 3);
        assert_err("~", "'~' must directly follow a term or phrase", 1);
        assert_err("a~~", "unexpected '~'", 3);
        assert_err("a~1~", "unexpected '~'", 4);
        assert_err("a*~", "unexpected '~'", 3);
        assert_err("a~*", "unexpected '*'", 3);
        assert_err("(a)~", "unexpected '~'", 4);
    }

    #[test]
    fn boost_errors() {
        assert_err("a^", "missing boost value after '^'", 2);
        assert_err("a^ 2", "missing boost value after '^'", 2);
        assert_err("a^(2)", "missing boost value after '^'", 2);
        assert_eq!(assert_err("a^0", "boost must be greater than zero", 3).span, sp(2, 3));
        assert_err("a^0.0", "boost must be greater than zero", 3);
        assert_err("a^-1", "boost must be greater than zero", 3);
        assert_err("a^x", "invalid boost value 'x'", 3);
        assert_err("a^1.", "invalid boost value '1.'", 3);
        assert_err("a^.5", "invalid boost value '.5'", 3);
        assert_err("a^1e5", "invalid boost value '1e5'", 3);
        assert_err("a^1.2.3", "invalid boost value '1.2.3'", 3);
        assert_err("a^inf", "invalid boost value 'inf'", 3);
        assert_err("a^NaN", "invalid boost value 'NaN'", 3);
        let big = format!("a^1{}", "0".repeat(50));
        assert_err(&big, "boost value is too large", 3);
        let tiny = format!("a^0.{}1", "0".repeat(60));
        assert_err(&tiny, "boost must be greater than zero", 3);
        assert_err("a^2^3", "only one boost is allowed per clause", 4);
        assert_err("a ^2", "'^' must directly follow a term, phrase or group", 3);
        assert_err("^2", "'^' must directly follow a term, phrase or group", 1);
        assert_err("a^2*", "unexpected '*'", 4);
    }

    #[test]
    fn wildcard_errors() {
        assert_err("*a", "leading wildcards are not supported", 1);
        assert_err("x *ab", "leading wildcards are not supported", 3);
        assert_err("a*b", "wildcards are only supported at the end of a word", 2);
        assert_err("a**", "unexpected '*'", 3);
        assert_err("**", "unexpected '*'", 2);
        assert_err("(a)*", "unexpected '*'", 4);
        assert_err("+*a", "leading wildcards are not supported", 2);
    }

    #[test]
    fn nesting_limit() {
        let n = MAX_NESTING_DEPTH;
        let ok = format!("{}a{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(p(&ok), term("a", n, n + 1));
        let deep = format!("{}a{}", "(".repeat(n + 1), ")".repeat(n + 1));
        let e = assert_err(&deep, "query nesting is too deep", n + 1);
        assert_eq!(e.hint.as_deref(), Some("the maximum nesting depth is 256"));

        let nots_ok = format!("{}a", "NOT ".repeat(n));
        assert!(parse(&nots_ok, Or).is_ok());
        let nots = format!("{}a", "NOT ".repeat(n + 1));
        assert_err(&nots, "query nesting is too deep", 4 * n + 1);

        let mixed_ok = format!("{}{}a{}", "(".repeat(200), "NOT ".repeat(n - 200), ")".repeat(200));
        assert!(parse(&mixed_ok, Or).is_ok());
        let mixed = format!("{}{}a{}", "(".repeat(200), "NOT ".repeat(n - 199), ")".repeat(200));
        assert_err(&mixed, "query nesting is too deep", 200 + 4 * (n - 200) + 1);
        let mixed = format!("{}(a){}", "NOT (".repeat(128), ")".repeat(128));
        assert_err(&mixed, "query nesting is too deep", 5 * 128 + 1);

        // Huge inputs fail fast without exhausting the stack.
        assert_err(&"(".repeat(100_000), "query nesting is too deep", n + 1);
        assert_err(&"NOT ".repeat(100_000), "query nesting is too deep", 4 * n + 1);
        assert_err(&"-(".repeat(100_000), "query nesting is too deep", 2 * n + 2);
    }

    #[test]
    fn deep_valid_query_round_trips() {
        let n = MAX_NESTING_DEPTH;
        let q = format!("{}a{}", "(b OR -".repeat(n - 1), ")".repeat(n - 1));
        assert!(check_any(&q, Or));
        let q = format!("{}a{}", "(b AND NOT ".repeat(n / 2), ")".repeat(n / 2));
        assert!(check_any(&q, And));
    }

    #[test]
    fn long_flat_query() {
        let q = "word ".repeat(50_000);
        let Query::Boolean { clauses } = p(&q) else { panic!() };
        assert_eq!(clauses.len(), 50_000);
        let q = vec!["a"; 20_000].join(" AND ");
        assert!(check_any(&q, Or));
    }

    // ----- display ---------------------------------------------------------

    #[test]
    fn display_escapes() {
        let cases = [
            (r"http\://x", r"http\://x"),
            (r"\-a", r"\-a"),
            (r"a-b", r"a-b"),
            (r"\+", r"\+"),
            (r"a\ b", r"a\ b"),
            (r"\(\)\^\~\*\\", r"\(\)\^\~\*\\"),
            (r#""a \"b\" \\ c""#, r#""a \"b\" \\ c""#),
            (r"title:\AND", r"title:\AND"),
            (r"title:AND", r"title:\AND"),
            (r"\A\N\D", r"\AND"),
            (r"a\*~2", r"a\*~2"),
            (r"a\~*", r"a\~*"),
            (r#""a b"~0*"#, r#""a b"*"#),
            ("a\\\u{3000}b", "a\\\u{3000}b"),
        ];
        for (q, shown) in cases {
            assert_eq!(show(q), shown, "display of {q:?}");
            assert!(check_any(q, Or));
        }
    }

    #[test]
    fn display_round_trips_examples() {
        let examples = [
            "rust",
            "title:rust body:\"a b\"~3* -c* +d~2^1.5",
            "postgres AND (rust OR \"index access method\")",
            "a b AND c",
            "a AND b OR c",
            "NOT a",
            "NOT NOT a",
            "a -b +c",
            "(a -b) OR (+c d) OR NOT (e f)",
            "title:(a OR body:(b AND NOT c*)^2) d",
            "* -title:*",
            "-(a OR b) -(c AND d)",
            "((a^2)^3)^0.5",
            "x OR (NOT y) OR -(-z)",
            "a AND (b OR c) AND (+d -e)",
            "é ü 日本 🦀 \\🦀",
        ];
        for q in examples {
            assert!(check_any(q, Or), "{q:?}");
            assert!(check_any(q, And), "{q:?}");
        }
    }

    // ----- property tests (deterministic pseudo-random generator) -----------

    /// xorshift64* generator: deterministic, no extra dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    const PIECES: &[&str] = &[
        "(", ")", "\"", ":", "^", "~", "*", "\\", "+", "-", " ", " ", " ", "\t", "AND", "OR", "NOT", "and", "foo",
        "bar", "title", "title:", "body:", "é", "日本", "🦀", "ß", "2", "0.5", "0", "3", "1.", "_x", "a1", "\u{301}",
        "\u{3000}", "x", "y", "&&", "||", "!", ".", "\"a b\"",
    ];

    #[test]
    fn random_piece_strings_never_panic_and_round_trip() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut ok = 0;
        for _ in 0..40_000 {
            let len = rng.below(14);
            let q: String = (0..len).map(|_| rng.pick(PIECES)).collect();
            for op in [Or, And] {
                if check_any(&q, op) {
                    ok += 1;
                }
            }
        }
        assert!(ok > 5_000, "too few valid queries generated: {ok}");
    }

    #[test]
    fn random_unicode_strings_never_panic() {
        let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
        let alphabet: Vec<char> = "()\":^~*\\+- \tabcANDORNOT01239.é日🦀\u{301}\u{3000}\u{0}\u{FEFF}".chars().collect();
        for _ in 0..30_000 {
            let len = rng.below(20);
            let q: String = (0..len)
                .map(|_| {
                    if rng.below(8) == 0 {
                        // Any scalar value.
                        char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{FFFD}')
                    } else {
                        alphabet[rng.below(alphabet.len())]
                    }
                })
                .collect();
            check_any(&q, Or);
            check_any(&q, And);
        }
    }

    /// Generates a syntactically valid query.
    fn gen_query(rng: &mut Rng, depth: usize, out: &mut String) {
        let clauses = 1 + rng.below(if depth > 3 { 1 } else { 4 });
        for i in 0..clauses {
            if i > 0 {
                out.push_str(rng.pick(&[" ", " AND ", " OR ", " ", "  "]));
            }
            out.push_str(rng.pick(&["", "", "", "+", "-", "NOT ", "NOT NOT "]));
            if rng.below(4) == 0 {
                out.push_str(rng.pick(&["title:", "body:", "_f1:"]));
            }
            match rng.below(8) {
                0 | 1 => out.push_str(rng.pick(&["a", "b", "café", "日本", "c++", r"x\:y", r"\AND", "42"])),
                2 => {
                    out.push_str(rng.pick(&["pre", "é", "z"]));
                    out.push('*');
                }
                3 => {
                    out.push_str(rng.pick(&["fuz", "ü"]));
                    out.push_str(rng.pick(&["~", "~0", "~1", "~2"]));
                }
                4 => {
                    out.push_str(rng.pick(&[r#""a b""#, r#""say \"hi\"""#, "\"日本 語\""]));
                    out.push_str(rng.pick(&["", "~1", "~10", "*", "~2*"]));
                }
                5 => out.push('*'),
                _ if depth < 8 => {
                    out.push('(');
                    gen_query(rng, depth + 1, out);
                    out.push(')');
                }
                _ => out.push('w'),
            }
            if rng.below(6) == 0 {
                out.push_str(rng.pick(&["^2", "^0.5", "^1.25", "^10"]));
            }
        }
    }

    #[test]
    fn random_valid_queries_round_trip() {
        let mut rng = Rng(0x1234_5678_9ABC_DEF1);
        for _ in 0..20_000 {
            let mut q = String::new();
            gen_query(&mut rng, 0, &mut q);
            for op in [Or, And] {
                assert!(check_any(&q, op), "generated query {q:?} failed: {:?}", parse(&q, op));
            }
        }
    }

    /// Lucene matching semantics over a document given as a set of words
    /// (bit i = word i of "abcd").
    fn matches(q: &Query, doc: u32) -> bool {
        match q {
            Query::Term { text, .. } => {
                let i = "abcd".find(text.as_str()).expect("generated word");
                doc & (1 << i) != 0
            }
            Query::All { .. } => true,
            Query::Boost { query, .. } => matches(query, doc),
            Query::Boolean { clauses } => {
                let of = |occur: Occur| clauses.iter().filter(move |(o, _)| *o == occur);
                if of(Occur::MustNot).any(|(_, c)| matches(c, doc)) {
                    return false;
                }
                if of(Occur::Must).next().is_some() {
                    of(Occur::Must).all(|(_, c)| matches(c, doc))
                } else if of(Occur::Should).next().is_some() {
                    of(Occur::Should).any(|(_, c)| matches(c, doc))
                } else {
                    true // only MustNot: all documents except those
                }
            }
            other => panic!("not generated: {other:?}"),
        }
    }

    fn gen_boolean(rng: &mut Rng, depth: usize, out: &mut String) {
        let clauses = 1 + rng.below(4);
        for i in 0..clauses {
            if i > 0 {
                out.push_str(rng.pick(&[" ", " AND ", " OR "]));
            }
            out.push_str(rng.pick(&["", "", "+", "-", "NOT "]));
            if depth < 4 && rng.below(3) == 0 {
                out.push('(');
                gen_boolean(rng, depth + 1, out);
                out.push(')');
            } else {
                out.push_str(rng.pick(&["a", "b", "c", "d", "*"]));
            }
        }
    }

    #[test]
    fn normalization_preserves_matching() {
        let mut rng = Rng(0x0BAD_5EED_0000_0001);
        for _ in 0..20_000 {
            let mut q = String::new();
            gen_boolean(&mut rng, 0, &mut q);
            for op in [Or, And] {
                let raw = parse_unnormalized(&q, op).unwrap_or_else(|e| panic!("{q:?}: {e:?}"));
                let normalized = parse(&q, op).unwrap();
                let reparsed = parse(&normalized.to_string(), op).unwrap();
                for doc in 0..16 {
                    let expected = matches(&raw, doc);
                    assert_eq!(matches(&normalized, doc), expected, "{q:?} ({op:?}) doc {doc:04b}");
                    assert_eq!(matches(&reparsed, doc), expected, "{q:?} reparsed, doc {doc:04b}");
                }
            }
        }
    }
}
