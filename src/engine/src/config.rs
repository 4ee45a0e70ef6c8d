//! The effective configuration of one index: which columns it holds and how each text field is
//! analysed. It is computed once from `CREATE INDEX ... WITH (...)`, stored in the catalog
//! (`hybrid.indexes.settings`) and in every manifest, so a sidecar folder describes itself and a
//! snapshot restored on another machine analyses text exactly as the original did.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::vector::distance::Metric;

/// Suffix of the keyword twin of a text field: `title` is analysed for BM25, `title__kw` holds the
/// raw value for exact filtering.
pub const KEYWORD_SUFFIX: &str = "__kw";

/// How the key column is stored in the index (it identifies rows to callers of `hybrid.search`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyType {
    /// smallint, integer, bigint.
    I64,
    /// text, varchar, uuid and other types kept in their text form.
    Str,
}

/// The word splitter of a text field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TokenizerKind {
    /// Runs of Unicode letters and digits.
    Default,
    /// Runs of non-whitespace characters.
    Whitespace,
    /// The whole value is one token.
    Raw,
    /// Character n-grams of each value.
    Ngram { min_gram: usize, max_gram: usize, prefix_only: bool },
}

/// Which stop words a text field drops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stopwords {
    /// Keep every word.
    None,
    /// The built-in list of a language.
    Language(String),
    /// A list given by the user (compared after lowercasing, if the field lowercases).
    List(Vec<String>),
}

/// How one text column is indexed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextFieldConfig {
    /// The column name; also the field name in queries (`title:rust`).
    pub name: String,
    pub tokenizer: TokenizerKind,
    pub lowercase: bool,
    /// Fold accented Latin characters to ASCII (`café` matches `cafe`).
    pub ascii_folding: bool,
    /// Snowball stemmer language, or none.
    pub stemmer: Option<String>,
    pub stopwords: Stopwords,
    /// Also index the raw value as `<name>__kw` for exact filtering.
    pub keyword: bool,
}

/// How one vector column (`real[]`) is indexed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorFieldConfig {
    /// The column name; also the name of the field.
    pub name: String,
    /// Every vector must have exactly this many elements.
    pub dimensions: usize,
    pub metric: Metric,
    /// HNSW: neighbours per node on the upper layers (twice as many on layer 0).
    pub m: usize,
    /// HNSW: candidate list size while building.
    pub ef_construction: usize,
}

/// Largest dimension accepted (pgvector's limit for indexed vectors is 2,000; we allow more, the
/// cost is linear).
pub const MAX_DIMENSIONS: usize = 16_000;
/// Largest `m` accepted. hnsw_rs aborts the process above 256; pgvector stops at 100.
pub const MAX_M: usize = 100;

/// Everything the engine needs to know about one index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexConfig {
    pub key_field: String,
    pub key_type: KeyType,
    /// Text fields in index column order (the key column is not among them).
    pub text_fields: Vec<TextFieldConfig>,
    /// Vector fields in index column order.
    #[serde(default)]
    pub vector_fields: Vec<VectorFieldConfig>,
}

/// What the access method knows about an index column when the index is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    pub name: String,
    pub kind: ColumnKind,
}

/// The broad type of an index column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// text, varchar, char: analysed.
    Text,
    /// An integer type: can only be the key.
    Integer,
    /// `real[]`: a vector field.
    Vector,
    /// Another type with a text form (uuid...): can only be the key.
    Other,
}

/// Languages with a Snowball stemmer.
pub const STEMMER_LANGUAGES: &[&str] = &[
    "arabic",
    "danish",
    "dutch",
    "english",
    "finnish",
    "french",
    "german",
    "greek",
    "hungarian",
    "italian",
    "norwegian",
    "portuguese",
    "romanian",
    "russian",
    "spanish",
    "swedish",
    "tamil",
    "turkish",
];

/// Languages with a built-in stop word list.
pub const STOPWORD_LANGUAGES: &[&str] = &[
    "danish",
    "dutch",
    "english",
    "finnish",
    "french",
    "german",
    "hungarian",
    "italian",
    "norwegian",
    "portuguese",
    "russian",
    "spanish",
    "swedish",
];

const FIELD_OPTIONS: &[&str] = &[
    "tokenizer",
    "min_gram",
    "max_gram",
    "prefix_only",
    "lowercase",
    "ascii_folding",
    "stemmer",
    "stopwords",
    "keyword",
];

