//! Planning: when a base relation has `col @@@ 'query'` conditions on columns of a hybrid
//! index, offer the search scan as a path.
//!
//! The search scan is the only path that can compute `hybrid.score()` and `hybrid.snippet()`,
//! so when the query uses them it replaces every other path of the relation. It also claims
//! the ordering `ORDER BY hybrid.score(key) DESC` (then the planner adds no Sort, and a LIMIT
//! above it becomes an index top-k). For a plain filter it is offered only when no index path
//! could use the condition (row-level security keeps non-leakproof conditions out of index
//! paths; the search scan applies the security quals first and the search inside the index,
//! which reveals nothing row by row).

use pgrx::prelude::*;
use pgrx::PgList;

use super::plan::PrivateInfo;
use super::{functions, PATH_METHODS};
use crate::am::hybrid_am_oid;
use crate::gucs;

/// A `@@@` condition the search scan answers.
pub(super) struct SearchClause {
    pub rinfo: *mut pg_sys::RestrictInfo,
    /// Index column (0-based) the condition is on.
    pub column: usize,
}

static mut PREV_HOOK: pg_sys::set_rel_pathlist_hook_type = None;

/// Installs the planner hook.
pub fn init() {
    // SAFETY: process-global hook, chained.
    unsafe {
        PREV_HOOK = pg_sys::set_rel_pathlist_hook;
        pg_sys::set_rel_pathlist_hook = Some(set_rel_pathlist);
    }
}

/// Strips binary-compatible casts (varchar columns appear as `col::text`).
pub(super) unsafe fn strip_relabel(mut node: *mut pg_sys::Node) -> *mut pg_sys::Node {
    while !node.is_null() && (*node).type_ == pg_sys::NodeTag::T_RelabelType {
        node = (*(node as *mut pg_sys::RelabelType)).arg as *mut pg_sys::Node;
    }
    node
}

/// If `node` is a plain column of relation `relid`, its attribute number.
pub(super) unsafe fn var_attno(node: *mut pg_sys::Node, relid: pg_sys::Index) -> Option<i16> {
    let node = strip_relabel(node);
    if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_Var {
        return None;
    }
    let var = node as *mut pg_sys::Var;
    ((*var).varno as pg_sys::Index == relid && (*var).varlevelsup == 0).then_some((*var).varattno)
}

/// The `@@@` conditions of `rel` that `index` can answer.
unsafe fn search_clauses(rel: *mut pg_sys::RelOptInfo, index: *mut pg_sys::IndexOptInfo) -> Vec<SearchClause> {
    let mut out = Vec::new();
    let ncols = (*index).ncolumns as usize;
    let keys = std::slice::from_raw_parts((*index).indexkeys, ncols);
    let families = std::slice::from_raw_parts((*index).opfamily, ncols);
    let restrict = PgList::<pg_sys::RestrictInfo>::from_pg((*rel).baserestrictinfo);
    for rinfo in restrict.iter_ptr() {
        let clause = (*rinfo).clause as *mut pg_sys::Node;
        if clause.is_null() || (*clause).type_ != pg_sys::NodeTag::T_OpExpr {
            continue;
        }
        let op = clause as *mut pg_sys::OpExpr;
        let args = PgList::<pg_sys::Node>::from_pg((*op).args);
        if args.len() != 2 {
            continue;
        }
        let (Some(left), Some(right)) = (args.get_ptr(0), args.get_ptr(1)) else { continue };
        let Some(attno) = var_attno(left, (*rel).relid) else { continue };
        let Some(column) = keys.iter().position(|k| *k == i32::from(attno)) else { continue };
        let member = pg_sys::get_opfamily_member(families[column], pg_sys::TEXTOID, pg_sys::TEXTOID, 1);
        if member != (*op).opno {
            continue;
        }
        // The query must be known before the scan starts: a constant or a parameter, not a
        // column of this relation, and nothing volatile.
        let relids = pg_sys::pull_varnos(std::ptr::null_mut(), right);
        if !relids.is_null() || pg_sys::contain_volatile_functions(right) {
            continue;
        }
        out.push(SearchClause { rinfo, column });
    }
    out
}

/// Whether `path` reads `index` (an index scan, or a bitmap scan with it in its tree).
unsafe fn path_uses_index(path: *mut pg_sys::Path, index: *mut pg_sys::IndexOptInfo) -> bool {
    let any =
        |list: *mut pg_sys::List| PgList::<pg_sys::Path>::from_pg(list).iter_ptr().any(|p| path_uses_index(p, index));
    match (*path).type_ {
        pg_sys::NodeTag::T_IndexPath => (*(path as *mut pg_sys::IndexPath)).indexinfo == index,
        pg_sys::NodeTag::T_BitmapHeapPath => {
            path_uses_index((*(path as *mut pg_sys::BitmapHeapPath)).bitmapqual, index)
        }
        pg_sys::NodeTag::T_BitmapAndPath => any((*(path as *mut pg_sys::BitmapAndPath)).bitmapquals),
        pg_sys::NodeTag::T_BitmapOrPath => any((*(path as *mut pg_sys::BitmapOrPath)).bitmapquals),
        _ => false,
    }
}

