//! Index scans for `col @@@ 'query'`, plain (`amgettuple`) and bitmap (`amgetbitmap`).
//!
//! The whole query runs at (re)scan time against a snapshot of the newest generation, after
//! this transaction's own buffered rows are published (read your own writes). The result is a
//! list of tuple ids in heap order; Postgres checks each against the query's snapshot, so rows
//! of aborted or not-yet-visible transactions never come back (invariant 2). Matching is exact,
//! so no recheck is requested.

use hybrid_engine::query::compile::conjunction;
use hybrid_engine::query::DefaultOperator;
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;

use crate::error::OrRaise;
use crate::layout::{self, Role};
use crate::{sidecar, xact};

#[derive(Default)]
struct ScanState {
    ctids: Vec<u64>,
    pos: usize,
}

unsafe fn state<'a>(scan: pg_sys::IndexScanDesc) -> &'a mut ScanState {
    &mut *((*scan).opaque as *mut ScanState)
}

#[pg_guard]
pub unsafe extern "C-unwind" fn ambeginscan(
    index: pg_sys::Relation,
    nkeys: std::ffi::c_int,
    norderbys: std::ffi::c_int,
) -> pg_sys::IndexScanDesc {
    let scan = pg_sys::RelationGetIndexScan(index, nkeys, norderbys);
    // Dropped with the scan's memory context, also when the query fails half-way.
    let st = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(ScanState::default());
    (*scan).opaque = st.cast();
    scan
}

/// The tuple ids matching all of the scan's keys, sorted (heap order).
///
/// # Safety
/// `index` must be an open index of ours; `keys` must hold `nkeys` scan keys on it.
pub unsafe fn matching_tids(index: pg_sys::Relation, keys: &[pg_sys::ScanKeyData]) -> Vec<u64> {
    let layout = layout::layout(index);
    xact::flush(&layout.dir);
    let snap = sidecar::snapshot(&layout.dir).or_raise();
    let mut queries = Vec::with_capacity(keys.len());
    for k in keys {
        if k.sk_flags & pg_sys::SK_ISNULL as i32 != 0 {
            // `col @@@ NULL` is NULL, which is not true.
            return Vec::new();
        }
        let default_field = match layout.roles.get((k.sk_attno - 1) as usize) {
            Some(Role::Text(f)) => Some(*f),
            _ => None,
        };
        let text = layout::datum_text(k.sk_argument);
        queries.push(snap.compile(&text, default_field, DefaultOperator::Or).or_raise_in(&text));
    }
    let query = if queries.is_empty() { Box::new(hybrid_engine::tantivy::query::AllQuery) } else { conjunction(queries) };
    let mut ctids = snap.matching_ctids(&*query).or_raise();
    ctids.sort_unstable();
    ctids
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amrescan(
    scan: pg_sys::IndexScanDesc,
    keys: pg_sys::ScanKey,
    nkeys: std::ffi::c_int,
    _orderbys: pg_sys::ScanKey,
    _norderbys: std::ffi::c_int,
) {
    if !keys.is_null() && nkeys > 0 && keys != (*scan).keyData {
        std::ptr::copy(keys, (*scan).keyData, nkeys as usize);
    }
    let n = (*scan).numberOfKeys as usize;
    let keys: &[pg_sys::ScanKeyData] = if n == 0 { &[] } else { std::slice::from_raw_parts((*scan).keyData, n) };
    let ctids = matching_tids((*scan).indexRelation, keys);
    let st = state(scan);
    st.ctids = ctids;
    st.pos = 0;
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amgettuple(scan: pg_sys::IndexScanDesc, _dir: pg_sys::ScanDirection::Type) -> bool {
    let st = state(scan);
    let Some(&ctid) = st.ctids.get(st.pos) else { return false };
    st.pos += 1;
    (*scan).xs_heaptid = layout::u64_to_tid(ctid);
    (*scan).xs_recheck = false;
    true
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amgetbitmap(scan: pg_sys::IndexScanDesc, tbm: *mut pg_sys::TIDBitmap) -> i64 {
    let st = state(scan);
    let mut tids: Vec<pg_sys::ItemPointerData> = st.ctids.iter().map(|c| layout::u64_to_tid(*c)).collect();
    for chunk in tids.chunks_mut(1 << 16) {
        pg_sys::tbm_add_tuples(tbm, chunk.as_mut_ptr(), chunk.len() as i32, false);
    }
    st.pos = st.ctids.len();
    tids.len() as i64
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amendscan(scan: pg_sys::IndexScanDesc) {
    // The state itself goes with the scan's memory context; release the results now.
    let st = state(scan);
    st.ctids = Vec::new();
}
