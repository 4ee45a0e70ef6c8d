//! Index scans: `col @@@ 'query'` filters, plain (`amgettuple`) and bitmap (`amgetbitmap`), and
//! nearest-neighbour scans, `ORDER BY embedding <=> $1` (`amgettuple` with order-by keys).
//!
//! Every scan starts by publishing this transaction's buffered rows (read your own writes) and
//! taking a snapshot of the newest index generation. Postgres checks each returned tuple id
//! against the query's snapshot, so rows of aborted or not-yet-visible transactions never come
//! back (invariant 2). Text matching is exact, so no recheck is requested.
//!
//! A filter scan runs the whole query at (re)scan time and returns tuple ids in heap order.
//! A nearest-neighbour scan returns rows by increasing distance in rounds: the first asks the
//! index for the `hybrid.ef_search` nearest rows (the `@@@` conditions of the scan applied
//! inside the search); if Postgres keeps asking (rows turned out invisible, or failed conditions
//! the index cannot evaluate), the next round asks for twice as many, and so on until every
//! indexed row has been returned: the scan never ends before the rows that exist do. Rows
//! without a vector come last with a NULL distance, as a sort puts them (ORDER BY ... ASC NULLS
//! LAST); with a NULL query vector every distance is NULL and all rows come, in no order.

use std::collections::{HashSet, VecDeque};

use hybrid_engine::query::compile::conjunction;
use hybrid_engine::query::DefaultOperator;
use hybrid_engine::tantivy::query::Query;
use hybrid_engine::text::reader::Snapshot;
use hybrid_engine::vector::distance::Metric;
use pgrx::prelude::*;
use pgrx::{PgMemoryContexts, PgSqlErrorCode};

use crate::am::log_pages::PageLog;
use crate::error::{raise_with, OrRaise};
use crate::layout::{self, Layout, Role};
use crate::{gucs, sidecar, xact};

/// A nearest-neighbour scan in progress.
struct Knn {
    snap: Snapshot,
    field: usize,
    query: Vec<f32>,
    filter: Option<Box<dyn Query>>,
    /// Rows to ask for in the next round.
    k: usize,
    /// Rows of the last round not returned yet, nearest first.
    pending: VecDeque<(f32, u64)>,
    /// Tuple ids already returned.
    returned: HashSet<u64>,
    /// Distance of the last row returned. Postgres takes the rows in the order they come (it
    /// does not sort an ordered index scan again), so a later round's rows nearer than this,
    /// which an earlier, smaller round missed, are left out rather than returned out of order
    /// (pgvector's iterative scans do the same in their strict mode).
    last: f32,
    /// The index has no more rows with a vector to give.
    exhausted: bool,
    /// Rows with no distance (no vector, or a NULL query vector), returned after the others;
    /// filled once the vectors are exhausted.
    tail: Option<Vec<u64>>,
    /// Postgres must recheck the scan's conditions on returned rows.
    recheck: bool,
}

#[derive(Default)]
struct ScanState {
    ctids: Vec<u64>,
    pos: usize,
    /// Postgres must recheck the conditions on returned rows.
    recheck: bool,
    knn: Option<Knn>,
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
    if norderbys > 0 {
        // The access method provides the arrays the executor reads distances from.
        (*scan).xs_orderbyvals = pg_sys::palloc0(std::mem::size_of::<pg_sys::Datum>() * norderbys as usize).cast();
        (*scan).xs_orderbynulls = pg_sys::palloc0(std::mem::size_of::<bool>() * norderbys as usize).cast();
    }
    // Dropped with the scan's memory context, also when the query fails half-way.
    let st = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(ScanState::default());
    (*scan).opaque = st.cast();
    scan
}

/// What the scan's keys ask: the conjunction of their queries (`None` without keys), and
/// whether Postgres must recheck the returned rows (an `=` on an analysed text field is only a
/// superset). `Err(())` if a key compares with NULL: no row matches.
type Keys = Result<(Option<Box<dyn Query>>, bool), ()>;

/// Strategy numbers of `hybrid_text_ops`.
const STRATEGY_SEARCH: u16 = 1;
const STRATEGY_EQUAL: u16 = 2;

