//! File-system primitives with the durability the invariants need: a file is fsync'd before it is
//! published, a rename is made durable by fsyncing its folder, and locks are `flock`s, which the
//! kernel releases when a process dies (a backend killed with -9 cannot leave an index locked).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// fsyncs a folder, making the creation, rename or removal of its entries durable.
pub fn fsync_dir(path: &Path) -> Result<()> {
    let dir = File::open(path).map_err(|e| Error::io("open folder", path, e))?;
    dir.sync_all().map_err(|e| Error::io("fsync folder", path, e))
}

/// Creates `path` (and missing parents) with mode 0700: index files are readable by the server's
/// OS user only, like the rest of the data directory.
pub fn create_private_dir(path: &Path) -> Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(|e| Error::io("create folder", path, e))
}

/// Writes `bytes` to `path` atomically and durably: a temporary file in the same folder is
/// written and fsync'd, renamed over `path`, and the folder fsync'd. A reader sees the old or
/// the new content, never a mix; after a crash, the same.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| Error::io("rename", &tmp, e))?;
    fsync_dir(dir)
}

/// Removes a folder and everything in it, if it exists, and makes the removal durable.
pub fn remove_dir_durably(path: &Path) -> Result<()> {
    // Another process may create a file in the folder while it is being emptied (a lock file a
    // drain or snapshot opens, a staging folder): the final rmdir then fails. Empty it again;
    // once the folder is gone, such creations fail instead.
    let mut attempts = 0;
    loop {
        match fs::remove_dir_all(path) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && attempts < 100 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => return Err(Error::io("remove", path, e)),
        }
    }
    if let Some(parent) = path.parent() {
        if parent.exists() {
            fsync_dir(parent)?;
        }
    }
    Ok(())
}

/// Total size in bytes of the regular files directly in `path`.
pub fn dir_size(path: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(path).map_err(|e| Error::io("list", path, e))? {
        let entry = entry.map_err(|e| Error::io("list", path, e))?;
        if let Ok(md) = entry.metadata() {
            if md.is_file() {
                total += md.len();
            }
        }
    }
    Ok(total)
}

/// `flock(2)` operation `op` on `file` (at `path`, for the error), waiting if it blocks and
/// retrying when a signal interrupts the wait.
fn flock(file: &File, op: libc::c_int, path: &Path) -> Result<()> {
    loop {
        // SAFETY: flock on a file descriptor we own; no memory is shared with the kernel.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::io("lock", path, err));
        }
    }
}

/// An exclusive `flock` on a lock file, released on drop (or when the process dies).
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    fn open(path: &Path) -> Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io("open lock file", path, e))
    }

    /// Waits for the lock. Only for locks held briefly (a manifest publish).
    pub fn lock(path: &Path) -> Result<FileLock> {
        let file = Self::open(path)?;
        flock(&file, libc::LOCK_EX, path)?;
        Ok(FileLock { file, path: path.to_path_buf() })
    }

    /// Takes the lock if it is free; `None` if another process holds it.
    pub fn try_lock(path: &Path) -> Result<Option<FileLock>> {
        let file = Self::open(path)?;
        // SAFETY: flock on a file descriptor we own; no memory is shared with the kernel.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(FileLock { file, path: path.to_path_buf() }));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(Error::io("lock", path, err))
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: unlocking our own descriptor; closing the file would release it as well.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content() {
        let dir = tempdir();
        let p = dir.join("m.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left behind");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn try_lock_sees_a_held_lock() {
        let dir = tempdir();
        let p = dir.join("lock");
        let held = FileLock::lock(&p).unwrap();
        // flock locks belong to the open file description, so a second open conflicts even in
        // the same process, exactly as between two backends.
        assert!(FileLock::try_lock(&p).unwrap().is_none());
        drop(held);
        assert!(FileLock::try_lock(&p).unwrap().is_some());
        fs::remove_dir_all(dir).unwrap();
    }

    #[allow(dead_code)]
    fn tempdir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "hybrid-engine-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        create_private_dir(&p).unwrap();
        p
    }
}

/// Removes the files of folder `dir` whose names `doomed` picks (one already gone is no error),
/// then makes the removals durable. Returns how many were removed.
pub fn remove_files_where(dir: &Path, doomed: impl Fn(&str) -> bool) -> Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        if !entry.file_name().to_str().is_some_and(&doomed) {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", entry.path(), e)),
        }
    }
    if removed > 0 {
        fsync_dir(dir)?;
    }
    Ok(removed)
}

/// Puts the complete folder `tmp` at `target`, replacing what is there (moved aside, then
/// removed). Readers that have files of the old folder open keep them. Returns whether a folder
/// was replaced. `tmp` and `target` must be in the same parent folder.
pub fn replace_dir(tmp: &Path, target: &Path) -> Result<bool> {
    let (Some(parent), Some(name)) = (target.parent(), target.file_name().and_then(|n| n.to_str())) else {
        return Err(Error::io("replace", target, std::io::Error::other("not a folder path")));
    };
    let old = parent.join(format!(".{name}.replaced.{}", std::process::id()));
    let replaced = match fs::symlink_metadata(target) {
        Ok(_) => {
            remove_dir_durably(&old)?;
            fs::rename(target, &old).map_err(|e| Error::io("rename", target, e))?;
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io("stat", target, e)),
    };
    if let Err(e) = fs::rename(tmp, target) {
        if replaced {
            // Put the old folder back rather than leave nothing.
            let _ = fs::rename(&old, target);
        }
        return Err(Error::io("rename", tmp, e));
    }
    fsync_dir(parent)?;
    if replaced {
        remove_dir_durably(&old)?;
    }
    Ok(replaced)
}

/// Removes the folders in `dir` named `<pid>-<n>` whose process is gone (private working
/// folders of writers and uploads, left by a crash or a `kill -9`). Returns how many went.
pub fn remove_dead_process_folders(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| n.split('-').next()).and_then(|p| p.parse::<i32>().ok());
        let alive = match pid {
            // SAFETY: signal 0 only checks that the process exists.
            Some(pid) => pid == std::process::id() as i32 || unsafe { libc::kill(pid, 0) } == 0,
            None => false,
        };
        if !alive && fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}
