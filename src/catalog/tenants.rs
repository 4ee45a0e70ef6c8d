//! Tenants and quotas.
//!
//! Every hybrid index belongs to a tenant: the tenant its creating role is assigned to
//! (`hybrid.assign_tenant`), else `default`. A tenant may limit its number of indexes, its
//! documents and its bytes on disk. Checks are race-free at every isolation level: before
//! counting, the checking transaction *updates* the tenant's row (`quota_checks + 1`), so two
//! transactions checking one tenant are serialised on that row. Under READ COMMITTED the second
//! waits, then counts what the first committed (each statement takes a fresh snapshot, and the
//! index files are not MVCC: the first published them before committing). Under REPEATABLE
//! READ and SERIALIZABLE the second fails with a serialization error (40001), and its retry
//! counts afresh. A plain `INSERT ... WHERE (SELECT count(*) ...) < limit` would let both see
//! the old count. Tenants without limits take no lock.

use hybrid_engine::manifest::Manifest;
use hybrid_engine::text::pending::{LogSource, NoLog};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use pgrx::{PgBuiltInOids, PgOid};

use super::as_extension_owner;
use crate::am::log_pages::OpenIndex;
use crate::error::raise_with;

/// The tenant indexes go to when their creator has none.
pub const DEFAULT_TENANT: &str = "default";

/// The limits of a tenant (`None`: unlimited).
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub max_indexes: Option<i32>,
    pub max_documents: Option<i64>,
    pub max_bytes: Option<i64>,
}

/// Whether the hybrid catalog of this version is installed (tenants came with 0.2.0).
fn installed() -> bool {
    // Catalog cache lookups, not a query: this runs at every commit that wrote to an index.
    // SAFETY: name lookups with missing_ok; no memory is kept.
    unsafe {
        let nsp = pg_sys::get_namespace_oid(c"hybrid".as_ptr(), true);
        nsp != pg_sys::InvalidOid && pg_sys::get_relname_relid(c"tenants".as_ptr(), nsp) != pg_sys::InvalidOid
    }
}

thread_local! {
    static INDEX_LIMITS_PLAN: std::cell::RefCell<Option<pgrx::spi::OwnedPreparedStatement>> =
        const { std::cell::RefCell::new(None) };
}

/// The tenant of index `index` and the tenant's limits, in one kept plan: it runs at every
/// commit that wrote to a hybrid index, where three ad-hoc queries cost more than the write.
fn index_limits(index: pg_sys::Oid) -> Option<(String, Limits)> {
    const SQL: &str = "SELECT r.tenant, t.max_indexes, t.max_documents, t.max_bytes
                         FROM hybrid.index_registry r LEFT JOIN hybrid.tenants t ON t.name = r.tenant
                        WHERE r.index_oid = $1";
    as_extension_owner(|| {
        Spi::connect(|c| {
            super::with_kept_plan(&INDEX_LIMITS_PLAN, &c, SQL, &[PgOid::BuiltIn(PgBuiltInOids::OIDOID)], |plan| {
                for row in c.select(plan, Some(1), &[index.into()])? {
                    let Some(tenant) = row.get::<String>(1)? else { continue };
                    let limits = Limits {
                        max_indexes: row.get::<i32>(2)?,
                        max_documents: row.get::<i64>(3)?,
                        max_bytes: row.get::<i64>(4)?,
                    };
                    return Ok(Some((tenant, limits)));
                }
                Ok(None)
            })
        })
    })
    // Quotas fail closed: a check that cannot read the limits refuses.
    .unwrap_or_else(|e| pgrx::error!("pg_hybrid: could not read the quota of index {}: {e}", index.to_u32()))
}

/// The tenant of role `role`.
pub fn tenant_of_role(role: pg_sys::Oid) -> String {
    if !installed() {
        return DEFAULT_TENANT.into();
    }
    as_extension_owner(|| {
        Spi::get_one_with_args::<String>("SELECT tenant FROM hybrid.role_tenants WHERE role_oid = $1", &[role.into()])
    })
    .ok()
    .flatten()
    .unwrap_or_else(|| DEFAULT_TENANT.into())
}

/// The current user (not the extension owner some internal work runs as).
pub fn current_user() -> pg_sys::Oid {
    // SAFETY: reads the current user id.
    unsafe { pg_sys::GetUserId() }
}

/// The role creating an index: the session's current role (SET ROLE), not the table owner
/// Postgres runs index builds as.
pub fn creator() -> pg_sys::Oid {
    // SAFETY: reads the outer user id.
    unsafe { pg_sys::GetOuterUserId() }
}

/// Whether `role` administers pg_hybrid: a superuser or a member of `hybrid_admin`.
pub fn is_admin(role: pg_sys::Oid) -> bool {
    // SAFETY: catalog lookups by OID and name.
    unsafe {
        if pg_sys::superuser_arg(role) {
            return true;
        }
        let admin = pg_sys::get_role_oid(c"hybrid_admin".as_ptr(), true);
        admin != pg_sys::InvalidOid && pg_sys::is_member_of_role(role, admin)
    }
}

