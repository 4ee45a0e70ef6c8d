//! The launcher: at start and then every `hybrid.sweep_interval`, removes folders of databases
//! that no longer exist and starts a sweep worker for each database that has index folders.

use std::path::PathBuf;
use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;

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

/// OIDs of the databases of the cluster (a scan of the shared catalog pg_database).
unsafe fn database_oids() -> Vec<u32> {
    let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, pg_sys::AccessShareLock as _);
    let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
    let mut out = Vec::new();
    loop {
        let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
        if tuple.is_null() {
            break;
        }
        let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
        out.push((*form).oid.to_u32());
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

fn start_sweep(db: u32) {
    let r = BackgroundWorkerBuilder::new(&format!("pg_hybrid sweep {db}"))
        .set_type("pg_hybrid sweep")
        .set_library("pg_hybrid")
        .set_function("pg_hybrid_sweep_main")
        .set_argument(Some(pg_sys::Datum::from(db)))
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None)
        // SAFETY: our own pid, so that we can wait for the worker to finish.
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .load_dynamic();
    match r {
        Ok(handle) => {
            let _ = handle.wait_for_shutdown();
        }
        Err(_) => pgrx::log!("pg_hybrid: could not start the sweep worker of database {db} (max_worker_processes?)"),
    }
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_hybrid_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    loop {
        // SAFETY: a catalog scan inside a transaction of this worker.
        let databases = BackgroundWorker::transaction(|| unsafe { database_oids() });
        for (oid, path) in database_folders() {
            if !databases.contains(&oid) {
                match hybrid_engine::fsutil::remove_dir_durably(&path) {
                    Ok(()) => pgrx::log!("pg_hybrid: removed the index folders of dropped database {oid}"),
                    Err(e) => pgrx::warning!("pg_hybrid: could not remove {}: {e}", path.display()),
                }
            } else {
                start_sweep(oid);
            }
        }
        let interval = Duration::from_secs(gucs::SWEEP_INTERVAL_S.get().max(1) as u64);
        if !BackgroundWorker::wait_latch(Some(interval)) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: reloads postgresql.conf in this worker, as Postgres' own workers do.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
    }
}
