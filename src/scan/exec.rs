//! Executing the search scan.
//!
//! On the first row it publishes this transaction's buffered rows (read your own writes), takes
//! a snapshot of the newest index generation and runs the search: for a top-k (rows wanted by
//! descending score) the best `limit + headroom` hits, then further rounds of twice the size if
//! rows turn out invisible to the query's snapshot or filtered out by other conditions; without
//! an ordering, every match at once. Each hit's heap tuple is fetched through the table AM with
//! the query's snapshot (following HOT chains), so only visible rows come out (invariant 2), and
//! a LIMIT above never gets fewer rows than exist.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use hybrid_engine::query::compile::conjunction;
use hybrid_engine::query::eval::matches_row;
use hybrid_engine::query::DefaultOperator;
use hybrid_engine::tantivy::query::Query;
use hybrid_engine::text::reader::Snapshot;
use pgrx::prelude::*;
use pgrx::{PgList, PgMemoryContexts};

use super::plan::PrivateInfo;
use super::registry::{self, ActiveScan};
use super::EXEC_METHODS;
use crate::am::log_pages::PageLog;
use crate::error::OrRaise;
use crate::layout::{self, Layout, Role};
use crate::{gucs, sidecar, xact};

/// Largest round of a top-k search.
const MAX_WINDOW: usize = 1 << 20;
/// First round when the query has no LIMIT.
const DEFAULT_WINDOW: usize = 100;
/// Searches of an index that keep headroom after one that lost hits (see `Runtime::headroom`).
const MISS_MEMORY: u32 = 64;

thread_local! {
    /// Per index OID: how many more searches start with headroom.
    static MISSES: RefCell<HashMap<u32, u32>> = RefCell::new(HashMap::new());
}

/// The executor node: Postgres' CustomScanState followed by our pointer.
#[repr(C)]
struct SearchScanState {
    css: pg_sys::CustomScanState,
    runtime: *mut Runtime,
}

/// Counters shown by EXPLAIN ANALYZE.
#[derive(Default, Clone, Copy)]
struct Counters {
    rounds: u64,
    hits: u64,
    invisible: u64,
}

struct Runtime {
    info: PrivateInfo,
    /// Whether the scan node evaluates other conditions (WHERE clauses, row-level security) on
    /// the rows it fetches: some hits may be filtered out.
    has_quals: bool,
    index: pg_sys::Relation,
    layout: Layout,
    /// Heap attribute number of each text field (0 for an expression column).
    attno_of_field: Vec<i16>,
    exprs: Vec<*mut pg_sys::ExprState>,
    fetch: *mut pg_sys::IndexFetchTableData,
    /// A slot of the table's own kind: the table AM fetches into slots of its type, while
    /// Postgres 15 gives custom scans a virtual scan slot (and compiles the plan's expressions
    /// for that slot type). Rows are fetched here and copied into the scan slot.
    fetch_slot: *mut pg_sys::TupleTableSlot,
    active: Rc<RefCell<ActiveScan>>,
    started: bool,
    texts: Vec<String>,
    snapshot: Option<Snapshot>,
    query: Option<Arc<dyn Query>>,
    hits: VecDeque<(f32, u64)>,
    window: usize,
    offset: usize,
    exhausted: bool,
    counters: Counters,
}

impl Runtime {
    fn first_window(&self) -> usize {
        match self.info.limit {
            Some(l) => (l.max(1) as usize).saturating_add(self.headroom()),
            None => DEFAULT_WINDOW,
        }
        .min(MAX_WINDOW)
    }

    /// Extra hits of the first round beyond the LIMIT: `hybrid.topk_headroom` when some may be
    /// lost (the scan has other conditions, or a recent search of this index in this backend
    /// met invisible rows); none otherwise, so the engine's top-k does no more work than the
    /// LIMIT asks (three-term OR on the demo table: 0.386 ms at 10, 0.347 ms at 0). A first
    /// round that comes up short costs a second round, nothing else.
    fn headroom(&self) -> usize {
        let wanted = self.has_quals || MISSES.with(|m| m.borrow().get(&self.info.index_oid).is_some_and(|&n| n > 0));
        if wanted {
            gucs::TOPK_HEADROOM.get().max(0) as usize
        } else {
            0
        }
    }

    /// A search of this index lost hits (invisible rows) or needed a second round: the next
    /// searches of the index in this backend start with headroom again.
    fn note_miss(&self) {
        MISSES.with(|m| {
            m.borrow_mut().insert(self.info.index_oid, MISS_MEMORY);
        });
    }

