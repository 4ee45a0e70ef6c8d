//! The control plane: catalog tables in schema `hybrid`, one file per table.

pub mod indexes;
pub mod snapshots;
pub mod tenants;

use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult};
use pgrx::PgOid;

/// The name of relation `oid`, or `None` if there is no such relation.
pub fn rel_name(oid: pg_sys::Oid) -> Option<String> {
    // SAFETY: a syscache lookup returning a palloc'd C string, or NULL for an unknown oid.
    let name = unsafe { pg_sys::get_rel_name(oid) };
    // SAFETY: non-NULL results of get_rel_name are NUL-terminated strings.
    (!name.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy().into_owned())
}

/// A statement prepared once per backend and kept (the plan cache re-plans it if the tables it
/// reads change), for the catalog queries that run at every commit that wrote to an index,
/// where planning them each time cost more than the write. `cell` holds it between calls.
pub(crate) fn with_kept_plan<R>(
    cell: &'static std::thread::LocalKey<std::cell::RefCell<Option<OwnedPreparedStatement>>>,
    client: &SpiClient<'_>,
    sql: &str,
    types: &[PgOid],
    run: impl FnOnce(&OwnedPreparedStatement) -> SpiResult<R>,
) -> SpiResult<R> {
    cell.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = Some(client.prepare(sql, types)?.keep());
        }
        run(cell.as_ref().expect("prepared above"))
    })
}

thread_local! {
    static OWNER_PLAN: std::cell::RefCell<Option<OwnedPreparedStatement>> = const { std::cell::RefCell::new(None) };
}

/// The owner of the extension, if it is installed in this database.
fn extension_owner() -> Option<pg_sys::Oid> {
    Spi::connect(|c| {
        let sql = "SELECT extowner FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pg_hybrid'";
        with_kept_plan(&OWNER_PLAN, &c, sql, &[], |plan| {
            for row in c.select(plan, Some(1), &[])? {
                return row.get::<pg_sys::Oid>(1);
            }
            Ok(None)
        })
    })
    .unwrap_or(None)
}

/// Runs `f` as the owner of the extension, so that internal catalog maintenance works whatever
/// the privileges of the user whose statement triggered it (any table owner may create an index;
/// only the extension owner may write `hybrid.indexes`). Postgres restores the user on error.
///
/// `search_path` is pinned to `pg_catalog, pg_temp` meanwhile, as for a SECURITY DEFINER
/// function: our queries name our tables with their schema, but an operator such as `=` is looked
/// up along the search path, and a caller's own `=` must never run with the owner's rights.
pub fn as_extension_owner<R>(f: impl FnOnce() -> R) -> R {
    let Some(owner) = extension_owner() else { return f() };
    let mut saved_user = pg_sys::InvalidOid;
    let mut saved_ctx = 0;
    // SAFETY: a GUC nesting level undone below (or by the transaction's abort on error), and the
    // current user id switched as SECURITY DEFINER functions do.
    let nest = unsafe {
        let nest = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_ctx);
        pg_sys::SetUserIdAndSecContext(owner, saved_ctx | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
        nest
    };
    let r = f();
    // SAFETY: restore what we saved.
    unsafe {
        pg_sys::SetUserIdAndSecContext(saved_user, saved_ctx);
        pg_sys::AtEOXact_GUC(true, nest);
    }
    r
}
