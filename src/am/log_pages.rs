//! The pending log's bytes, kept in the index relation's own pages (see
//! `hybrid_engine::text::pending` for what the log is for).
//!
//! Why pages and not a file in the index folder: a record written here with GenericXLog goes
//! into the WAL after the heap records of its rows and before the commit record, so the
//! commit's single WAL flush makes the rows and their entries durable together. A file needed
//! two more device flushes per commit: its own `fdatasync`, and a WAL flush before it (an
//! entry made durable ahead of its row's WAL could outlive the row in a crash and name a tuple
//! id another row then takes). Crash recovery, checkpoints and standbys come with the WAL, as
//! for GIN's fast-update list and contrib/bloom.
//!
//! Layout: block 0 is the metapage (the stream's tail, the ring pages in use); blocks
//! `1..=RING_PAGES` are a ring holding the stream: stream offset `o` is in chunk `o / CAP`,
//! kept in block `1 + chunk % RING_PAGES` at byte `o % CAP` of its data. Each data page records
//! the stream offset of its first byte, so a reader that finds another chunk there knows the
//! space was reused (a drain moved `log.from` past it) and re-reads the manifest. An appender
//! never reuses the page holding the manifest's `log.from` or any after it; when the ring has
//! no room it drains first.
//!
//! Appends hold the metapage exclusively (microseconds: one or two pages change); readers
//! take it shared to learn the tail, then read the data pages they need.

use hybrid_engine::text::pending::LogSource;
use pgrx::pg_sys;

/// Pages of the ring: with the drain threshold (`hybrid.log_drain_size`, 256 kB) far below
/// it, the ring only fills when drains cannot keep up. 4 MB, GIN's default pending-list limit.
pub const RING_PAGES: u32 = 512;
const BLCKSZ: usize = pg_sys::BLCKSZ as usize;
/// `MAXALIGN(SizeOfPageHeaderData)`: where a page's contents start.
const CONTENTS: usize = 24;
/// Data page: the stream offset of its first byte (u64), bytes used (u32), then the bytes.
const DATA_START: usize = CONTENTS + 16;
/// Bytes of the stream a data page holds.
pub const CAP: u64 = (BLCKSZ - DATA_START) as u64;
/// Bytes of the stream the ring holds.
pub const RING_BYTES: u64 = CAP * RING_PAGES as u64;

const META_MAGIC: u32 = 0x4859_4c4d; // "HYLM"
const META_VERSION: u32 = 1;
/// Metapage: magic, version (u32 each), tail (u64), ring pages in use (u32).
const META_END: usize = CONTENTS + 20;

/// At most this many buffers per GenericXLog record (`MAX_GENERIC_XLOG_PAGES`): the metapage
/// and three data pages.
const DATA_PAGES_PER_RECORD: usize = pg_sys::MAX_GENERIC_XLOG_PAGES as usize - 1;

unsafe fn read_u32(page: pg_sys::Page, at: usize) -> u32 {
    std::ptr::read_unaligned((page as *const u8).add(at) as *const u32)
}
unsafe fn read_u64(page: pg_sys::Page, at: usize) -> u64 {
    std::ptr::read_unaligned((page as *const u8).add(at) as *const u64)
}
unsafe fn write_u32(page: pg_sys::Page, at: usize, v: u32) {
    std::ptr::write_unaligned((page as *mut u8).add(at) as *mut u32, v)
}
unsafe fn write_u64(page: pg_sys::Page, at: usize, v: u64) {
    std::ptr::write_unaligned((page as *mut u8).add(at) as *mut u64, v)
}
unsafe fn set_lower(page: pg_sys::Page, lower: usize) {
    (*(page as pg_sys::PageHeader)).pd_lower = lower as u16;
}
unsafe fn is_new(page: pg_sys::Page) -> bool {
    (*(page as pg_sys::PageHeader)).pd_upper == 0
}
unsafe fn lsn_of(page: pg_sys::Page) -> u64 {
    let l = (*(page as pg_sys::PageHeader)).pd_lsn;
    (u64::from(l.xlogid) << 32) | u64::from(l.xrecoff)
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    tail: u64,
    pages: u32,
}

unsafe fn read_meta(page: pg_sys::Page) -> Meta {
    if is_new(page) || read_u32(page, CONTENTS) != META_MAGIC {
        pgrx::ereport!(
            ERROR,
            pgrx::PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED,
            "the metapage of a hybrid index is not one",
            "REINDEX the index"
        );
    }
    Meta { tail: read_u64(page, CONTENTS + 8), pages: read_u32(page, CONTENTS + 16) }
}

