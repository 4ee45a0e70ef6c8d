//! A database worker: one round of maintenance of one database's hybrid indexes, then exit (the
//! autovacuum pattern: the launcher starts a round per database every `hybrid.worker_naptime`).
//!
//! A round, index by index:
//! 1. **Reconcile**: a folder that is missing, damaged (the first round after start also checks
//!    that every file is there) or cannot be trusted to match the table is restored
//!    (`snapshots::restore`).
//! 2. **Merge**: the tiered merge policy, until it asks for nothing more; this also applies
//!    deletions, compacts segments (and their vectors) heavy with deleted entries, and removes
//!    files no manifest names. Skipped for an index someone else is maintaining (VACUUM).
//! 3. **Snapshot**: if the index changed since its last snapshot and that is older than
//!    `hybrid.snapshot_interval` (the upload runs outside any transaction).
//! Also, every `hybrid.sweep_interval`, the sweep of orphaned folders.
//!
//! A failure is logged, shown in `hybrid.workers` and retried by a later round, after a pause
//! that doubles with each failing round. SIGTERM (shutdown, `pg_terminate_backend`) is Postgres'
//! own handler: the worker stops at its next interrupt check, wherever it is.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;

use hybrid_engine::manifest::Manifest;
use hybrid_engine::snapshot::{sweep_pins, verify_local};
use hybrid_engine::text::maintenance::{self, MergePolicy};
use hybrid_engine::text::pending;
use pgrx::bgworkers::BackgroundWorker;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::PgLogLevel;

use super::{status, sweep};
use crate::am::log_pages::{OpenIndex, PageLog};
use crate::snapshots::restore::{restore_index, Why};
use crate::snapshots::take::{self, Upload};
use crate::snapshots::{self, Feedback};
use crate::{catalog, gucs, sidecar};

/// The kind of these workers in `hybrid.workers`.
pub const KIND: &str = "database worker";

/// One hybrid index of the database.
struct Index {
    oid: pg_sys::Oid,
    name: String,
    dir: PathBuf,
}

extern "C-unwind" {
    /// Postgres' SIGTERM handler for backends (pgrx's binding of it is a wrapped Rust function,
    /// not something a signal can call).
    fn die(postgres_signal_arg: std::ffi::c_int);
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_hybrid_worker_main(arg: pg_sys::Datum) {
    // SAFETY: Postgres' standard termination handler, as autovacuum workers use: a SIGTERM
    // makes the next interrupt check end the process, even inside a lock wait.
    unsafe {
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(die));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    let db = pg_sys::Oid::from(arg.value() as u32);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(db), None);
    let slot = status::claim(KIND, db.to_u32());
    let installed = BackgroundWorker::transaction(|| {
        Spi::get_one::<bool>("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_hybrid')")
            .ok()
            .flatten()
            .unwrap_or(false)
    });
    let sweep_interval = i64::from(gucs::SWEEP_INTERVAL_S.get());
    if !installed {
        slot.no_extension();
        // Folders of an extension dropped while the library was not loaded.
        if sidecar::database_dir(db).exists() {
            sweep::sweep_database(db);
        }
        return;
    }
    let mut errors = Vec::new();
    if slot.sweep_due(sweep_interval) {
        slot.activity("sweeping orphaned folders");
        attempt(&mut errors, "sweep", || sweep::sweep_database(db));
    }
    attempt(&mut errors, "forgetting dropped roles", || BackgroundWorker::transaction(forget_dropped_roles));
    let first = slot.first_round();
    let indexes = BackgroundWorker::transaction(list_indexes);
    for index in &indexes {
        crate::check_for_interrupts();
        attempt(&mut errors, &format!("reconciling {}", index.name), || reconcile(index, first, &slot));
        attempt(&mut errors, &format!("merging {}", index.name), || merge(index, &slot));
        attempt(&mut errors, &format!("snapshot of {}", index.name), || snapshot_if_due(index, &slot));
    }
    if errors.is_empty() {
        slot.ran();
    } else {
        slot.failed(&errors.join("; "));
    }
}

