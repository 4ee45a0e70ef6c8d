//! Index options: `CREATE INDEX ... USING hybrid (...) WITH (key_field = 'id', fields = '{...}')`.
//!
//! `key_field` names the column that identifies rows; `fields` is a JSON object of per-field
//! analysis options (see `hybrid_engine::config`). Postgres parses and stores them; the engine
//! validates `fields` when the index is built.

use std::ffi::CStr;

use once_cell::sync::OnceCell;
use pgrx::prelude::*;

/// Our options as Postgres lays them out (a varlena header, then offsets of the strings).
#[repr(C)]
struct HybridOptions {
    vl_len_: i32,
    key_field: i32,
    fields: i32,
    max_documents: i32,
    snapshot_on_create: bool,
}

static RELOPT_KIND: OnceCell<pg_sys::relopt_kind::Type> = OnceCell::new();

/// Registers the option names. Called from `_PG_init` in every backend that loads us.
pub fn init() {
    // SAFETY: registering reloptions with static C strings, once per process.
    unsafe {
        let kind = pg_sys::add_reloption_kind();
        pg_sys::add_string_reloption(
            kind as _,
            c"key_field".as_ptr(),
            c"Column that identifies rows (returned by hybrid.search, used by hybrid.score)".as_ptr(),
            std::ptr::null(),
            None,
            pg_sys::AccessExclusiveLock as _,
        );
        pg_sys::add_string_reloption(
            kind as _,
            c"fields".as_ptr(),
            c"JSON object of per-field options: tokenizer, stemmer, stopwords, keyword, ...".as_ptr(),
            std::ptr::null(),
            None,
            pg_sys::AccessExclusiveLock as _,
        );
        pg_sys::add_int_reloption(
            kind as _,
            c"max_documents".as_ptr(),
            c"Most documents this index may hold (-1: no limit of its own; its tenant may have one)".as_ptr(),
            -1,
            -1,
            i32::MAX,
            pg_sys::AccessExclusiveLock as _,
        );
        pg_sys::add_bool_reloption(
            kind as _,
            c"snapshot_on_create".as_ptr(),
            c"Whether CREATE INDEX (and REINDEX) also writes a first snapshot, and fails if it cannot".as_ptr(),
            false,
            pg_sys::AccessExclusiveLock as _,
        );
        let _ = RELOPT_KIND.set(kind);
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amoptions(reloptions: pg_sys::Datum, validate: bool) -> *mut pg_sys::bytea {
    let tab = [
        pg_sys::relopt_parse_elt {
            optname: c"key_field".as_ptr(),
            opttype: pg_sys::relopt_type::RELOPT_TYPE_STRING,
            offset: std::mem::offset_of!(HybridOptions, key_field) as i32,
        },
        pg_sys::relopt_parse_elt {
            optname: c"fields".as_ptr(),
            opttype: pg_sys::relopt_type::RELOPT_TYPE_STRING,
            offset: std::mem::offset_of!(HybridOptions, fields) as i32,
        },
        pg_sys::relopt_parse_elt {
            optname: c"max_documents".as_ptr(),
            opttype: pg_sys::relopt_type::RELOPT_TYPE_INT,
            offset: std::mem::offset_of!(HybridOptions, max_documents) as i32,
        },
        pg_sys::relopt_parse_elt {
            optname: c"snapshot_on_create".as_ptr(),
            opttype: pg_sys::relopt_type::RELOPT_TYPE_BOOL,
            offset: std::mem::offset_of!(HybridOptions, snapshot_on_create) as i32,
        },
    ];
    let kind = *RELOPT_KIND.get().expect("reloptions registered in _PG_init");
    pg_sys::build_reloptions(
        reloptions,
        validate,
        kind,
        std::mem::size_of::<HybridOptions>(),
        tab.as_ptr(),
        tab.len() as i32,
    ) as *mut pg_sys::bytea
}

/// The options of an index relation, as given to CREATE INDEX.
#[derive(Debug, Clone, Default)]
pub struct IndexOptions {
    pub key_field: Option<String>,
    pub fields: Option<String>,
    /// The index's own document limit, if set.
    pub max_documents: Option<i64>,
    /// Whether the build must also write a first snapshot.
    pub snapshot_on_create: bool,
}

/// Reads the options of `index`.
///
/// # Safety
/// `index` must be an open relation of our access method.
pub unsafe fn read(index: pg_sys::Relation) -> IndexOptions {
    let opts = (*index).rd_options as *const HybridOptions;
    if opts.is_null() {
        return IndexOptions::default();
    }
    let get = |offset: i32| -> Option<String> {
        if offset == 0 {
            return None;
        }
        let p = (opts as *const u8).add(offset as usize) as *const std::ffi::c_char;
        Some(CStr::from_ptr(p).to_string_lossy().into_owned())
    };
    let max = (*opts).max_documents;
    IndexOptions {
        key_field: get((*opts).key_field),
        fields: get((*opts).fields),
        max_documents: (max >= 0).then_some(i64::from(max)),
        snapshot_on_create: (*opts).snapshot_on_create,
    }
}
