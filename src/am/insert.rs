//! `aminsert`: buffers the row for this transaction (see `xact`); nothing touches disk here.

use pgrx::prelude::*;

use crate::am::options;
use crate::{layout, xact};

#[pg_guard]
pub unsafe extern "C-unwind" fn aminsert(
    index: pg_sys::Relation,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    heap_tid: pg_sys::ItemPointer,
    _heap: pg_sys::Relation,
    _check_unique: pg_sys::IndexUniqueCheck::Type,
    _index_unchanged: bool,
    _index_info: *mut pg_sys::IndexInfo,
) -> bool {
    let layout = layout::layout(index);
    let doc = layout::document(&layout, values, isnull, heap_tid);
    let max_documents = options::read(index).max_documents;
    xact::add_document(&layout.dir, (*index).rd_id, max_documents, doc);
    // We never check uniqueness.
    false
}