/// Runs `work`; an ERROR it raises is logged and added to `errors` (and its transaction, if
/// any, rolled back), and the round goes on. Termination (FATAL) is not caught.
fn attempt(errors: &mut Vec<String>, what: &str, work: impl FnOnce()) {
    let work = AssertUnwindSafe(work);
    let failed = PgTryBuilder::new(move || {
        let work = work;
        (work.0)();
        None
    })
    .catch_others(|e| {
        let report = match &e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
            CaughtError::RustPanic { ereport, .. } => ereport,
        };
        if report.level() >= PgLogLevel::FATAL {
            e.rethrow();
        }
        Some(report.message().to_string())
    })
    .execute();
    if let Some(message) = failed {
        // SAFETY: ends the failed transaction, as Postgres' own workers do after an error.
        unsafe {
            if pg_sys::IsTransactionState() {
                pg_sys::AbortCurrentTransaction();
            }
        }
        pgrx::warning!("pg_hybrid: {what} failed: {message}");
        errors.push(format!("{what}: {message}"));
    }
}

/// Tenant assignments of roles dropped since (roles are shared by all databases, so no hook of
/// this database sees their drop; a new role must not inherit an old one's tenant by its OID).
fn forget_dropped_roles() {
    catalog::as_extension_owner(|| {
        Spi::run(
            "DELETE FROM hybrid.role_tenants t
              WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) t.role_oid)",
        )
    })
    .unwrap_or_else(|e| pgrx::error!("{e}"));
}

