//! Taking a snapshot of one index: upload (no catalog access, no transaction needed), then
//! the caller records it with `catalog::snapshots::record`.

use std::path::Path;

use hybrid_engine::fsutil::FileLock;
use hybrid_engine::snapshot::{IndexIdentity, PgPosition, Retention, SnapshotReport};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use super::{engine_progress, megabytes, store, Feedback};
use crate::am::log_pages::OpenIndex;
use crate::catalog;
use crate::error::{raise_with, sqlstate};
use crate::gucs;

/// Serialises snapshots of one index (a worker and `hybrid.snapshot_now`), so that two never
/// write the same sequence number. Merges are not held up: the upload reads a pinned copy.
const SNAPSHOT_LOCK: &str = "snapshot.lock";

/// The outcome of [`upload`].
pub enum Upload {
    Done(SnapshotReport),
    /// `feedback` said stop (cancel, shutdown); nothing was recorded.
    Stopped,
}

/// Uploads the current generation of the index folder `dir` as a new snapshot of `identity`,
/// then applies retention. Waits for another snapshot of the same index to finish first.
/// `position` comes from [`drained_position`].
pub fn upload(
    dir: &Path,
    identity: &IndexIdentity,
    position: PgPosition,
    feedback: &mut Feedback,
) -> hybrid_engine::Result<Upload> {
    let store = store()?;
    let Some(_lock) = lock(dir, identity, feedback)? else { return Ok(Upload::Stopped) };
    let retention = Retention { keep_last: gucs::SNAPSHOT_RETENTION.get().max(1) as usize, collect_garbage: true };
    let label = format!("snapshot of {}", identity.name);
    let mut stop = false;
    let result = {
        let mut progress = engine_progress(&label, feedback, &mut stop);
        store.snapshot(dir, identity, position, &retention, &mut progress)
    };
    match result {
        Ok(report) => {
            if let Some(e) = &report.cleanup_error {
                pgrx::warning!("pg_hybrid: {label}: removing old snapshots failed (retried next time): {e}");
            }
            if !report.unchanged {
                feedback.say(&format!(
                    "{label}: generation {} as snapshot {}: {} files, {} ({} files, {} uploaded)",
                    report.generation,
                    report.sequence,
                    report.files,
                    megabytes(report.bytes_total),
                    report.files_uploaded,
                    megabytes(report.bytes_uploaded)
                ));
            }
            Ok(Upload::Done(report))
        }
        // Stopped by the progress callback, or a wait for the store given up on a cancel.
        Err(_) if stop || unsafe { pg_sys::InterruptPending != 0 } => Ok(Upload::Stopped),
        Err(e) => Err(e),
    }
}

/// Takes the snapshot lock of the index in `dir`; `None` if told to stop while waiting.
fn lock(dir: &Path, identity: &IndexIdentity, feedback: &mut Feedback) -> hybrid_engine::Result<Option<FileLock>> {
    loop {
        if let Some(l) = FileLock::try_lock(&dir.join(SNAPSHOT_LOCK))? {
            return Ok(Some(l));
        }
        if !feedback.step(|| format!("snapshot of {}: waiting for another snapshot of it", identity.name)) {
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The position a snapshot of index `index` (folder `dir`) taken from now on covers: the
/// server's position, read before the index's pending log is drained into a segment. Every
/// change committed before it was in the folder or the log before its commit record, so once
/// the log is drained the generation pinned afterwards covers it. Runs in a transaction (the
/// log is in the index relation's pages).
pub fn drained_position(index: pg_sys::Oid, dir: &Path) -> hybrid_engine::Result<PgPosition> {
    let now = crate::position::current();
    if let Some(open) = OpenIndex::open(index, pg_sys::AccessShareLock, false) {
        hybrid_engine::text::pending::drain(dir, &open.log())?;
    }
    Ok(PgPosition { lsn: now.lsn, timeline: now.timeline, system_identifier: now.system_identifier })
}

/// Snapshots index `index` (folder `dir`) in this backend and records it in
/// `hybrid.snapshot_log`, within the caller's transaction. Raises an ERROR if it cannot
/// (`context` prefixes the message); a cancel raises the cancel.
pub fn now(index: pg_sys::Oid, dir: &Path, context: &str, feedback: &mut Feedback) -> SnapshotReport {
    let Some(identity) = catalog::snapshots::identity(index) else {
        raise_with(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("{context}: the index has no row in hybrid.indexes"),
            Some("REINDEX the index to register it again".into()),
        )
    };
    let started = unix_now();
    let result = drained_position(index, dir).and_then(|position| upload(dir, &identity, position, feedback));
    match result {
        Ok(Upload::Done(report)) => {
            let keep = gucs::SNAPSHOT_RETENTION.get().max(1) as usize;
            catalog::snapshots::record(&identity, &super::url(), &report, started, keep);
            report
        }
        Ok(Upload::Stopped) => {
            feedback.stopped();
            pgrx::error!("pg_hybrid: snapshot stopped")
        }
        Err(e) => {
            let hint = e.hint().map(str::to_string).unwrap_or_else(|| {
                format!("check hybrid.snapshot_url ({}) and that the store is reachable", super::url())
            });
            raise_with(sqlstate(&e), format!("{context}: {e}"), Some(hint))
        }
    }
}

/// CREATE INDEX ... WITH (snapshot_on_create = true): the first snapshot is part of the build,
/// so the index is not created if it cannot be written.
///
/// # Safety
/// `index` must be an open relation.
pub unsafe fn on_create(index: pg_sys::Relation, dir: &Path) {
    let name = std::ffi::CStr::from_ptr((*(*index).rd_rel).relname.data.as_ptr()).to_string_lossy().into_owned();
    let context = format!("could not write the first snapshot of index \"{name}\" (snapshot_on_create)");
    now((*index).rd_id, dir, &context, &mut Feedback::notice());
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
