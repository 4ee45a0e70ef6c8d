//! The snapshot manifest: one JSON object per snapshot, at
//! `indexes/<index uuid>/<sequence:020>.json`.
//!
//! ```json
//! {
//!   "format": 1,
//!   "index": {"uuid": "…", "name": "docs_idx", "table": "public.docs", "key": "id"},
//!   "config": { …IndexConfig, as in the folder's meta.json… },
//!   "sequence": 12,
//!   "generation": 12,
//!   "position": {"lsn": 23456789, "timeline": 1, "system_identifier": 7312…},
//!   "created_at": 1767225600,
//!   "num_docs": 100000,
//!   "engine_version": "0.1.0",
//!   "files": [{"name": "meta.json", "sha256": "…", "size": 2931},
//!             {"name": "5f0c…e1.idx", "sha256": "…", "size": 81234}, …]
//! }
//! ```
//!
//! `generation` is the folder's own generation (its `meta.json`); `sequence` orders the
//! snapshots of one index and names the object. They are equal unless the folder's generation
//! went back (a REINDEX builds a new folder starting again at 1): the sequence then continues
//! from the newest snapshot, so "newest" always means "taken last". Files are sorted by name;
//! `meta.json` is one of them, so a restored folder is a complete index.

use serde::{Deserialize, Serialize};

use crate::config::IndexConfig;
use crate::directory::MANIFEST_FILE;
use crate::error::{Error, Result};

use super::{check_index_uuid, is_sha256_hex, IndexIdentity, PgPosition};

/// Current snapshot manifest format. A reader refuses newer formats rather than guess.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// Folder of all blobs under the store's prefix.
pub(crate) const BLOBS: &str = "blobs";
/// Folder of the snapshot manifests under the store's prefix.
pub(crate) const INDEXES: &str = "indexes";
/// Folder where blobs found damaged are moved.
pub(crate) const QUARANTINE: &str = "quarantine";

/// One file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its name in the index folder.
    pub name: String,
    /// Lowercase hex sha256 of its bytes: its blob is `blobs/<sha256>`.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// One snapshot of one index (see the module comment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotManifest {
    pub format: u32,
    pub index: IndexIdentity,
    /// The index's settings, as its folder's manifest has them.
    pub config: IndexConfig,
    /// Orders the snapshots of this index; names the manifest object.
    pub sequence: u64,
    /// The folder's generation that was uploaded.
    pub generation: u64,
    pub position: PgPosition,
    /// Unix seconds when the snapshot was taken.
    pub created_at: i64,
    /// Live documents in the snapshot (informative).
    #[serde(default)]
    pub num_docs: u64,
    /// The hybrid_engine version that wrote it (informative).
    #[serde(default)]
    pub engine_version: String,
    /// Every file of the folder, sorted by name, `meta.json` included.
    pub files: Vec<FileEntry>,
}