/// Whether the query's ORDER BY starts with `hybrid.score(<column of rel>) DESC`.
unsafe fn ordered_by_score(
    root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    score_fn: pg_sys::Oid,
) -> bool {
    let pathkeys = PgList::<pg_sys::PathKey>::from_pg((*root).query_pathkeys);
    let Some(first) = pathkeys.get_ptr(0) else { return false };
    if (*first).pk_strategy != pg_sys::BTGreaterStrategyNumber as i32 {
        return false;
    }
    let members = PgList::<pg_sys::EquivalenceMember>::from_pg((*(*first).pk_eclass).ec_members);
    let found =
        members.iter_ptr().any(|em| functions::is_call_on(score_fn, (*em).em_expr as *mut pg_sys::Node, (*rel).relid));
    found
}

#[pg_guard]
unsafe extern "C-unwind" fn set_rel_pathlist(
    root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    rti: pg_sys::Index,
    rte: *mut pg_sys::RangeTblEntry,
) {
    if let Some(prev) = PREV_HOOK {
        prev(root, rel, rti, rte);
    }
    if !gucs::ENABLE_SEARCH_SCAN.get()
        || (*rte).rtekind != pg_sys::RTEKind::RTE_RELATION
        || (*rte).inh
        || !matches!(
            (*rel).reloptkind,
            pg_sys::RelOptKind::RELOPT_BASEREL | pg_sys::RelOptKind::RELOPT_OTHER_MEMBER_REL
        )
        || (*rel).indexlist.is_null()
    {
        return;
    }
    let am = hybrid_am_oid();
    if am == pg_sys::InvalidOid {
        return;
    }
    let Some(fns) = functions::Oids::lookup() else { return };

    // The hybrid index answering the most `@@@` conditions.
    let mut best: Option<(*mut pg_sys::IndexOptInfo, Vec<SearchClause>)> = None;
    for index in PgList::<pg_sys::IndexOptInfo>::from_pg((*rel).indexlist).iter_ptr() {
        if (*index).relam != am || (*index).hypothetical {
            continue;
        }
        let clauses = search_clauses(rel, index);
        if !clauses.is_empty() && best.as_ref().is_none_or(|(_, b)| b.len() < clauses.len()) {
            best = Some((index, clauses));
        }
    }
    let Some((index, clauses)) = best else { return };

    let uses = functions::uses_in_query(root, (*rel).relid, &fns);
    let ordered = ordered_by_score(root, rel, fns.score);
    let needed = uses.score || uses.snippet || ordered;

    // A `@@@` condition must be answered by the index, which analyses text as configured: keep
    // only paths that use it. A sequential scan, or another index's scan, would evaluate the
    // operator row by row with the default analysis.
    let mut kept = PgList::<pg_sys::Path>::new();
    for p in PgList::<pg_sys::Path>::from_pg((*rel).pathlist).iter_ptr() {
        if path_uses_index(p, index) {
            kept.push(p);
        }
    }
    let have_index_paths = !kept.is_empty();
    (*rel).pathlist = kept.into_pg();
    (*rel).partial_pathlist = std::ptr::null_mut();
    if !needed && have_index_paths {
        return;
    }

    let limit = if ordered && (*root).limit_tuples > 0.0 { Some((*root).limit_tuples as i64) } else { None };
    let private = PrivateInfo {
        index_oid: (*index).indexoid.to_u32(),
        columns: clauses.iter().map(|c| c.column).collect(),
        ordered,
        limit,
        scores: uses.score || ordered,
    };

    let path = pg_sys::palloc0(std::mem::size_of::<pg_sys::CustomPath>()) as *mut pg_sys::CustomPath;
    (*path).path.type_ = pg_sys::NodeTag::T_CustomPath;
    (*path).path.pathtype = pg_sys::NodeTag::T_CustomScan;
    (*path).path.parent = rel;
    (*path).path.pathtarget = (*rel).reltarget;
    (*path).path.param_info = std::ptr::null_mut();
    (*path).path.parallel_aware = false;
    (*path).path.parallel_safe = false;
    (*path).path.parallel_workers = 0;
    (*path).path.rows = (*rel).rows;
    // A search costs about the same whatever the table size; each row returned costs a heap
    // fetch. The LIMIT above scales the run cost down for a top-k.
    let rows = (*rel).rows.max(1.0);
    (*path).path.startup_cost = pg_sys::cpu_operator_cost * 100.0;
    (*path).path.total_cost =
        (*path).path.startup_cost + rows * (pg_sys::cpu_tuple_cost + pg_sys::random_page_cost * 0.25);
    if ordered {
        let first = PgList::<pg_sys::PathKey>::from_pg((*root).query_pathkeys).get_ptr(0).expect("checked");
        let mut keys = PgList::<pg_sys::PathKey>::new();
        keys.push(first);
        (*path).path.pathkeys = keys.into_pg();
    }
    // The scan evaluates the target list itself: hybrid.score() then sees its own current row.
    (*path).flags = pg_sys::CUSTOMPATH_SUPPORT_PROJECTION;
    (*path).methods = std::ptr::addr_of!(PATH_METHODS);
    let mut private_list = PgList::<pg_sys::Node>::new();
    private_list.push(pg_sys::makeString(private.to_cstring()) as *mut pg_sys::Node);
    for c in &clauses {
        private_list.push(c.rinfo as *mut pg_sys::Node);
    }
    (*path).custom_private = private_list.into_pg();

    if needed {
        // Only this scan can produce scores and snippets.
        (*rel).pathlist = std::ptr::null_mut();
    }
    pg_sys::add_path(rel, path as *mut pg_sys::Path);
}
