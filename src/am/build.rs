//! `ambuild`: CREATE INDEX, REINDEX, TRUNCATE and VACUUM FULL.
//!
//! Every build writes a brand-new folder named after the index's new relfilenode. The folder is
//! removed if the transaction aborts; folders of the same index at older relfilenodes are
//! removed once it commits. The backend scans the heap and hands rows to tantivy's indexing
//! threads, which tokenise and write segments without ever calling Postgres. Progress shows in
//! `pg_stat_progress_create_index` (blocks scanned, rows done), and the scan can be cancelled.

use std::path::{Path, PathBuf};

use hybrid_engine::config::IndexConfig;
use hybrid_engine::manifest::{Identity, Manifest};
use hybrid_engine::text::writer::IndexBuilder;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use crate::am::options;
use crate::error::{raise_with, OrRaise};
use crate::layout::{self, Layout};
use crate::{catalog, gucs, sidecar, xact};

/// Build sub-phases shown in pg_stat_progress_create_index (1 is Postgres' "initializing").
const PHASE_SCAN: i64 = 2;
const PHASE_WRITE: i64 = 3;
/// Sub-phases of a restore (`hybrid.restore`, the database workers), which reports in the same
/// view as a REINDEX.
pub const PHASE_DOWNLOAD: i64 = 4;
pub const PHASE_CATCH_UP: i64 = 5;

#[pg_guard]
pub unsafe extern "C-unwind" fn ambuildphasename(phase: i64) -> *mut std::ffi::c_char {
    let name: &'static std::ffi::CStr = match phase {
        PHASE_SCAN => c"scanning table and tokenising",
        PHASE_WRITE => c"writing and merging segments",
        PHASE_DOWNLOAD => c"restoring snapshot",
        PHASE_CATCH_UP => c"catching up with the table",
        _ => return std::ptr::null_mut(),
    };
    name.as_ptr() as *mut _
}

struct BuildState {
    builder: IndexBuilder,
    layout: Layout,
    rows: u64,
}

/// Validates the index definition and returns its config.
///
/// # Safety
/// `heap` and `index` must be valid, open relations.
pub(crate) unsafe fn config_of(heap: pg_sys::Relation, index: pg_sys::Relation) -> IndexConfig {
    if (*(*heap).rd_rel).relpersistence == pg_sys::RELPERSISTENCE_UNLOGGED as std::ffi::c_char {
        raise_with(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "hybrid indexes are not supported on unlogged tables",
            Some("after a crash Postgres empties unlogged tables, and the index files would still name their rows; use a logged table".into()),
        );
    }
    let opts = options::read(index);
    let cols: Vec<_> = layout::column_specs(index).into_iter().map(|(c, _)| c).collect();
    IndexConfig::from_create_index(&cols, opts.key_field.as_deref(), opts.fields.as_deref()).or_raise()
}

/// Schedules removal, at commit, of folders of this index at other relfilenodes.
fn schedule_old_folders(index_oid: u32, new_dir: &Path) {
    let Some(db_dir) = new_dir.parent() else { return };
    let Ok(entries) = std::fs::read_dir(db_dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        if path == new_dir || e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if let Ok(m) = Manifest::read(&path) {
            if m.hybrid.identity.index_oid == index_oid {
                xact::remove_on_commit(path);
            }
        }
    }
}

