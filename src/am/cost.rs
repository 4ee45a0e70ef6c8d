//! `amcostestimate`: what a hybrid index scan costs the planner.
//!
//! A search costs about the same whatever the table size (it reads posting lists, not rows), so
//! the index cost is a small constant plus a per-match term; the planner adds the heap fetches
//! itself from the selectivity. Without a `@@@` condition the index cannot answer anything, so
//! such paths are priced out.

use pgrx::prelude::*;

#[pg_guard]
pub unsafe extern "C-unwind" fn amcostestimate(
    root: *mut pg_sys::PlannerInfo,
    path: *mut pg_sys::IndexPath,
    _loop_count: f64,
    startup: *mut pg_sys::Cost,
    total: *mut pg_sys::Cost,
    selectivity: *mut pg_sys::Selectivity,
    correlation: *mut f64,
    pages: *mut f64,
) {
    let indexclauses = (*path).indexclauses;
    *correlation = 0.0;
    *pages = 1.0;
    if indexclauses.is_null() || (*indexclauses).length == 0 {
        *startup = 1.0e10;
        *total = 1.0e10;
        *selectivity = 1.0;
        return;
    }
    let quals = pg_sys::get_quals_from_indexclauses(indexclauses);
    let rel = (*(*path).indexinfo).rel;
    let sel = pg_sys::clauselist_selectivity(root, quals, (*rel).relid as i32, pg_sys::JoinType::JOIN_INNER, std::ptr::null_mut());
    let rows = (sel * (*rel).tuples).max(1.0);
    *selectivity = sel;
    *startup = pg_sys::cpu_operator_cost * 10.0;
    *total = *startup + rows * pg_sys::cpu_index_tuple_cost;
}
