//! The per-database sweep: removes index folders no index owns.
//!
//! A folder is an orphan when no `pg_class` row has its relfilenode as a hybrid index and the
//! transaction that created it is over. The creating transaction is checked first and the
//! catalog read afterwards with a fresh snapshot, so a CREATE INDEX or REINDEX that commits in
//! between is seen.

use std::path::Path;

use hybrid_engine::manifest::Manifest;
use hybrid_engine::text::maintenance;
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;

use crate::am::hybrid_am_oid;
use crate::sidecar;

/// What to do with one entry of a database folder.
enum Verdict {
    Keep,
    Remove(&'static str),
}

unsafe fn judge(path: &Path, name: &str, started_at: std::time::SystemTime) -> Verdict {
    // Folders of temporary relations die with their session; after a restart, all are stale.
    if let Some(rest) = name.strip_prefix('t') {
        if rest.contains('_') {
            let old = std::fs::metadata(path).and_then(|m| m.modified()).map(|t| t < started_at).unwrap_or(false);
            return if old {
                Verdict::Remove("temporary index of a session before the restart")
            } else {
                Verdict::Keep
            };
        }
    }
    // A folder being assembled by CREATE INDEX is renamed into place by a live backend.
    if let Some(pid) = name.rsplit('.').next().and_then(|p| p.parse::<i32>().ok()).filter(|_| name.starts_with('.')) {
        return if libc::kill(pid, 0) == 0 {
            Verdict::Keep
        } else {
            Verdict::Remove("unfinished folder of a crashed build")
        };
    }
    let Ok(relfilenode) = name.parse::<u32>() else { return Verdict::Keep };
    // A build (or a merge, or VACUUM) is working on it: it is not abandoned. A folder being
    // built is not yet visible in the catalog, and its manifest is tantivy's own until the end.
    if let Ok(None) = maintenance::try_lock_maintenance(path) {
        return Verdict::Keep;
    }
    let manifest = match Manifest::read(path) {
        Ok(m) => Some(m),
        Err(_) => None,
    };
    if let Some(m) = &manifest {
        let xid = (m.hybrid.identity.created_xid & 0xffff_ffff) as u32;
        if xid != 0 && pg_sys::TransactionIdIsInProgress(xid.into()) {
            return Verdict::Keep;
        }
    }
    let am = hybrid_am_oid();
    if am == pg_sys::InvalidOid {
        return Verdict::Remove("the extension is not installed in this database");
    }
    let owned = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relfilenode = $1 AND relam = $2 AND relkind = 'i')",
        &[pg_sys::Oid::from(relfilenode).into(), am.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(true);
    if owned {
        Verdict::Keep
    } else {
        Verdict::Remove("no index has this relfilenode")
    }
}

/// Sweeps the folders of database `db` (this worker's): removes orphans, and leftovers of
/// crashed writers and uploads inside the others. One short transaction per folder.
pub fn sweep_database(db: pg_sys::Oid) {
    let dir = sidecar::database_dir(db);
    // SAFETY: PgStartTime is set by the postmaster before workers start.
    let started_at = unsafe {
        let secs = pg_sys::timestamptz_to_time_t(pg_sys::PgStartTime);
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64)
    };
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    for e in entries.flatten() {
        crate::check_for_interrupts();
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        // SAFETY: catalog access inside this worker's transaction.
        let verdict = BackgroundWorker::transaction(|| unsafe { judge(&path, &name, started_at) });
        match verdict {
            Verdict::Remove(why) => match hybrid_engine::fsutil::remove_dir_durably(&path) {
                Ok(()) => pgrx::log!("pg_hybrid: removed orphaned index folder {} ({why})", path.display()),
                Err(err) => pgrx::warning!("pg_hybrid: could not remove {}: {err}", path.display()),
            },
            Verdict::Keep => {
                if path.is_dir() {
                    let _ = maintenance::sweep_staging(&path);
                    let _ = hybrid_engine::snapshot::sweep_pins(&path);
                }
            }
        }
    }
}
