//! Snapshots of index folders in object storage: the durability plane of the design.
//!
//! An index folder is uploaded as content-addressed files plus one manifest per snapshot, under
//! a prefix of an object store (`s3://bucket/prefix`, `file:///path`, `memory://`):
//!
//! ```text
//! <prefix>/blobs/<sha256 hex>                       one file's bytes; immutable, shared by every
//!                                                   snapshot (of any index) holding that content
//! <prefix>/indexes/<index uuid>/<sequence:020>.json one snapshot: which blob is which file
//! <prefix>/quarantine/<sha256 hex>.<unix millis>    a blob whose bytes were found not to match
//!                                                   its name (moved aside so it is uploaded again)
//! ```
//!
//! Segment files never change once written, so a snapshot of an index that changed a little
//! sends only its new segments (and the new `meta.json`); the rest is found by a HEAD of its
//! blob. A snapshot manifest is written only after every blob it names is in the store, and
//! only manifests make blobs reachable, so a failure at any point leaves at worst some
//! unreferenced blobs, which garbage collection removes after a grace period.
//!
//! Module map: [`store`] (the object store, its runtime, retries, URL parsing), [`format`](mod@format) (the
//! snapshot manifest), [`pin`] (pinning a generation's files against merges), [`upload`]
//! (snapshot, retention, garbage collection), [`restore`] (list, restore, local verification).
//!
//! Every public function is synchronous. Calls run on the caller's thread except the object
//! store requests themselves, which run on a small tokio runtime owned by the process (see
//! `store`); progress callbacks are always called on the caller's thread.

pub mod format;
pub mod pin;
pub mod restore;
pub mod store;
pub mod upload;

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub use format::{FileEntry, SnapshotManifest, SNAPSHOT_FORMAT};
pub use pin::{sweep_pins, Pin, PINS_DIR};
pub use restore::{verify_local, LocalCheck, RestoreReport, SnapshotInfo};
pub use store::{set_interrupt_check, SnapshotStore, StoreOptions};
pub use upload::{GcReport, Retention, SnapshotReport};

/// Who an index is, as the catalog knows it. Recorded in every snapshot manifest so a snapshot
/// can be matched to its index without the folder (and listed by a human).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexIdentity {
    /// The catalog's uuid of the index (`hybrid.index_registry`); names the snapshot folder
    /// `indexes/<uuid>/`. Letters, digits, `-` and `_` only.
    pub uuid: String,
    /// The index's name when the snapshot was taken (informative: names change).
    pub name: String,
    /// The indexed table, schema-qualified (informative).
    pub table: String,
    /// The key column (informative).
    pub key: String,
}

/// The Postgres position a snapshot covers (WAL `lsn`, `timeline`, `system_identifier`),
/// filled by the caller; the engine only records and returns it. The same type as the position
/// folder manifests record ([`crate::manifest::Position`]).
pub use crate::manifest::Position as PgPosition;

/// What a long operation is doing, for its progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Computing the sha256 of local files.
    Hashing,
    /// Sending files that the store does not have yet (files found there count as done).
    Uploading,
    /// Fetching and verifying files.
    Downloading,
}

/// Progress of a snapshot or a restore. Passed to the caller's callback after each file and
/// after every part of a large file; the callback may return an error to stop (the Postgres
/// side checks for query cancellation there), and that error is returned unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub phase: Phase,
    /// Files finished in this phase.
    pub files_done: usize,
    pub files_total: usize,
    /// Bytes finished in this phase (whole files found in the store count in full).
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// The file being worked on, or the last one finished.
    pub file: String,
}

/// A progress callback that never cancels.
pub fn no_progress(_: Progress) -> Result<()> {
    Ok(())
}

/// The lowercase hex sha256 and the size of a file, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read", path, e)),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex(&hasher.finalize()), size))
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Whether `s` is a sha256 in lowercase hex (a blob name).
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks that an index uuid can name a folder of the store (`indexes/<uuid>/`).
pub(crate) fn check_index_uuid(uuid: &str) -> Result<()> {
    let ok = !uuid.is_empty()
        && uuid.len() <= 64
        && uuid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_parameter(
            format!("\"{uuid}\" is not a valid index uuid for a snapshot"),
            "An index uuid has 1 to 64 letters, digits, '-' or '_' (the catalog's uuid of the index).",
        ))
    }
}

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
