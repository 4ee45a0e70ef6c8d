//! The tantivy `Directory` over one sidecar folder.
//!
//! It differs from tantivy's `MmapDirectory` in three ways, each because many Postgres backends
//! share one folder while tantivy assumes a single writer process:
//! - `.managed.json` is never written or read. tantivy keeps its own list of files for garbage
//!   collection there; with several writer processes that list would race. Our manifest names
//!   every live file and our own collector works from it.
//! - `meta.json` (our manifest, which tantivy reads for the segment list) can be served from
//!   memory. A staging index that only writes one segment reads the live manifest through it
//!   without copying it to disk.
//! - Atomic writes are durable: the file and its folder are fsync'd before returning.
//! - Segments that exist only in this process's memory (the pending log's rows, see
//!   `text::pending`) can be laid over the folder: their files are answered from memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use tantivy::directory::error::{DeleteError, LockError, OpenDirectoryError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    DirectoryLock, FileHandle, Lock, MmapDirectory, RamDirectory, WatchCallback, WatchHandle, WritePtr, META_LOCK,
};
use tantivy::Directory;

use crate::error::{Error, Result};
use crate::fsutil;

/// The manifest file. tantivy reads the segment list from a file of this name.
pub const MANIFEST_FILE: &str = "meta.json";
const MANAGED_FILE: &str = ".managed.json";

/// A tantivy directory over a sidecar folder (see the module comment).
#[derive(Clone, Debug)]
pub struct SidecarDirectory {
    inner: MmapDirectory,
    root: PathBuf,
    /// Shared by clones, so a reader can swap in the manifest it just read and reload.
    manifest_override: Arc<RwLock<Option<Arc<Vec<u8>>>>>,
    /// In-memory segments by file-name prefix (shared by clones).
    overlay: Arc<RwLock<Vec<(String, RamDirectory)>>>,
}

impl SidecarDirectory {
    /// Opens the folder at `root`, which must exist.
    pub fn open(root: &Path) -> Result<SidecarDirectory> {
        let inner = MmapDirectory::open(root).map_err(|e| match e {
            OpenDirectoryError::DoesNotExist(_) => {
                Error::Missing { path: root.to_path_buf(), detail: "the folder does not exist".into() }
            }
            other => Error::io("open", root, std::io::Error::other(other.to_string())),
        })?;
        Ok(SidecarDirectory {
            inner,
            root: root.to_path_buf(),
            manifest_override: Arc::default(),
            overlay: Arc::default(),
        })
    }

    /// Opens `root` but answers reads of the manifest with `manifest` instead of the file.
    pub fn with_manifest(root: &Path, manifest: Vec<u8>) -> Result<SidecarDirectory> {
        let d = Self::open(root)?;
        d.set_manifest(manifest);
        Ok(d)
    }

    /// From now on, answer reads of the manifest with `manifest` (this and all clones).
    pub fn set_manifest(&self, manifest: Vec<u8>) {
        *self.manifest_override.write() = Some(Arc::new(manifest));
    }

    /// From now on, answer the files of these in-memory segments (by file-name prefix) from
    /// memory (this and all clones).
    pub fn set_overlay(&self, segments: Vec<(String, RamDirectory)>) {
        *self.overlay.write() = segments;
    }

    /// The folder's path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn in_memory(&self, path: &Path) -> Option<RamDirectory> {
        let name = path.to_str()?;
        let (stem, _) = name.split_once('.')?;
        self.overlay.read().iter().find(|(prefix, _)| prefix == stem).map(|(_, d)| d.clone())
    }
}

fn is(path: &Path, name: &str) -> bool {
    path.as_os_str() == name
}

impl Directory for SidecarDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        if let Some(ram) = self.in_memory(path) {
            return ram.get_file_handle(path);
        }
        self.inner.get_file_handle(path)
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        self.inner.delete(path)
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        if is(path, MANAGED_FILE) {
            return Ok(false);
        }
        if is(path, MANIFEST_FILE) && self.manifest_override.read().is_some() {
            return Ok(true);
        }
        if let Some(ram) = self.in_memory(path) {
            return ram.exists(path);
        }
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        self.inner.open_write(path)
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        if is(path, MANAGED_FILE) {
            return Err(OpenReadError::FileDoesNotExist(path.to_path_buf()));
        }
        if is(path, MANIFEST_FILE) {
            if let Some(m) = self.manifest_override.read().as_ref() {
                return Ok(m.as_ref().clone());
            }
        }
        self.inner.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        if is(path, MANAGED_FILE) {
            return Ok(());
        }
        fsutil::write_atomic(&self.root.join(path), data).map_err(|e| std::io::Error::other(e.to_string()))
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        // tantivy takes the meta lock to keep its garbage collector from deleting files while a
        // reader opens them. Our collector runs under our publish lock and readers retry when a
        // file vanished, so taking a blocking cross-process lock on every reload would only make
        // backends wait for each other.
        if lock.filepath == META_LOCK.filepath {
            return Ok(DirectoryLock::from(Box::new(())));
        }
        self.inner.acquire_lock(lock)
    }

    fn watch(&self, _watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        // Readers reload explicitly when the manifest's generation changes.
        Ok(WatchHandle::empty())
    }

    fn sync_directory(&self) -> std::io::Result<()> {
        self.inner.sync_directory()
    }
}
