//! Restoring an index's folder: from its newest usable snapshot, else from the table, then
//! caught up with the table. Used by `hybrid.restore()` and by the database workers when a
//! folder is missing, damaged, or cannot be trusted (see `position::untrusted`).
//!
//! The new folder is assembled under a staging name next to the live one and swapped in only
//! once it is caught up, so searches never see a half-restored index (until the swap they see
//! the old folder, or the clear error of a missing one). The table is locked against writers
//! (SHARE ROW EXCLUSIVE: reads go on) for the whole restore: the catch-up must see every row.

use std::path::{Path, PathBuf};
use std::time::Instant;

use hybrid_engine::config::IndexConfig;
use hybrid_engine::directory::MANIFEST_FILE;
use hybrid_engine::fsutil;
use hybrid_engine::manifest::{self, Identity, Manifest};
use hybrid_engine::snapshot::{verify_local, SnapshotInfo};
use pgrx::prelude::*;

use super::catchup::{catch_up, CatchUp};
use super::{engine_progress, megabytes, store, Feedback};
use crate::am::build::{self, PHASE_CATCH_UP, PHASE_DOWNLOAD};
use crate::am::log_pages::PageLog;
use crate::error::OrRaise;
use crate::{catalog, layout, sidecar, xact};
use hybrid_engine::text::pending::LogSource;

/// Why an index is restored (for messages).
#[derive(Debug, Clone)]
pub enum Why {
    /// `hybrid.restore()`.
    Asked,
    /// Its folder does not exist.
    Missing,
    /// Its folder is incomplete or unreadable.
    Damaged(String),
    /// Its folder is complete but may not match the table (see `position::untrusted`).
    Untrusted(String),
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Asked => write!(f, "asked for"),
            Why::Missing => write!(f, "its folder is missing"),
            Why::Damaged(d) => write!(f, "its folder is damaged: {d}"),
            Why::Untrusted(d) => write!(f, "{d}"),
        }
    }
}

/// Where the restored folder came from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A snapshot from the store.
    Snapshot(SnapshotInfo),
    /// The folder that was there, kept and caught up.
    InPlace,
    /// Built from the table (no usable snapshot).
    Table,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    pub source: Source,
    /// The generation of the folder now in place.
    pub generation: u64,
    pub catch_up: CatchUp,
    /// Bytes downloaded (a snapshot's size).
    pub bytes: u64,
    pub seconds: f64,
}

/// Restores index `index_oid` (see the module comment). Raises an ERROR if it cannot.
///
/// # Safety
/// Inside a transaction; `index_oid` must be a hybrid index of this database.
pub unsafe fn restore_index(index_oid: pg_sys::Oid, why: &Why, feedback: &mut Feedback) -> Restored {
    let started = Instant::now();
    let heap_oid = pg_sys::IndexGetRelation(index_oid, false);
    let heap = pg_sys::table_open(heap_oid, pg_sys::ShareRowExclusiveLock as _);
    let index = pg_sys::index_open(index_oid, pg_sys::AccessShareLock as _);
    pg_sys::pgstat_progress_start_command(pg_sys::ProgressCommandType::PROGRESS_COMMAND_CREATE_INDEX, heap_oid);
    pg_sys::pgstat_progress_update_param(
        pg_sys::PROGRESS_CREATEIDX_INDEX_OID.to_u32() as i32,
        i64::from(index_oid.to_u32()),
    );
    pg_sys::pgstat_progress_update_param(
        pg_sys::PROGRESS_CREATEIDX_COMMAND as i32,
        pg_sys::PROGRESS_CREATEIDX_COMMAND_REINDEX as i64,
    );

    let config = build::config_of(heap, index);
    let layout = layout::layout_for(index, &config);
    let live = layout.dir.clone();
    let name = layout.index_name.clone();
    feedback.say(&format!("restoring index {name} ({why})"));
    let stage = staging_path(&live);
    xact::remove_on_abort(stage.clone());
    fsutil::remove_dir_durably(&stage).or_raise();

    pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_SUBPHASE as i32, PHASE_DOWNLOAD);
    let in_place = matches!(why, Why::Untrusted(_)) && link_copy(&live, &stage).is_ok();
    let source = if in_place {
        Source::InPlace
    } else {
        match from_snapshot(index_oid, &name, &config, &stage, feedback) {
            Some(info) => Source::Snapshot(info),
            None => Source::Table,
        }
    };
    if let Source::Snapshot(_) = source {
        // The catch-up's deletions are written as `<segment>.<opstamp>.del`, counted from the
        // snapshot's opstamp; the folder being replaced may hold a file of that very name with
        // other bits (deletions made after the snapshot), which a backend may still have
        // mapped. Counting on from the newer of the two opstamps, no name is ever reused.
        if let Ok(old) = Manifest::read(&live) {
            manifest::publish(&stage, |m| {
                m.opstamp = m.opstamp.max(old.opstamp);
                Ok(())
            })
            .or_raise();
        }
    }
    let identity = Identity { index_oid: index_oid.to_u32(), created_xid: 0 };
    let mut stats = CatchUp::default();
    if let Source::Table = source {
        feedback.say(&format!("restore of {name}: building it from the table"));
        let (_, rows, _) = build::build_into(heap, index, pg_sys::BuildIndexInfo(index), &stage, &config, &identity);
        stats.added = rows;
    } else {
        pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_SUBPHASE as i32, PHASE_CATCH_UP);
        stats = catch_up(heap, index, &layout, &stage, feedback);
    }

    // Name this index, stamp the server's position, and make the generation newer than any a
    // reader may hold of the folder being replaced (readers reload on a new generation).
    let old_generation = Manifest::read(&live).map(|m| m.hybrid.generation).unwrap_or(0);
    // The folder now accounts for every row of the table: what the index's pending log holds
    // (writers are locked out) is not to be searched on top of it.
    let log_tail = PageLog::new(index).tail().or_raise();
    let m = manifest::publish(&stage, |m| {
        m.hybrid.log.from = log_tail;
        m.hybrid.identity = identity.clone();
        m.hybrid.generation = m.hybrid.generation.max(old_generation);
        Ok(())
    })
    .or_raise();
    fsutil::replace_dir(&stage, &live).or_raise();
    sidecar::forget(&live);
    layout::forget(&live);
    pg_sys::pgstat_progress_end_command();
    pg_sys::index_close(index, pg_sys::AccessShareLock as _);
    // The table lock is kept until the end of the transaction, as Postgres does for DDL.
    pg_sys::table_close(heap, pg_sys::NoLock as _);

    let bytes = match &source {
        Source::Snapshot(info) => info.bytes,
        _ => 0,
    };
    let restored = Restored {
        source,
        generation: m.hybrid.generation,
        catch_up: stats,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    };
    feedback.say(&summary(&name, &restored));
    restored
}

