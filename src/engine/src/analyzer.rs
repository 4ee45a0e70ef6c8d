//! Text analysis: turns a field's configuration into a tantivy analyzer. The same analyzer is used
//! to index a value and to analyse the words of a query on that field, which is what makes a
//! query term find the indexed term.

use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, NgramTokenizer, RawTokenizer, RemoveLongFilter, SimpleTokenizer, Stemmer,
    StopWordFilter, TextAnalyzer, TextAnalyzerBuilder, TokenizerManager, WhitespaceTokenizer,
};

use crate::config::{IndexConfig, Stopwords, TextFieldConfig, TokenizerKind};
use crate::error::{Error, Result};

/// Words longer than this (in bytes) are dropped by word tokenizers, as a search for them is
/// almost certainly not what anyone wants and they bloat the term dictionary.
const MAX_WORD_BYTES: usize = 255;

/// The name under which a field's analyzer is registered with tantivy.
pub fn tokenizer_name(field: &TextFieldConfig) -> String {
    format!("hybrid:{}", field.name)
}

/// Name of the analyzer of keyword twins: the raw value, untouched.
pub const KEYWORD_TOKENIZER: &str = "raw";

/// Builds the analyzer of one text field.
pub fn build_analyzer(field: &TextFieldConfig) -> Result<TextAnalyzer> {
    let builder: TextAnalyzerBuilder = match &field.tokenizer {
        TokenizerKind::Default => {
            TextAnalyzer::builder(SimpleTokenizer::default()).filter(RemoveLongFilter::limit(MAX_WORD_BYTES)).dynamic()
        }
        TokenizerKind::Whitespace => TextAnalyzer::builder(WhitespaceTokenizer::default())
            .filter(RemoveLongFilter::limit(MAX_WORD_BYTES))
            .dynamic(),
        TokenizerKind::Raw => TextAnalyzer::builder(RawTokenizer::default()).dynamic(),
        TokenizerKind::Ngram { min_gram, max_gram, prefix_only } => {
            let t = NgramTokenizer::new(*min_gram, *max_gram, *prefix_only).map_err(|e| {
                Error::invalid_parameter(
                    format!("bad ngram settings for field \"{}\": {e}", field.name),
                    "use 1 <= min_gram <= max_gram",
                )
            })?;
            TextAnalyzer::builder(t).dynamic()
        }
    };
    let mut builder = builder;
    if field.lowercase {
        builder = builder.filter_dynamic(LowerCaser);
    }
    if field.ascii_folding {
        builder = builder.filter_dynamic(AsciiFoldingFilter);
    }
    match &field.stopwords {
        Stopwords::None => {}
        Stopwords::Language(lang) => {
            let filter = language(lang).and_then(StopWordFilter::new).ok_or_else(|| {
                Error::invalid_parameter(
                    format!("no built-in stop word list for \"{lang}\""),
                    "use a JSON array of words instead",
                )
            })?;
            builder = builder.filter_dynamic(filter);
        }
        Stopwords::List(words) => {
            builder = builder.filter_dynamic(StopWordFilter::remove(words.iter().cloned()));
        }
    }
    if let Some(lang) = &field.stemmer {
        let l = language(lang).ok_or_else(|| {
            Error::invalid_parameter(
                format!("unknown stemmer language \"{lang}\""),
                "use \"none\" or a Snowball language",
            )
        })?;
        builder = builder.filter_dynamic(Stemmer::new(l));
    }
    Ok(builder.build())
}

/// A tokenizer manager holding every analyzer the index uses.
pub fn tokenizer_manager(config: &IndexConfig) -> Result<TokenizerManager> {
    let manager = TokenizerManager::default();
    for field in &config.text_fields {
        manager.register(&tokenizer_name(field), build_analyzer(field)?);
    }
    Ok(manager)
}

fn language(name: &str) -> Option<Language> {
    Some(match name {
        "arabic" => Language::Arabic,
        "danish" => Language::Danish,
        "dutch" => Language::Dutch,
        "english" => Language::English,
        "finnish" => Language::Finnish,
        "french" => Language::French,
        "german" => Language::German,
        "greek" => Language::Greek,
        "hungarian" => Language::Hungarian,
        "italian" => Language::Italian,
        "norwegian" => Language::Norwegian,
        "portuguese" => Language::Portuguese,
        "romanian" => Language::Romanian,
        "russian" => Language::Russian,
        "spanish" => Language::Spanish,
        "swedish" => Language::Swedish,
        "tamil" => Language::Tamil,
        "turkish" => Language::Turkish,
        _ => return None,
    })
}

/// The tokens an analyzer makes of `text`, with their positions (for tests and query building).
pub fn tokens(analyzer: &mut TextAnalyzer, text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        let t = stream.token();
        out.push((t.position, t.text.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TextFieldConfig;

    fn words(field: &TextFieldConfig, text: &str) -> Vec<String> {
        tokens(&mut build_analyzer(field).unwrap(), text).into_iter().map(|(_, t)| t).collect()
    }

    #[test]
    fn default_lowercases_and_stems_english() {
        let f = TextFieldConfig::default_for("body");
        assert_eq!(words(&f, "Running Databases, quickly!"), vec!["run", "databas", "quick"]);
        assert_eq!(words(&f, "Größe café"), vec!["größe", "café"]);
    }

    #[test]
    fn tokenizer_variants() {
        let mut f = TextFieldConfig::default_for("t");
        f.tokenizer = TokenizerKind::Raw;
        f.lowercase = false;
        f.stemmer = None;
        assert_eq!(words(&f, "Exact Title"), vec!["Exact Title"]);
        f.tokenizer = TokenizerKind::Whitespace;
        f.lowercase = true;
        assert_eq!(words(&f, "C++ and Rust"), vec!["c++", "and", "rust"]);
        f.tokenizer = TokenizerKind::Ngram { min_gram: 2, max_gram: 3, prefix_only: true };
        assert_eq!(words(&f, "Pgx"), vec!["pg", "pgx"]);
        f.tokenizer = TokenizerKind::Default;
        f.stopwords = Stopwords::Language("english".into());
        assert_eq!(words(&f, "the art of war"), vec!["art", "war"]);
        f.stopwords = Stopwords::List(vec!["art".into()]);
        f.ascii_folding = true;
        assert_eq!(words(&f, "the art of café"), vec!["the", "of", "cafe"]);
    }
}
