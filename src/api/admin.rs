//! Administration: what an index holds, and whether it agrees with its table.

use pgrx::prelude::*;

#[pg_schema]
pub(crate) mod hybrid {
    use std::collections::HashSet;

    use hybrid_engine::text::maintenance;
    use hybrid_engine::vector::stats::field_stats;
    use pgrx::prelude::*;
    use pgrx::{PgRelation, PgSqlErrorCode};

    use crate::am::hybrid_am_oid;
    use crate::am::log_pages::PageLog;
    use crate::catalog::tenants::{require_owner_or_admin, require_select};
    use crate::error::{raise_with, OrRaise};
    use crate::{layout, sidecar, xact};

    /// Checks that `rel` is a hybrid index.
    pub(crate) fn check_hybrid_index(rel: &PgRelation) {
        let ok = rel.is_index() && unsafe { (*rel.rd_rel).relam } == hybrid_am_oid();
        if !ok {
            raise_with(
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                format!("\"{}\" is not a hybrid index", rel.name()),
                Some("pass an index created with USING hybrid".into()),
            );
        }
    }

    /// Raises 42501 unless the current user may read the table of `index`.
    fn require_table_select(index: &PgRelation) {
        // SAFETY: rd_index of an open index relation.
        let table = unsafe { (*index.rd_index).indrelid };
        require_select(table, &crate::catalog::rel_name(table).unwrap_or_default());
    }

    /// The effective configuration of a hybrid index (key field, text and vector fields), for
    /// anyone who may read its table: `hybrid.search` uses it. The same as
    /// `hybrid.indexes.settings`, which shows only one's own tenant's indexes.
    #[pg_extern(stable, strict)]
    fn index_settings(index: PgRelation) -> pgrx::JsonB {
        check_hybrid_index(&index);
        require_table_select(&index);
        // SAFETY: an open index relation of our access method.
        let l = unsafe { layout::layout(index.as_ptr()) };
        pgrx::JsonB(serde_json::to_value(&l.config).expect("config serialises"))
    }

    /// What an index holds: live and deleted documents, segments, bytes on disk, its folder
    /// and its generation (bumped by every change published); for vector fields, the vectors
    /// of live rows, tombstones (vectors of deleted rows not merged away yet), segments with a
    /// graph and the bytes of vector files.
    #[pg_extern(volatile, strict)]
    fn index_info(
        index: PgRelation,
    ) -> TableIterator<
        'static,
        (
            name!(documents, i64),
            name!(deleted_documents, i64),
            name!(segments, i32),
            name!(bytes, i64),
            name!(directory, String),
            name!(generation, i64),
            name!(vectors, i64),
            name!(deleted_vectors, i64),
            name!(vector_graph_segments, i32),
            name!(vector_bytes, i64),
        ),
    > {
        check_hybrid_index(&index);
        let rel = index;
        require_table_select(&rel);
        // SAFETY: rel is an open index relation.
        let dir = unsafe { sidecar::index_dir(rel.as_ptr()) };
        xact::flush(&dir);
        let snap = sidecar::snapshot(&dir, &unsafe { PageLog::new(rel.as_ptr()) }).or_raise();
        let m = snap.manifest();
        let bytes = hybrid_engine::fsutil::dir_size(&dir).unwrap_or(0);
        let (fields, vector_bytes) = field_stats(&snap).or_raise();
        TableIterator::once((
            (m.num_docs() + snap.pending_docs()) as i64,
            m.num_deleted() as i64,
            m.segments.len() as i32,
            bytes as i64,
            dir.display().to_string(),
            m.hybrid.generation as i64,
            fields.iter().map(|f| f.vectors as i64).sum(),
            fields.iter().map(|f| f.deleted as i64).sum(),
            fields.iter().map(|f| f.graph_segments as i32).max().unwrap_or(0),
            vector_bytes as i64,
        ))
    }

    /// The vector fields of an index: how each is indexed (dimensions, metric, HNSW m and
    /// ef_construction) and what it holds (vectors, tombstones, segments searched through a
    /// graph or exactly).
    #[pg_extern(volatile, strict)]
    fn vector_info(
        index: PgRelation,
    ) -> TableIterator<
        'static,
        (
            name!(field, String),
            name!(dimensions, i32),
            name!(metric, String),
            name!(m, i32),
            name!(ef_construction, i32),
            name!(vectors, i64),
            name!(deleted_vectors, i64),
            name!(graph_segments, i32),
            name!(exact_segments, i32),
        ),
    > {
        check_hybrid_index(&index);
        require_table_select(&index);
        // SAFETY: index is an open index relation.
        let dir = unsafe { sidecar::index_dir(index.as_ptr()) };
        xact::flush(&dir);
        let snap = sidecar::snapshot(&dir, &unsafe { PageLog::new(index.as_ptr()) }).or_raise();
        let (stats, _) = field_stats(&snap).or_raise();
        let rows: Vec<_> = snap
            .config()
            .vector_fields
            .iter()
            .zip(stats)
            .map(|(c, s)| {
                (
                    c.name.clone(),
                    c.dimensions as i32,
                    c.metric.name().to_string(),
                    c.m as i32,
                    c.ef_construction as i32,
                    s.vectors as i64,
                    s.deleted as i64,
                    s.graph_segments as i32,
                    s.exact_segments as i32,
                )
            })
            .collect();
        TableIterator::new(rows)
    }

