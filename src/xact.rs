//! What a transaction owes its hybrid indexes, and the callbacks that pay it.
//!
//! - **Pending rows.** `aminsert` only buffers (tuple id, values) per index. The buffer is written
//!   out at pre-commit, before the commit record (invariant 3: a committed row is always in the
//!   index), before any scan of that index by this transaction (invariant 4: read your own
//!   writes) and whenever it outgrows `hybrid.pending_limit`. A few rows (up to
//!   `hybrid.log_max_rows`) are appended to the index's pending log (in the index relation's
//!   pages, WAL-logged: see `am::log_pages`); more become a segment of their own. A committer that finds the log
//!   longer than `hybrid.log_drain_size` drains it into a segment.
//!   Rows published early by a transaction that then aborts are harmless: the heap says they are
//!   invisible, and VACUUM removes their entries.
//! - **Rows of a rolled-back savepoint** are dropped from the buffer at once. This matters: VACUUM
//!   may free their tuple ids while this transaction still runs, and an entry published later
//!   for such a tuple id could name an unrelated row.
//! - **Folder actions.** A build makes a new folder (removed if the transaction or savepoint
//!   aborts); REINDEX, TRUNCATE, VACUUM FULL and DROP schedule the old folder's removal for
//!   after commit. Before commit nothing is removed, so an abort finds everything in place.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use hybrid_engine::manifest::Manifest;
use hybrid_engine::text::maintenance::{self, MergePolicy};
use hybrid_engine::text::pending;
use hybrid_engine::text::writer::{publish_segments, SegmentBuilder};
use hybrid_engine::text::Document;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use crate::am::log_pages::{self, Appended, OpenIndex};
use crate::catalog::tenants::Growth;
use crate::error::{raise_with, OrRaise};
use crate::{gucs, layout, sidecar};

/// Largest merge a committing transaction does itself; bigger ones are left to VACUUM,
/// `hybrid.force_merge` and the merge worker.
const INLINE_MERGE_MAX_DOCS: u64 = 50_000;

struct Pending {
    dir: PathBuf,
    index_oid: pg_sys::Oid,
    /// The index's own `max_documents` option.
    max_documents: Option<i64>,
    docs: Vec<(pg_sys::SubTransactionId, Document)>,
    bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    Commit,
    Abort,
}

struct FolderAction {
    path: PathBuf,
    when: When,
    subxact: pg_sys::SubTransactionId,
}

/// A hybrid index dropped by this transaction.
struct Dropped {
    oid: pg_sys::Oid,
    subxact: pg_sys::SubTransactionId,
    /// Its table and name, to recognise an index Postgres drops and creates again under the
    /// same name (ALTER TABLE ... ALTER COLUMN ... TYPE).
    table: pg_sys::Oid,
    name: String,
}

#[derive(Default)]
struct State {
    pending: Vec<Pending>,
    actions: Vec<FolderAction>,
    /// Hybrid indexes dropped by this transaction, whose catalog rows go at commit.
    dropped: Vec<Dropped>,
    /// Indexes (folder, oid) this transaction published segments to (candidates for an
    /// inline merge).
    written: Vec<(PathBuf, pg_sys::Oid)>,
    /// Indexes whose pending log this transaction found long enough to drain.
    to_drain: Vec<(PathBuf, pg_sys::Oid)>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// Registers the transaction callbacks. Called once per process from `_PG_init`.
pub fn init() {
    // SAFETY: registering process-lifetime callbacks with no argument.
    unsafe {
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(subxact_callback), std::ptr::null_mut());
    }
}

fn current_subxact() -> pg_sys::SubTransactionId {
    // SAFETY: plain accessor of the current transaction state.
    unsafe { pg_sys::GetCurrentSubTransactionId() }
}