const TOKENIZERS: &str = "default, whitespace, raw, ngram";

const VECTOR_OPTIONS: &[&str] = &["dimensions", "metric", "m", "ef_construction"];

impl IndexConfig {
    /// Validates the columns and options of `CREATE INDEX` and returns the effective config.
    ///
    /// `fields_json` is the `fields` index option: a JSON object from column name to options,
    /// e.g. `{"title": {"tokenizer": "ngram", "min_gram": 2, "max_gram": 3, "keyword": true}}`.
    pub fn from_create_index(
        columns: &[ColumnSpec],
        key_field: Option<&str>,
        fields_json: Option<&str>,
    ) -> Result<IndexConfig> {
        let key_field = key_field.ok_or_else(|| {
            Error::invalid_parameter(
                "index option \"key_field\" is required",
                "name the column that identifies rows, e.g. WITH (key_field = 'id')",
            )
        })?;
        let mut seen = HashSet::new();
        for c in columns {
            if !seen.insert(c.name.as_str()) {
                return Err(Error::invalid_parameter(
                    format!("column \"{}\" appears more than once in the index", c.name),
                    "list each column once",
                ));
            }
        }
        let key = columns.iter().find(|c| c.name == key_field).ok_or_else(|| Error::UnknownField {
            message: format!("key_field \"{key_field}\" is not one of the indexed columns"),
            hint: Some(format!(
                "add \"{key_field}\" to the index's column list, or name one of: {}",
                columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            )),
            position: None,
        })?;
        let key_type = match key.kind {
            ColumnKind::Integer => KeyType::I64,
            ColumnKind::Text | ColumnKind::Other => KeyType::Str,
            ColumnKind::Vector => {
                return Err(Error::WrongType {
                    message: format!("key_field \"{key_field}\" is a vector column"),
                    hint: Some("the key must identify rows: use an integer, text or uuid column".into()),
                })
            }
        };

        let mut per_field: BTreeMap<String, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
        if let Some(json) = fields_json {
            let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
                Error::invalid_parameter(
                    format!("index option \"fields\" is not valid JSON: {e}"),
                    r#"give a JSON object such as '{"title": {"tokenizer": "whitespace"}}'"#,
                )
            })?;
            let obj = value.as_object().ok_or_else(|| {
                Error::invalid_parameter(
                    "index option \"fields\" must be a JSON object",
                    r#"give a JSON object such as '{"title": {"tokenizer": "whitespace"}}'"#,
                )
            })?;
            for (name, opts) in obj {
                let col = columns.iter().find(|c| &c.name == name).ok_or_else(|| Error::UnknownField {
                    message: format!("index option \"fields\" names \"{name}\", which is not an indexed column"),
                    hint: Some("configure only columns listed in CREATE INDEX".into()),
                    position: None,
                })?;
                if !matches!(col.kind, ColumnKind::Text | ColumnKind::Vector) || col.name == key_field {
                    return Err(Error::invalid_parameter(
                        format!("column \"{name}\" is not a text or vector field, so it takes no field options"),
                        "field options apply to text, varchar and real[] columns other than the key",
                    ));
                }
                let opts = opts.as_object().ok_or_else(|| {
                    Error::invalid_parameter(
                        format!("options of field \"{name}\" must be a JSON object"),
                        r#"e.g. {"tokenizer": "raw"}"#,
                    )
                })?;
                per_field.insert(name.clone(), opts.clone());
            }
        }

        let mut text_fields = Vec::new();
        let mut vector_fields = Vec::new();
        for c in columns.iter().filter(|c| c.name != key_field) {
            if c.kind == ColumnKind::Vector {
                let empty = serde_json::Map::new();
                let opts = per_field.get(&c.name).unwrap_or(&empty);
                vector_fields.push(VectorFieldConfig::from_options(&c.name, opts)?);
                continue;
            }
            if c.kind != ColumnKind::Text {
                return Err(Error::WrongType {
                    message: format!("column \"{}\" cannot be indexed as text", c.name),
                    hint: Some(
                        "a hybrid index holds text, varchar and real[] (vector) columns plus one key column".into(),
                    ),
                });
            }
            if c.name.ends_with(KEYWORD_SUFFIX) || c.name.starts_with("_hybrid") {
                return Err(Error::invalid_parameter(
                    format!("column name \"{}\" is reserved", c.name),
                    format!("names ending in \"{KEYWORD_SUFFIX}\" name keyword twins; rename the column or index an expression alias"),
                ));
            }
            let empty = serde_json::Map::new();
            let opts = per_field.get(&c.name).unwrap_or(&empty);
            text_fields.push(TextFieldConfig::from_options(&c.name, opts)?);
        }
        if text_fields.is_empty() && vector_fields.is_empty() {
            return Err(Error::invalid_parameter(
                "a hybrid index needs at least one text or vector column besides the key",
                "list the columns to search, e.g. USING hybrid (id, title, body)",
            ));
        }
        Ok(IndexConfig { key_field: key_field.to_string(), key_type, text_fields, vector_fields })
    }

    /// The text field named `name`, with its position.
    pub fn text_field(&self, name: &str) -> Option<(usize, &TextFieldConfig)> {
        self.text_fields.iter().enumerate().find(|(_, f)| f.name == name)
    }

    /// The vector field named `name`, with its position.
    pub fn vector_field(&self, name: &str) -> Option<(usize, &VectorFieldConfig)> {
        self.vector_fields.iter().enumerate().find(|(_, f)| f.name == name)
    }

    /// Every name a query may use, for error hints.
    pub fn queryable_field_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for f in &self.text_fields {
            names.push(f.name.clone());
            if f.keyword {
                names.push(format!("{}{KEYWORD_SUFFIX}", f.name));
            }
        }
        names
    }
}

