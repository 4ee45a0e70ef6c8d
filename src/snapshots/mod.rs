//! Snapshots and restores of hybrid indexes: the Postgres side of `hybrid_engine::snapshot`.
//!
//! - [`take`]: upload an index's current generation to the snapshot store.
//! - [`restore`]: rebuild an index's folder from its newest usable snapshot (or from the table
//!   when there is none), then catch it up with the table.
//! - [`catchup`]: the heap scan that makes a folder index exactly the table's rows.
//!
//! Both run in a foreground backend (`hybrid.snapshot_now`, `hybrid.restore`) and in the
//! database workers; [`Feedback`] is how each reports progress and is told to stop.

pub mod catchup;
pub mod restore;
pub mod take;

use std::cell::RefCell;
use std::ffi::CStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hybrid_engine::snapshot::{Phase, Progress, SnapshotStore, StoreOptions};
use pgrx::pg_sys;

use crate::gucs;
use crate::workers::status;

/// The snapshot store URL in force: `hybrid.snapshot_url`, or the folder `pg_hybrid_snapshots`
/// of the data directory.
pub fn url() -> String {
    gucs::string(&gucs::SNAPSHOT_URL).unwrap_or_else(|| {
        // SAFETY: DataDir is set before any backend code runs and never changes.
        let data = unsafe { CStr::from_ptr(pg_sys::DataDir) }.to_string_lossy().into_owned();
        format!("file://{}/pg_hybrid_snapshots", data.trim_end_matches('/'))
    })
}

fn options() -> StoreOptions {
    StoreOptions {
        endpoint: gucs::string(&gucs::S3_ENDPOINT),
        region: gucs::string(&gucs::S3_REGION),
        allow_http: gucs::S3_ALLOW_HTTP.get().then_some(true),
        access_key_id: gucs::string(&gucs::S3_ACCESS_KEY_ID),
        secret_access_key: gucs::string(&gucs::S3_SECRET_ACCESS_KEY),
        ..StoreOptions::default()
    }
}

thread_local! {
    /// The store opened last, with what it was opened from (settings change on SIGHUP).
    static STORE: RefCell<Option<(String, String, Arc<SnapshotStore>)>> = const { RefCell::new(None) };
}

/// The snapshot store the settings name, opened once per process and settings.
pub fn store() -> hybrid_engine::Result<Arc<SnapshotStore>> {
    let url = url();
    let options = options();
    let fingerprint = format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}",
        options.endpoint, options.region, options.allow_http, options.access_key_id, options.secret_access_key
    );
    STORE.with(|cell| {
        if let Some((u, f, s)) = &*cell.borrow() {
            if *u == url && *f == fingerprint {
                return Ok(s.clone());
            }
        }
        let store = Arc::new(SnapshotStore::open(&url, options)?);
        *cell.borrow_mut() = Some((url, fingerprint, store.clone()));
        Ok(store)
    })
}

/// How a long operation reports progress, and learns that it must stop.
pub enum Feedback<'a> {
    /// A foreground command: NOTICE lines every few seconds; stops on query cancel.
    Notice { every: Duration, last: Option<Instant> },
    /// A database worker: its row of `hybrid.workers`; stops on SIGTERM (shutdown).
    Worker { slot: &'a status::Handle, last: Option<Instant> },
}

impl Feedback<'_> {
    /// Feedback for a foreground command.
    pub fn notice() -> Feedback<'static> {
        Feedback::Notice { every: Duration::from_secs(2), last: None }
    }

    /// Feedback for the worker holding `slot`.
    pub fn worker(slot: &status::Handle) -> Feedback<'_> {
        Feedback::Worker { slot, last: None }
    }

    /// Reports `what` (built only when shown). Returns false when the operation must stop (a
    /// cancel, or a shutdown request to a worker): the caller then unwinds cleanly and calls
    /// [`Feedback::stopped`].
    pub fn step(&mut self, what: impl FnOnce() -> String) -> bool {
        // SAFETY: reads a flag set by signal handlers (workers use Postgres' own SIGTERM
        // handler, so a shutdown request shows here too).
        if unsafe { pg_sys::InterruptPending != 0 } {
            return false;
        }
        match self {
            Feedback::Notice { every, last } => {
                if last.is_none_or(|t| t.elapsed() >= *every) {
                    if last.is_some() {
                        pgrx::notice!("{}", what());
                    }
                    *last = Some(Instant::now());
                }
            }
            Feedback::Worker { slot, last } => {
                if last.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
                    slot.activity(&what());
                    *last = Some(Instant::now());
                }
            }
        }
        true
    }

    /// Reports a milestone: always shown.
    pub fn say(&mut self, what: &str) {
        match self {
            Feedback::Notice { .. } => pgrx::notice!("{what}"),
            Feedback::Worker { slot, .. } => {
                slot.activity(what);
                pgrx::log!("pg_hybrid: {what}");
            }
        }
    }

    /// After an operation stopped because [`Feedback::step`] said so: processes the pending
    /// interrupt (a cancel is an ERROR, a shutdown request ends the process).
    pub fn stopped(&self) {
        crate::check_for_interrupts();
    }
}

/// The engine callback of a snapshot or restore, reporting through `feedback`. An error it
/// returns stops the engine; `stop` records that it was ours.
pub fn engine_progress<'a, 'f>(
    label: &'a str,
    feedback: &'a mut Feedback<'f>,
    stop: &'a mut bool,
) -> impl FnMut(Progress) -> hybrid_engine::Result<()> + use<'a, 'f> {
    move |p: Progress| {
        let go = feedback.step(|| describe(label, &p));
        if go {
            Ok(())
        } else {
            *stop = true;
            Err(hybrid_engine::Error::Store { message: "stopped".into(), hint: None })
        }
    }
}

/// "snapshot of docs_search: uploading 12/40 files, 35.1 of 120.0 MB".
pub fn describe(label: &str, p: &Progress) -> String {
    let verb = match p.phase {
        Phase::Hashing => "hashing",
        Phase::Uploading => "uploading",
        Phase::Downloading => "downloading",
    };
    format!(
        "{label}: {verb} {}/{} files, {} of {}",
        p.files_done,
        p.files_total,
        megabytes(p.bytes_done),
        megabytes(p.bytes_total)
    )
}

/// Bytes as "35.1 MB".
pub fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
