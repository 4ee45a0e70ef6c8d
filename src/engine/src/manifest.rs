//! The manifest: the one file that says what an index consists of.
//!
//! It is tantivy's `meta.json` (so tantivy opens the index as it is) with one extra top-level
//! member, `hybrid`, that tantivy ignores: our generation counter and the index configuration.
//! A new state of the index is published by replacing the file atomically under the publish
//! lock; readers notice the change by its generation. Everything the manifest names is immutable.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tantivy::index::SegmentId;
use tantivy::schema::Schema;
use tantivy::IndexSettings;

use crate::config::IndexConfig;
use crate::directory::MANIFEST_FILE;
use crate::error::{Error, Result};
use crate::fsutil::{self, FileLock};

/// Held briefly while a new manifest is written (segment appends, delete and merge results).
pub const PUBLISH_LOCK: &str = "publish.lock";
/// Held by VACUUM's deletion pass and by merges, which must not interleave with each other.
pub const MAINTENANCE_LOCK: &str = "maintenance.lock";
/// Per-writer folders where segments are written before they are published.
pub const STAGING_DIR: &str = "staging";

/// Current manifest format.
pub const FORMAT: u32 = 1;

/// The deletions recorded for a segment (tantivy's `.del` file of that opstamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteEntry {
    pub num_deleted_docs: u32,
    pub opstamp: u64,
}

/// One text segment, as tantivy records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    pub segment_id: SegmentId,
    pub max_doc: u32,
    pub deletes: Option<DeleteEntry>,
}

impl SegmentEntry {
    /// Live documents.
    pub fn num_docs(&self) -> u32 {
        self.max_doc - self.deletes.map_or(0, |d| d.num_deleted_docs)
    }

    /// Deleted documents still stored.
    pub fn num_deleted(&self) -> u32 {
        self.deletes.map_or(0, |d| d.num_deleted_docs)
    }

    /// The file-name prefix shared by all files of the segment.
    pub fn file_prefix(&self) -> String {
        self.segment_id.uuid_string()
    }

    /// The delete file this entry refers to, if any.
    pub fn delete_file(&self) -> Option<String> {
        self.deletes.map(|d| format!("{}.{}.del", self.file_prefix(), d.opstamp))
    }
}

/// Which database object a folder belongs to, so that an orphaned folder can be recognised
/// without trusting its name alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// OID of the index relation.
    pub index_oid: u32,
    /// The transaction that created the folder; while it runs, the folder is not an orphan.
    pub created_xid: u64,
}

/// Where the database server's write-ahead log was when a manifest was published: its flush
/// position, timeline and system identifier. A folder whose position is ahead of the server's
/// (a data directory restored to an earlier point in time, a base backup) or from another
/// system cannot be trusted: its tuple ids may name other rows now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub lsn: u64,
    pub timeline: u32,
    pub system_identifier: u64,
}

/// Our part of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HybridMeta {
    pub format: u32,
    /// Incremented by every publish.
    pub generation: u64,
    pub config: IndexConfig,
    #[serde(default)]
    pub identity: Identity,
    /// The server's position when this manifest was published (absent without a server, as in
    /// the engine's own tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// The pending log of small commits not yet written as segments (see `text::pending`).
    /// Absent in manifests written before it existed: log 0 from its start.
    #[serde(default)]
    pub log: LogState,
}

/// Where the pending log's records not yet written as segments start (an offset in the log's
/// stream, see `text::pending`). Every record before `from` is in a segment of this manifest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogState {
    pub from: u64,
}

static POSITION_SOURCE: once_cell::sync::OnceCell<fn() -> Option<Position>> = once_cell::sync::OnceCell::new();

/// Registers how to read the server's current position; every manifest written afterwards
/// records it. The extension registers it once per process; the source may answer `None`
/// (on a thread that must not call the server).
pub fn set_position_source(source: fn() -> Option<Position>) {
    let _ = POSITION_SOURCE.set(source);
}

/// The server's current position, if a source is registered and answers.
pub fn current_position() -> Option<Position> {
    POSITION_SOURCE.get().and_then(|f| f())
}

/// The whole manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(default)]
    pub index_settings: IndexSettings,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub persisted_custom_extensions: Vec<String>,
    pub segments: Vec<SegmentEntry>,
    pub schema: Schema,
    pub opstamp: u64,
    pub hybrid: HybridMeta,
}

impl Manifest {
    /// The manifest of an empty index.
    ///
    /// An index with vector fields records the vector plugin's file extension: tantivy then
    /// refuses to write or merge it without the plugin registered, so no segment can lose its
    /// vectors, and its garbage collection and checksum validation cover the `.hvec` files.
    /// An index without vector fields records nothing (its manifest is as before vectors).
    pub fn empty(config: IndexConfig, schema: Schema, identity: Identity) -> Manifest {
        let persisted_custom_extensions = if config.vector_fields.is_empty() {
            Vec::new()
        } else {
            vec![crate::vector::segment::EXTENSION.to_string()]
        };
        Manifest {
            index_settings: IndexSettings::default(),
            persisted_custom_extensions,
            segments: Vec::new(),
            schema,
            opstamp: 0,
            hybrid: HybridMeta {
                format: FORMAT,
                generation: 0,
                config,
                identity,
                position: None,
                log: LogState::default(),
            },
        }
    }