impl VectorFieldConfig {
    /// Checks a vector before it is indexed or searched with: the declared dimensions, finite
    /// values, and not all zeros under cosine (it has no direction). `what` names it in messages
    /// ("vector", "query vector").
    pub fn check(&self, v: &[f32], what: &str) -> Result<()> {
        if v.is_empty() {
            return Err(Error::InvalidValue {
                message: format!("{what} for field \"{}\" is empty", self.name),
                hint: Some(format!("give {} values", self.dimensions)),
            });
        }
        if v.len() != self.dimensions {
            return Err(Error::InvalidValue {
                message: format!(
                    "expected {} dimensions, not {} ({what} for field \"{}\")",
                    self.dimensions,
                    v.len(),
                    self.name
                ),
                hint: Some(format!("field \"{}\" was created with \"dimensions\": {}", self.name, self.dimensions)),
            });
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::InvalidValue {
                message: format!(
                    "{what} for field \"{}\" has a non-finite value ({}) at position {}",
                    self.name,
                    v[i],
                    i + 1
                ),
                hint: Some("NaN and infinity have no distance; replace them with finite numbers".into()),
            });
        }
        if self.metric == Metric::Cosine && v.iter().all(|x| *x == 0.0) {
            return Err(Error::InvalidValue {
                message: format!("{what} for field \"{}\" is all zeros, which has no cosine distance", self.name),
                hint: Some("use a non-zero vector, or the l2 metric".into()),
            });
        }
        Ok(())
    }

    fn from_options(name: &str, opts: &serde_json::Map<String, serde_json::Value>) -> Result<VectorFieldConfig> {
        for key in opts.keys() {
            if !VECTOR_OPTIONS.contains(&key.as_str()) {
                return Err(Error::invalid_parameter(
                    format!("unknown option \"{key}\" for vector field \"{name}\""),
                    format!("valid vector field options are: {}", VECTOR_OPTIONS.join(", ")),
                ));
            }
        }
        let int = |key: &str, min: usize, max: usize, default: Option<usize>| -> Result<usize> {
            match opts.get(key) {
                None => default.ok_or_else(|| {
                    Error::invalid_parameter(
                        format!("vector field \"{name}\" needs the option \"{key}\""),
                        format!(r#"e.g. WITH (fields = '{{"{name}": {{"{key}": 384}}}}')"#),
                    )
                }),
                Some(v) => match v.as_u64() {
                    Some(n) if (min as u64..=max as u64).contains(&n) => Ok(n as usize),
                    _ => Err(Error::invalid_parameter(
                        format!("option \"{key}\" of vector field \"{name}\" must be an integer from {min} to {max}, not {v}"),
                        format!("e.g. \"{key}\": {}", default.unwrap_or(min.max(16))),
                    )),
                },
            }
        };
        let dimensions = int("dimensions", 1, MAX_DIMENSIONS, None)?;
        let m = int("m", 2, MAX_M, Some(16))?;
        let ef_construction = int("ef_construction", 4, 1000, Some(64.max(2 * m)))?;
        if ef_construction < 2 * m {
            return Err(Error::invalid_parameter(
                format!(
                    "ef_construction ({ef_construction}) of vector field \"{name}\" must be at least twice m ({m})"
                ),
                "raise ef_construction or lower m",
            ));
        }
        let metric = match opts.get("metric") {
            None => Metric::Cosine,
            Some(serde_json::Value::String(s)) => Metric::parse(s).ok_or_else(|| {
                Error::invalid_parameter(
                    format!("unknown metric \"{s}\" for vector field \"{name}\""),
                    "use \"cosine\" (<=>), \"l2\" (<->) or \"ip\" (negative inner product, <#>)",
                )
            })?,
            Some(other) => {
                return Err(Error::invalid_parameter(
                    format!("option \"metric\" of vector field \"{name}\" must be a string, not {other}"),
                    "use \"cosine\", \"l2\" or \"ip\"",
                ))
            }
        };
        Ok(VectorFieldConfig { name: name.to_string(), dimensions, metric, m, ef_construction })
    }
}

