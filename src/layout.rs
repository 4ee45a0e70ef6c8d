//! How the columns of one index map to the engine's fields, and the conversion of a row's
//! indexed values (Datums) into an engine [`Document`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;

use hybrid_engine::config::{ColumnKind, ColumnSpec, IndexConfig};
use hybrid_engine::manifest::Manifest;
use hybrid_engine::text::{pack_ctid, unpack_ctid, Document, KeyValue};
use pgrx::prelude::*;
use pgrx::FromDatum;
use pgrx::PgSqlErrorCode;

use crate::error::{raise_with, OrRaise};
use crate::sidecar;

/// What an index column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Key,
    /// The text field at this position of the config.
    Text(usize),
    /// The vector field at this position of the config.
    Vector(usize),
}

/// The columns of one index.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub config: IndexConfig,
    /// One entry per index column.
    pub roles: Vec<Role>,
    pub key_col: usize,
    pub key_type: pg_sys::Oid,
    pub index_name: String,
}

/// Names and broad kinds of the columns of an index (from its tuple descriptor).
///
/// # Safety
/// `index` must be a valid, open index relation.
pub unsafe fn column_specs(index: pg_sys::Relation) -> Vec<(ColumnSpec, pg_sys::Oid)> {
    let desc = (*index).rd_att;
    let natts = (*desc).natts as usize;
    let attrs = (*desc).attrs.as_slice(natts);
    attrs
        .iter()
        .map(|a| {
            let name = std::ffi::CStr::from_ptr(a.attname.data.as_ptr()).to_string_lossy().into_owned();
            let kind = match a.atttypid {
                pg_sys::TEXTOID | pg_sys::VARCHAROID | pg_sys::BPCHAROID => ColumnKind::Text,
                pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID => ColumnKind::Integer,
                pg_sys::FLOAT4ARRAYOID => ColumnKind::Vector,
                _ => ColumnKind::Other,
            };
            (ColumnSpec { name, kind }, a.atttypid)
        })
        .collect()
}

/// The layout of `index` given its config.
///
/// # Safety
/// `index` must be a valid, open index relation.
pub unsafe fn layout_for(index: pg_sys::Relation, config: &IndexConfig) -> Layout {
    let cols = column_specs(index);
    let mut roles = Vec::with_capacity(cols.len());
    let mut key_col = 0;
    let mut key_type = pg_sys::InvalidOid;
    let mut next_text = 0;
    let mut next_vector = 0;
    for (i, (c, ty)) in cols.iter().enumerate() {
        if c.name == config.key_field {
            roles.push(Role::Key);
            key_col = i;
            key_type = *ty;
        } else if c.kind == ColumnKind::Vector {
            roles.push(Role::Vector(next_vector));
            next_vector += 1;
        } else {
            roles.push(Role::Text(next_text));
            next_text += 1;
        }
    }
    let name = std::ffi::CStr::from_ptr((*(*index).rd_rel).relname.data.as_ptr()).to_string_lossy().into_owned();
    Layout { dir: sidecar::index_dir(index), config: config.clone(), roles, key_col, key_type, index_name: name }
}

thread_local! {
    static LAYOUTS: RefCell<HashMap<PathBuf, Layout>> = RefCell::new(HashMap::new());
}

/// The layout of an existing index, read from its manifest once per folder and cached.
///
/// # Safety
/// `index` must be a valid, open index relation of our access method.
pub unsafe fn layout(index: pg_sys::Relation) -> Layout {
    let dir = sidecar::index_dir(index);
    if let Some(l) = LAYOUTS.with(|m| m.borrow().get(&dir).cloned()) {
        return l;
    }
    let manifest = usable_manifest(index, &dir);
    let l = layout_for(index, &manifest.hybrid.config);
    LAYOUTS.with(|m| m.borrow_mut().insert(dir, l.clone()));
    l
}

/// The manifest of `index`, if its folder may be used here; otherwise an ERROR that says why
/// and what to do. Searching a folder that does not match the table would return wrong rows.
///
/// # Safety
/// `index` must be a valid, open index relation.
unsafe fn usable_manifest(index: pg_sys::Relation, dir: &std::path::Path) -> Manifest {
    let name = std::ffi::CStr::from_ptr((*(*index).rd_rel).relname.data.as_ptr()).to_string_lossy().into_owned();
    if pg_sys::RecoveryInProgress() {
        raise_with(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("hybrid index \"{name}\" cannot be used during recovery"),
            Some(
                "Its files live beside the data directory and are not carried by WAL replication: query the primary. \
                  A promoted standby restores the index from its newest snapshot."
                    .into(),
            ),
        );
    }
    let restore_hint = format!(
        "With pg_hybrid in shared_preload_libraries, its database worker does it within hybrid.worker_naptime; to do it now, run SELECT hybrid.restore('{name}')."
    );
    match Manifest::read(dir) {
        Ok(m) => {
            if let Some(why) = crate::position::untrusted(m.hybrid.position) {
                raise_with(
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("hybrid index \"{name}\" must be caught up with its table before use: {why}"),
                    Some(restore_hint),
                );
            }
            m
        }
        Err(_) if !dir.exists() => raise_with(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("hybrid index \"{name}\" has no files on this server"),
            Some(restore_hint),
        ),
        Err(e) => crate::error::raise(&e, None),
    }
}