    /// A search started: misses further back are forgotten, one search at a time.
    fn note_search(&self) {
        MISSES.with(|m| {
            if let Some(n) = m.borrow_mut().get_mut(&self.info.index_oid) {
                *n = n.saturating_sub(1);
            }
        });
    }

    fn reset(&mut self) {
        self.started = false;
        self.texts.clear();
        self.snapshot = None;
        self.query = None;
        self.hits.clear();
        self.offset = 0;
        self.window = self.first_window();
        self.exhausted = false;
        self.active.borrow_mut().reset();
    }

    /// Evaluates the query expressions, compiles and runs the first round.
    unsafe fn start(&mut self, econtext: *mut pg_sys::ExprContext) {
        self.started = true;
        self.note_search();
        let mut queries: Vec<Box<dyn Query>> = Vec::new();
        xact::flush(&self.layout.dir);
        let snap = sidecar::snapshot(&self.layout.dir, &PageLog::new(self.index)).or_raise();
        for (i, state) in self.exprs.iter().enumerate() {
            let mut isnull = false;
            let datum = pg_sys::ExecEvalExprSwitchContext(*state, econtext, &mut isnull);
            if isnull {
                // `col @@@ NULL` is not true for any row.
                self.exhausted = true;
                return;
            }
            let text = layout::datum_text(datum);
            let field = match self.layout.roles.get(self.info.columns[i]) {
                Some(Role::Text(f)) => Some(*f),
                _ => None,
            };
            queries.push(snap.compile(&text, field, DefaultOperator::Or).or_raise_in(&text));
            self.texts.push(text);
        }
        let query: Arc<dyn Query> = Arc::from(conjunction(queries));
        {
            let mut a = self.active.borrow_mut();
            a.snapshot = Some(snap.clone());
            a.query = Some(query.clone());
        }
        self.snapshot = Some(snap);
        self.query = Some(query);
        self.next_round();
    }

    /// Fetches the next batch of hits.
    fn next_round(&mut self) {
        let (Some(snap), Some(query)) = (&self.snapshot, &self.query) else {
            self.exhausted = true;
            return;
        };
        if self.offset > 0 && self.info.limit.is_some() {
            self.note_miss();
        }
        self.counters.rounds += 1;
        if self.info.ordered {
            let batch = snap.top_ctids(&**query, self.window, self.offset).or_raise();
            self.exhausted = batch.len() < self.window;
            self.offset += batch.len();
            self.window = (self.window.saturating_mul(2)).min(MAX_WINDOW);
            self.counters.hits += batch.len() as u64;
            self.hits.extend(batch);
        } else {
            let mut batch = if self.info.scores {
                snap.scored_ctids(&**query).or_raise()
            } else {
                snap.matching_ctids(&**query).or_raise().into_iter().map(|c| (0.0, c)).collect()
            };
            // Heap order: neighbouring rows share pages.
            batch.sort_unstable_by_key(|(_, c)| *c);
            self.counters.hits += batch.len() as u64;
            self.hits.extend(batch);
            self.exhausted = true;
        }
    }
}

unsafe fn runtime<'a>(node: *mut pg_sys::CustomScanState) -> &'a mut Runtime {
    &mut *(*(node as *mut SearchScanState)).runtime
}

#[pg_guard]
pub(super) unsafe extern "C-unwind" fn create_scan_state(cscan: *mut pg_sys::CustomScan) -> *mut pg_sys::Node {
    let st = pg_sys::palloc0(std::mem::size_of::<SearchScanState>()) as *mut SearchScanState;
    (*st).css.ss.ps.type_ = pg_sys::NodeTag::T_CustomScanState;
    (*st).css.flags = (*cscan).flags;
    (*st).css.methods = std::ptr::addr_of!(EXEC_METHODS);
    st as *mut pg_sys::Node
}