/// Compiles the scan's keys (`col @@@ 'query'`, `col = 'value'`).
///
/// # Safety
/// `keys` must be scan keys on the index of `layout`.
unsafe fn compile_keys(layout: &Layout, snap: &Snapshot, keys: &[pg_sys::ScanKeyData]) -> Keys {
    let mut queries = Vec::with_capacity(keys.len());
    let mut recheck = false;
    for k in keys {
        if k.sk_flags & pg_sys::SK_ISNULL as i32 != 0 {
            return Err(());
        }
        let field = match layout.roles.get((k.sk_attno - 1) as usize) {
            Some(Role::Text(f)) => Some(*f),
            _ => None,
        };
        let text = layout::datum_text(k.sk_argument);
        match (k.sk_strategy, field) {
            (STRATEGY_EQUAL, Some(f)) => {
                let (q, exact) = snap.equality(f, &text);
                recheck |= !exact;
                queries.push(q);
            }
            (STRATEGY_SEARCH, _) => {
                queries.push(snap.compile(&text, field, DefaultOperator::Or).or_raise_in(&text));
            }
            (s, _) => raise_with(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                format!("hybrid index got a scan key of unknown strategy {s}"),
                None,
            ),
        }
    }
    Ok(((!queries.is_empty()).then(|| conjunction(queries)), recheck))
}

/// The tuple ids matching all of the scan's keys, sorted (heap order), and whether Postgres
/// must recheck them.
///
/// # Safety
/// `index` must be an open index of ours; `keys` must be scan keys on it.
pub unsafe fn matching_tids(index: pg_sys::Relation, keys: &[pg_sys::ScanKeyData]) -> (Vec<u64>, bool) {
    let layout = layout::layout(index);
    xact::flush(&layout.dir);
    let snap = sidecar::snapshot(&layout.dir, &PageLog::new(index)).or_raise();
    let (query, recheck) = match compile_keys(&layout, &snap, keys) {
        Err(()) => return (Vec::new(), false),
        Ok((Some(q), r)) => (q, r),
        Ok((None, r)) => (Box::new(hybrid_engine::tantivy::query::AllQuery) as Box<dyn Query>, r),
    };
    let mut ctids = snap.matching_ctids(&*query).or_raise();
    ctids.sort_unstable();
    (ctids, recheck)
}

/// The metric a `FOR ORDER BY` strategy of `hybrid_vector_ops` stands for.
fn strategy_metric(strategy: u16) -> Option<Metric> {
    match strategy {
        1 => Some(Metric::L2),
        2 => Some(Metric::Cosine),
        3 => Some(Metric::InnerProduct),
        _ => None,
    }
}

/// Starts a nearest-neighbour scan, or `None` if no row can come out (`@@@ NULL`).
unsafe fn start_knn(index: pg_sys::Relation, keys: &[pg_sys::ScanKeyData], order: &pg_sys::ScanKeyData) -> Option<Knn> {
    let layout = layout::layout(index);
    let field = match layout.roles.get((order.sk_attno - 1) as usize) {
        Some(Role::Vector(f)) => *f,
        _ => raise_with(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "a hybrid index orders rows only by the distance of one of its vector columns",
            None,
        ),
    };
    let cfg = &layout.config.vector_fields[field];
    if strategy_metric(order.sk_strategy) != Some(cfg.metric) {
        // The planner does not choose such a path (see cost.rs); this guards against it anyway.
        raise_with(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("vector field \"{}\" is indexed for {} ({})", cfg.name, cfg.metric.name(), cfg.metric.operator()),
            Some(format!(
                "order by {} {} ..., or create an index with the metric you need",
                cfg.name,
                cfg.metric.operator()
            )),
        );
    }
    let null_query = order.sk_flags & pg_sys::SK_ISNULL as i32 != 0;
    let query = if null_query { Vec::new() } else { layout::datum_vector(order.sk_argument, &cfg.name) };
    if !null_query {
        cfg.check(&query, "query vector").or_raise();
    }
    xact::flush(&layout.dir);
    let snap = sidecar::snapshot(&layout.dir, &PageLog::new(index)).or_raise();
    let (filter, recheck) = compile_keys(&layout, &snap, keys).ok()?;
    Some(Knn {
        snap,
        field,
        query,
        filter,
        recheck,
        k: (gucs::EF_SEARCH.get().max(1) as usize).max(10),
        pending: VecDeque::new(),
        returned: HashSet::new(),
        last: f32::NEG_INFINITY,
        exhausted: null_query,
        tail: None,
    })
}

impl Knn {
    /// Asks the index for the next, larger round of nearest rows.
    fn next_round(&mut self) {
        let ef = (gucs::EF_SEARCH.get().max(1) as usize).max(self.k);
        let exact_below = gucs::EXACT_SEARCH_THRESHOLD.get().max(0) as usize;
        let result = self.snap.knn(self.field, &self.query, self.k, ef, self.filter.as_deref(), exact_below).or_raise();
        self.exhausted = result.hits.len() < self.k;
        let last = self.last;
        self.pending = result.hits.into_iter().filter(|(d, c)| *d >= last && !self.returned.contains(c)).collect();
        self.k = self.k.saturating_mul(2);
    }

