//! `ambulkdelete` and `amvacuumcleanup`: VACUUM.
//!
//! The delete pass marks entries whose tuples VACUUM found dead and publishes that durably
//! before returning, because VACUUM frees those tuple ids right after (invariant 3). Cleanup
//! then compacts segments that are mostly dead entries, so disk use follows live data.

use hybrid_engine::manifest::Manifest;
use hybrid_engine::text::maintenance::{self, MergePolicy};
use hybrid_engine::text::pending;
use pgrx::prelude::*;

use crate::am::log_pages::PageLog;
use crate::error::OrRaise;
use crate::{gucs, layout, sidecar};

/// Whether the index has a folder to vacuum. Without one (lost, not restored yet) VACUUM goes
/// on: the restore's catch-up drops entries of tuples VACUUM removed meanwhile.
fn present(dir: &std::path::Path) -> bool {
    let there = dir.exists();
    if !there {
        pgrx::log!("pg_hybrid: VACUUM skips index folder {} (missing; it will be restored)", dir.display());
    }
    there
}

unsafe fn stats_or_new(stats: *mut pg_sys::IndexBulkDeleteResult) -> *mut pg_sys::IndexBulkDeleteResult {
    if stats.is_null() {
        PgBox::<pg_sys::IndexBulkDeleteResult>::alloc0().into_pg()
    } else {
        stats
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn ambulkdelete(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
    callback: pg_sys::IndexBulkDeleteCallback,
    callback_state: *mut std::ffi::c_void,
) -> *mut pg_sys::IndexBulkDeleteResult {
    let stats = stats_or_new(stats);
    let index = (*info).index;
    let dir = sidecar::index_dir(index);
    let Some(callback) = callback else { return stats };
    if !present(&dir) {
        return stats;
    }
    let _lock = maintenance::lock_maintenance(&dir, crate::wait_a_little).or_raise();
    let mut is_dead = |ctid: u64| {
        let mut tid = layout::u64_to_tid(ctid);
        callback(&mut tid, callback_state)
    };
    let mut progress = |_n: u64| crate::check_for_interrupts();
    let log = PageLog::new(index);
    let result = maintenance::bulk_delete(&dir, &log, &mut is_dead, &mut progress).or_raise();
    (*stats).tuples_removed += result.deleted as f64;
    (*stats).num_index_tuples = result.remaining as f64;
    stats
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amvacuumcleanup(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
) -> *mut pg_sys::IndexBulkDeleteResult {
    if (*info).analyze_only {
        return stats;
    }
    let stats = stats_or_new(stats);
    let index = (*info).index;
    let dir = sidecar::index_dir(index);
    if !present(&dir) {
        return stats;
    }
    let _lock = maintenance::lock_maintenance(&dir, crate::wait_a_little).or_raise();
    let policy = MergePolicy { merge_factor: gucs::MERGE_FACTOR.get() as usize, ..Default::default() };
    // The log's rows go into a segment first, so an idle index ends up with none in memory.
    pending::drain(&dir, &PageLog::new(index)).or_raise();
    maintenance::merge_until_settled(&dir, &policy, crate::check_for_interrupts).or_raise();
    maintenance::sweep_staging(&dir).or_raise();
    let m = Manifest::read(&dir).or_raise();
    (*stats).num_index_tuples = m.num_docs() as f64;
    let bytes = hybrid_engine::fsutil::dir_size(&dir).unwrap_or(0);
    (*stats).num_pages = (bytes / pg_sys::BLCKSZ as u64) as pg_sys::BlockNumber;
    (*stats).estimated_count = false;
    stats
}