/// Raises 42501 unless the current user owns `index` or administers pg_hybrid.
pub fn require_owner_or_admin(index: pg_sys::Oid, what: &str) {
    let user = current_user();
    // SAFETY: ownership check by OID.
    let owner = unsafe { pg_sys::pg_class_ownercheck(index, user) };
    if !owner && !is_admin(user) {
        raise_with(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to {what} this index"),
            Some("only the owner of the index or a member of hybrid_admin may do this".into()),
        );
    }
}

/// Raises 42501 unless the current user may read the table of `index`.
pub fn require_select(table: pg_sys::Oid, name: &str) {
    // SAFETY: privilege check by OID.
    let ok = unsafe { pg_sys::pg_class_aclcheck(table, current_user(), pg_sys::ACL_SELECT as _) }
        == pg_sys::AclResult::ACLCHECK_OK;
    if !ok {
        raise_with(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied for table {name}"),
            Some("reading an index's statistics needs SELECT on its table".into()),
        );
    }
}

fn limits(tenant: &str) -> Limits {
    as_extension_owner(|| {
        Spi::connect(|c| {
            let rows = c.select(
                "SELECT max_indexes, max_documents, max_bytes FROM hybrid.tenants WHERE name = $1",
                Some(1),
                &[tenant.into()],
            )?;
            for row in rows {
                return Ok::<_, pgrx::spi::Error>(Limits {
                    max_indexes: row.get::<i32>(1)?,
                    max_documents: row.get::<i64>(2)?,
                    max_bytes: row.get::<i64>(3)?,
                });
            }
            Ok(Limits::default())
        })
    })
    // Quotas fail closed: a check that cannot read the limits refuses.
    .unwrap_or_else(|e| pgrx::error!("pg_hybrid: could not read the limits of tenant {tenant}: {e}"))
}

/// Takes the tenant's row lock (see the module comment).
fn serialise(tenant: &str) {
    as_extension_owner(|| {
        Spi::run_with_args(
            "UPDATE hybrid.tenants SET quota_checks = quota_checks + 1 WHERE name = $1",
            &[tenant.into()],
        )
    })
    .unwrap_or_else(|e| pgrx::error!("pg_hybrid: could not lock tenant {tenant}: {e}"));
}

fn exceeded(tenant: &str, what: &str, limit: i64, usage: i64, adding: i64) -> ! {
    raise_with(
        PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
        format!("tenant \"{tenant}\" would exceed its limit of {limit} {what} ({usage} in use, {adding} more asked)"),
        Some(format!(
            "raise the limit with UPDATE hybrid.tenants SET max_{what} = ... WHERE name = '{tenant}', or free some"
        )),
    )
}

/// The hybrid indexes of `tenant` in this database.
fn tenant_indexes(tenant: &str) -> Vec<pg_sys::Oid> {
    as_extension_owner(|| {
        Spi::connect(|c| {
            let rows = c.select(
                "SELECT r.index_oid FROM hybrid.index_registry r JOIN pg_catalog.pg_class c ON c.oid = r.index_oid WHERE r.tenant = $1",
                None,
                &[tenant.into()],
            )?;
            let mut v = Vec::new();
            for row in rows {
                if let Some(o) = row.get::<pg_sys::Oid>(1)? {
                    v.push(o);
                }
            }
            Ok::<_, pgrx::spi::Error>(v)
        })
    })
    .unwrap_or_else(|e| pgrx::error!("pg_hybrid: could not list the indexes of tenant {tenant}: {e}"))
}

/// Live documents and bytes on disk of the index `oid`, if it exists (0, 0 if unreadable).
pub fn usage_of_index(oid: pg_sys::Oid) -> Option<(i64, i64)> {
    OpenIndex::open(oid, pg_sys::AccessShareLock, false).map(|i| usage_of(&i.dir(), &i.log()))
}

/// Live documents and bytes on disk of the index in `dir` whose pending log is `log` (0, 0 if
/// unreadable).
pub fn usage_of(dir: &std::path::Path, log: &dyn LogSource) -> (i64, i64) {
    // Rows in the pending log count as much as those in segments.
    let docs = Manifest::read(dir)
        .map(|m| m.num_docs() + hybrid_engine::text::pending::pending_docs(log, &m).unwrap_or(0))
        .map_or(0, |n| n as i64);
    let bytes = hybrid_engine::fsutil::dir_size(dir).unwrap_or(0) as i64;
    (docs, bytes)
}

