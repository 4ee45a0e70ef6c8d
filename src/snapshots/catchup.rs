//! Catching a folder up with its table (see `hybrid_engine::text::reconcile`): one scan of the
//! heap, as CREATE INDEX does it (live rows and rows some snapshot may still see, HOT chains at
//! their root), comparing each row with the entry the folder holds at its tuple id.
//!
//! The caller holds a lock on the table that keeps writers out, so that what the scan sees is
//! all there is: a row committed during the scan would otherwise be missed by it, and its entry
//! (published by its own transaction) could be taken for a stale one.

use std::path::Path;

use hybrid_engine::manifest::Manifest;
use hybrid_engine::text::maintenance;
use hybrid_engine::text::reconcile::Entries;
use hybrid_engine::text::writer::{publish_segments, SegmentBuilder, StagedSegment};
use pgrx::prelude::*;

use super::Feedback;
use crate::error::OrRaise;
use crate::layout::{self, Layout};

/// Rows per new segment: bounds the memory of a large catch-up.
const ROWS_PER_SEGMENT: u64 = 200_000;
const SEGMENT_BUDGET: usize = 64 << 20;

/// What a catch-up did.
#[derive(Debug, Default, Clone, Copy)]
pub struct CatchUp {
    /// Rows whose entry was right.
    pub kept: u64,
    /// Rows indexed again (missing, or their entry was wrong or doubled).
    pub added: u64,
    /// Entries deleted (their tuple is gone or holds other values now).
    pub removed: u64,
}

struct State<'a, 'f> {
    layout: &'a Layout,
    dir: &'a Path,
    manifest: Manifest,
    entries: Entries,
    builder: Option<SegmentBuilder>,
    staged: Vec<StagedSegment>,
    in_builder: u64,
    stats: CatchUp,
    rows: u64,
    feedback: &'a mut Feedback<'f>,
}

/// Makes the folder `dir` (not the live folder of `index`: a staged copy nobody reads) index
/// exactly the rows of `heap`, each once.
///
/// # Safety
/// `heap` and `index` must be open, `heap` locked against writers (see the module comment).
pub unsafe fn catch_up(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    layout: &Layout,
    dir: &Path,
    feedback: &mut Feedback,
) -> CatchUp {
    let name = layout.index_name.clone();
    let entries = Entries::read(dir, &mut |n| {
        if !feedback.step(|| format!("restore of {name}: read {n} entries")) {
            stop(feedback);
        }
    })
    .or_raise();
    feedback.say(&format!("restore of {name}: comparing {} entries with the table", entries.len()));
    let manifest = Manifest::read(dir).or_raise();
    let mut state = State {
        layout,
        dir,
        manifest,
        entries,
        builder: None,
        staged: Vec::new(),
        in_builder: 0,
        stats: CatchUp::default(),
        rows: 0,
        feedback,
    };
    let info = pg_sys::BuildIndexInfo(index);
    pg_sys::table_index_build_scan(
        heap,
        index,
        info,
        true,
        true,
        Some(callback),
        (&mut state as *mut State).cast(),
        std::ptr::null_mut(),
    );
    state.seal();
    let unconfirmed = state.entries.unconfirmed();
    let feedback = state.feedback;
    if !unconfirmed.is_empty() {
        let _lock = maintenance::lock_maintenance(dir, crate::wait_a_little).or_raise();
        let deleted = maintenance::bulk_delete(
            dir,
            &hybrid_engine::text::pending::NoLog,
            &mut |ctid| unconfirmed.binary_search(&ctid).is_ok(),
            &mut |n| {
                if !feedback.step(|| format!("restore of {name}: checked {n} entries for deletion")) {
                    stop(feedback);
                }
            },
        )
        .or_raise();
        state.stats.removed = deleted.deleted;
    }
    if !state.staged.is_empty() {
        publish_segments(dir, std::mem::take(&mut state.staged)).or_raise();
    }
    state.stats
}

/// Ends the operation because `feedback` said stop: a cancel in a foreground command, an
/// ERROR in a worker that is shutting down.
fn stop(feedback: &Feedback) -> ! {
    feedback.stopped();
    pgrx::error!("pg_hybrid: stopped by a shutdown request")
}

impl State<'_, '_> {
    fn add(&mut self, doc: &hybrid_engine::text::Document) {
        if self.builder.is_none() {
            self.builder = Some(SegmentBuilder::new(self.dir, &self.manifest, SEGMENT_BUDGET).or_raise());
        }
        self.builder.as_mut().expect("just made").add(doc).or_raise();
        self.stats.added += 1;
        self.in_builder += 1;
        if self.in_builder >= ROWS_PER_SEGMENT {
            self.seal();
        }
    }

    fn seal(&mut self) {
        if let Some(b) = self.builder.take() {
            if let Some(s) = b.finish().or_raise() {
                self.staged.push(s);
            }
        }
        self.in_builder = 0;
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn callback(
    _index: pg_sys::Relation,
    tid: pg_sys::ItemPointer,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    _alive: bool,
    state: *mut std::ffi::c_void,
) {
    let state = &mut *(state as *mut State);
    let doc = layout::document(state.layout, values, isnull, tid);
    if state.entries.confirm(doc.ctid, doc.content_hash()) {
        state.stats.kept += 1;
    } else {
        state.add(&doc);
    }
    state.rows += 1;
    if state.rows % 1024 == 0 {
        let (rows, added, name) = (state.rows, state.stats.added, &state.layout.index_name);
        if !state.feedback.step(|| format!("restore of {name}: compared {rows} rows, {added} to index again")) {
            stop(state.feedback);
        }
        pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE as i32, rows as i64);
    }
}