unsafe fn write_meta(page: pg_sys::Page, m: Meta) {
    write_u32(page, CONTENTS, META_MAGIC);
    write_u32(page, CONTENTS + 4, META_VERSION);
    write_u64(page, CONTENTS + 8, m.tail);
    write_u32(page, CONTENTS + 16, m.pages);
    set_lower(page, META_END);
}

unsafe fn read_buffer(rel: pg_sys::Relation, block: pg_sys::BlockNumber) -> pg_sys::Buffer {
    pg_sys::ReadBufferExtended(
        rel,
        pg_sys::ForkNumber::MAIN_FORKNUM,
        block,
        pg_sys::ReadBufferMode::RBM_NORMAL,
        std::ptr::null_mut(),
    )
}

/// A new block at the end of the relation, pinned (not locked).
unsafe fn extend(rel: pg_sys::Relation) -> pg_sys::Buffer {
    pg_sys::LockRelationForExtension(rel, pg_sys::ExclusiveLock as _);
    let buf = read_buffer(rel, pg_sys::InvalidBlockNumber);
    pg_sys::UnlockRelationForExtension(rel, pg_sys::ExclusiveLock as _);
    buf
}

/// Writes the metapage of an index just built (its log starts empty at offset 0).
///
/// # Safety
/// `rel` is an open index relation, locked by its build.
pub unsafe fn init(rel: pg_sys::Relation) {
    ensure_meta(rel, 0);
}

thread_local! {
    /// Relations (by relfilenode) seen with a metapage: once there it stays, so the check is
    /// made once per backend, not per scan.
    static WITH_META: std::cell::RefCell<std::collections::HashSet<(u32, u32, u32, i32)>> =
        std::cell::RefCell::new(std::collections::HashSet::new());
}

/// Whether `rel` has its metapage. Indexes built before the log moved into pages have none
/// until their first append makes it ([`ensure_meta`]).
unsafe fn has_meta(rel: pg_sys::Relation) -> bool {
    let n = (*rel).rd_node;
    let key = (n.spcNode.to_u32(), n.dbNode.to_u32(), n.relNode.to_u32(), (*rel).rd_backend);
    if WITH_META.with(|s| s.borrow().contains(&key)) {
        return true;
    }
    let there = pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM) > 0;
    if there {
        WITH_META.with(|s| s.borrow_mut().insert(key));
    }
    there
}

/// Makes the metapage of an index built before the log moved into pages, its log starting at
/// `from` (the folder's `log.from`).
unsafe fn ensure_meta(rel: pg_sys::Relation, from: u64) {
    if has_meta(rel) {
        return;
    }
    pg_sys::LockRelationForExtension(rel, pg_sys::ExclusiveLock as _);
    if pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM) == 0 {
        let buf = read_buffer(rel, pg_sys::InvalidBlockNumber);
        pg_sys::LockBuffer(buf, pg_sys::BUFFER_LOCK_EXCLUSIVE as _);
        let state = pg_sys::GenericXLogStart(rel);
        let page = pg_sys::GenericXLogRegisterBuffer(state, buf, pg_sys::GENERIC_XLOG_FULL_IMAGE as _);
        pg_sys::PageInit(page, BLCKSZ, 0);
        write_meta(page, Meta { tail: from, pages: 0 });
        pg_sys::GenericXLogFinish(state);
        pg_sys::UnlockReleaseBuffer(buf);
    }
    pg_sys::UnlockRelationForExtension(rel, pg_sys::ExclusiveLock as _);
}

/// What [`append`] did.
pub enum Appended {
    /// The record is in; the log's tail after it.
    Done { tail: u64 },
    /// The ring has no room until the log is drained.
    Full,
}

