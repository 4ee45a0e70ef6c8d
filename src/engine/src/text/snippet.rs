//! Highlighted excerpts of a text value for a query (`hybrid.snippet`).
//!
//! The value comes from the heap row, not from the index (the index stores no text), so a
//! snippet always shows the row as the query's snapshot sees it.

use tantivy::query::Query;
use tantivy::snippet::SnippetGenerator;

use crate::error::Result;
use crate::text::reader::Snapshot;

/// Makes snippets of one field for one query.
pub struct Snippets {
    generator: SnippetGenerator,
    max_chars: usize,
}

impl Snippets {
    /// Prepares snippets of the text field at `field` for `query` on `index`.
    pub fn new(index: &Snapshot, query: &dyn Query, field: usize, max_chars: usize) -> Result<Snippets> {
        let mut generator = SnippetGenerator::create(index.searcher(), query, index.fields().text[field])?;
        generator.set_max_num_chars(max_chars);
        Ok(Snippets { generator, max_chars })
    }

    /// The best fragment of `text` with query words wrapped in `start`/`end`. Without a match,
    /// the beginning of the text (cut at a word boundary), like Postgres' `ts_headline`.
    /// The text is not HTML-escaped: it is returned as stored, tags added.
    pub fn render(&self, text: &str, start: &str, end: &str) -> String {
        let snippet = self.generator.snippet(text);
        let fragment = snippet.fragment();
        if snippet.highlighted().is_empty() || fragment.is_empty() {
            return leading_words(text, self.max_chars);
        }
        let mut out = String::with_capacity(fragment.len() + 16);
        let mut pos = 0;
        for r in snippet.highlighted() {
            if r.start < pos || r.end > fragment.len() {
                continue;
            }
            out.push_str(&fragment[pos..r.start]);
            out.push_str(start);
            out.push_str(&fragment[r.start..r.end]);
            out.push_str(end);
            pos = r.end;
        }
        out.push_str(&fragment[pos..]);
        out
    }
}

fn leading_words(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let cut: String = text.chars().take(max_chars).collect();
    match cut.rfind(char::is_whitespace) {
        Some(i) if i > 0 => cut[..i].to_string(),
        _ => cut,
    }
}
