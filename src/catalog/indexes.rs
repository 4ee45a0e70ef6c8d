//! `hybrid.indexes`: one row per hybrid index, written in the transaction that builds it (so a
//! failed build leaves no row) and deleted with the index (by the `sql_drop` event trigger).

use hybrid_engine::config::IndexConfig;
use pgrx::prelude::*;

use super::as_extension_owner;

/// Records (or, for a rebuild, updates) the catalog row of `index`.
///
/// # Safety
/// `heap` and `index` must be valid, open relations.
pub unsafe fn register(heap: pg_sys::Relation, index: pg_sys::Relation, config: &IndexConfig) {
    let index_oid = (*index).rd_id;
    let table_oid = (*heap).rd_id;
    let name = std::ffi::CStr::from_ptr((*(*index).rd_rel).relname.data.as_ptr()).to_string_lossy().into_owned();
    let settings = pgrx::JsonB(serde_json::to_value(config).expect("config serialises"));
    as_extension_owner(|| {
        Spi::run_with_args(
            "INSERT INTO hybrid.indexes (index_oid, table_oid, name, settings)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (index_oid) DO UPDATE
                SET table_oid = EXCLUDED.table_oid, name = EXCLUDED.name, settings = EXCLUDED.settings",
            &[index_oid.into(), table_oid.into(), name.into(), settings.into()],
        )
    })
    .unwrap_or_else(|e| {
        pgrx::error!("pg_hybrid: could not record index in hybrid.indexes: {e}")
    });
}