    /// Merges all segments of an index into one, dropping deleted entries. Returns whether
    /// anything was merged.
    #[pg_extern(volatile, strict)]
    fn force_merge(index: PgRelation) -> bool {
        check_hybrid_index(&index);
        require_owner_or_admin(index.oid(), "merge");
        let rel = index;
        // SAFETY: rel is an open index relation.
        let dir = unsafe { sidecar::index_dir(rel.as_ptr()) };
        xact::flush(&dir);
        let _lock = maintenance::lock_maintenance(&dir, crate::wait_a_little).or_raise();
        // SAFETY: rel is an open index relation.
        maintenance::merge_all(&dir, &unsafe { PageLog::new(rel.as_ptr()) }).or_raise()
    }

    struct VerifyState {
        visible: Vec<u64>,
    }

    #[pg_guard]
    unsafe extern "C-unwind" fn collect_visible(
        _index: pg_sys::Relation,
        tid: pg_sys::ItemPointer,
        _values: *mut pg_sys::Datum,
        _isnull: *mut bool,
        _alive: bool,
        state: *mut std::ffi::c_void,
    ) {
        let st = &mut *(state as *mut VerifyState);
        st.visible.push(layout::tid_to_u64(tid));
        if st.visible.len() % 4096 == 0 {
            crate::check_for_interrupts();
        }
    }

    /// Whether the tuple id `ctid` still holds a tuple (visible or not) in `heap`: false when
    /// its line pointer is unused or past the end of the table, which an index entry must
    /// never name (VACUUM removes entries before freeing line pointers).
    unsafe fn tid_in_use(heap: pg_sys::Relation, nblocks: u32, ctid: u64) -> bool {
        let (block, offset) = hybrid_engine::text::unpack_ctid(ctid);
        if block >= nblocks || offset == 0 {
            return false;
        }
        let buf = pg_sys::ReadBufferExtended(
            heap,
            pg_sys::ForkNumber::MAIN_FORKNUM,
            block,
            pg_sys::ReadBufferMode::RBM_NORMAL,
            std::ptr::null_mut(),
        );
        pg_sys::LockBuffer(buf, pg_sys::BUFFER_LOCK_SHARE as i32);
        let page = pg_sys::BufferGetPage(buf);
        let in_use = if offset > pg_sys::PageGetMaxOffsetNumber(page) {
            false
        } else {
            let item = pg_sys::PageGetItemId(page, offset);
            (*item).lp_flags() != pg_sys::LP_UNUSED
        };
        pg_sys::UnlockReleaseBuffer(buf);
        in_use
    }

    /// Compares an index with its table under the current snapshot.
    ///
    /// - `missing`: rows visible to the snapshot that the index lacks (must be 0);
    /// - `gone`: index entries naming a tuple id that holds no tuple (must be 0);
    /// - `not_visible`: entries of rows invisible to the snapshot (deleted rows not yet vacuumed,
    ///   aborted or in-progress inserts): harmless, removed by VACUUM.
    #[pg_extern(volatile, strict)]
    fn verify(
        index: PgRelation,
    ) -> TableIterator<
        'static,
        (
            name!(visible_rows, i64),
            name!(index_entries, i64),
            name!(missing, i64),
            name!(gone, i64),
            name!(not_visible, i64),
            name!(ok, bool),
        ),
    > {
        check_hybrid_index(&index);
        require_owner_or_admin(index.oid(), "verify");
        let rel = index;
        // SAFETY: every pointer below comes from Postgres for relations we hold locks on.
        unsafe {
            let heap_oid = (*rel.rd_index).indrelid;
            let heap = pg_sys::table_open(heap_oid, pg_sys::AccessShareLock as _);
            let dir = sidecar::index_dir(rel.as_ptr());
            xact::flush(&dir);
            let snap = sidecar::snapshot(&dir, &PageLog::new(rel.as_ptr())).or_raise();
            let entries: HashSet<u64> = snap.all_ctids().or_raise().into_iter().collect();

            let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot());
            let scan = pg_sys::table_beginscan_strat(heap, snapshot, 0, std::ptr::null_mut(), true, true);
            let index_info = pg_sys::BuildIndexInfo(rel.as_ptr());
            let mut st = VerifyState { visible: Vec::new() };
            pg_sys::table_index_build_scan(
                heap,
                rel.as_ptr(),
                index_info,
                true,
                false,
                Some(collect_visible),
                (&mut st as *mut VerifyState).cast(),
                scan,
            );
            pg_sys::UnregisterSnapshot(snapshot);

            let visible: HashSet<u64> = st.visible.iter().copied().collect();
            let missing = visible.iter().filter(|c| !entries.contains(c)).count() as i64;
            let nblocks = pg_sys::RelationGetNumberOfBlocksInFork(heap, pg_sys::ForkNumber::MAIN_FORKNUM);
            let mut gone = 0i64;
            let mut not_visible = 0i64;
            for (i, c) in entries.iter().filter(|c| !visible.contains(c)).enumerate() {
                if i % 1024 == 0 {
                    crate::check_for_interrupts();
                }
                if tid_in_use(heap, nblocks, *c) {
                    not_visible += 1;
                } else {
                    gone += 1;
                }
            }
            pg_sys::table_close(heap, pg_sys::AccessShareLock as _);
            TableIterator::once((
                visible.len() as i64,
                entries.len() as i64,
                missing,
                gone,
                not_visible,
                missing == 0 && gone == 0,
            ))
        }
    }
}
