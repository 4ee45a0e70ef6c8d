//! Drop hooks: when an index, a table, a schema, the extension or a database is dropped, the
//! folders that belonged to it are removed once the dropping transaction commits (invariant 5).
//! Their catalog rows are deleted at pre-commit. The orphan sweep of the launcher worker catches
//! anything a crash left behind.

use pgrx::prelude::*;

use crate::am::hybrid_am_oid;
use crate::{sidecar, xact};

static mut PREV_OBJECT_ACCESS: pg_sys::object_access_hook_type = None;

/// Installs the hooks. Called once per process from `_PG_init`.
pub fn init() {
    // SAFETY: hooks are process globals; we chain to whatever was installed before us.
    unsafe {
        PREV_OBJECT_ACCESS = pg_sys::object_access_hook;
        pg_sys::object_access_hook = Some(object_access);
    }
}

/// The folder of the index relation `oid`, if it is a hybrid index.
unsafe fn hybrid_index_folder(oid: pg_sys::Oid) -> Option<std::path::PathBuf> {
    let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::RELOID as i32, oid.into());
    if tuple.is_null() {
        return None;
    }
    let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_class>(tuple);
    let is_ours = (*form).relkind == pg_sys::RELKIND_INDEX as std::ffi::c_char && (*form).relam == hybrid_am_oid();
    let relfilenode = (*form).relfilenode;
    let temp = (*form).relpersistence == pg_sys::RELPERSISTENCE_TEMP as std::ffi::c_char;
    pg_sys::ReleaseSysCache(tuple);
    if !is_ours || relfilenode == pg_sys::InvalidOid {
        return None;
    }
    let name = if temp {
        format!("t{}_{}", *std::ptr::addr_of!(pg_sys::MyBackendId), relfilenode.to_u32())
    } else {
        relfilenode.to_u32().to_string()
    };
    Some(sidecar::database_dir(pg_sys::MyDatabaseId).join(name))
}

#[pg_guard]
unsafe extern "C-unwind" fn object_access(
    access: pg_sys::ObjectAccessType::Type,
    class_id: pg_sys::Oid,
    object_id: pg_sys::Oid,
    sub_id: std::ffi::c_int,
    arg: *mut std::ffi::c_void,
) {
    if let Some(prev) = PREV_OBJECT_ACCESS {
        prev(access, class_id, object_id, sub_id, arg);
    }
    if access != pg_sys::ObjectAccessType::OAT_DROP {
        return;
    }
    if class_id == pg_sys::RelationRelationId && sub_id == 0 {
        if let Some(dir) = hybrid_index_folder(object_id) {
            xact::remove_on_commit(dir);
            let table = pg_sys::IndexGetRelation(object_id, true);
            xact::forget_on_commit(object_id, table, crate::catalog::rel_name(object_id).unwrap_or_default());
        }
    } else if class_id == pg_sys::DatabaseRelationId {
        xact::remove_on_commit(sidecar::database_dir(object_id));
    }
}
