//! The control plane: catalog tables in schema `hybrid`, one file per table.

pub mod indexes;
pub mod snapshots;
pub mod tenants;

use pgrx::prelude::*;

/// Runs `f` as the owner of the extension, so that internal catalog maintenance works whatever
/// the privileges of the user whose statement triggered it (any table owner may create an index;
/// only the extension owner may write `hybrid.indexes`). Postgres restores the user on error.
pub fn as_extension_owner<R>(f: impl FnOnce() -> R) -> R {
    let owner: Option<pg_sys::Oid> =
        Spi::get_one("SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'pg_hybrid'")
            .unwrap_or(None);
    let Some(owner) = owner else { return f() };
    let mut saved_user = pg_sys::InvalidOid;
    let mut saved_ctx = 0;
    // SAFETY: save and switch the current user id as SECURITY DEFINER functions do.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_ctx);
        pg_sys::SetUserIdAndSecContext(owner, saved_ctx | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
    }
    let r = f();
    // SAFETY: restore what we saved.
    unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_ctx) };
    r
}
