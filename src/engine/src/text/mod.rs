//! The full-text index of one sidecar folder: writing segments, publishing them, searching them,
//! applying VACUUM's deletions and merging.
//!
//! Documents are identified by the heap tuple id (`ctid`) they were made from; the heap decides
//! visibility, so the index may hold entries for dead rows (until VACUUM) but must never miss a
//! live one.

pub mod maintenance;
pub mod pending;
pub mod reader;
pub mod reconcile;
pub mod snippet;
pub mod writer;

use tantivy::TantivyDocument;

use crate::config::IndexConfig;
use crate::schema::Fields;

/// The value of a row's key column.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyValue {
    I64(i64),
    Str(String),
}

/// One row to index: its tuple id, key, text values (aligned with `IndexConfig::text_fields`)
/// and vectors (aligned with `IndexConfig::vector_fields`); `None` for SQL NULL. Vectors are
/// validated (dimensions, finite, non-zero under cosine) before they get here.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Document {
    pub ctid: u64,
    pub key: KeyValue,
    pub texts: Vec<Option<String>>,
    pub vectors: Vec<Option<Vec<f32>>>,
}

impl Default for KeyValue {
    fn default() -> Self {
        KeyValue::I64(0)
    }
}

impl Document {
    /// Approximate heap size, for bounding pending buffers.
    pub fn approx_bytes(&self) -> usize {
        64 + self.texts.iter().map(|t| t.as_ref().map_or(0, |s| s.len())).sum::<usize>()
            + self.vectors.iter().map(|v| v.as_ref().map_or(0, |v| v.len() * 4)).sum::<usize>()
            + match &self.key {
                KeyValue::I64(_) => 0,
                KeyValue::Str(s) => s.len(),
            }
    }

    /// Checks every vector of the row against its field (dimensions, finite, non-zero under
    /// cosine).
    pub fn check_vectors(&self, config: &IndexConfig) -> crate::Result<()> {
        for (v, field) in self.vectors.iter().zip(&config.vector_fields) {
            if let Some(v) = v {
                field.check(v, "vector")?;
            }
        }
        Ok(())
    }

    /// A 64-bit FNV-1a hash of the key and every indexed value (with their NULLs), stable across
    /// versions and machines: what the index says a tuple id held.
    pub fn content_hash(&self) -> u64 {
        fn eat(h: &mut u64, bytes: &[u8]) {
            for b in bytes {
                *h ^= u64::from(*b);
                *h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        match &self.key {
            KeyValue::I64(v) => eat(&mut h, &v.to_le_bytes()),
            KeyValue::Str(s) => eat(&mut h, s.as_bytes()),
        }
        for t in &self.texts {
            match t {
                None => eat(&mut h, &[0]),
                Some(s) => {
                    eat(&mut h, &[1]);
                    eat(&mut h, &(s.len() as u64).to_le_bytes());
                    eat(&mut h, s.as_bytes());
                }
            }
        }
        for v in &self.vectors {
            match v {
                None => eat(&mut h, &[0]),
                Some(v) => {
                    eat(&mut h, &[1]);
                    for x in v {
                        eat(&mut h, &x.to_le_bytes());
                    }
                }
            }
        }
        h
    }

    pub(crate) fn to_tantivy(&self, config: &IndexConfig, fields: &Fields) -> TantivyDocument {
        let mut doc = TantivyDocument::new();
        doc.add_u64(fields.ctid, self.ctid);
        doc.add_u64(fields.hash, self.content_hash());
        match &self.key {
            KeyValue::I64(v) => doc.add_i64(fields.key, *v),
            KeyValue::Str(s) => doc.add_text(fields.key, s),
        }
        for (i, text) in self.texts.iter().enumerate().take(config.text_fields.len()) {
            if let Some(text) = text {
                doc.add_text(fields.present, &config.text_fields[i].name);
                doc.add_text(fields.text[i], text);
                if let Some(kw) = fields.keyword[i] {
                    doc.add_text(kw, text);
                }
            }
        }
        for (i, vector) in self.vectors.iter().enumerate().take(config.vector_fields.len()) {
            if let Some(v) = vector {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                doc.add_custom(fields.vector[i], &bytes);
            }
        }
        doc
    }
}

/// Packs a heap tuple id into the u64 stored in the index.
pub fn pack_ctid(block: u32, offset: u16) -> u64 {
    (u64::from(block) << 16) | u64::from(offset)
}

/// Unpacks a stored tuple id into (block, offset).
pub fn unpack_ctid(ctid: u64) -> (u32, u16) {
    ((ctid >> 16) as u32, (ctid & 0xffff) as u16)
}
