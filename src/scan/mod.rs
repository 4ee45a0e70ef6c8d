//! The ranked search scan: a custom scan that runs `@@@` searches in the index and returns rows
//! with their BM25 scores, for `hybrid.score()`, `hybrid.snippet()` and `ORDER BY
//! hybrid.score(key) DESC LIMIT k` pushed into the index as a top-k.
//!
//! `path` offers it to the planner, `plan` makes the plan node, `exec` runs it, `registry`
//! hands scores and snippets to the SQL functions, `functions` recognises those functions.

mod exec;
pub mod functions;
mod path;
mod plan;
pub mod registry;

use pgrx::pg_sys;

const NAME: &std::ffi::CStr = c"Hybrid Search";

static mut PATH_METHODS: pg_sys::CustomPathMethods = pg_sys::CustomPathMethods {
    CustomName: NAME.as_ptr(),
    PlanCustomPath: Some(plan::plan_custom_path),
    ReparameterizeCustomPathByChild: None,
};

static mut PLAN_METHODS: pg_sys::CustomScanMethods =
    pg_sys::CustomScanMethods { CustomName: NAME.as_ptr(), CreateCustomScanState: Some(exec::create_scan_state) };

static mut EXEC_METHODS: pg_sys::CustomExecMethods = pg_sys::CustomExecMethods {
    CustomName: NAME.as_ptr(),
    BeginCustomScan: Some(exec::begin),
    ExecCustomScan: Some(exec::exec),
    EndCustomScan: Some(exec::end),
    ReScanCustomScan: Some(exec::rescan),
    MarkPosCustomScan: None,
    RestrPosCustomScan: None,
    EstimateDSMCustomScan: None,
    InitializeDSMCustomScan: None,
    ReInitializeDSMCustomScan: None,
    InitializeWorkerCustomScan: None,
    ShutdownCustomScan: None,
    ExplainCustomScan: Some(exec::explain),
};

/// Registers the scan with Postgres and installs the planner hook. Once per process.
pub fn init() {
    // SAFETY: registers a static method table that lives as long as the process.
    unsafe { pg_sys::RegisterCustomScanMethods(std::ptr::addr_of!(PLAN_METHODS)) };
    path::init();
}
