//! Pinning one generation of an index folder while it is uploaded.
//!
//! A merge or a deletion pass publishes a new manifest and then removes the files only the old
//! one named (`manifest::collect_garbage`). An upload of the old generation would then find its
//! files gone. So the upload first hard-links every file of the current generation, `meta.json`
//! included, into `pins/<pid>-<n>/` under the publish lock (no publish can happen in between,
//! so the links are one consistent generation), and reads only from there. Hard links share the
//! inode: nothing is copied, and the space of merged-away files is freed when the pin goes.
//! `collect_garbage` only looks at the folder's top-level files, so it never sees the pins.
//!
//! A pin is removed when dropped; pins of processes that died are removed by [`sweep_pins`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::directory::MANIFEST_FILE;
use crate::error::{Error, Result};
use crate::fsutil::{self, FileLock};
use crate::manifest::{Manifest, PUBLISH_LOCK};

/// The folder of pins inside an index folder.
pub const PINS_DIR: &str = "pins";

/// Extensions of the files tantivy writes for every segment (its built-in components); the
/// index's custom ones (`.hvec`) come from the manifest.
/// (tantivy 0.27's built-in plugins: inverted index, fast fields, store.)
const SEGMENT_EXTENSIONS: &[&str] = &["idx", "pos", "term", "fieldnorm", "fast", "store"];

/// The files `m` needs in its folder: every component of every segment, each segment's delete
/// file, and the custom components the index records (vector files). `meta.json` not included.
pub(crate) fn expected_files(m: &Manifest) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for s in &m.segments {
        let prefix = s.file_prefix();
        for c in SEGMENT_EXTENSIONS {
            out.insert(format!("{prefix}.{c}"));
        }
        for ext in &m.persisted_custom_extensions {
            out.insert(format!("{prefix}.{ext}"));
        }
        if let Some(del) = s.delete_file() {
            out.insert(del);
        }
    }
    out
}

static PIN_SEQ: AtomicU64 = AtomicU64::new(0);

/// One generation of an index folder, held in place (see the module comment).
#[derive(Debug)]
pub struct Pin {
    folder: PathBuf,
    manifest: Manifest,
    /// Names of the pinned files, sorted, `meta.json` included.
    files: Vec<String>,
}

impl Pin {
    /// Pins the current generation of the index in `dir`. Fails with [`Error::Missing`] if a
    /// file the manifest needs is not there (a damaged folder must not become a snapshot).
    pub fn create(dir: &Path) -> Result<Pin> {
        // Checked first: creating the pin folder would otherwise create the index folder.
        if !dir.join(MANIFEST_FILE).is_file() {
            return Err(Error::Missing { path: dir.to_path_buf(), detail: format!("{MANIFEST_FILE} not found") });
        }
        let folder =
            dir.join(PINS_DIR).join(format!("{}-{}", std::process::id(), PIN_SEQ.fetch_add(1, Ordering::Relaxed)));
        fsutil::remove_dir_durably(&folder)?;
        fsutil::create_private_dir(&folder)?;
        match Self::link(dir, &folder) {
            Ok((manifest, files)) => Ok(Pin { folder, manifest, files }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&folder);
                Err(e)
            }
        }
    }

    fn link(dir: &Path, folder: &Path) -> Result<(Manifest, Vec<String>)> {
        // Held only for a read, a directory listing and some link() calls.
        let _lock = FileLock::lock(&dir.join(PUBLISH_LOCK))?;
        let manifest = Manifest::read(dir)?;
        let mut names: BTreeSet<String> =
            manifest.live_files(dir)?.into_iter().filter_map(|p| p.to_str().map(str::to_string)).collect();
        let missing: Vec<String> = expected_files(&manifest).into_iter().filter(|f| !names.contains(f)).collect();
        if !missing.is_empty() {
            return Err(Error::Missing {
                path: dir.to_path_buf(),
                detail: format!("files of the current generation are missing: {}", missing.join(", ")),
            });
        }
        names.insert(MANIFEST_FILE.to_string());
        for name in &names {
            let (from, to) = (dir.join(name), folder.join(name));
            std::fs::hard_link(&from, &to).map_err(|e| Error::io("link", &from, e))?;
        }
        // No fsync: a pin only matters while its process lives; after a crash it is swept.
        Ok((manifest, names.into_iter().collect()))
    }

    /// The pin folder; the pinned files are directly in it.
    pub fn dir(&self) -> &Path {
        &self.folder
    }

    /// The pinned generation's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The pinned files' names, sorted, `meta.json` included.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// The path of pinned file `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.folder.join(name)
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// Removes pins whose process is gone (left by a crash or a `kill -9` during an upload).
/// Returns how many were removed.
pub fn sweep_pins(dir: &Path) -> Result<usize> {
    Ok(fsutil::remove_dead_process_folders(&dir.join(PINS_DIR)))
}