/// Buffers one row for index `index_oid` (folder `dir`); writes the buffer out early if it
/// grew too big.
pub fn add_document(dir: &Path, index_oid: pg_sys::Oid, max_documents: Option<i64>, doc: Document) {
    let limit = gucs::PENDING_LIMIT_KB.get().max(1024) as usize * 1024;
    let sub = current_subxact();
    let over = STATE.with(|s| {
        let mut s = s.borrow_mut();
        let pos = match s.pending.iter().position(|p| p.dir == dir) {
            Some(i) => i,
            None => {
                s.pending.push(Pending {
                    dir: dir.to_path_buf(),
                    index_oid,
                    max_documents,
                    docs: Vec::new(),
                    bytes: 0,
                });
                s.pending.len() - 1
            }
        };
        let p = &mut s.pending[pos];
        p.bytes += doc.approx_bytes();
        p.docs.push((sub, doc));
        p.bytes > limit
    });
    if over {
        flush(dir);
    }
}

/// Writes and publishes the buffered rows of the index in `dir`, if any, once the quotas
/// allow them (every write, not only the one at commit: rows published before commit are in
/// the index as much as those published at it).
pub fn flush(dir: &Path) {
    let taken = STATE.with(|s| {
        let mut s = s.borrow_mut();
        let pos = s.pending.iter().position(|p| p.dir == dir)?;
        let p = &mut s.pending[pos];
        if p.docs.is_empty() {
            return None;
        }
        let growth = Growth { index_oid: p.index_oid, docs: p.docs.len() as i64, bytes: p.bytes as i64 };
        let limit = p.max_documents;
        p.bytes = 0;
        Some((std::mem::take(&mut p.docs), growth, limit))
    });
    let Some((docs, growth, limit)) = taken else { return };
    let Some(index) = open_index(growth.index_oid, dir) else {
        // Dropped, or rebuilt into a new folder (REINDEX, TRUNCATE) by this transaction after
        // these rows were buffered: the new folder was built from the table, rows included.
        return;
    };
    check_quota(&growth, limit);
    let payload = (docs.len() <= gucs::LOG_MAX_ROWS.get().max(0) as usize && growth.bytes < (1 << 20))
        .then(|| pending::encode_payload(docs.iter().map(|(_, d)| d)))
        // A record must leave room in the log for others (see `log_pages::RING_BYTES`).
        .filter(|p| p.len() + pending::HEADER < (log_pages::RING_BYTES / 4) as usize);
    let drain = payload.as_ref().is_some_and(|p| append_to_log(dir, &index, p));
    let written = payload.is_none();
    if written {
        flush_wal_of_this_transaction();
        write_segment(dir, &docs).or_raise();
    }
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        // A new segment may call for a small merge; a long log, for a drain.
        let list = match (written, drain) {
            (true, _) => &mut s.written,
            (false, true) => &mut s.to_drain,
            (false, false) => return,
        };
        if !list.iter().any(|w| w.0 == dir) {
            list.push((dir.to_path_buf(), growth.index_oid));
        }
    });
}

/// The index `oid` if it still exists and still has the folder `dir` (a REINDEX or TRUNCATE in
/// this transaction gives it a new one). Its lock, one writers hold anyway, is kept until the
/// end of the transaction.
fn open_index(oid: pg_sys::Oid, dir: &Path) -> Option<OpenIndex> {
    OpenIndex::open(oid, pg_sys::RowExclusiveLock, true).filter(|i| i.dir() == dir)
}

/// Appends a record of `payload` to the pending log of `index` (folder `dir`). Its WAL goes
/// after the WAL of the rows and before the commit record: the commit's flush makes it
/// durable. Returns whether the log is now long enough to drain.
fn append_to_log(dir: &Path, index: &OpenIndex, payload: &[u8]) -> bool {
    loop {
        let from = Manifest::read(dir).or_raise().hybrid.log.from;
        // SAFETY: the index is open and locked ROW EXCLUSIVE (see `open_index`).
        match unsafe { log_pages::append(index.rel(), from, |at| pending::frame(payload, at)) } {
            Appended::Done { tail } => {
                return tail.saturating_sub(from) > gucs::LOG_DRAIN_KB.get().max(1) as u64 * 1024;
            }
            // Drains did not keep up: make room (every record before is then in a segment).
            Appended::Full => pending::drain(dir, &index.log()).or_raise(),
        };
    }
}