fn list_indexes() -> Vec<Index> {
    let db = unsafe { pg_sys::MyDatabaseId };
    Spi::connect(|c| {
        let rows = c.select(
            "SELECT c.oid, c.relname::text, c.relfilenode
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_am a ON a.oid = c.relam
              WHERE a.amname = 'hybrid' AND c.relkind = 'i' AND c.relpersistence = 'p'
              ORDER BY c.oid",
            None,
            &[],
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (Some(oid), Some(name), Some(node)) =
                (row.get::<pg_sys::Oid>(1)?, row.get::<String>(2)?, row.get::<pg_sys::Oid>(3)?)
            else {
                continue;
            };
            out.push(Index { oid, name, dir: sidecar::database_dir(db).join(node.to_u32().to_string()) });
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .unwrap_or_else(|e| pgrx::error!("pg_hybrid: could not list the hybrid indexes: {e}"))
}

/// Why the folder of `index` must be restored, if it must.
fn diagnose(index: &Index, first_round: bool) -> Option<Why> {
    if !index.dir.exists() {
        return Some(Why::Missing);
    }
    let m = match Manifest::read(&index.dir) {
        Ok(m) => m,
        Err(e) => return Some(Why::Damaged(e.to_string())),
    };
    let owner = m.hybrid.identity.index_oid;
    if owner != 0 && owner != index.oid.to_u32() {
        return Some(Why::Damaged(format!("it belongs to another index (OID {owner})")));
    }
    if first_round {
        if let Err(e) = verify_local(&index.dir, false) {
            return Some(Why::Damaged(e.to_string()));
        }
    }
    crate::position::untrusted(m.hybrid.position).map(Why::Untrusted)
}

fn reconcile(index: &Index, first_round: bool, slot: &status::Handle) {
    let Some(why) = diagnose(index, first_round) else { return };
    pgrx::log!("pg_hybrid: index {} needs a restore: {why}", index.name);
    BackgroundWorker::transaction(AssertUnwindSafe(|| {
        // SAFETY: inside a transaction; the oid is a hybrid index (listed just before, and
        // checked to still exist before anything else is done with it).
        unsafe {
            let rel = pg_sys::try_relation_open(index.oid, pg_sys::AccessShareLock as _);
            if rel.is_null() {
                return;
            }
            pg_sys::relation_close(rel, pg_sys::AccessShareLock as _);
            // The restore's own table lock, taken first: the diagnosis above was made without
            // it, and whoever held the table meanwhile (hybrid.restore(), REINDEX, TRUNCATE)
            // may have put a good folder in place, possibly under a new relfilenode. So the
            // folder is diagnosed again, under the lock, from the index as it is now.
            let heap_oid = pg_sys::IndexGetRelation(index.oid, true);
            if heap_oid == pg_sys::InvalidOid {
                return;
            }
            let heap = pg_sys::table_open(heap_oid, pg_sys::ShareRowExclusiveLock as _);
            pg_sys::table_close(heap, pg_sys::NoLock as _);
            let rel = pg_sys::try_relation_open(index.oid, pg_sys::AccessShareLock as _);
            if rel.is_null() {
                return;
            }
            let now = Index { oid: index.oid, name: index.name.clone(), dir: sidecar::index_dir(rel) };
            pg_sys::relation_close(rel, pg_sys::AccessShareLock as _);
            let Some(why) = diagnose(&now, first_round) else {
                pgrx::log!("pg_hybrid: index {} was repaired meanwhile; no restore needed", index.name);
                return;
            };
            restore_index(index.oid, &why, &mut Feedback::worker(slot));
        }
    }));
}

fn merge(index: &Index, slot: &status::Handle) {
    if !index.dir.exists() {
        return;
    }
    // The log's rows go into a segment first (an idle index then searches none from memory);
    // the log is in the index relation's pages, read in a transaction.
    BackgroundWorker::transaction(AssertUnwindSafe(|| drain(index)));
    let result = (|| -> hybrid_engine::Result<usize> {
        let Some(_lock) = maintenance::try_lock_maintenance(&index.dir)? else { return Ok(0) };
        maintenance::sweep_staging(&index.dir)?;
        sweep_pins(&index.dir)?;
        let policy = MergePolicy { merge_factor: gucs::MERGE_FACTOR.get() as usize, ..Default::default() };
        maintenance::merge_until_settled(&index.dir, &policy, || {
            slot.activity(&format!("merging segments of {}", index.name));
            crate::check_for_interrupts();
        })
    })();
    match result {
        Ok(0) => {}
        Ok(n) => pgrx::debug1!("pg_hybrid: {n} merges of {}", index.name),
        Err(e) => pgrx::error!("{e}"),
    }
}

/// Drains the pending log of `index` if nobody else is (in a transaction).
fn drain(index: &Index) {
    with_log(index, |log| {
        if let Err(e) = pending::try_drain(&index.dir, log) {
            pgrx::error!("{e}");
        }
    });
}

/// Runs `work` with the pending log of `index`, if the index still exists (in a transaction).
fn with_log(index: &Index, work: impl FnOnce(&PageLog)) {
    if let Some(open) = OpenIndex::open(index.oid, pg_sys::AccessShareLock, false) {
        if open.dir() == index.dir {
            work(&open.log());
        }
    }
}

fn snapshot_if_due(index: &Index, slot: &status::Handle) {
    let interval = f64::from(gucs::SNAPSHOT_INTERVAL_S.get());
    if interval <= 0.0 || !index.dir.exists() {
        return;
    }
    let Ok(m) = Manifest::read(&index.dir) else { return };
    let url = snapshots::url();
    let (identity, newest) = BackgroundWorker::transaction(AssertUnwindSafe(|| {
        (catalog::snapshots::identity(index.oid), catalog::snapshots::newest(index.oid, &url))
    }));
    let Some(identity) = identity else { return };
    let due = match newest {
        None => true,
        Some((generation, age)) => generation != m.hybrid.generation as i64 && age >= interval,
    };
    if !due {
        return;
    }
    let started = take::unix_now();
    let keep = gucs::SNAPSHOT_RETENTION.get().max(1) as usize;
    let result = BackgroundWorker::transaction(AssertUnwindSafe(|| take::drained_position(index.oid, &index.dir)))
        .and_then(|position| take::upload(&index.dir, &identity, position, &mut Feedback::worker(slot)));
    match result {
        Ok(Upload::Done(report)) => BackgroundWorker::transaction(AssertUnwindSafe(|| {
            catalog::snapshots::record(&identity, &url, &report, started, keep)
        })),
        Ok(Upload::Stopped) => crate::check_for_interrupts(),
        // The index may have been dropped meanwhile: then this is no failure.
        Err(_) if !index.dir.exists() => {}
        Err(e) => pgrx::error!("{e}"),
    }
}