fn build_threads() -> usize {
    match gucs::BUILD_THREADS.get() {
        n if n > 0 => n as usize,
        _ => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(8),
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn ambuild(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    index_info: *mut pg_sys::IndexInfo,
) -> *mut pg_sys::IndexBuildResult {
    let config = config_of(heap, index);
    let dir: PathBuf = sidecar::index_dir(index);
    // A rebuild keeps the index's tenant (a REINDEX CONCURRENTLY copy, or an index Postgres
    // drops and recreates for ALTER COLUMN TYPE: its original's); a new index belongs to its
    // creator's.
    let original = concurrent_copy_of(heap, index).or_else(|| {
        let name = std::ffi::CStr::from_ptr((*(*index).rd_rel).relname.data.as_ptr()).to_string_lossy();
        xact::dropped_index_named((*heap).rd_id, &name)
    });
    let tenant = catalog::indexes::tenant_of_index((*index).rd_id)
        .or_else(|| original.and_then(catalog::indexes::tenant_of_index))
        .unwrap_or_else(|| catalog::tenants::tenant_of_role(catalog::tenants::creator()));
    catalog::tenants::check_new_index(&tenant, (*index).rd_id, original);
    let index_oid = (*index).rd_id.to_u32();
    schedule_old_folders(index_oid, &dir);
    xact::remove_on_abort(dir.clone());
    sidecar::forget(&dir);
    layout::forget(&dir);

    let identity = Identity { index_oid, created_xid: pg_sys::GetTopFullTransactionId().value };
    let (heap_tuples, rows, manifest) = build_into(heap, index, index_info, &dir, &config, &identity);
    super::log_pages::init(index);
    catalog::tenants::check_built(&tenant, &dir, (*index).rd_id, options::read(index).max_documents);
    catalog::indexes::register(index, &manifest.hybrid.config, &tenant);
    if options::read(index).snapshot_on_create {
        crate::snapshots::take::on_create(index, &dir);
    }
    pgrx::debug1!(
        "pg_hybrid: built index at {} with {} rows in {} segments",
        dir.display(),
        rows,
        manifest.segments.len()
    );

    let mut result = PgBox::<pg_sys::IndexBuildResult>::alloc0();
    result.heap_tuples = heap_tuples;
    result.index_tuples = rows as f64;
    result.into_pg()
}

/// The index that `index` is a REINDEX CONCURRENTLY copy of, if it is one: Postgres builds the
/// copy not yet valid, on the same table, named `<original>_ccnew[N]` (the original's name
/// shortened to fit).
///
/// # Safety
/// `heap` and `index` must be open relations.
unsafe fn concurrent_copy_of(heap: pg_sys::Relation, index: pg_sys::Relation) -> Option<pg_sys::Oid> {
    if (*(*index).rd_index).indisvalid {
        return None;
    }
    let name = std::ffi::CStr::from_ptr((*(*index).rd_rel).relname.data.as_ptr()).to_string_lossy().into_owned();
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit()).strip_suffix("_ccnew")?.to_string();
    let list = pgrx::PgList::<pg_sys::Oid>::from_pg(pg_sys::RelationGetIndexList(heap));
    let am = (*(*index).rd_rel).relam;
    let found = list.iter_oid().find(|&other| {
        if other == (*index).rd_id {
            return false;
        }
        let rel = pg_sys::RelationIdGetRelation(other);
        if rel.is_null() {
            return false;
        }
        let same_am = (*(*rel).rd_rel).relam == am;
        pg_sys::RelationClose(rel);
        if !same_am {
            return false;
        }
        catalog::rel_name(other).is_some_and(|n| n.starts_with(&base))
    });
    found
}

/// Builds the index folder `dir` from the rows of `heap` (any folder path: ambuild's own, or a
/// restore's staging folder). Returns the heap tuples scanned, the rows indexed and the
/// manifest.
///
/// # Safety
/// `heap` and `index` must be open relations, `index_info` the index's.
pub(crate) unsafe fn build_into(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    index_info: *mut pg_sys::IndexInfo,
    dir: &Path,
    config: &IndexConfig,
    identity: &Identity,
) -> (f64, u64, Manifest) {
    let budget = (pg_sys::maintenance_work_mem.max(64 * 1024) as usize) * 1024;
    let builder = IndexBuilder::create(dir, config, identity, build_threads(), budget).or_raise();
    let mut state = BuildState { builder, layout: layout::layout_for(index, config), rows: 0 };

    pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_SUBPHASE as i32, PHASE_SCAN);
    let heap_tuples = pg_sys::table_index_build_scan(
        heap,
        index,
        index_info,
        true,
        true,
        Some(build_callback),
        (&mut state as *mut BuildState).cast(),
        std::ptr::null_mut(),
    );
    pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_SUBPHASE as i32, PHASE_WRITE);
    let rows = state.rows;
    let manifest = state.builder.finish().or_raise();
    (heap_tuples, rows, manifest)
}

#[pg_guard]
unsafe extern "C-unwind" fn build_callback(
    _index: pg_sys::Relation,
    tid: pg_sys::ItemPointer,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    _tuple_is_alive: bool,
    state: *mut std::ffi::c_void,
) {
    // Rows that are dead to some snapshots but not all are indexed too: the heap decides what a
    // scan sees.
    let state = &mut *(state as *mut BuildState);
    let doc = layout::document(&state.layout, values, isnull, tid);
    state.builder.add(&doc).or_raise();
    state.rows += 1;
    if state.rows % 1024 == 0 {
        crate::check_for_interrupts();
        pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE as i32, state.rows as i64);
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn ambuildempty(_index: pg_sys::Relation) {
    raise_with(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        "hybrid indexes are not supported on unlogged tables",
        None,
    );
}
