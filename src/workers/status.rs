//! What each background worker is doing, in shared memory: the `hybrid.workers` view, and the
//! launcher's memory of each database between two worker runs (back-off after errors,
//! databases without the extension, when the last sweep was).
//!
//! A fixed table of slots, one per (kind, database), under one LWLock held only to copy a few
//! fields in or out. A slot outlives the worker processes that use it, so counters, the last
//! error and the back-off survive from one run to the next.

use pgrx::lwlock::PgLwLock;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;

const SLOTS: usize = 128;
const KIND: usize = 32;
const TEXT: usize = 200;
const ERROR_TEXT: usize = 512;

/// Longest pause after repeated failures.
const MAX_BACKOFF_US: i64 = 600 * 1_000_000;

/// One worker's (or one database's) public state.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Slot {
    in_use: bool,
    kind: [u8; KIND],
    database: u32,
    /// The process using the slot now; 0 when none.
    pid: i32,
    /// The database has no pg_hybrid (checked at `checked_at`): not shown, not revisited until
    /// the next sweep interval.
    no_extension: bool,
    checked_at: i64,
    activity: [u8; TEXT],
    started_at: i64,
    last_run: i64,
    runs: u64,
    errors: u64,
    consecutive_errors: u32,
    last_error: [u8; ERROR_TEXT],
    last_error_at: i64,
    /// Not started again before this (back-off after an error).
    next_run_at: i64,
    last_sweep_at: i64,
    /// The first round since the server started (which also verifies every folder) is done.
    verified: bool,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            in_use: false,
            kind: [0; KIND],
            database: 0,
            pid: 0,
            no_extension: false,
            checked_at: 0,
            activity: [0; TEXT],
            started_at: 0,
            last_run: 0,
            runs: 0,
            errors: 0,
            consecutive_errors: 0,
            last_error: [0; ERROR_TEXT],
            last_error_at: 0,
            next_run_at: 0,
            last_sweep_at: 0,
            verified: false,
        }
    }
}

/// The table of slots.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Table {
    slots: [Slot; SLOTS],
}

impl Default for Table {
    fn default() -> Self {
        Table { slots: [Slot::default(); SLOTS] }
    }
}

// SAFETY: plain old data of fixed size, no pointers.
unsafe impl PGRXSharedMemory for Table {}

// SAFETY: a unique name; initialised by `init` from _PG_init while preloading.
pub static STATUS: PgLwLock<Table> = unsafe { PgLwLock::new(c"pg_hybrid_workers") };

static mut INITIALISED: bool = false;

/// Requests the shared memory. Only while the postmaster loads preloaded libraries.
// The macro tests features of other Postgres versions than ours.
#[allow(unexpected_cfgs)]
pub fn init() {
    pgrx::pg_shmem_init!(STATUS);
    // SAFETY: set once, in _PG_init of the postmaster, inherited by every child.
    unsafe { INITIALISED = true };
}

/// Whether the table exists (pg_hybrid was preloaded).
pub fn available() -> bool {
    // SAFETY: read-only after _PG_init.
    unsafe { INITIALISED }
}

fn put(dst: &mut [u8], s: &str) {
    dst.fill(0);
    let mut n = s.len().min(dst.len() - 1);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
}

fn get(src: &[u8]) -> String {
    let end = src.iter().position(|b| *b == 0).unwrap_or(src.len());
    String::from_utf8_lossy(&src[..end]).into_owned()
}

/// Now, as a Postgres timestamp (microseconds since 2000-01-01).
pub fn now() -> i64 {
    // SAFETY: reads the clock.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid != 0 && unsafe { libc::kill(pid, 0) } == 0
}

fn find(t: &Table, kind: &str, database: u32) -> Option<usize> {
    t.slots.iter().position(|s| s.in_use && s.database == database && get(&s.kind) == kind)
}

/// A worker's handle on its slot; marks it not running when dropped.
pub struct Handle(Option<usize>);

/// Takes the slot of (`kind`, `database`) for this process.
pub fn claim(kind: &str, database: u32) -> Handle {
    if !available() {
        return Handle(None);
    }
    let mut t = STATUS.exclusive();
    let i = match find(&t, kind, database) {
        Some(i) => i,
        None => {
            let Some(i) = t.slots.iter().position(|s| !s.in_use) else { return Handle(None) };
            let s = &mut t.slots[i];
            *s = Slot::default();
            s.in_use = true;
            s.database = database;
            put(&mut s.kind, kind);
            i
        }
    };
    let s = &mut t.slots[i];
    // SAFETY: this process's pid.
    s.pid = unsafe { pg_sys::MyProcPid };
    s.started_at = now();
    s.no_extension = false;
    put(&mut s.activity, "starting");
    Handle(Some(i))
}

