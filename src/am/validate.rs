//! `amvalidate`: checks an operator class of `hybrid` (run by `amvalidate()`).

use pgrx::prelude::*;

/// Every operator class the extension creates is valid by construction; user-made ones are
/// accepted as long as Postgres itself accepted them.
#[pg_guard]
pub unsafe extern "C-unwind" fn amvalidate(_opclassoid: pg_sys::Oid) -> bool {
    true
}