#[pg_guard]
pub(super) unsafe extern "C-unwind" fn begin(
    node: *mut pg_sys::CustomScanState,
    estate: *mut pg_sys::EState,
    _eflags: i32,
) {
    let cscan = (*node).ss.ps.plan as *mut pg_sys::CustomScan;
    let private = PgList::<pg_sys::Node>::from_pg((*cscan).custom_private);
    let info = PrivateInfo::from_node(private.get_ptr(0).expect("private info"));
    let index = pg_sys::index_open(pg_sys::Oid::from(info.index_oid), pg_sys::AccessShareLock as _);
    let layout = layout::layout(index);
    let heap = (*node).ss.ss_currentRelation;

    // Heap attribute numbers of the index columns.
    let indkey = &(*(*index).rd_index).indkey;
    let heap_attnos: Vec<i16> = indkey.values.as_slice(indkey.dim1 as usize).to_vec();
    let mut field_of_attno = HashMap::new();
    let mut attno_of_field = vec![0i16; layout.config.text_fields.len()];
    for (col, role) in layout.roles.iter().enumerate() {
        if let (Role::Text(f), Some(&attno)) = (role, heap_attnos.get(col)) {
            attno_of_field[*f] = attno;
            if attno > 0 {
                field_of_attno.insert(attno, *f);
            }
        }
    }
    let key_attno = heap_attnos.get(layout.key_col).copied().unwrap_or(0);
    let default_field = match layout.roles.get(*info.columns.first().unwrap_or(&0)) {
        Some(Role::Text(f)) => *f,
        _ => 0,
    };
    let active = registry::register(ActiveScan::new((*cscan).scan.scanrelid, key_attno, field_of_attno, default_field));

    let mut exprs = Vec::new();
    for e in PgList::<pg_sys::Expr>::from_pg((*cscan).custom_exprs).iter_ptr() {
        exprs.push(pg_sys::ExecInitExpr(e, node as *mut pg_sys::PlanState));
    }
    let fetch = pg_sys::table_index_fetch_begin(heap);
    let slot = pg_sys::table_slot_create(heap, &mut (*estate).es_tupleTable);
    let mut rt = Runtime {
        info,
        has_quals: !(*node).ss.ps.qual.is_null(),
        index,
        layout,
        attno_of_field,
        exprs,
        fetch,
        fetch_slot: slot,
        active,
        started: false,
        texts: Vec::new(),
        snapshot: None,
        query: None,
        hits: VecDeque::new(),
        window: 0,
        offset: 0,
        exhausted: false,
        counters: Counters::default(),
    };
    rt.window = rt.first_window();
    // Freed with the executor's memory, also when the query fails half-way.
    let rt = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(rt);
    (*(node as *mut SearchScanState)).runtime = rt;
}

#[pg_guard]
unsafe extern "C-unwind" fn next_row(ss: *mut pg_sys::ScanState) -> *mut pg_sys::TupleTableSlot {
    let node = ss as *mut pg_sys::CustomScanState;
    let rt = runtime(node);
    let slot = rt.fetch_slot;
    let scan_slot = (*ss).ss_ScanTupleSlot;
    if !rt.started {
        rt.start((*ss).ps.ps_ExprContext);
    }
    let estate = (*ss).ps.state;
    loop {
        let Some((score, ctid)) = rt.hits.pop_front() else {
            if rt.exhausted {
                return pg_sys::ExecClearTuple(scan_slot);
            }
            rt.next_round();
            continue;
        };
        let mut tid = layout::u64_to_tid(ctid);
        let mut call_again = false;
        let mut all_dead = false;
        let found = pg_sys::table_index_fetch_tuple(
            rt.fetch,
            &mut tid,
            (*estate).es_snapshot,
            slot,
            &mut call_again,
            &mut all_dead,
        );
        if !found {
            rt.counters.invisible += 1;
            rt.note_miss();
            continue;
        }
        if rt.info.scores {
            let mut a = rt.active.borrow_mut();
            if a.key_attno > 0 {
                let mut isnull = false;
                let datum = pg_sys::slot_getattr(slot, i32::from(a.key_attno), &mut isnull);
                if !isnull {
                    a.current = Some((layout::key_value(datum, rt.layout.key_type), score));
                }
            } else {
                a.current = Some((hybrid_engine::text::KeyValue::I64(0), score));
            }
        }
        // The scan slot gets the fetched row's values without a copy: its by-reference values
        // point into the buffer the fetch slot keeps pinned until the next fetch, which only
        // happens when the next row is asked for (as a sequential scan's slot points into its
        // page). ExecCopySlot would copy every value, long texts included.
        pg_sys::slot_getallattrs(slot);
        pg_sys::ExecClearTuple(scan_slot);
        let natts = (*(*scan_slot).tts_tupleDescriptor).natts as usize;
        std::ptr::copy_nonoverlapping((*slot).tts_values, (*scan_slot).tts_values, natts);
        std::ptr::copy_nonoverlapping((*slot).tts_isnull, (*scan_slot).tts_isnull, natts);
        return pg_sys::ExecStoreVirtualTuple(scan_slot);
    }
}