    /// Reads the manifest of the index in `dir`.
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Missing { path: dir.to_path_buf(), detail: format!("{MANIFEST_FILE} not found") }
            } else {
                Error::io("read", &path, e)
            }
        })?;
        Self::parse(dir, &bytes)
    }

    /// Parses manifest bytes read from `dir`.
    pub fn parse(dir: &Path, bytes: &[u8]) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
            path: dir.join(MANIFEST_FILE),
            detail: format!("manifest does not parse: {e}"),
        })?;
        if m.hybrid.format != FORMAT {
            return Err(Error::Corrupt {
                path: dir.join(MANIFEST_FILE),
                detail: format!("manifest format {} is not supported (expected {FORMAT})", m.hybrid.format),
            });
        }
        Ok(m)
    }

    /// Serialises the manifest.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serialises")
    }

    /// Writes the manifest durably into `dir`, stamped with the server's current position.
    /// Callers hold the publish lock (or own the folder, during a build).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let mut m = self.clone();
        if let Some(p) = current_position() {
            m.hybrid.position = Some(p);
        }
        fsutil::write_atomic(&dir.join(MANIFEST_FILE), &m.to_bytes())
    }

    /// Live documents over all segments.
    pub fn num_docs(&self) -> u64 {
        self.segments.iter().map(|s| u64::from(s.num_docs())).sum()
    }

    /// Deleted-but-stored documents over all segments.
    pub fn num_deleted(&self) -> u64 {
        self.segments.iter().map(|s| u64::from(s.num_deleted())).sum()
    }

    /// Whether `file` (a name in the index folder) belongs to this manifest's state.
    pub fn references(&self, file: &str) -> bool {
        self.segments.iter().any(|s| {
            let prefix = s.file_prefix();
            match file.strip_prefix(&prefix) {
                None => false,
                Some(rest) if rest.ends_with(".del") => s.delete_file().as_deref() == Some(file),
                Some(rest) => rest.starts_with('.'),
            }
        })
    }

    /// The files of the index folder this manifest names (segment files and delete files).
    pub fn live_files(&self, dir: &Path) -> Result<BTreeSet<PathBuf>> {
        let mut out = BTreeSet::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
            let entry = entry.map_err(|e| Error::io("list", dir, e))?;
            if let Some(name) = entry.file_name().to_str() {
                if self.references(name) {
                    out.insert(PathBuf::from(name));
                }
            }
        }
        Ok(out)
    }
}

/// Publishes a change to the index in `dir`: under the publish lock, reads the current manifest,
/// lets `change` edit it (and move files into place), bumps the generation and writes it.
/// Returns the new manifest.
pub fn publish<F>(dir: &Path, change: F) -> Result<Manifest>
where
    F: FnOnce(&mut Manifest) -> Result<()>,
{
    publish_if(dir, |m| change(m).map(|()| true)).map(|m| m.expect("change always asks to publish"))
}

/// Like [`publish`], but `change` may decline (return false after looking at the current
/// manifest), in which case nothing is written and `None` is returned.
pub fn publish_if<F>(dir: &Path, change: F) -> Result<Option<Manifest>>
where
    F: FnOnce(&mut Manifest) -> Result<bool>,
{
    let _lock = FileLock::lock(&dir.join(PUBLISH_LOCK))?;
    let mut m = Manifest::read(dir)?;
    if !change(&mut m)? {
        return Ok(None);
    }
    m.hybrid.generation += 1;
    m.write(dir)?;
    Ok(Some(m))
}

/// Removes files of the index folder that the current manifest does not name (left by merges,
/// by delete passes, or by a crash between writing files and publishing them). Runs under the
/// publish lock, so no publish is between moving its files in and naming them. Staged segments
/// live in their own folder and are not touched. Returns the number of files removed.
///
/// A reader that read an older manifest and had not yet opened its files will fail to open them
/// and retry with the new manifest (see `reader`); a reader that already mapped them keeps them.
pub fn collect_garbage(dir: &Path) -> Result<usize> {
    let _lock = FileLock::lock(&dir.join(PUBLISH_LOCK))?;
    let m = Manifest::read(dir)?;
    fsutil::remove_files_where(dir, |name| is_segment_file(name) && !m.references(name))
}

/// Segment files are named `<32 hex digits>.<ext>`; everything else in the folder is ours.
fn is_segment_file(name: &str) -> bool {
    let (stem, _) = name.split_once('.').unwrap_or((name, ""));
    stem.len() == 32 && stem.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_only_named_files() {
        let id = SegmentId::generate_random();
        let p = id.uuid_string();
        let config = crate::config::IndexConfig {
            key_field: "id".into(),
            key_type: crate::config::KeyType::I64,
            text_fields: vec![crate::config::TextFieldConfig::default_for("body")],
            vector_fields: Vec::new(),
        };
        let (schema, _) = crate::schema::build_schema(&config);
        let mut m = Manifest::empty(config, schema, Identity::default());
        m.segments.push(SegmentEntry {
            segment_id: id,
            max_doc: 3,
            deletes: Some(DeleteEntry { num_deleted_docs: 1, opstamp: 7 }),
        });
        assert!(m.references(&format!("{p}.idx")));
        assert!(m.references(&format!("{p}.7.del")));
        assert!(!m.references(&format!("{p}.6.del")));
        assert!(!m.references(&format!("{}.idx", SegmentId::generate_random().uuid_string())));
        assert!(is_segment_file(&format!("{p}.idx")));
        assert!(!is_segment_file("meta.json"));
        assert!(!is_segment_file("publish.lock"));
        let back = Manifest::parse(Path::new("/x"), &m.to_bytes()).unwrap();
        assert_eq!(back.segments, m.segments);
        assert_eq!(back.hybrid, m.hybrid);
    }
}