/// Appends the record `frame_at(offset)` builds for the offset it will start at to the log of
/// `rel`, whose manifest says the log starts at `from`.
///
/// # Safety
/// `rel` is an open index relation, locked at least ROW EXCLUSIVE.
pub unsafe fn append(rel: pg_sys::Relation, from: u64, frame_at: impl FnOnce(u64) -> Vec<u8>) -> Appended {
    ensure_meta(rel, from);
    let meta_buf = read_buffer(rel, 0);
    pg_sys::LockBuffer(meta_buf, pg_sys::BUFFER_LOCK_EXCLUSIVE as _);
    let mut meta = read_meta(pg_sys::BufferGetPage(meta_buf));
    // A tail behind `from` means the pages were reset under a newer folder; start at `from`.
    let start = meta.tail.max(from);
    let record = frame_at(start);
    let end = start + record.len() as u64;
    // The record's last page must not be the slot of the page holding `from`, or of any page
    // after it: space is reused a page at a time, and that page still holds undrained bytes.
    if (end - 1) / CAP >= from / CAP + u64::from(RING_PAGES) {
        pg_sys::UnlockReleaseBuffer(meta_buf);
        return Appended::Full;
    }
    let chunks: Vec<u64> = (start / CAP..=(end - 1) / CAP).collect();
    for (batch_no, batch) in chunks.chunks(DATA_PAGES_PER_RECORD).enumerate() {
        let last = (batch_no + 1) * DATA_PAGES_PER_RECORD >= chunks.len();
        let mut bufs = Vec::with_capacity(batch.len());
        for &chunk in batch {
            let slot = (chunk % u64::from(RING_PAGES)) as u32;
            let block = 1 + slot;
            let buf = if slot < meta.pages {
                read_buffer(rel, block)
            } else {
                // A slot used for the first time. Slots below it may be unused yet (a log that
                // started at a later offset: an index from before the log was in pages), and
                // it may exist already (an append that crashed between its records).
                let nblocks = pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM);
                let b = if block < nblocks {
                    read_buffer(rel, block)
                } else {
                    let mut b = extend(rel);
                    while pg_sys::BufferGetBlockNumber(b) < block {
                        pg_sys::ReleaseBuffer(b);
                        b = extend(rel);
                    }
                    b
                };
                if pg_sys::BufferGetBlockNumber(b) != block {
                    pg_sys::ReleaseBuffer(b);
                    pgrx::error!("pg_hybrid: pending log pages out of order (expected block {block})");
                }
                meta.pages = meta.pages.max(slot + 1);
                b
            };
            pg_sys::LockBuffer(buf, pg_sys::BUFFER_LOCK_EXCLUSIVE as _);
            bufs.push((chunk, buf));
        }
        let state = pg_sys::GenericXLogStart(rel);
        for &(chunk, buf) in &bufs {
            let base = chunk * CAP;
            let current = pg_sys::BufferGetPage(buf);
            let fresh = is_new(current) || read_u64(current, CONTENTS) != base;
            let flags = if fresh { pg_sys::GENERIC_XLOG_FULL_IMAGE as i32 } else { 0 };
            let page = pg_sys::GenericXLogRegisterBuffer(state, buf, flags);
            if fresh {
                pg_sys::PageInit(page, BLCKSZ, 0);
                write_u64(page, CONTENTS, base);
                write_u32(page, CONTENTS + 8, 0);
            }
            let lo = start.max(base);
            let hi = end.min(base + CAP);
            let src = &record[(lo - start) as usize..(hi - start) as usize];
            let at = (lo - base) as usize;
            let dst = (page as *mut u8).add(DATA_START + at);
            std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len());
            let used = at + src.len();
            write_u32(page, CONTENTS + 8, used as u32);
            set_lower(page, DATA_START + used);
        }
        let meta_page = pg_sys::GenericXLogRegisterBuffer(state, meta_buf, 0);
        // The tail moves with the record's last pages: readers never see a partial record.
        write_meta(meta_page, Meta { tail: if last { end } else { meta.tail }, pages: meta.pages });
        pg_sys::GenericXLogFinish(state);
        for (_, buf) in bufs {
            pg_sys::UnlockReleaseBuffer(buf);
        }
    }
    pg_sys::UnlockReleaseBuffer(meta_buf);
    Appended::Done { tail: end }
}

/// A hybrid index opened by OID to reach its folder and its pending log (maintenance after
/// commit, workers, quota counts, snapshots); closed when dropped.
pub struct OpenIndex {
    rel: pg_sys::Relation,
    /// The lock given back on close (`NoLock`: kept until the end of the transaction).
    release: pg_sys::LOCKMODE,
}

impl OpenIndex {
    /// Index `oid` locked with `mode`, or `None` if it no longer exists. `keep_lock`: hold the
    /// lock until the end of the transaction (as for an index the transaction writes to)
    /// instead of giving it back on close.
    pub fn open(oid: pg_sys::Oid, mode: u32, keep_lock: bool) -> Option<OpenIndex> {
        // SAFETY: `try_relation_open` returns NULL for a relation that is gone; the relation
        // stays open until `drop`.
        let rel = unsafe { pg_sys::try_relation_open(oid, mode as pg_sys::LOCKMODE) };
        let release = if keep_lock { pg_sys::NoLock } else { mode };
        (!rel.is_null()).then_some(OpenIndex { rel, release: release as pg_sys::LOCKMODE })
    }

