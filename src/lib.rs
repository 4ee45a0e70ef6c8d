//! pg_hybrid: BM25 full-text search (tantivy) and vector search in a Postgres index.
//!
//! This crate is the Postgres side: the access method (`am`), the ranked search scan (`scan`),
//! transaction bookkeeping (`xact`), the control plane (`catalog`), SQL functions (`api`) and
//! background workers (`workers`). Everything that does not need Postgres lives in the
//! `hybrid_engine` crate (`src/engine`).

use pgrx::prelude::*;

mod am;
mod api;
mod catalog;
mod error;
mod gucs;
mod hooks;
mod layout;
mod position;
mod scan;
mod sidecar;
mod snapshots;
mod workers;
mod xact;

::pgrx::pg_module_magic!(name, version);

pgrx::extension_sql_file!("../sql/catalog.sql", name = "catalog", bootstrap);
pgrx::extension_sql_file!(
    "../sql/access_method.sql",
    name = "access_method",
    requires = [
        am::handler::hybrid_handler,
        api::search::hybrid::search_text,
        api::vector::hybrid::l2_distance,
        api::vector::hybrid::cosine_distance,
        api::vector::hybrid::negative_inner_product
    ]
);

pgrx::extension_sql_file!(
    "../sql/tenants.sql",
    name = "tenants",
    requires = ["catalog", api::tenancy::hybrid::can_see_tenant, api::tenancy::hybrid::index_usage]
);
pgrx::extension_sql_file!(
    "../sql/snapshots.sql",
    name = "snapshots",
    requires = ["tenants", api::snapshots::hybrid::worker_status]
);
pgrx::extension_sql_file!(
    "../sql/fusion.sql",
    name = "fusion",
    requires = ["access_method", api::search::hybrid::score, api::admin::hybrid::index_settings]
);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::init();
    position::init();
    am::options::init();
    xact::init();
    hooks::init();
    scan::init();
    // Waits for the object store give up when a cancel or shutdown request comes.
    hybrid_engine::snapshot::set_interrupt_check(interrupt_pending);
    keep_heap_warm();
    // SAFETY: reads a flag the postmaster sets while it loads shared_preload_libraries.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        workers::register();
    }
}

/// Keeps up to 16 MB of freed memory at the top of this process's heap instead of returning it
/// to the kernel at once. Every in-memory segment of the pending log (see
/// `hybrid_engine::text::pending`) allocates and frees a few ~1 MB blocks (tantivy's indexing
/// arena, an fst registry per field); glibc gave them back and faulted them in again each time:
/// 5.3 ms per append + reader refresh, 1.0 ms with this setting (engine measurement, 200
/// one-row appends). Memory never touched stays unallocated; at most the padding stays resident.
fn keep_heap_warm() {
    // SAFETY: a malloc tuning parameter; no memory is handed over.
    unsafe {
        libc::mallopt(libc::M_TOP_PAD, 16 << 20);
    }
}

/// Whether a cancel or termination request is pending (only reads the flag the signal
/// handlers set: safe to call from engine code, on the backend's own thread).
fn interrupt_pending() -> bool {
    // SAFETY: a plain read of a volatile flag.
    unsafe { std::ptr::read_volatile(&raw const pg_sys::InterruptPending) != 0 }
}

/// Honours query cancellation and termination (raises an ERROR if one is pending).
pub fn check_for_interrupts() {
    pg_sys::check_for_interrupts!();
}

/// Sleeps briefly while waiting for a lock another process holds, staying cancellable.
pub fn wait_a_little() {
    check_for_interrupts();
    std::thread::sleep(std::time::Duration::from_millis(5));
}