/// Makes the WAL of everything this transaction did so far durable: the heap tuples named by
/// the index entries about to be written in a segment must survive a crash if the entries do.
/// (Entries in the pending log need no such flush: their WAL comes after the rows'.) Otherwise a
/// crash between the entries' fsync and the commit could leave an entry whose tuple never
/// reached the WAL; after recovery its tuple id is free, and the row that reuses it would match
/// text it does not hold. (Postgres keeps the same rule for its own pages: WAL before data.)
/// Under concurrent commits these flushes are shared like commit flushes.
fn flush_wal_of_this_transaction() {
    // SAFETY: reads this backend's position of its last WAL record and flushes up to it;
    // 0 when the transaction wrote no WAL (temporary tables).
    unsafe {
        let end = pg_sys::XactLastRecEnd;
        if end != 0 {
            pg_sys::XLogFlush(end);
        }
    }
}

fn write_segment(dir: &Path, docs: &[(pg_sys::SubTransactionId, Document)]) -> hybrid_engine::Result<()> {
    let current = Manifest::read(dir)?;
    let bytes: usize = docs.iter().map(|(_, d)| d.approx_bytes()).sum();
    let mut builder = SegmentBuilder::new(dir, &current, bytes.saturating_mul(4))?;
    for (_, d) in docs {
        builder.add(d)?;
    }
    if let Some(staged) = builder.finish()? {
        publish_segments(dir, vec![staged])?;
    }
    Ok(())
}

/// Refuses `growth` beyond the quotas (see `catalog::tenants`).
fn check_quota(growth: &Growth, index_limit: Option<i64>) {
    // At pre-commit no statement is running: SPI needs an active snapshot.
    // SAFETY: pushed and popped around our queries; an error resets the stack at abort.
    let push = unsafe { !pg_sys::ActiveSnapshotSet() };
    if push {
        // SAFETY: see above.
        unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
    }
    crate::catalog::tenants::check_growth(growth, index_limit);
    if push {
        // SAFETY: pops what we pushed.
        unsafe { pg_sys::PopActiveSnapshot() };
    }
}

fn flush_all() {
    let dirs: Vec<PathBuf> = STATE.with(|s| s.borrow().pending.iter().map(|p| p.dir.clone()).collect());
    for d in dirs {
        flush(&d);
    }
}

/// Removes `path` if the current (sub)transaction aborts.
pub fn remove_on_abort(path: PathBuf) {
    let subxact = current_subxact();
    STATE.with(|s| s.borrow_mut().actions.push(FolderAction { path, when: When::Abort, subxact }));
}

/// Removes `path` once the transaction has committed.
pub fn remove_on_commit(path: PathBuf) {
    let subxact = current_subxact();
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if !s.actions.iter().any(|a| a.path == path && a.when == When::Commit) {
            s.actions.push(FolderAction { path, when: When::Commit, subxact });
        }
    });
}

/// Deletes the catalog row of the index `oid` when the transaction commits.
pub fn forget_on_commit(oid: pg_sys::Oid, table: pg_sys::Oid, name: String) {
    let subxact = current_subxact();
    STATE.with(|s| s.borrow_mut().dropped.push(Dropped { oid, subxact, table, name }));
}

/// The hybrid index of `table` named `name` that this transaction dropped, if any: an index
/// being built under that name now is its rebuild.
pub fn dropped_index_named(table: pg_sys::Oid, name: &str) -> Option<pg_sys::Oid> {
    STATE.with(|s| s.borrow().dropped.iter().rev().find(|d| d.table == table && d.name == name).map(|d| d.oid))
}

fn remove_folder(path: &Path) {
    sidecar::forget(path);
    sidecar::forget_under(path);
    layout::forget(path);
    if let Err(e) = hybrid_engine::fsutil::remove_dir_durably(path) {
        pgrx::warning!("pg_hybrid: could not remove \"{}\": {e}", path.display());
    }
}

