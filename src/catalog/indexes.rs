//! `hybrid.index_registry` (read through the view `hybrid.indexes`): one row per hybrid index,
//! written in the transaction that builds it (so a failed build leaves no row) and deleted in the
//! transaction that drops it.

use hybrid_engine::config::IndexConfig;
use pgrx::prelude::*;

use super::as_extension_owner;

/// Records (or, for a rebuild, updates) the catalog row of `index`.
///
/// # Safety
/// `index` must be a valid, open relation.
pub unsafe fn register(index: pg_sys::Relation, config: &IndexConfig, tenant: &str) {
    let index_oid = (*index).rd_id;
    let settings = pgrx::JsonB(serde_json::to_value(config).expect("config serialises"));
    as_extension_owner(|| {
        Spi::run_with_args(
            "INSERT INTO hybrid.index_registry (index_oid, settings, tenant) VALUES ($1, $2, $3)
             ON CONFLICT (index_oid) DO UPDATE SET settings = EXCLUDED.settings",
            &[index_oid.into(), settings.into(), tenant.into()],
        )
    })
    .unwrap_or_else(|e| pgrx::error!("pg_hybrid: could not record the index in hybrid.indexes: {e}"));
}

/// Deletes the rows of indexes dropped by the committing transaction. Runs at pre-commit; does
/// nothing if the registry itself was dropped (DROP EXTENSION).
pub fn forget(index_oids: &[pg_sys::Oid]) {
    if index_oids.is_empty() {
        return;
    }
    // At pre-commit no statement is running, so there is no active snapshot for SPI to use.
    // SAFETY: pushed and popped around our own queries, within the transaction.
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
    forget_rows(index_oids);
    // SAFETY: pops the snapshot pushed above (an error aborts the transaction, which resets the
    // snapshot stack itself).
    unsafe { pg_sys::PopActiveSnapshot() };
}

fn forget_rows(index_oids: &[pg_sys::Oid]) {
    let exists = Spi::get_one::<bool>("SELECT to_regclass('hybrid.index_registry') IS NOT NULL").ok().flatten();
    if exists != Some(true) {
        return;
    }
    let oids: Vec<pg_sys::Oid> = index_oids.to_vec();
    as_extension_owner(|| {
        Spi::run_with_args("DELETE FROM hybrid.index_registry WHERE index_oid = ANY($1)", &[oids.into()])
    })
    .unwrap_or_else(|e| pgrx::error!("pg_hybrid: could not remove dropped indexes from hybrid.indexes: {e}"));
}

/// The tenant recorded for `index`, if it has a row (a rebuild keeps its tenant).
pub fn tenant_of_index(index: pg_sys::Oid) -> Option<String> {
    as_extension_owner(|| {
        Spi::get_one_with_args::<String>(
            "SELECT tenant FROM hybrid.index_registry WHERE index_oid = $1",
            &[index.into()],
        )
    })
    .ok()
    .flatten()
}