/// A one-line account of a restore.
pub fn summary(name: &str, r: &Restored) -> String {
    let from = match &r.source {
        Source::Snapshot(i) => {
            format!("snapshot {} (generation {}, {} files, {})", i.sequence, i.generation, i.files, megabytes(i.bytes))
        }
        Source::InPlace => "its own files".to_string(),
        Source::Table => "the table".to_string(),
    };
    format!(
        "restored index {name} from {from} in {:.1} s: {} rows kept, {} indexed again, {} entries removed",
        r.seconds, r.catch_up.kept, r.catch_up.added, r.catch_up.removed
    )
}

/// `.<relfilenode>.staged.<pid>` next to the live folder (the sweep leaves it alone while this
/// process lives, and removes it after a crash).
fn staging_path(live: &Path) -> PathBuf {
    let name = live.file_name().and_then(|n| n.to_str()).unwrap_or("index");
    live.with_file_name(format!(".{name}.staged.{}", std::process::id()))
}

/// A copy of the complete folder `live` at `stage`, sharing the files (hard links: segment
/// files never change; `meta.json` is replaced by rename, never written in place).
fn link_copy(live: &Path, stage: &Path) -> hybrid_engine::Result<()> {
    verify_local(live, false)?;
    let _lock = fsutil::FileLock::lock(&live.join(manifest::PUBLISH_LOCK))?;
    let m = Manifest::read(live)?;
    fsutil::create_private_dir(stage)?;
    let mut names: Vec<PathBuf> = m.live_files(live)?.into_iter().collect();
    names.push(PathBuf::from(MANIFEST_FILE));
    for n in names {
        std::fs::hard_link(live.join(&n), stage.join(&n))
            .map_err(|e| hybrid_engine::Error::io("link", live.join(&n), e))?;
    }
    fsutil::fsync_dir(stage)
}

/// Downloads the newest usable snapshot of the index into `stage`. `None` when there is none
/// (or the store cannot be read): the caller builds from the table instead, which is always
/// correct, only slower.
fn from_snapshot(
    index_oid: pg_sys::Oid,
    name: &str,
    config: &IndexConfig,
    stage: &Path,
    feedback: &mut Feedback,
) -> Option<SnapshotInfo> {
    let identity = catalog::snapshots::identity(index_oid)?;
    let store = match store() {
        Ok(s) => s,
        Err(e) => {
            feedback.say(&format!("restore of {name}: snapshot store unusable ({e}); building from the table"));
            return None;
        }
    };
    let candidates = match store.list(&identity.uuid) {
        Ok(list) => preferred_order(list),
        Err(e) => {
            feedback.say(&format!("restore of {name}: cannot list snapshots ({e}); building from the table"));
            return None;
        }
    };
    if candidates.is_empty() {
        feedback.say(&format!("restore of {name}: no snapshot in {}; building from the table", store.url()));
        return None;
    }
    let label = format!("restore of {name}");
    for info in candidates.into_iter().take(3) {
        let mut stop = false;
        let result = {
            let mut progress = engine_progress(&label, feedback, &mut stop);
            store.restore(&identity.uuid, Some(info.sequence), stage, &mut progress)
        };
        match result {
            Ok(_) => match Manifest::read(stage) {
                Ok(m) if m.hybrid.config == *config => return Some(info),
                _ => feedback.say(&format!(
                    "restore of {name}: snapshot {} has other settings than the index; not used",
                    info.sequence
                )),
            },
            Err(_) if stop || unsafe { pg_sys::InterruptPending != 0 } => {
                feedback.stopped();
                pgrx::error!("pg_hybrid: restore stopped by a shutdown request")
            }
            Err(e) => feedback.say(&format!("restore of {name}: snapshot {} not used: {e}", info.sequence)),
        }
        let _ = fsutil::remove_dir_durably(stage);
    }
    feedback.say(&format!("restore of {name}: no usable snapshot; building from the table"));
    None
}

/// Snapshots to try, best first: the newest ones this cluster wrote at or before its current
/// position, then the others newest first (any snapshot is made right by the catch-up; one
/// from before the heap's position only needs less of it).
fn preferred_order(mut list: Vec<SnapshotInfo>) -> Vec<SnapshotInfo> {
    let now = crate::position::current();
    list.sort_by_key(|i| {
        let ours = i.position.system_identifier == now.system_identifier && i.position.lsn <= now.lsn;
        (std::cmp::Reverse(ours), std::cmp::Reverse(i.sequence))
    });
    list
}
