//! The access method's handler: what Postgres calls to learn what `hybrid` can do.

use pgrx::prelude::*;

use super::{build, cost, insert, options, scan, vacuum, validate};

#[pg_extern(sql = "
CREATE FUNCTION hybrid_handler(internal) RETURNS index_am_handler
    PARALLEL SAFE IMMUTABLE STRICT COST 0.0001 LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
")]
fn hybrid_handler(_fcinfo: pg_sys::FunctionCallInfo) -> PgBox<pg_sys::IndexAmRoutine> {
    // SAFETY: allocates a zeroed node of the right tag in the current memory context.
    let mut am = unsafe { PgBox::<pg_sys::IndexAmRoutine>::alloc_node(pg_sys::NodeTag::T_IndexAmRoutine) };

    // Strategy numbers are not fixed: the opclasses list what they support (like pgvector).
    am.amstrategies = 0;
    am.amsupport = 0;
    am.amoptsprocnum = 0;
    am.amcanorder = false;
    // ORDER BY embedding <=> $1: nearest-neighbour scans of vector columns.
    am.amcanorderbyop = true;
    am.amcanbackward = false;
    am.amcanunique = false;
    am.amcanmulticol = true;
    // The key column comes first and has no operator; the index must be usable through a
    // condition on any of its columns.
    am.amoptionalkey = true;
    am.amsearcharray = false;
    am.amsearchnulls = false;
    am.amstorage = false;
    am.amclusterable = false;
    am.ampredlocks = false;
    am.amcanparallel = false;
    am.amcaninclude = false;
    am.amusemaintenanceworkmem = true;
    am.amparallelvacuumoptions = pg_sys::VACUUM_OPTION_PARALLEL_BULKDEL as u8;
    am.amkeytype = pg_sys::InvalidOid;

    am.ambuild = Some(build::ambuild);
    am.ambuildempty = Some(build::ambuildempty);
    am.aminsert = Some(insert::aminsert);
    am.ambulkdelete = Some(vacuum::ambulkdelete);
    am.amvacuumcleanup = Some(vacuum::amvacuumcleanup);
    am.amcanreturn = None;
    am.amcostestimate = Some(cost::amcostestimate);
    am.amoptions = Some(options::amoptions);
    am.amproperty = None;
    am.ambuildphasename = Some(build::ambuildphasename);
    am.amvalidate = Some(validate::amvalidate);
    am.amadjustmembers = None;
    am.ambeginscan = Some(scan::ambeginscan);
    am.amrescan = Some(scan::amrescan);
    am.amgettuple = Some(scan::amgettuple);
    am.amgetbitmap = Some(scan::amgetbitmap);
    am.amendscan = Some(scan::amendscan);
    am.ammarkpos = None;
    am.amrestrpos = None;
    am.amestimateparallelscan = None;
    am.aminitparallelscan = None;
    am.amparallelrescan = None;

    am.into_pg_boxed()
}

/// OID of the `hybrid` access method in this database, or `InvalidOid` if the extension is not
/// installed here. A syscache lookup, cheap enough not to cache (caching would need invalidation
/// when the extension is dropped and re-created).
pub fn hybrid_am_oid() -> pg_sys::Oid {
    // SAFETY: syscache lookups by name; missing_ok.
    unsafe { pg_sys::get_am_oid(c"hybrid".as_ptr(), true) }
}