/// Forgets the cached layout of a folder (rebuilt or dropped).
pub fn forget(dir: &std::path::Path) {
    LAYOUTS.with(|m| {
        m.borrow_mut().remove(dir);
    });
}

/// The text of a text-like Datum (text, varchar, char), detoasted. Invalid UTF-8 (possible in
/// SQL_ASCII databases) is replaced rather than rejected.
///
/// # Safety
/// `datum` must be a non-null Datum of a varlena text type.
pub unsafe fn datum_text(datum: pg_sys::Datum) -> String {
    let v = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
    let bytes = pgrx::varlena::varlena_to_byte_slice(v);
    let s = String::from_utf8_lossy(bytes).into_owned();
    if v != datum.cast_mut_ptr() {
        pg_sys::pfree(v.cast());
    }
    s
}

/// The elements of a one-dimensional `real[]` Datum. NULL elements are refused (22004), and
/// arrays of more dimensions (22000).
///
/// # Safety
/// `datum` must be a non-null `real[]` Datum.
pub unsafe fn datum_vector(datum: pg_sys::Datum, field: &str) -> Vec<f32> {
    let arr = pgrx::Array::<f32>::from_datum(datum, false).expect("non-null array");
    let values: Vec<Option<f32>> = arr.iter().collect();
    let ndim = (*arr.into_array_type()).ndim;
    if ndim > 1 {
        raise_with(
            PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            format!("vector for field \"{field}\" is an array of {ndim} dimensions"),
            Some("a vector is a one-dimensional array of numbers, such as '{0.1,0.2,0.3}'".into()),
        );
    }
    if values.iter().any(Option::is_none) {
        raise_with(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("vector for field \"{field}\" contains NULL elements"),
            Some("vectors must be arrays of numbers without NULLs; a NULL vector (the whole value) is allowed".into()),
        );
    }
    values.into_iter().flatten().collect()
}

/// The key value of a Datum of type `ty`.
///
/// # Safety
/// `datum` must be a non-null Datum of type `ty`.
pub unsafe fn key_value(datum: pg_sys::Datum, ty: pg_sys::Oid) -> KeyValue {
    match ty {
        pg_sys::INT2OID => KeyValue::I64(i64::from(datum.value() as i16)),
        pg_sys::INT4OID => KeyValue::I64(i64::from(datum.value() as i32)),
        pg_sys::INT8OID => KeyValue::I64(datum.value() as i64),
        pg_sys::TEXTOID | pg_sys::VARCHAROID | pg_sys::BPCHAROID => KeyValue::Str(datum_text(datum)),
        _ => {
            let mut output: pg_sys::Oid = pg_sys::InvalidOid;
            let mut varlena = false;
            pg_sys::getTypeOutputInfo(ty, &mut output, &mut varlena);
            let c = pg_sys::OidOutputFunctionCall(output, datum);
            let s = std::ffi::CStr::from_ptr(c).to_string_lossy().into_owned();
            pg_sys::pfree(c.cast());
            KeyValue::Str(s)
        }
    }
}

/// Builds the document of one row from the index's values.
///
/// # Safety
/// `values`/`isnull` must hold one entry per index column.
pub unsafe fn document(
    layout: &Layout,
    values: *const pg_sys::Datum,
    isnull: *const bool,
    tid: pg_sys::ItemPointer,
) -> Document {
    let n = layout.roles.len();
    let values = std::slice::from_raw_parts(values, n);
    let isnull = std::slice::from_raw_parts(isnull, n);
    if isnull[layout.key_col] {
        raise_with(
            PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION,
            format!("key field \"{}\" of index \"{}\" is NULL", layout.config.key_field, layout.index_name),
            Some(
                "a hybrid index identifies rows by their key; make the key column NOT NULL (a primary key is ideal)"
                    .into(),
            ),
        );
    }
    let key = key_value(values[layout.key_col], layout.key_type);
    let mut texts = vec![None; layout.config.text_fields.len()];
    let mut vectors = vec![None; layout.config.vector_fields.len()];
    for (i, role) in layout.roles.iter().enumerate() {
        if isnull[i] {
            continue;
        }
        match role {
            Role::Text(f) => texts[*f] = Some(datum_text(values[i])),
            Role::Vector(f) => {
                let cfg = &layout.config.vector_fields[*f];
                let v = datum_vector(values[i], &cfg.name);
                cfg.check(&v, "vector").or_raise();
                vectors[*f] = Some(v);
            }
            Role::Key => {}
        }
    }
    Document { ctid: tid_to_u64(tid), key, texts, vectors }
}

/// A heap tuple id as stored in the index.
///
/// # Safety
/// `tid` must point to a valid item pointer.
pub unsafe fn tid_to_u64(tid: pg_sys::ItemPointer) -> u64 {
    let (block, offset) = pgrx::itemptr::item_pointer_get_both(*tid);
    pack_ctid(block, offset)
}

/// A stored tuple id as an item pointer.
pub fn u64_to_tid(ctid: u64) -> pg_sys::ItemPointerData {
    let (block, offset) = unpack_ctid(ctid);
    let mut tid = pg_sys::ItemPointerData::default();
    pgrx::itemptr::item_pointer_set_all(&mut tid, block, offset);
    tid
}