/// EvalPlanQual: a row a concurrent transaction updated is re-fetched in its new version and
/// must be checked again. The search conditions are evaluated on its values with the index's
/// analysis (the other conditions are in the plan's qual, which ExecScan evaluates itself).
#[pg_guard]
unsafe extern "C-unwind" fn recheck(ss: *mut pg_sys::ScanState, slot: *mut pg_sys::TupleTableSlot) -> bool {
    let rt = runtime(ss as *mut pg_sys::CustomScanState);
    if !rt.started || rt.attno_of_field.contains(&0) {
        return true;
    }
    let values: Vec<Option<String>> = rt
        .attno_of_field
        .iter()
        .map(|&attno| {
            let mut isnull = false;
            let d = pg_sys::slot_getattr(slot, i32::from(attno), &mut isnull);
            (!isnull).then(|| layout::datum_text(d))
        })
        .collect();
    let refs: Vec<Option<&str>> = values.iter().map(|v| v.as_deref()).collect();
    for (i, text) in rt.texts.iter().enumerate() {
        let field = match rt.layout.roles.get(rt.info.columns[i]) {
            Some(Role::Text(f)) => *f,
            _ => continue,
        };
        if !matches_row(text, field, &rt.layout.config.text_fields, &refs).or_raise_in(text) {
            return false;
        }
    }
    true
}

#[pg_guard]
pub(super) unsafe extern "C-unwind" fn exec(node: *mut pg_sys::CustomScanState) -> *mut pg_sys::TupleTableSlot {
    let out = pg_sys::ExecScan(&mut (*node).ss, Some(next_row), Some(recheck));
    // Only a row that passed every condition (row-level security first) is returned; only its
    // score may be found by key later (above a join or a sort). A row that failed them must
    // not be: hybrid.score(<its key>) would reveal that it exists and matches.
    let returned = !out.is_null() && (*out).tts_flags & pg_sys::TTS_FLAG_EMPTY as u16 == 0;
    if returned {
        runtime(node).active.borrow_mut().confirm_current();
    }
    out
}

#[pg_guard]
pub(super) unsafe extern "C-unwind" fn end(node: *mut pg_sys::CustomScanState) {
    let rt = runtime(node);
    if !rt.fetch.is_null() {
        pg_sys::table_index_fetch_end(rt.fetch);
        rt.fetch = std::ptr::null_mut();
    }
    if !rt.index.is_null() {
        pg_sys::index_close(rt.index, pg_sys::AccessShareLock as _);
        rt.index = std::ptr::null_mut();
    }
}

#[pg_guard]
pub(super) unsafe extern "C-unwind" fn rescan(node: *mut pg_sys::CustomScanState) {
    let rt = runtime(node);
    rt.reset();
    if !rt.fetch.is_null() {
        pg_sys::table_index_fetch_reset(rt.fetch);
    }
}

#[pg_guard]
pub(super) unsafe extern "C-unwind" fn explain(
    node: *mut pg_sys::CustomScanState,
    ancestors: *mut pg_sys::List,
    es: *mut pg_sys::ExplainState,
) {
    let rt = runtime(node);
    let cscan = (*node).ss.ps.plan as *mut pg_sys::CustomScan;
    let name = std::ffi::CString::new(rt.layout.index_name.clone()).unwrap_or_default();
    pg_sys::ExplainPropertyText(c"Index".as_ptr(), name.as_ptr(), es);
    let context = pg_sys::set_deparse_context_plan((*es).deparse_cxt, cscan as *mut pg_sys::Plan, ancestors);
    for e in PgList::<pg_sys::Node>::from_pg((*cscan).custom_exprs).iter_ptr() {
        let text = pg_sys::deparse_expression(e, context, false, false);
        pg_sys::ExplainPropertyText(c"Search Query".as_ptr(), text, es);
    }
    if rt.info.ordered {
        pg_sys::ExplainPropertyText(c"Order".as_ptr(), c"score DESC".as_ptr(), es);
    }
    if let Some(limit) = rt.info.limit {
        pg_sys::ExplainPropertyInteger(c"Top-k Limit".as_ptr(), std::ptr::null(), limit, es);
    }
    if (*es).analyze {
        let c = rt.counters;
        pg_sys::ExplainPropertyInteger(c"Search Rounds".as_ptr(), std::ptr::null(), c.rounds as i64, es);
        pg_sys::ExplainPropertyInteger(c"Index Hits".as_ptr(), std::ptr::null(), c.hits as i64, es);
        pg_sys::ExplainPropertyInteger(c"Invisible Hits".as_ptr(), std::ptr::null(), c.invisible as i64, es);
    }
}