impl Handle {
    fn with<R: Default>(&self, f: impl FnOnce(&mut Slot) -> R) -> R {
        match self.0 {
            Some(i) => f(&mut STATUS.exclusive().slots[i]),
            None => R::default(),
        }
    }

    /// What the worker does now.
    pub fn activity(&self, what: &str) {
        self.with(|s| put(&mut s.activity, what));
    }

    /// A round of work finished without error.
    pub fn ran(&self) {
        let t = now();
        self.with(|s| {
            s.runs += 1;
            s.last_run = t;
            s.consecutive_errors = 0;
            s.next_run_at = 0;
        });
    }

    /// Something failed: recorded, and the next run of this slot's worker waits longer each
    /// time (10 s, 20 s, 40 s ... up to 10 minutes).
    pub fn failed(&self, error: &str) {
        let t = now();
        self.with(|s| {
            s.errors += 1;
            s.consecutive_errors = s.consecutive_errors.saturating_add(1);
            s.last_error_at = t;
            put(&mut s.last_error, error);
            let backoff = (10_000_000i64 << (s.consecutive_errors - 1).min(6)).min(MAX_BACKOFF_US);
            s.next_run_at = t + backoff;
        });
    }

    /// The database has no pg_hybrid: the launcher does not come back before the next sweep.
    pub fn no_extension(&self) {
        let t = now();
        self.with(|s| {
            s.no_extension = true;
            s.checked_at = t;
        });
    }

    /// Whether the folders of the database are due for a sweep (`interval_s` since the last),
    /// and if so, records that one starts now.
    pub fn sweep_due(&self, interval_s: i64) -> bool {
        let t = now();
        self.with(|s| {
            let due = s.last_sweep_at == 0 || t - s.last_sweep_at >= interval_s * 1_000_000;
            if due {
                s.last_sweep_at = t;
            }
            due
        })
    }

    /// Whether this is the first round since the server started; marks it done.
    pub fn first_round(&self) -> bool {
        self.with(|s| !std::mem::replace(&mut s.verified, true))
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.with(|s| {
            s.pid = 0;
            put(&mut s.activity, "");
        });
    }
}

/// What the launcher needs to know about a database's worker.
pub struct Plan {
    /// Its worker process is alive.
    pub running: bool,
    /// Do not start it before this time (back-off, or no extension until the next sweep).
    pub not_before: i64,
}

/// The launcher's view of the worker of `database`, given the sweep interval.
pub fn plan(kind: &str, database: u32, sweep_interval_s: i64) -> Plan {
    if !available() {
        return Plan { running: false, not_before: 0 };
    }
    let t = STATUS.share();
    match find(&t, kind, database) {
        None => Plan { running: false, not_before: 0 },
        Some(i) => {
            let s = &t.slots[i];
            let recheck = if s.no_extension { s.checked_at + sweep_interval_s * 1_000_000 } else { 0 };
            Plan { running: alive(s.pid), not_before: s.next_run_at.max(recheck) }
        }
    }
}

/// Frees the slots of databases not in `databases` (dropped), and of dead processes' launcher
/// slots.
pub fn forget_databases(databases: &[u32]) {
    if !available() {
        return;
    }
    let mut t = STATUS.exclusive();
    for s in t.slots.iter_mut() {
        if s.in_use && s.database != 0 && !databases.contains(&s.database) {
            *s = Slot::default();
        }
    }
}

/// One row of `hybrid.workers`.
pub struct Row {
    pub pid: Option<i32>,
    pub database: Option<u32>,
    pub kind: String,
    pub activity: String,
    pub started_at: i64,
    pub last_run: i64,
    pub runs: i64,
    pub errors: i64,
    pub last_error: String,
    pub last_error_at: i64,
    pub next_run_at: i64,
}

/// Every slot in use, except databases without pg_hybrid.
pub fn rows() -> Vec<Row> {
    if !available() {
        return Vec::new();
    }
    let t = STATUS.share();
    t.slots
        .iter()
        .filter(|s| s.in_use && !s.no_extension)
        .map(|s| Row {
            pid: alive(s.pid).then_some(s.pid),
            database: (s.database != 0).then_some(s.database),
            kind: get(&s.kind),
            activity: get(&s.activity),
            started_at: s.started_at,
            last_run: s.last_run,
            runs: s.runs as i64,
            errors: s.errors as i64,
            last_error: get(&s.last_error),
            last_error_at: s.last_error_at,
            next_run_at: s.next_run_at,
        })
        .collect()
}
