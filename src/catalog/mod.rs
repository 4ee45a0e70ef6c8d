//! The control plane: catalog tables in schema `hybrid`, one file per table.

pub mod indexes;
pub mod snapshots;
pub mod tenants;

use pgrx::prelude::*;

/// The name of relation `oid`, or `None` if there is no such relation.
pub fn rel_name(oid: pg_sys::Oid) -> Option<String> {
    // SAFETY: a syscache lookup returning a palloc'd C string, or NULL for an unknown oid.
    let name = unsafe { pg_sys::get_rel_name(oid) };
    // SAFETY: non-NULL results of get_rel_name are NUL-terminated strings.
    (!name.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy().into_owned())
}

thread_local! {
    /// The plan of [`extension_owner`], prepared once per backend: it runs at every commit that
    /// wrote to a hybrid index (the quota check), where planning it cost more than the write.
    static OWNER_PLAN: std::cell::RefCell<Option<pgrx::spi::OwnedPreparedStatement>> = const { std::cell::RefCell::new(None) };
}

/// The owner of the extension, if it is installed in this database.
fn extension_owner() -> Option<pg_sys::Oid> {
    Spi::connect(|c| {
        OWNER_PLAN.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.is_none() {
                let plan = c.prepare(
                    "SELECT extowner FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pg_hybrid'",
                    &[],
                )?;
                *cell = Some(plan.keep());
            }
            let rows = c.select(cell.as_ref().expect("prepared above"), Some(1), &[])?;
            for row in rows {
                return row.get::<pg_sys::Oid>(1);
            }
            Ok::<_, pgrx::spi::Error>(None)
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