impl SnapshotManifest {
    /// Total bytes of the snapshot's files.
    pub fn bytes_total(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The entry of the folder's `meta.json`.
    pub fn meta_entry(&self) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == MANIFEST_FILE)
    }

    /// Serialises the manifest (pretty-printed: a human may read it in a bucket browser).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a snapshot manifest always serialises")
    }

    /// Parses and checks a manifest read from the store object `key`.
    pub fn parse(key: &str, bytes: &[u8]) -> Result<SnapshotManifest> {
        let corrupt = |detail: String| Error::Corrupt { path: key.into(), detail };
        // The format is checked before the rest, so a newer manifest is reported as newer,
        // not as damaged.
        #[derive(Deserialize)]
        struct Head {
            format: u32,
        }
        let head: Head =
            serde_json::from_slice(bytes).map_err(|e| corrupt(format!("snapshot manifest does not parse: {e}")))?;
        if head.format > SNAPSHOT_FORMAT {
            return Err(Error::Store {
                message: format!(
                    "snapshot manifest {key} has format {} but this pg_hybrid reads format {SNAPSHOT_FORMAT} at most",
                    head.format
                ),
                hint: Some("It was written by a newer pg_hybrid: upgrade the extension to use it.".into()),
            });
        }
        let m: SnapshotManifest =
            serde_json::from_slice(bytes).map_err(|e| corrupt(format!("snapshot manifest does not parse: {e}")))?;
        m.check().map_err(corrupt)?;
        Ok(m)
    }

    /// The manifest's own consistency: names that are safe as file names in a folder, one
    /// `meta.json`, no duplicates, well-formed hashes.
    fn check(&self) -> std::result::Result<(), String> {
        if self.format == 0 {
            return Err("format 0 is not a snapshot format".into());
        }
        check_index_uuid(&self.index.uuid).map_err(|e| e.to_string())?;
        let mut names = std::collections::HashSet::new();
        for f in &self.files {
            if !is_safe_file_name(&f.name) {
                return Err(format!("file name {:?} is not a name an index folder holds", f.name));
            }
            if !is_sha256_hex(&f.sha256) {
                return Err(format!("file {} has a malformed sha256 {:?}", f.name, f.sha256));
            }
            if !names.insert(f.name.as_str()) {
                return Err(format!("file {} is listed twice", f.name));
            }
        }
        if !names.contains(MANIFEST_FILE) {
            return Err(format!("the snapshot has no {MANIFEST_FILE}"));
        }
        Ok(())
    }
}

/// A name that can only mean a file directly in the restored folder: no separators, no `..`,
/// not hidden, printable ASCII of the kinds our files use.
pub(crate) fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Object key of a blob, relative to the store's prefix.
pub(crate) fn blob_key(sha256: &str) -> String {
    format!("{BLOBS}/{sha256}")
}

/// Object key of the folder of an index's manifests, relative to the prefix.
pub(crate) fn index_folder(uuid: &str) -> String {
    format!("{INDEXES}/{uuid}")
}

/// Object key of a snapshot manifest, relative to the prefix.
pub(crate) fn manifest_key(uuid: &str, sequence: u64) -> String {
    format!("{INDEXES}/{uuid}/{sequence:020}.json")
}

/// The index uuid and sequence of a manifest key (relative to the prefix), or `None` for any
/// other object.
pub(crate) fn parse_manifest_key(key: &str) -> Option<(String, u64)> {
    let rest = key.strip_prefix(INDEXES)?.strip_prefix('/')?;
    let (uuid, file) = rest.split_once('/')?;
    let seq = file.strip_suffix(".json")?;
    if seq.len() != 20 || !seq.bytes().all(|b| b.is_ascii_digit()) || check_index_uuid(uuid).is_err() {
        return None;
    }
    Some((uuid.to_string(), seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_keys_round_trip() {
        let k = manifest_key("abc-1", 42);
        assert_eq!(k, "indexes/abc-1/00000000000000000042.json");
        assert_eq!(parse_manifest_key(&k), Some(("abc-1".to_string(), 42)));
        assert_eq!(parse_manifest_key("indexes/abc-1/42.json"), None);
        assert_eq!(parse_manifest_key("indexes/a/b/00000000000000000042.json"), None);
        assert_eq!(parse_manifest_key("blobs/00000000000000000042.json"), None);
    }

    #[test]
    fn unsafe_names_are_refused() {
        for bad in ["", "..", "../x", "a/b", ".hidden", "a\0b", "a b"] {
            assert!(!is_safe_file_name(bad), "{bad:?}");
        }
        for good in ["meta.json", "0123456789abcdef0123456789abcdef.idx", "0123456789abcdef0123456789abcdef.7.del"] {
            assert!(is_safe_file_name(good), "{good:?}");
        }
    }

    #[test]
    fn newer_format_is_reported_as_newer() {
        let e = SnapshotManifest::parse("k", br#"{"format": 99}"#).unwrap_err();
        assert!(matches!(e, Error::Store { .. }), "{e}");
        let e = SnapshotManifest::parse("k", b"{not json").unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    }
}
