//! Tenancy: which tenant a role belongs to, and what each tenant uses.

use pgrx::prelude::*;

#[pg_schema]
mod hybrid {
    use pgrx::prelude::*;
    use pgrx::PgSqlErrorCode;

    use crate::catalog::as_extension_owner;
    use crate::catalog::tenants::{current_user, is_admin, tenant_of_role, usage_of_index};
    use crate::error::raise_with;

    /// Assigns `role` to `tenant`: the indexes it creates from now on belong to that tenant.
    /// Only superusers and members of hybrid_admin may; nobody but a superuser may move
    /// themselves to another tenant.
    #[pg_extern(volatile, strict)]
    fn assign_tenant(role: &str, tenant: &str) -> bool {
        let caller = current_user();
        if !is_admin(caller) {
            raise_with(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                "permission denied to assign tenants",
                Some("only superusers and members of hybrid_admin manage tenants".into()),
            );
        }
        let cname = std::ffi::CString::new(role).unwrap_or_default();
        // SAFETY: role lookup by name; errors for unknown roles.
        let oid = unsafe { pg_sys::get_role_oid(cname.as_ptr(), false) };
        // An administrator may not move itself, whichever role it acts as (SET ROLE to
        // hybrid_admin, a SECURITY DEFINER function): the session's own roles count too.
        // SAFETY: reads the session's user ids; superuser check of the session user.
        let (session, outer) = unsafe { (pg_sys::GetSessionUserId(), pg_sys::GetOuterUserId()) };
        let itself = oid == caller || oid == session || oid == outer;
        if itself && !unsafe { pg_sys::superuser_arg(session) } {
            raise_with(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("role \"{role}\" cannot change its own tenant"),
                Some("ask another administrator".into()),
            );
        }
        as_extension_owner(|| {
            Spi::run_with_args(
                "INSERT INTO hybrid.role_tenants (role_oid, tenant) VALUES ($1, $2)
                 ON CONFLICT (role_oid) DO UPDATE SET tenant = EXCLUDED.tenant",
                &[oid.into(), tenant.into()],
            )
        })
        .unwrap_or_else(|e| {
            raise_with(
                PgSqlErrorCode::ERRCODE_FOREIGN_KEY_VIOLATION,
                format!("could not assign role \"{role}\" to tenant \"{tenant}\": {e}"),
                Some("create the tenant first: INSERT INTO hybrid.tenants (name, ...) VALUES (...)".into()),
            )
        });
        true
    }

    /// The tenant of the current user.
    #[pg_extern(stable, parallel_safe)]
    fn current_tenant() -> String {
        tenant_of_role(current_user())
    }

    /// Whether the current user may see the catalog rows of `tenant`: its own, or all for
    /// administrators.
    #[pg_extern(stable, strict, parallel_safe)]
    fn can_see_tenant(tenant: &str) -> bool {
        let me = current_user();
        is_admin(me) || tenant_of_role(me) == tenant
    }

    /// Live documents and bytes on disk of the hybrid indexes of this database whose tenant the
    /// current user may see (for `hybrid.tenant_usage`).
    #[pg_extern(stable)]
    fn index_usage() -> TableIterator<'static, (name!(index_oid, pg_sys::Oid), name!(documents, i64), name!(bytes, i64))>
    {
        let me = current_user();
        let (admin, mine) = (is_admin(me), tenant_of_role(me));
        let oids: Vec<pg_sys::Oid> = as_extension_owner(|| {
            Spi::connect(|c| {
                let mut v = Vec::new();
                for row in c.select("SELECT index_oid, tenant FROM hybrid.index_registry", None, &[])? {
                    if let (Some(o), Some(t)) = (row.get::<pg_sys::Oid>(1)?, row.get::<String>(2)?) {
                        if admin || t == mine {
                            v.push(o);
                        }
                    }
                }
                Ok::<_, pgrx::spi::Error>(v)
            })
        })
        .unwrap_or_default();
        let rows: Vec<_> =
            oids.into_iter().filter_map(|o| usage_of_index(o).map(|(docs, bytes)| (o, docs, bytes))).collect();
        TableIterator::new(rows)
    }
}