/// Drains the pending logs this transaction found long, and does small merges of the indexes
/// it wrote segments to, if nobody else is maintaining them. Failures are reported as
/// warnings: the transaction's own work is already durable.
fn maintain_written() {
    let (written, to_drain) = STATE.with(|s| {
        let mut s = s.borrow_mut();
        (std::mem::take(&mut s.written), std::mem::take(&mut s.to_drain))
    });
    let merge = gucs::INLINE_MERGE.get();
    let policy = MergePolicy { merge_factor: gucs::MERGE_FACTOR.get() as usize, ..Default::default() };
    let mut dirs: Vec<(PathBuf, pg_sys::Oid, bool)> = to_drain.into_iter().map(|(d, o)| (d, o, true)).collect();
    for (d, o) in written {
        if !dirs.iter().any(|(x, _, _)| *x == d) {
            dirs.push((d, o, false));
        }
    }
    for (dir, oid, drain) in dirs {
        if !drain && !merge {
            continue;
        }
        let result = (|| -> hybrid_engine::Result<()> {
            if drain {
                if let Some(index) = open_index(oid, &dir) {
                    pending::try_drain(&dir, &index.log())?;
                }
            }
            if !merge {
                return Ok(());
            }
            let Some(_lock) = maintenance::try_lock_maintenance(&dir)? else { return Ok(()) };
            let m = Manifest::read(&dir)?;
            for group in policy.plan(&m) {
                let docs: u64 =
                    m.segments.iter().filter(|s| group.contains(&s.segment_id)).map(|s| u64::from(s.max_doc)).sum();
                if docs <= INLINE_MERGE_MAX_DOCS {
                    maintenance::merge(&dir, &group)?;
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            pgrx::warning!("pg_hybrid: maintaining \"{}\" after commit failed: {e}", dir.display());
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn xact_callback(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PARALLEL_PRE_COMMIT => {
            flush_all();
            let dropped: Vec<pg_sys::Oid> = STATE.with(|s| s.borrow_mut().dropped.drain(..).map(|d| d.oid).collect());
            crate::catalog::indexes::forget(&dropped);
            maintain_written();
        }
        XACT_EVENT_PRE_PREPARE => {
            flush_all();
            let has_actions = STATE.with(|s| !s.borrow().actions.is_empty());
            if has_actions {
                raise_with(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    "cannot PREPARE a transaction that built, rebuilt or dropped a hybrid index",
                    Some("run the DDL in an ordinary transaction".into()),
                );
            }
        }
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT | XACT_EVENT_PREPARE => {
            let actions = STATE.with(|s| {
                let mut s = s.borrow_mut();
                s.pending.clear();
                s.written.clear();
                s.to_drain.clear();
                s.dropped.clear();
                std::mem::take(&mut s.actions)
            });
            for a in actions.iter().filter(|a| a.when == When::Commit) {
                remove_folder(&a.path);
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => {
            let actions = STATE.with(|s| {
                let mut s = s.borrow_mut();
                s.pending.clear();
                s.written.clear();
                s.to_drain.clear();
                s.dropped.clear();
                std::mem::take(&mut s.actions)
            });
            for a in actions.iter().filter(|a| a.when == When::Abort) {
                remove_folder(&a.path);
            }
        }
        _ => {}
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    _parent_subid: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event != pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        return;
    }
    // Subtransaction ids grow within a transaction, and everything started after the aborting
    // subtransaction is its descendant: drop what they did.
    let aborted = STATE.with(|s| {
        let mut s = s.borrow_mut();
        for p in &mut s.pending {
            p.docs.retain(|(sub, _)| *sub < my_subid);
            p.bytes = p.docs.iter().map(|(_, d)| d.approx_bytes()).sum();
        }
        s.dropped.retain(|d| d.subxact < my_subid);
        let (gone, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut s.actions).into_iter().partition(|a| a.subxact >= my_subid);
        s.actions = kept;
        gone
    });
    for a in aborted.iter().filter(|a| a.when == When::Abort) {
        remove_folder(&a.path);
    }
}
