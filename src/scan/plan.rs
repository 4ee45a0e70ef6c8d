//! Turning the search path into a `CustomScan` plan node.
//!
//! The `@@@` conditions the scan answers leave the plan's qual (the index evaluates them
//! exactly); every other condition stays, in the order Postgres chose (security quals first).
//! The query texts go into `custom_exprs`, so parameters of prepared statements are fixed up
//! like any expression and evaluated when the scan starts.

use std::ffi::{CStr, CString};

use pgrx::prelude::*;
use pgrx::PgList;
use serde::{Deserialize, Serialize};

use super::PLAN_METHODS;

/// What the executor needs to know, carried through the plan as a JSON string (plan nodes are
/// copied, so only node types may be stored there).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrivateInfo {
    pub index_oid: u32,
    /// Index column (0-based) of each query in `custom_exprs`.
    pub columns: Vec<usize>,
    /// Rows come out by descending score.
    pub ordered: bool,
    /// LIMIT (plus OFFSET) of the query, when the ordering is ours.
    pub limit: Option<i64>,
    /// Whether scores are computed at all.
    pub scores: bool,
}

impl PrivateInfo {
    pub fn to_cstring(&self) -> *mut std::ffi::c_char {
        let s = CString::new(serde_json::to_string(self).expect("serialises")).expect("no NUL in JSON");
        // SAFETY: copies into a palloc'd string owned by the current memory context.
        unsafe { pg_sys::pstrdup(s.as_ptr()) }
    }

    /// Reads the info from a `String` node.
    ///
    /// # Safety
    /// `node` must be the `String` node made by `to_cstring`.
    pub unsafe fn from_node(node: *mut pg_sys::Node) -> PrivateInfo {
        let s = (*(node as *mut pg_sys::String)).sval;
        serde_json::from_str(&CStr::from_ptr(s).to_string_lossy()).expect("search scan private info parses")
    }
}

#[pg_guard]
pub(super) unsafe extern "C-unwind" fn plan_custom_path(
    _root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    best_path: *mut pg_sys::CustomPath,
    tlist: *mut pg_sys::List,
    clauses: *mut pg_sys::List,
    _custom_plans: *mut pg_sys::List,
) -> *mut pg_sys::Plan {
    let private = PgList::<pg_sys::Node>::from_pg((*best_path).custom_private);
    let info_node = private.get_ptr(0).expect("private info");
    let handled: Vec<*mut pg_sys::RestrictInfo> =
        (1..private.len()).filter_map(|i| private.get_ptr(i)).map(|n| n as *mut pg_sys::RestrictInfo).collect();

    let mut remaining = PgList::<pg_sys::RestrictInfo>::new();
    for r in PgList::<pg_sys::RestrictInfo>::from_pg(clauses).iter_ptr() {
        if !handled.contains(&r) {
            remaining.push(r);
        }
    }
    let mut exprs = PgList::<pg_sys::Node>::new();
    for r in &handled {
        let op = (**r).clause as *mut pg_sys::OpExpr;
        let args = PgList::<pg_sys::Node>::from_pg((*op).args);
        exprs.push(args.get_ptr(1).expect("binary operator"));
    }

    let cscan = pg_sys::palloc0(std::mem::size_of::<pg_sys::CustomScan>()) as *mut pg_sys::CustomScan;
    (*cscan).scan.plan.type_ = pg_sys::NodeTag::T_CustomScan;
    (*cscan).scan.plan.targetlist = tlist;
    (*cscan).scan.plan.qual = pg_sys::extract_actual_clauses(remaining.into_pg(), false);
    (*cscan).scan.scanrelid = (*rel).relid;
    (*cscan).flags = (*best_path).flags;
    (*cscan).custom_plans = std::ptr::null_mut();
    (*cscan).custom_exprs = exprs.into_pg();
    let mut private_out = PgList::<pg_sys::Node>::new();
    private_out.push(info_node);
    (*cscan).custom_private = private_out.into_pg();
    (*cscan).custom_scan_tlist = std::ptr::null_mut();
    (*cscan).custom_relids = std::ptr::null_mut();
    (*cscan).methods = std::ptr::addr_of!(PLAN_METHODS);
    cscan as *mut pg_sys::Plan
}