    pub fn rel(&self) -> pg_sys::Relation {
        self.rel
    }

    /// Its folder, at its current relation file.
    pub fn dir(&self) -> std::path::PathBuf {
        // SAFETY: open (see `open`).
        unsafe { crate::sidecar::index_dir(self.rel) }
    }

    /// Its pending log.
    pub fn log(&self) -> PageLog {
        // SAFETY: open for as long as `self`, which the log borrows from.
        unsafe { PageLog::new(self.rel) }
    }
}

impl Drop for OpenIndex {
    fn drop(&mut self) {
        // SAFETY: opened by `open`, closed once.
        unsafe { pg_sys::relation_close(self.rel, self.release) };
    }
}

/// The log of an open index relation, as the engine reads it.
pub struct PageLog {
    rel: pg_sys::Relation,
    /// Whether the relation has its metapage (else nothing was ever appended).
    present: bool,
    /// The metapage as `tail` last read it: a reader reads up to that tail next, and every
    /// chunk before it lies in a ring page that metapage counts.
    seen: std::cell::Cell<Option<Meta>>,
}

impl PageLog {
    /// # Safety
    /// `rel` is an open index relation, and stays open while this is used.
    pub unsafe fn new(rel: pg_sys::Relation) -> PageLog {
        PageLog { rel, present: has_meta(rel), seen: std::cell::Cell::new(None) }
    }

    fn meta(&self) -> (Meta, u64) {
        if !self.present {
            return (Meta { tail: 0, pages: 0 }, 0);
        }
        // SAFETY: block 0 is the metapage (`present`); read under a shared lock.
        unsafe {
            let buf = read_buffer(self.rel, 0);
            pg_sys::LockBuffer(buf, pg_sys::BUFFER_LOCK_SHARE as _);
            let page = pg_sys::BufferGetPage(buf);
            let out = (read_meta(page), lsn_of(page));
            pg_sys::UnlockReleaseBuffer(buf);
            out
        }
    }
}

impl LogSource for PageLog {
    fn tail(&self) -> hybrid_engine::Result<u64> {
        let meta = self.meta().0;
        self.seen.set(Some(meta));
        Ok(meta.tail)
    }

    fn read(&self, from: u64, to: u64) -> hybrid_engine::Result<Option<Vec<u8>>> {
        let mut out = Vec::with_capacity((to - from) as usize);
        if to <= from {
            return Ok(Some(out));
        }
        // Pages only grow: those counted with a tail at or past `to` hold every chunk below it.
        let pages = match self.seen.get() {
            Some(m) if m.tail >= to => m.pages,
            _ => self.meta().0.pages,
        };
        for chunk in from / CAP..=(to - 1) / CAP {
            let slot = (chunk % u64::from(RING_PAGES)) as u32;
            if slot >= pages {
                return Ok(None);
            }
            let base = chunk * CAP;
            let lo = from.max(base);
            let hi = to.min(base + CAP);
            // SAFETY: a ring block below `pages` exists; read under a shared lock.
            let reused = unsafe {
                let buf = read_buffer(self.rel, 1 + slot);
                pg_sys::LockBuffer(buf, pg_sys::BUFFER_LOCK_SHARE as _);
                let page = pg_sys::BufferGetPage(buf);
                let ok = !is_new(page)
                    && read_u64(page, CONTENTS) == base
                    && u64::from(read_u32(page, CONTENTS + 8)) >= hi - base;
                if ok {
                    let p = (page as *const u8).add(DATA_START + (lo - base) as usize);
                    out.extend_from_slice(std::slice::from_raw_parts(p, (hi - lo) as usize));
                }
                pg_sys::UnlockReleaseBuffer(buf);
                !ok
            };
            if reused {
                return Ok(None);
            }
        }
        Ok(Some(out))
    }

    fn make_durable(&self) -> hybrid_engine::Result<()> {
        // Every append changed the metapage: its LSN is the end of the newest append's WAL.
        let (_, lsn) = self.meta();
        // SAFETY: flushes WAL already written; never during recovery (no appends then).
        unsafe {
            if lsn != 0 && !pg_sys::RecoveryInProgress() {
                pg_sys::XLogFlush(lsn);
            }
        }
        Ok(())
    }
}
