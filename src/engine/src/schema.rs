//! The tantivy schema of an index, derived from its [`IndexConfig`], and the field handles the
//! rest of the engine uses.

use tantivy::schema::{Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions};

use std::path::Path;

use crate::analyzer::{tokenizer_name, KEYWORD_TOKENIZER};
use crate::config::{IndexConfig, KeyType, KEYWORD_SUFFIX};
use crate::error::{Error, Result};

/// Field holding the heap tuple id (block << 16 | offset) of each document.
pub const CTID_FIELD: &str = "_hybrid_ctid";
/// Field holding the row's key value.
pub const KEY_FIELD: &str = "_hybrid_key";
/// Field holding a hash of the row's indexed values. After a restore from a snapshot, the heap
/// may have moved on: a tuple id can name another row than when it was indexed. Comparing this
/// hash with the heap row's tells (see `text::Document::content_hash`).
pub const HASH_FIELD: &str = "_hybrid_hash";
/// Field listing which text fields of the row are not NULL (one term per field name): `col @@@
/// 'NOT x'` must not match rows where `col` is NULL, as SQL's strict operators never do.
pub const PRESENT_FIELD: &str = "_hybrid_present";

/// Field handles of one index.
#[derive(Debug, Clone)]
pub struct Fields {
    pub ctid: Field,
    pub key: Field,
    pub hash: Field,
    pub present: Field,
    /// In the order of `IndexConfig::text_fields`.
    pub text: Vec<Field>,
    /// Keyword twins, same order; `None` where the field has none.
    pub keyword: Vec<Option<Field>>,
    /// Vector fields, in the order of `IndexConfig::vector_fields` (tantivy custom fields whose
    /// values are the vectors as little-endian f32 bytes; the vector plugin consumes them).
    pub vector: Vec<Field>,
}

/// Type name of the custom fields holding vectors.
pub const VECTOR_TYPE: &str = "hybrid_vector";

/// Builds the schema of an index.
pub fn build_schema(config: &IndexConfig) -> (Schema, Fields) {
    let mut b = Schema::builder();
    let ctid = b.add_u64_field(CTID_FIELD, NumericOptions::default().set_fast());
    let key = match config.key_type {
        KeyType::I64 => b.add_i64_field(KEY_FIELD, NumericOptions::default().set_fast()),
        KeyType::Str => b.add_text_field(KEY_FIELD, TextOptions::default().set_fast("raw")),
    };
    let hash = b.add_u64_field(HASH_FIELD, NumericOptions::default().set_fast());
    let present = b.add_text_field(
        PRESENT_FIELD,
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(KEYWORD_TOKENIZER)
                .set_index_option(IndexRecordOption::Basic)
                .set_fieldnorms(false),
        ),
    );
    let mut text = Vec::new();
    let mut keyword = Vec::new();
    for f in &config.text_fields {
        let indexing = TextFieldIndexing::default()
            .set_tokenizer(&tokenizer_name(f))
            .set_index_option(IndexRecordOption::WithFreqsAndPositions)
            .set_fieldnorms(true);
        text.push(b.add_text_field(&f.name, TextOptions::default().set_indexing_options(indexing)));
        keyword.push(f.keyword.then(|| {
            let indexing = TextFieldIndexing::default()
                .set_tokenizer(KEYWORD_TOKENIZER)
                .set_index_option(IndexRecordOption::Basic)
                .set_fieldnorms(false);
            b.add_text_field(
                &format!("{}{KEYWORD_SUFFIX}", f.name),
                TextOptions::default().set_indexing_options(indexing),
            )
        }));
    }
    let vector = config
        .vector_fields
        .iter()
        .map(|v| {
            b.add_custom_field(
                &v.name,
                VECTOR_TYPE,
                serde_json::json!({"dimensions": v.dimensions, "metric": v.metric}),
            )
        })
        .collect();
    (b.build(), Fields { ctid, key, hash, present, text, keyword, vector })
}

/// Field handles of an existing schema (as read back from the manifest of the index at `at`);
/// a schema without the fields `config` names is a corrupt index.
pub fn fields_of(schema: &Schema, config: &IndexConfig, at: &Path) -> Result<Fields> {
    find_fields(schema, config).ok_or_else(|| Error::Corrupt {
        path: at.to_path_buf(),
        detail: "schema does not match the index configuration".into(),
    })
}

fn find_fields(schema: &Schema, config: &IndexConfig) -> Option<Fields> {
    let ctid = schema.get_field(CTID_FIELD).ok()?;
    let key = schema.get_field(KEY_FIELD).ok()?;
    let present = schema.get_field(PRESENT_FIELD).ok()?;
    let hash = schema.get_field(HASH_FIELD).ok()?;
    let mut text = Vec::new();
    let mut keyword = Vec::new();
    for f in &config.text_fields {
        text.push(schema.get_field(&f.name).ok()?);
        keyword.push(if f.keyword {
            Some(schema.get_field(&format!("{}{KEYWORD_SUFFIX}", f.name)).ok()?)
        } else {
            None
        });
    }
    let mut vector = Vec::new();
    for v in &config.vector_fields {
        vector.push(schema.get_field(&v.name).ok()?);
    }
    Some(Fields { ctid, key, hash, present, text, keyword, vector })
}
