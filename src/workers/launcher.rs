//! The launcher: one process for the cluster. It removes the folders of dropped databases and
//! starts a database worker (`database.rs`) for each database every `hybrid.worker_naptime`,
//! at most `hybrid.max_workers` at once, like the autovacuum launcher.
//!
//! Databases without pg_hybrid are looked at again only every `hybrid.sweep_interval`; a
//! database whose last round failed waits out its back-off (see `status`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, BgWorkerStartTime, DynamicBackgroundWorker,
    SignalWakeFlags,
};
use pgrx::prelude::*;

use super::{database, status};
use crate::{gucs, sidecar};

pub fn register() {
    BackgroundWorkerBuilder::new("pg_hybrid launcher")
        .set_type("pg_hybrid launcher")
        .set_library("pg_hybrid")
        .set_function("pg_hybrid_launcher_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(10)))
        .load();
}

/// A database of the cluster that workers may connect to.
struct Database {
    oid: u32,
    name: String,
    /// Templates and databases refusing connections get no worker (a connection to a template
    /// would make CREATE DATABASE fail).
    eligible: bool,
}

/// The databases of the cluster (a scan of the shared catalog pg_database).
unsafe fn databases() -> Vec<Database> {
    let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, pg_sys::AccessShareLock as _);
    let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
    let mut out = Vec::new();
    loop {
        let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
        if tuple.is_null() {
            break;
        }
        let form = &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
        let name = std::ffi::CStr::from_ptr(form.datname.data.as_ptr()).to_string_lossy().into_owned();
        // A database being dropped has datconnlimit -2 (DATCONNLIMIT_INVALID_DB) in later
        // releases; datallowconn covers it here.
        out.push(Database { oid: form.oid.to_u32(), name, eligible: form.datallowconn && !form.datistemplate });
    }
    pg_sys::table_endscan(scan);
    pg_sys::table_close(rel, pg_sys::AccessShareLock as _);
    out
}

/// Database folders under `pg_hybrid/`, by database OID.
fn database_folders() -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(sidecar::base_dir()) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()).map(|oid| (oid, e.path())))
        .collect()
}

fn start_worker(db: &Database) -> Option<DynamicBackgroundWorker> {
    let r = BackgroundWorkerBuilder::new(&format!("pg_hybrid worker {}", db.name))
        .set_type("pg_hybrid worker")
        .set_library("pg_hybrid")
        .set_function("pg_hybrid_worker_main")
        .set_argument(Some(pg_sys::Datum::from(db.oid)))
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None)
        // SAFETY: our own pid: the postmaster tells us when the worker starts and stops.
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .load_dynamic();
    match r {
        Ok(handle) => Some(handle),
        Err(_) => {
            pgrx::log!("pg_hybrid: could not start the worker of database {} (max_worker_processes?)", db.name);
            None
        }
    }
}

fn still_running(handle: &DynamicBackgroundWorker) -> bool {
    matches!(handle.pid(), Ok(_) | Err(BackgroundWorkerStatus::NotYetStarted))
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_hybrid_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    let slot = status::claim("launcher", 0);
    let mut running: HashMap<u32, DynamicBackgroundWorker> = HashMap::new();
    // When each database's last round started (Postgres timestamps).
    let mut last_start: HashMap<u32, i64> = HashMap::new();
    loop {
        // SAFETY: a catalog scan inside a transaction of this worker.
        let dbs = BackgroundWorker::transaction(|| unsafe { databases() });
        let oids: Vec<u32> = dbs.iter().map(|d| d.oid).collect();
        for (oid, path) in database_folders() {
            if !oids.contains(&oid) {
                match hybrid_engine::fsutil::remove_dir_durably(&path) {
                    Ok(()) => pgrx::log!("pg_hybrid: removed the index folders of dropped database {oid}"),
                    Err(e) => pgrx::warning!("pg_hybrid: could not remove {}: {e}", path.display()),
                }
            }
        }
        status::forget_databases(&oids);
        last_start.retain(|oid, _| oids.contains(oid));
        running.retain(|_, h| still_running(h));

        let naptime_us = i64::from(gucs::WORKER_NAPTIME_S.get()) * 1_000_000;
        let sweep_s = i64::from(gucs::SWEEP_INTERVAL_S.get());
        let max = gucs::MAX_WORKERS.get().max(1) as usize;
        let now = status::now();
        for db in dbs.iter().filter(|d| d.eligible) {
            if running.len() >= max {
                break;
            }
            if running.contains_key(&db.oid) || last_start.get(&db.oid).is_some_and(|t| now - t < naptime_us) {
                continue;
            }
            let plan = status::plan(database::KIND, db.oid, sweep_s);
            if plan.running || plan.not_before > now {
                continue;
            }
            if let Some(h) = start_worker(db) {
                running.insert(db.oid, h);
                last_start.insert(db.oid, now);
            }
        }
        slot.activity(&format!("{} database workers running", running.len()));
        // Woken early when a worker stops (we are its notify pid) or by a signal.
        if !BackgroundWorker::wait_latch(Some(Duration::from_secs(1))) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: reloads postgresql.conf in this worker, as Postgres' own workers do.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
    }
    // SIGTERM: a shutdown, or pg_terminate_backend. Returning would exit with code 0, which the
    // postmaster takes as "unregister me": the launcher would never come back until a restart.
    // Exit code 1 gets it restarted after its restart time (and nothing is restarted during a
    // shutdown).
    // SAFETY: Postgres' normal process exit (runs the exit callbacks).
    unsafe { pg_sys::proc_exit(1) };
}
