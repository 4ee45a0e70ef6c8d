//! Listing snapshots, restoring one into a folder, and checking a local folder.
//!
//! A restore downloads every file into a temporary folder next to the target
//! (`.<target name>.restoring.<pid>`: a hidden name ending in the pid, which the extension's
//! sweep removes if the process dies), verifying each file's size and sha256 as it arrives.
//! Only when every file is verified and fsync'd is the folder put in place: an existing target
//! is renamed aside, the new folder renamed in, the parent fsync'd, the old one removed. A
//! failure at any point before that leaves the target exactly as it was.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::directory::MANIFEST_FILE;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::manifest::Manifest;

use super::format::{blob_key, manifest_key, SnapshotManifest, QUARANTINE};
use super::pin::expected_files;
use super::store::SnapshotStore;
use super::{check_index_uuid, IndexIdentity, PgPosition, Phase, Progress};

/// One snapshot of an index, as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotInfo {
    pub sequence: u64,
    /// The folder generation it holds.
    pub generation: u64,
    pub index: IndexIdentity,
    pub position: PgPosition,
    pub created_at: i64,
    pub files: usize,
    pub bytes: u64,
    pub num_docs: u64,
    /// The manifest's key under the store's prefix.
    pub manifest_key: String,
}

impl SnapshotInfo {
    fn of(m: &SnapshotManifest) -> SnapshotInfo {
        SnapshotInfo {
            sequence: m.sequence,
            generation: m.generation,
            index: m.index.clone(),
            position: m.position,
            created_at: m.created_at,
            files: m.files.len(),
            bytes: m.bytes_total(),
            num_docs: m.num_docs,
            manifest_key: manifest_key(&m.index.uuid, m.sequence),
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreReport {
    pub sequence: u64,
    /// The folder generation restored.
    pub generation: u64,
    /// The Postgres position the restored folder covers (catch up from the heap after it).
    pub position: PgPosition,
    pub files: usize,
    pub bytes: u64,
    pub target: PathBuf,
    /// Whether an existing folder was replaced.
    pub replaced: bool,
}

/// A local folder found complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCheck {
    pub generation: u64,
    /// Files the manifest needs (`meta.json` included), all present.
    pub files: usize,
    pub bytes: u64,
    /// Whether the files' tantivy checksums were verified too.
    pub checksums_verified: bool,
}

impl SnapshotStore {
    /// The snapshots of index `uuid`, oldest first. A manifest that cannot be read is an error
    /// naming it (delete it, or let retention remove it).
    pub fn list(&self, uuid: &str) -> Result<Vec<SnapshotInfo>> {
        check_index_uuid(uuid)?;
        let mut out = Vec::new();
        for (_, key) in self.manifest_keys(uuid)? {
            match self.load_manifest(&key) {
                Ok(m) => out.push(SnapshotInfo::of(&m)),
                // Removed by retention since the listing.
                Err(Error::Missing { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The newest snapshot of index `uuid`, if any.
    pub fn newest(&self, uuid: &str) -> Result<Option<SnapshotInfo>> {
        check_index_uuid(uuid)?;
        match self.manifest_keys(uuid)?.last() {
            Some((_, key)) => Ok(Some(SnapshotInfo::of(&*self.load_manifest(key)?))),
            None => Ok(None),
        }
    }

    /// The manifest of snapshot `sequence` of index `uuid`.
    pub fn manifest(&self, uuid: &str, sequence: u64) -> Result<Arc<SnapshotManifest>> {
        check_index_uuid(uuid)?;
        self.load_manifest(&manifest_key(uuid, sequence))
    }

    /// Restores snapshot `sequence` of index `uuid` (the newest when `None`) into the folder
    /// `target`, replacing what is there (see the module comment). Every file is verified
    /// against the manifest's size and sha256; a mismatch is [`Error::Corrupt`] naming the
    /// blob (which is moved to `quarantine/`, so the next snapshot uploads that content
    /// again), a blob missing from the store is [`Error::Missing`]; either way the target is
    /// untouched. `progress` is called per file and per part of a large file and may stop the
    /// restore.
    pub fn restore(
        &self,
        uuid: &str,
        sequence: Option<u64>,
        target: &Path,
        progress: &mut dyn FnMut(Progress) -> Result<()>,
    ) -> Result<RestoreReport> {
        check_index_uuid(uuid)?;
        let key = match sequence {
            Some(s) => manifest_key(uuid, s),
            None => self.manifest_keys(uuid)?.pop().map(|(_, k)| k).ok_or_else(|| Error::Missing {
                path: self.describe(&super::format::index_folder(uuid)).into(),
                detail: format!("index {uuid} has no snapshot"),
            })?,
        };
        let m = self.load_manifest(&key)?;
        let (parent, name) = match (target.parent(), target.file_name().and_then(|n| n.to_str())) {
            (Some(p), Some(n)) if !p.as_os_str().is_empty() => (p, n),
            _ => {
                return Err(Error::invalid_parameter(
                    format!("cannot restore into \"{}\"", target.display()),
                    "The target must be a folder path with a parent folder.",
                ))
            }
        };
        fsutil::create_private_dir(parent)?;
        let tmp = parent.join(format!(".{name}.restoring.{}", std::process::id()));
        fsutil::remove_dir_durably(&tmp)?;
        fsutil::create_private_dir(&tmp)?;
        if let Err(e) = self.download_all(&m, &tmp, progress) {
            let _ = fsutil::remove_dir_durably(&tmp);
            return Err(e);
        }
        let replaced = match fsutil::replace_dir(&tmp, target) {
            Ok(r) => r,
            Err(e) => {
                let _ = fsutil::remove_dir_durably(&tmp);
                return Err(e);
            }
        };
        Ok(RestoreReport {
            sequence: m.sequence,
            generation: m.generation,
            position: m.position,
            files: m.files.len(),
            bytes: m.bytes_total(),
            target: target.to_path_buf(),
            replaced,
        })
    }

    fn download_all(
        &self,
        m: &SnapshotManifest,
        tmp: &Path,
        progress: &mut dyn FnMut(Progress) -> Result<()>,
    ) -> Result<()> {
        let mut p = Progress {
            phase: Phase::Downloading,
            files_done: 0,
            files_total: m.files.len(),
            bytes_done: 0,
            bytes_total: m.bytes_total(),
            file: String::new(),
        };
        for f in &m.files {
            p.file = f.name.clone();
            let key = blob_key(&f.sha256);
            let path = tmp.join(&f.name);
            // A mismatch is downloaded once more before the blob is declared damaged: what
            // arrived may have been damaged on the way rather than in the store.
            let mut verdict = None;
            for _ in 0..2 {
                let base = p.bytes_done;
                let mut on_bytes = |got: u64| {
                    let mut q = p.clone();
                    q.bytes_done = base + got;
                    progress(q)
                };
                match self.get_to_file(&key, &path, f.size, &mut on_bytes)? {
                    None => {
                        return Err(Error::Missing {
                            path: self.describe(&key).into(),
                            detail: format!(
                            "blob of file {} of snapshot {} of index {} is not in the store; restore another snapshot",
                            f.name, m.sequence, m.index.uuid
                        ),
                        })
                    }
                    Some((sha, size)) if sha == f.sha256 && size == f.size => {
                        verdict = None;
                        break;
                    }
                    Some(got) => verdict = Some(got),
                }
            }
            if let Some((sha, size)) = verdict {
                let _ = std::fs::remove_file(&path);
                // Out of the way, so that dedup stops trusting it and the next snapshot sends
                // this content again. Best effort: a read-only credential cannot.
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                let moved = self.rename(&key, &format!("{QUARANTINE}/{}.{stamp}", f.sha256)).is_ok();
                self.verified.lock().clear();
                let got = if size > f.size {
                    format!("more than {} bytes", f.size)
                } else if sha.is_empty() {
                    format!("{size} bytes")
                } else {
                    format!("{size} bytes with sha256 {sha}")
                };
                return Err(Error::Corrupt {
                    path: self.describe(&key).into(),
                    detail: format!(
                        "file {} of snapshot {} of index {} should be {} bytes with sha256 {}, but {got} came{}; restore another snapshot",
                        f.name,
                        m.sequence,
                        m.index.uuid,
                        f.size,
                        f.sha256,
                        if moved { " (moved to quarantine/)" } else { "" }
                    ),
                });
            }
            p.files_done += 1;
            p.bytes_done += f.size;
            progress(p.clone())?;
        }
        // What was written must be an index before it replaces anything.
        verify_local(tmp, false)?;
        fsutil::fsync_dir(tmp)
    }
}

/// Checks that the index folder `dir` is complete: its manifest parses and every file it needs
/// is there; with `checksums`, also that every file's tantivy checksum is right (reads every
/// byte). A missing file is [`Error::Missing`], a bad checksum [`Error::Corrupt`], each naming
/// the files.
pub fn verify_local(dir: &Path, checksums: bool) -> Result<LocalCheck> {
    let m = Manifest::read(dir)?;
    let expected = expected_files(&m);
    let mut missing = Vec::new();
    let mut bytes =
        std::fs::metadata(dir.join(MANIFEST_FILE)).map_err(|e| Error::io("stat", dir.join(MANIFEST_FILE), e))?.len();
    for f in &expected {
        match std::fs::metadata(dir.join(f)) {
            Ok(md) if md.is_file() => bytes += md.len(),
            Ok(_) => missing.push(f.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing.push(f.clone()),
            Err(e) => return Err(Error::io("stat", dir.join(f), e)),
        }
    }
    if !missing.is_empty() {
        return Err(Error::Missing {
            path: dir.to_path_buf(),
            detail: format!(
                "{} file(s) of generation {} are missing: {}",
                missing.len(),
                m.hybrid.generation,
                list(&missing)
            ),
        });
    }
    if checksums {
        let index =
            crate::text::writer::open_tantivy(crate::directory::SidecarDirectory::open(dir)?, &m.hybrid.config)?;
        let mut damaged = Vec::new();
        for f in &expected {
            match index.directory().validate_checksum(Path::new(f)) {
                Ok(true) => {}
                Ok(false) => damaged.push(f.clone()),
                Err(e) => damaged.push(format!("{f} ({e})")),
            }
        }
        if !damaged.is_empty() {
            return Err(Error::Corrupt {
                path: dir.to_path_buf(),
                detail: format!("{} file(s) fail their checksum: {}", damaged.len(), list(&damaged)),
            });
        }
    }
    Ok(LocalCheck { generation: m.hybrid.generation, files: expected.len() + 1, bytes, checksums_verified: checksums })
}

/// The first few names, for a message.
fn list(names: &[String]) -> String {
    let mut s = names.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 10 {
        s.push_str(&format!(" and {} more", names.len() - 10));
    }
    s
}