    /// The next row and its distance (`None` for rows without one).
    fn next(&mut self) -> Option<(Option<f32>, u64)> {
        loop {
            if let Some(hit) = self.pending.pop_front() {
                self.returned.insert(hit.1);
                self.last = hit.0;
                return Some((Some(hit.0), hit.1));
            }
            if !self.exhausted {
                self.next_round();
                continue;
            }
            if self.tail.is_none() {
                // Every row with a vector has come out: the rest, matching the conditions.
                let all = hybrid_engine::tantivy::query::AllQuery;
                let q: &dyn Query = self.filter.as_deref().unwrap_or(&all);
                let mut rest: Vec<u64> =
                    self.snap.matching_ctids(q).or_raise().into_iter().filter(|c| !self.returned.contains(c)).collect();
                rest.sort_unstable_by(|a, b| b.cmp(a));
                self.tail = Some(rest);
            }
            return self.tail.as_mut().and_then(Vec::pop).map(|c| (None, c));
        }
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amrescan(
    scan: pg_sys::IndexScanDesc,
    keys: pg_sys::ScanKey,
    nkeys: std::ffi::c_int,
    orderbys: pg_sys::ScanKey,
    norderbys: std::ffi::c_int,
) {
    if !keys.is_null() && nkeys > 0 && keys != (*scan).keyData {
        std::ptr::copy(keys, (*scan).keyData, nkeys as usize);
    }
    if !orderbys.is_null() && norderbys > 0 && orderbys != (*scan).orderByData {
        std::ptr::copy(orderbys, (*scan).orderByData, norderbys as usize);
    }
    let n = (*scan).numberOfKeys as usize;
    let keys: &[pg_sys::ScanKeyData] = if n == 0 { &[] } else { std::slice::from_raw_parts((*scan).keyData, n) };
    let st = state(scan);
    st.pos = 0;
    st.ctids = Vec::new();
    st.recheck = false;
    st.knn = None;
    if (*scan).numberOfOrderBys > 0 {
        let order = &*(*scan).orderByData;
        match start_knn((*scan).indexRelation, keys, order) {
            Some(k) => st.knn = Some(k),
            None => st.pos = usize::MAX,
        }
    } else {
        (st.ctids, st.recheck) = matching_tids((*scan).indexRelation, keys);
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amgettuple(scan: pg_sys::IndexScanDesc, _dir: pg_sys::ScanDirection::Type) -> bool {
    let st = state(scan);
    if let Some(knn) = &mut st.knn {
        let Some((distance, ctid)) = knn.next() else { return false };
        (*scan).xs_heaptid = layout::u64_to_tid(ctid);
        (*scan).xs_recheck = knn.recheck;
        // The distance is exact (the metric of the field is the operator's), so Postgres need
        // not recompute it to order rows.
        match distance {
            Some(d) => {
                *(*scan).xs_orderbyvals = f64::from(d).into_datum().expect("float8 datum");
                *(*scan).xs_orderbynulls = false;
            }
            None => {
                *(*scan).xs_orderbyvals = pg_sys::Datum::from(0usize);
                *(*scan).xs_orderbynulls = true;
            }
        }
        (*scan).xs_recheckorderby = false;
        return true;
    }
    let Some(&ctid) = st.ctids.get(st.pos) else { return false };
    st.pos += 1;
    (*scan).xs_heaptid = layout::u64_to_tid(ctid);
    (*scan).xs_recheck = st.recheck;
    true
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amgetbitmap(scan: pg_sys::IndexScanDesc, tbm: *mut pg_sys::TIDBitmap) -> i64 {
    let st = state(scan);
    let mut tids: Vec<pg_sys::ItemPointerData> = st.ctids.iter().map(|c| layout::u64_to_tid(*c)).collect();
    for chunk in tids.chunks_mut(1 << 16) {
        pg_sys::tbm_add_tuples(tbm, chunk.as_mut_ptr(), chunk.len() as i32, st.recheck);
    }
    st.pos = st.ctids.len();
    tids.len() as i64
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amendscan(scan: pg_sys::IndexScanDesc) {
    // The state itself goes with the scan's memory context; release the results now.
    let st = state(scan);
    st.ctids = Vec::new();
    st.knn = None;
}
