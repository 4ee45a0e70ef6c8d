//! `amcostestimate`: what a hybrid index scan costs the planner.
//!
//! A search costs about the same whatever the table size (it reads posting lists or walks a
//! graph, not rows), so the index cost is a small constant plus a per-match term; the planner
//! adds the heap fetches itself from the selectivity. A path that neither filters with `@@@`
//! nor orders by distance cannot be answered, and one that orders by a distance other than the
//! field's metric would return rows in the wrong order: both are priced out, so the planner
//! sorts instead.

use pgrx::prelude::*;
use pgrx::PgList;

use crate::layout::{self, Role};

const DISABLED: f64 = 1.0e10;

/// Whether every ORDER BY of `path` is the distance its vector field is indexed for.
unsafe fn orderbys_match_metric(path: *mut pg_sys::IndexPath) -> bool {
    let info = (*path).indexinfo;
    let index = pg_sys::index_open((*info).indexoid, pg_sys::NoLock as _);
    let layout = layout::layout(index);
    pg_sys::index_close(index, pg_sys::NoLock as _);
    let cols = PgList::<pg_sys::Node>::from_pg((*path).indexorderbycols);
    let ops = PgList::<pg_sys::Node>::from_pg((*path).indexorderbys);
    for (i, expr) in ops.iter_ptr().enumerate() {
        let Some(col) = cols.get_int(i) else { return false };
        let Some(Role::Vector(f)) = layout.roles.get(col as usize) else { return false };
        if (*expr).type_ != pg_sys::NodeTag::T_OpExpr {
            return false;
        }
        let opno = (*(expr as *mut pg_sys::OpExpr)).opno;
        let family = *(*info).opfamily.add(col as usize);
        // Ordering operators are found with the ordering purpose, not the search one.
        let (mut strategy, mut left, mut right) = (0i32, pg_sys::InvalidOid, pg_sys::InvalidOid);
        pg_sys::get_op_opfamily_properties(opno, family, true, &mut strategy, &mut left, &mut right);
        let wanted = match layout.config.vector_fields[*f].metric {
            hybrid_engine::vector::distance::Metric::L2 => 1,
            hybrid_engine::vector::distance::Metric::Cosine => 2,
            hybrid_engine::vector::distance::Metric::InnerProduct => 3,
        };
        if strategy != wanted {
            return false;
        }
    }
    true
}

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
    let has_quals = !indexclauses.is_null() && (*indexclauses).length > 0;
    let has_order = !(*path).indexorderbys.is_null() && (*(*path).indexorderbys).length > 0;
    *correlation = 0.0;
    *pages = 1.0;
    if (!has_quals && !has_order) || (has_order && !orderbys_match_metric(path)) {
        *startup = DISABLED;
        *total = DISABLED;
        *selectivity = 1.0;
        return;
    }
    let rel = (*(*path).indexinfo).rel;
    let sel = if has_quals {
        let quals = pg_sys::get_quals_from_indexclauses(indexclauses);
        pg_sys::clauselist_selectivity(
            root,
            quals,
            (*rel).relid as i32,
            pg_sys::JoinType::JOIN_INNER,
            std::ptr::null_mut(),
        )
    } else {
        1.0
    };
    let rows = (sel * (*rel).tuples).max(1.0);
    *selectivity = sel;
    *startup = pg_sys::cpu_operator_cost * 10.0;
    *total = *startup + rows * pg_sys::cpu_index_tuple_cost;
}