impl TextFieldConfig {
    /// The default analysis of a text field: Unicode words, lowercased, English stems.
    pub fn default_for(name: &str) -> TextFieldConfig {
        TextFieldConfig {
            name: name.to_string(),
            tokenizer: TokenizerKind::Default,
            lowercase: true,
            ascii_folding: false,
            stemmer: Some("english".into()),
            stopwords: Stopwords::None,
            keyword: false,
        }
    }

    fn from_options(name: &str, opts: &serde_json::Map<String, serde_json::Value>) -> Result<TextFieldConfig> {
        for key in opts.keys() {
            if !FIELD_OPTIONS.contains(&key.as_str()) {
                return Err(Error::invalid_parameter(
                    format!("unknown option \"{key}\" for field \"{name}\""),
                    format!("valid field options are: {}", FIELD_OPTIONS.join(", ")),
                ));
            }
        }
        let get_bool = |key: &str| -> Result<Option<bool>> {
            match opts.get(key) {
                None => Ok(None),
                Some(serde_json::Value::Bool(b)) => Ok(Some(*b)),
                Some(other) => Err(Error::invalid_parameter(
                    format!("option \"{key}\" of field \"{name}\" must be true or false, not {other}"),
                    format!("write \"{key}\": true or \"{key}\": false"),
                )),
            }
        };
        let get_usize = |key: &str| -> Result<Option<usize>> {
            match opts.get(key) {
                None => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(n) if (1..=64).contains(&n) => Ok(Some(n as usize)),
                    _ => Err(Error::invalid_parameter(
                        format!("option \"{key}\" of field \"{name}\" must be an integer from 1 to 64, not {v}"),
                        format!("e.g. \"{key}\": 3"),
                    )),
                },
            }
        };
        let tokenizer_name = match opts.get("tokenizer") {
            None => "default".to_string(),
            Some(serde_json::Value::String(s)) => s.to_lowercase(),
            Some(other) => {
                return Err(Error::invalid_parameter(
                    format!("option \"tokenizer\" of field \"{name}\" must be a string, not {other}"),
                    format!("one of: {TOKENIZERS}"),
                ))
            }
        };
        let ngram_opts = ["min_gram", "max_gram", "prefix_only"];
        if tokenizer_name != "ngram" {
            if let Some(k) = ngram_opts.iter().find(|k| opts.contains_key(**k)) {
                return Err(Error::invalid_parameter(
                    format!("option \"{k}\" of field \"{name}\" needs \"tokenizer\": \"ngram\""),
                    "set the ngram tokenizer, or drop the option",
                ));
            }
        }
        let tokenizer = match tokenizer_name.as_str() {
            "default" | "unicode" | "simple" => TokenizerKind::Default,
            "whitespace" => TokenizerKind::Whitespace,
            "raw" | "keyword" => TokenizerKind::Raw,
            "ngram" => {
                let min_gram = get_usize("min_gram")?.unwrap_or(2);
                let max_gram = get_usize("max_gram")?.unwrap_or(3);
                if min_gram > max_gram {
                    return Err(Error::invalid_parameter(
                        format!("min_gram ({min_gram}) of field \"{name}\" is greater than max_gram ({max_gram})"),
                        "make min_gram less than or equal to max_gram",
                    ));
                }
                let prefix_only = get_bool("prefix_only")?.unwrap_or(false);
                TokenizerKind::Ngram { min_gram, max_gram, prefix_only }
            }
            other => {
                return Err(Error::invalid_parameter(
                    format!("unknown tokenizer \"{other}\" for field \"{name}\""),
                    format!("valid tokenizers are: {TOKENIZERS}"),
                ))
            }
        };
        // Defaults depend on the tokenizer: only word tokenizers stem by default.
        let (default_lower, default_stem) = match tokenizer {
            TokenizerKind::Default => (true, Some("english".to_string())),
            TokenizerKind::Whitespace | TokenizerKind::Ngram { .. } => (true, None),
            TokenizerKind::Raw => (false, None),
        };
        let lowercase = get_bool("lowercase")?.unwrap_or(default_lower);
        let ascii_folding = get_bool("ascii_folding")?.unwrap_or(false);
        let keyword = get_bool("keyword")?.unwrap_or(false);
        let stemmer = match opts.get("stemmer") {
            None => default_stem,
            Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Bool(false)) => None,
            Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("none") => None,
            Some(serde_json::Value::String(s)) => {
                let lang = s.to_lowercase();
                if !STEMMER_LANGUAGES.contains(&lang.as_str()) {
                    return Err(Error::invalid_parameter(
                        format!("unknown stemmer language \"{s}\" for field \"{name}\""),
                        format!("use \"none\" or one of: {}", STEMMER_LANGUAGES.join(", ")),
                    ));
                }
                Some(lang)
            }
            Some(other) => {
                return Err(Error::invalid_parameter(
                    format!("option \"stemmer\" of field \"{name}\" must be a language name or \"none\", not {other}"),
                    format!("use \"none\" or one of: {}", STEMMER_LANGUAGES.join(", ")),
                ))
            }
        };
        let stopwords = match opts.get("stopwords") {
            None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => {
                Stopwords::None
            }
            Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("none") => Stopwords::None,
            Some(serde_json::Value::String(s)) => {
                let lang = s.to_lowercase();
                if !STOPWORD_LANGUAGES.contains(&lang.as_str()) {
                    return Err(Error::invalid_parameter(
                        format!("no built-in stop word list for \"{s}\" (field \"{name}\")"),
                        format!(
                            "use \"none\", a JSON array of words, or one of: {}",
                            STOPWORD_LANGUAGES.join(", ")
                        ),
                    ));
                }
                Stopwords::Language(lang)
            }
            Some(serde_json::Value::Array(words)) => {
                let mut list = Vec::new();
                for w in words {
                    match w.as_str() {
                        Some(s) => list.push(if lowercase { s.to_lowercase() } else { s.to_string() }),
                        None => {
                            return Err(Error::invalid_parameter(
                                format!("stop words of field \"{name}\" must be strings, not {w}"),
                                r#"e.g. "stopwords": ["the", "a"]"#,
                            ))
                        }
                    }
                }
                Stopwords::List(list)
            }
            Some(other) => {
                return Err(Error::invalid_parameter(
                    format!("option \"stopwords\" of field \"{name}\" must be a language, an array of words or \"none\", not {other}"),
                    r#"e.g. "stopwords": "english" or "stopwords": ["the", "a"]"#,
                ))
            }
        };
        Ok(TextFieldConfig { name: name.to_string(), tokenizer, lowercase, ascii_folding, stemmer, stopwords, keyword })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<ColumnSpec> {
        vec![
            ColumnSpec { name: "id".into(), kind: ColumnKind::Integer },
            ColumnSpec { name: "title".into(), kind: ColumnKind::Text },
            ColumnSpec { name: "body".into(), kind: ColumnKind::Text },
        ]
    }

    #[test]
    fn defaults_are_english_words() {
        let c = IndexConfig::from_create_index(&cols(), Some("id"), None).unwrap();
        assert_eq!(c.key_type, KeyType::I64);
        assert_eq!(c.text_fields.len(), 2);
        assert!(c.vector_fields.is_empty());
        assert_eq!(c.text_fields[0], TextFieldConfig::default_for("title"));
    }

    #[test]
    fn per_field_options() {
        let c = IndexConfig::from_create_index(
            &cols(),
            Some("id"),
            Some(
                r#"{"title": {"tokenizer": "ngram", "min_gram": 2, "max_gram": 4, "keyword": true},
                     "body": {"stemmer": "none", "stopwords": ["The", "a"]}}"#,
            ),
        )
        .unwrap();
        assert_eq!(c.text_fields[0].tokenizer, TokenizerKind::Ngram { min_gram: 2, max_gram: 4, prefix_only: false });
        assert!(c.text_fields[0].keyword);
        assert_eq!(c.text_fields[1].stemmer, None);
        assert_eq!(c.text_fields[1].stopwords, Stopwords::List(vec!["the".into(), "a".into()]));
        assert_eq!(c.queryable_field_names(), vec!["title", "title__kw", "body"]);
    }

    #[test]
    fn errors_say_what_to_fix() {
        let e = IndexConfig::from_create_index(&cols(), None, None).unwrap_err();
        assert!(matches!(e, Error::InvalidParameter { .. }));
        let e = IndexConfig::from_create_index(&cols(), Some("nope"), None).unwrap_err();
        assert!(matches!(e, Error::UnknownField { .. }), "{e}");
        let e = IndexConfig::from_create_index(&cols(), Some("id"), Some("{bad")).unwrap_err();
        assert!(e.to_string().contains("not valid JSON"));
        let e = IndexConfig::from_create_index(&cols(), Some("id"), Some(r#"{"body": {"tokenizer": "klingon"}}"#))
            .unwrap_err();
        assert!(e.to_string().contains("unknown tokenizer"));
        assert!(e.hint().unwrap().contains("whitespace"));
        let e = IndexConfig::from_create_index(&cols(), Some("id"), Some(r#"{"body": {"min_gram": 2}}"#)).unwrap_err();
        assert!(e.to_string().contains("needs \"tokenizer\": \"ngram\""));
        let e =
            IndexConfig::from_create_index(&cols(), Some("id"), Some(r#"{"id": {"tokenizer": "raw"}}"#)).unwrap_err();
        assert!(e.to_string().contains("not a text or vector field"));
        let e = IndexConfig::from_create_index(&cols(), Some("id"), Some(r#"{"body": {"stemmer": "elvish"}}"#))
            .unwrap_err();
        assert!(e.to_string().contains("unknown stemmer"));
        let e = IndexConfig::from_create_index(&cols(), Some("id"), Some(r#"{"body": {"colour": 1}}"#)).unwrap_err();
        assert!(e.to_string().contains("unknown option"));
        let mut c = cols();
        c.push(ColumnSpec { name: "n".into(), kind: ColumnKind::Integer });
        let e = IndexConfig::from_create_index(&c, Some("id"), None).unwrap_err();
        assert!(e.to_string().contains("cannot be indexed as text"));
    }

    #[test]
    fn vector_fields() {
        let mut cols = cols();
        cols.push(ColumnSpec { name: "embedding".into(), kind: ColumnKind::Vector });
        let e = IndexConfig::from_create_index(&cols, Some("id"), None).unwrap_err();
        assert!(e.to_string().contains("needs the option \"dimensions\""), "{e}");
        let c = IndexConfig::from_create_index(
            &cols,
            Some("id"),
            Some(r#"{"embedding": {"dimensions": 50, "metric": "l2", "m": 8}}"#),
        )
        .unwrap();
        let v = &c.vector_fields[0];
        assert_eq!((v.dimensions, v.metric, v.m, v.ef_construction), (50, Metric::L2, 8, 64));
        for bad in [
            r#"{"embedding": {"dimensions": 0}}"#,
            r#"{"embedding": {"dimensions": 3, "m": 300}}"#,
            r#"{"embedding": {"dimensions": 3, "m": 16, "ef_construction": 10}}"#,
            r#"{"embedding": {"dimensions": 3, "metric": "manhattan"}}"#,
            r#"{"embedding": {"dimensions": 3, "tokenizer": "raw"}}"#,
        ] {
            let e = IndexConfig::from_create_index(&cols, Some("id"), Some(bad)).unwrap_err();
            assert!(matches!(e, Error::InvalidParameter { .. }), "{bad}: {e}");
        }
        // A vector-only index is fine.
        let only = vec![cols[0].clone(), cols[3].clone()];
        assert!(IndexConfig::from_create_index(&only, Some("id"), Some(r#"{"embedding": {"dimensions": 3}}"#)).is_ok());
    }

    #[test]
    fn round_trips_through_json() {
        let c =
            IndexConfig::from_create_index(&cols(), Some("id"), Some(r#"{"title": {"tokenizer": "raw"}}"#)).unwrap();
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<IndexConfig>(&s).unwrap(), c);
    }
}
