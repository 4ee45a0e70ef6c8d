//! Where an index's files live, and the per-backend cache of open indexes.
//!
//! An index's folder is `$PGDATA/pg_hybrid/<database oid>/<relfilenode>/` (temporary relations:
//! `t<backend>_<relfilenode>`, mirroring Postgres' own file names, because temporary and
//! permanent relations can share a relfilenode number). Keying by relfilenode, not by index OID,
//! makes REINDEX, TRUNCATE and VACUUM FULL build into a fresh folder while the old one stays
//! valid until the transaction commits.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;
use std::path::{Path, PathBuf};

use hybrid_engine::text::pending::LogSource;
use hybrid_engine::text::reader::{Snapshot, TextIndex};
use pgrx::pg_sys;

/// Readers kept open per backend; beyond this many, the least recently used is closed.
const MAX_OPEN_INDEXES: usize = 64;

/// `$PGDATA/pg_hybrid`.
pub fn base_dir() -> PathBuf {
    // SAFETY: DataDir is set before any backend code runs and never changes.
    let data = unsafe { CStr::from_ptr(pg_sys::DataDir) };
    PathBuf::from(data.to_string_lossy().into_owned()).join("pg_hybrid")
}

/// `$PGDATA/pg_hybrid/<db>`.
pub fn database_dir(db: pg_sys::Oid) -> PathBuf {
    base_dir().join(db.to_u32().to_string())
}

/// The folder of an index relation (at its current relfilenode).
///
/// # Safety
/// `index` must be a valid, open relation.
pub unsafe fn index_dir(index: pg_sys::Relation) -> PathBuf {
    let node = (*index).rd_node;
    let backend = (*index).rd_backend;
    let name = if backend != pg_sys::InvalidBackendId {
        format!("t{}_{}", backend, node.relNode.to_u32())
    } else {
        node.relNode.to_u32().to_string()
    };
    database_dir(node.dbNode).join(name)
}

struct Cached {
    index: TextIndex,
    last_used: u64,
}

thread_local! {
    static OPEN: RefCell<(u64, HashMap<PathBuf, Cached>)> = RefCell::new((0, HashMap::new()));
}

/// A snapshot of the newest published generation of the index in `dir`, with the rows of its
/// pending log `log`, opening it (or picking up what other backends published since last time)
/// as needed.
pub fn snapshot(dir: &Path, log: &dyn LogSource) -> hybrid_engine::Result<Snapshot> {
    OPEN.with(|cell| {
        let mut guard = cell.borrow_mut();
        let (clock, map) = &mut *guard;
        *clock += 1;
        let now = *clock;
        if let Some(c) = map.get_mut(dir) {
            match c.index.refresh_with(log) {
                Ok(_) => {
                    c.last_used = now;
                    return Ok(c.index.snapshot());
                }
                Err(e) => {
                    map.remove(dir);
                    return Err(e);
                }
            }
        }
        let index = TextIndex::open_with(dir, log)?;
        let snap = index.snapshot();
        if map.len() >= MAX_OPEN_INDEXES {
            if let Some(oldest) = map.iter().min_by_key(|(_, c)| c.last_used).map(|(p, _)| p.clone()) {
                map.remove(&oldest);
            }
        }
        map.insert(dir.to_path_buf(), Cached { index, last_used: now });
        Ok(snap)
    })
}

/// Closes the reader of `dir`, if open (its folder is about to be removed).
pub fn forget(dir: &Path) {
    OPEN.with(|cell| {
        cell.borrow_mut().1.remove(dir);
    });
}

/// Closes every reader under `prefix` (a database folder being dropped).
pub fn forget_under(prefix: &Path) {
    OPEN.with(|cell| {
        cell.borrow_mut().1.retain(|p, _| !p.starts_with(prefix));
    });
}