/// Before a new index of `tenant` is built: refuse it beyond `max_indexes`. `index` is the
/// index being built (a rebuild of an existing index is not a new one).
/// `replaces`: the index this one is a copy of (REINDEX CONCURRENTLY), which does not count.
pub fn check_new_index(tenant: &str, index: pg_sys::Oid, replaces: Option<pg_sys::Oid>) {
    if !installed() {
        return;
    }
    let l = limits(tenant);
    let Some(max) = l.max_indexes else { return };
    serialise(tenant);
    let (existing, this_one): (i64, bool) = as_extension_owner(|| {
        Spi::connect(|c| {
            let row = c
                .select(
                    "SELECT count(*) FILTER (WHERE r.index_oid <> $2 AND r.index_oid IS DISTINCT FROM $3),
                            bool_or(r.index_oid = $2 OR r.index_oid = $3)
                       FROM hybrid.index_registry r JOIN pg_catalog.pg_class c ON c.oid = r.index_oid
                      WHERE r.tenant = $1",
                    Some(1),
                    // $3 is NULL when nothing is replaced.
                    &[tenant.into(), index.into(), replaces.into()],
                )?
                .first();
            Ok::<_, pgrx::spi::Error>((row.get::<i64>(1)?.unwrap_or(0), row.get::<bool>(2)?.unwrap_or(false)))
        })
    })
    .unwrap_or_else(|e| pgrx::error!("pg_hybrid: could not count the indexes of tenant {tenant}: {e}"));
    if !this_one && existing >= i64::from(max) {
        exceeded(tenant, "indexes", i64::from(max), existing, 1);
    }
}

/// What a transaction is about to publish into one index.
pub struct Growth {
    pub index_oid: pg_sys::Oid,
    pub docs: i64,
    pub bytes: i64,
}

/// Before rows are published into an index (at commit, or earlier when the transaction's
/// buffer is written out): refuse growth beyond its tenant's `max_documents` and `max_bytes`,
/// and beyond the index's own `max_documents` option (`index_limit`).
pub fn check_growth(growth: &Growth, index_limit: Option<i64>) {
    if !installed() {
        return;
    }
    let Some((tenant, l)) = index_limits(growth.index_oid) else { return };
    if l.max_documents.is_none() && l.max_bytes.is_none() && index_limit.is_none() {
        return;
    }
    serialise(&tenant);
    if let Some(max) = index_limit {
        if let Some((docs, _)) = usage_of_index(growth.index_oid) {
            if docs + growth.docs > max {
                index_exceeded(growth.index_oid, &tenant, max, docs, growth.docs);
            }
        }
    }
    if l.max_documents.is_none() && l.max_bytes.is_none() {
        return;
    }
    let (used_docs, used_bytes) =
        tenant_indexes(&tenant).into_iter().filter_map(usage_of_index).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    if let Some(max) = l.max_documents {
        if used_docs + growth.docs > max {
            exceeded(&tenant, "documents", max, used_docs, growth.docs);
        }
    }
    if let Some(max) = l.max_bytes {
        if used_bytes + growth.bytes > max {
            exceeded(&tenant, "bytes", max, used_bytes, growth.bytes);
        }
    }
}

fn index_exceeded(index: pg_sys::Oid, tenant: &str, max: i64, docs: i64, adding: i64) -> ! {
    let name = super::rel_name(index).map_or_else(|| format!("with oid {}", index.to_u32()), |n| format!("\"{n}\""));
    raise_with(
        PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
        format!(
            "index {name} of tenant \"{tenant}\" would exceed its max_documents of {max} ({docs} indexed, {adding} more asked)"
        ),
        Some("raise it with ALTER INDEX ... SET (max_documents = ...), or delete rows and VACUUM".into()),
    )
}

/// After a build: refuse an index larger than its own `max_documents` option (`index_limit`),
/// or that takes its tenant beyond `max_documents` or `max_bytes`.
pub fn check_built(tenant: &str, dir: &std::path::Path, index: pg_sys::Oid, index_limit: Option<i64>) {
    // Just built: nothing is in its pending log.
    let (docs, bytes) = usage_of(dir, &NoLog);
    if let Some(max) = index_limit {
        if docs > max {
            index_exceeded(index, tenant, max, 0, docs);
        }
    }
    if !installed() {
        return;
    }
    let l = limits(tenant);
    if l.max_documents.is_none() && l.max_bytes.is_none() {
        return;
    }
    serialise(tenant);
    let (mut used_docs, mut used_bytes) = (0, 0);
    for oid in tenant_indexes(tenant).into_iter().filter(|&o| o != index) {
        let Some(other) = OpenIndex::open(oid, pg_sys::AccessShareLock, false) else { continue };
        let d = other.dir();
        if d != dir {
            let (a, b) = usage_of(&d, &other.log());
            used_docs += a;
            used_bytes += b;
        }
    }
    if let Some(max) = l.max_documents {
        if used_docs + docs > max {
            exceeded(tenant, "documents", max, used_docs, docs);
        }
    }
    if let Some(max) = l.max_bytes {
        if used_bytes + bytes > max {
            exceeded(tenant, "bytes", max, used_bytes, bytes);
        }
    }
}
