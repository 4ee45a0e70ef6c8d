//! Recognising `hybrid.score(...)` and `hybrid.snippet(...)` in a query.

use pgrx::prelude::*;
use pgrx::PgList;

use super::path::var_attno;

/// OIDs of the functions the planner looks for.
pub struct Oids {
    pub score: pg_sys::Oid,
    pub snippet: pg_sys::Oid,
}

impl Oids {
    /// Looks the functions up in schema `hybrid`; `None` if the extension is not installed in
    /// this database.
    pub fn lookup() -> Option<Oids> {
        // SAFETY: catalog lookups by name with missing_ok.
        unsafe {
            let ns = pg_sys::get_namespace_oid(c"hybrid".as_ptr(), true);
            if ns == pg_sys::InvalidOid {
                return None;
            }
            let find = |name: &std::ffi::CStr, args: &[pg_sys::Oid]| -> pg_sys::Oid {
                let mut qualified = PgList::<pg_sys::Node>::new();
                qualified.push(pg_sys::makeString(pg_sys::pstrdup(c"hybrid".as_ptr())) as *mut pg_sys::Node);
                qualified.push(pg_sys::makeString(pg_sys::pstrdup(name.as_ptr())) as *mut pg_sys::Node);
                pg_sys::LookupFuncName(qualified.into_pg(), args.len() as i32, args.as_ptr(), true)
            };
            let score = find(c"score", &[pg_sys::ANYELEMENTOID]);
            let snippet = find(c"snippet", &[pg_sys::TEXTOID, pg_sys::TEXTOID, pg_sys::TEXTOID, pg_sys::INT4OID]);
            (score != pg_sys::InvalidOid).then_some(Oids { score, snippet })
        }
    }
}

/// Whether `node` is a call of `func` whose first argument is a column of relation `relid`.
///
/// # Safety
/// `node` must be null or a valid expression node.
pub unsafe fn is_call_on(func: pg_sys::Oid, node: *mut pg_sys::Node, relid: pg_sys::Index) -> bool {
    if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_FuncExpr {
        return false;
    }
    let f = node as *mut pg_sys::FuncExpr;
    if (*f).funcid != func {
        return false;
    }
    let args = PgList::<pg_sys::Node>::from_pg((*f).args);
    args.get_ptr(0).is_some_and(|a| var_attno(a, relid).is_some())
}

/// Which of the functions a query applies to a column of a relation.
#[derive(Default, Debug, Clone, Copy)]
pub struct Uses {
    pub score: bool,
    pub snippet: bool,
}

struct WalkState<'a> {
    fns: &'a Oids,
    relid: pg_sys::Index,
    uses: Uses,
}

#[pg_guard]
unsafe extern "C-unwind" fn walker(node: *mut pg_sys::Node, ctx: *mut std::ffi::c_void) -> bool {
    if node.is_null() {
        return false;
    }
    let st = &mut *(ctx as *mut WalkState);
    if is_call_on(st.fns.score, node, st.relid) {
        st.uses.score = true;
    }
    if st.fns.snippet != pg_sys::InvalidOid && is_call_on(st.fns.snippet, node, st.relid) {
        st.uses.snippet = true;
    }
    pg_sys::expression_tree_walker(node, Some(walker), ctx)
}

/// Whether the query being planned calls score/snippet on a column of relation `relid`, in its
/// target list (which includes ORDER BY expressions) or its HAVING clause.
///
/// # Safety
/// `root` must be the planner state of the query being planned.
pub unsafe fn uses_in_query(root: *mut pg_sys::PlannerInfo, relid: pg_sys::Index, fns: &Oids) -> Uses {
    let parse = (*root).parse;
    let mut st = WalkState { fns, relid, uses: Uses::default() };
    let ctx = (&mut st as *mut WalkState).cast();
    walker((*parse).targetList as *mut pg_sys::Node, ctx);
    walker((*parse).havingQual, ctx);
    st.uses
}
