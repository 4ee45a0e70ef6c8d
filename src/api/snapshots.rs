//! Snapshots, restores and workers, for DBAs: `hybrid.snapshot_now`, `hybrid.restore`, and
//! the function behind the view `hybrid.workers`.

use pgrx::prelude::*;

#[pg_schema]
mod hybrid {
    use pgrx::datum::TimestampWithTimeZone;
    use pgrx::prelude::*;
    use pgrx::{PgRelation, PgSqlErrorCode};

    use crate::api::admin::hybrid::check_hybrid_index;
    use crate::catalog::tenants::require_owner_or_admin;
    use crate::error::raise_with;
    use crate::snapshots::restore::{restore_index, Source, Why};
    use crate::snapshots::{take, Feedback};
    use crate::workers::status;
    use crate::{sidecar, xact};

    fn refuse_in_recovery(what: &str) {
        // SAFETY: reads shared state.
        if unsafe { pg_sys::RecoveryInProgress() } {
            raise_with(
                PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
                format!("cannot {what} during recovery"),
                Some("run it on the primary (a promoted standby restores its indexes by itself)".into()),
            );
        }
    }

    /// Uploads the current generation of an index to the snapshot store now (files the store
    /// has are not sent again), records it in `hybrid.snapshots`, and returns the generation.
    /// Progress is reported as NOTICEs; it can be cancelled.
    #[pg_extern(volatile, strict)]
    fn snapshot_now(index: PgRelation) -> i64 {
        check_hybrid_index(&index);
        require_owner_or_admin(index.oid(), "snapshot");
        refuse_in_recovery("take a snapshot");
        // SAFETY: an open index relation.
        let dir = unsafe { sidecar::index_dir(index.as_ptr()) };
        // What this transaction wrote so far is part of the snapshot (and of its generation).
        xact::flush(&dir);
        let context = format!("could not snapshot index \"{}\"", index.name());
        let report = take::now(index.oid(), &dir, &context, &mut Feedback::notice());
        report.generation as i64
    }

    /// Rebuilds an index's folder from its newest usable snapshot (every file's hash
    /// verified), or from the table when there is none, then catches it up with the table:
    /// rows the snapshot lacks are indexed, entries of rows gone or changed are removed.
    /// Writers of the table wait meanwhile; searches go on with the current folder.
    /// Progress shows in pg_stat_progress_create_index and as NOTICEs; it can be cancelled.
    #[pg_extern(volatile, strict)]
    fn restore(
        index: PgRelation,
    ) -> TableIterator<
        'static,
        (
            name!(source, String),
            name!(snapshot_generation, Option<i64>),
            name!(generation, i64),
            name!(rows_kept, i64),
            name!(rows_added, i64),
            name!(entries_removed, i64),
            name!(bytes_downloaded, i64),
            name!(seconds, f64),
        ),
    > {
        check_hybrid_index(&index);
        require_owner_or_admin(index.oid(), "restore");
        refuse_in_recovery("restore an index");
        // SAFETY: inside the caller's transaction; a hybrid index of this database.
        let r = unsafe { restore_index(index.oid(), &Why::Asked, &mut Feedback::notice()) };
        let (source, snapshot_generation) = match &r.source {
            Source::Snapshot(i) => ("snapshot".to_string(), Some(i.generation as i64)),
            Source::InPlace => ("local files".to_string(), None),
            Source::Table => ("table".to_string(), None),
        };
        TableIterator::once((
            source,
            snapshot_generation,
            r.generation as i64,
            r.catch_up.kept as i64,
            r.catch_up.added as i64,
            r.catch_up.removed as i64,
            r.bytes as i64,
            r.seconds,
        ))
    }

    fn timestamp(t: i64) -> Option<TimestampWithTimeZone> {
        (t != 0).then(|| TimestampWithTimeZone::try_from(t).ok()).flatten()
    }

    /// The background workers of the cluster and what they are doing (read it through the
    /// view `hybrid.workers`). Empty unless pg_hybrid is in shared_preload_libraries.
    #[pg_extern(volatile)]
    fn worker_status() -> TableIterator<
        'static,
        (
            name!(pid, Option<i32>),
            name!(database_oid, Option<pg_sys::Oid>),
            name!(kind, String),
            name!(activity, Option<String>),
            name!(started_at, Option<TimestampWithTimeZone>),
            name!(last_run, Option<TimestampWithTimeZone>),
            name!(runs, i64),
            name!(errors, i64),
            name!(last_error, Option<String>),
            name!(last_error_at, Option<TimestampWithTimeZone>),
            name!(next_run_after, Option<TimestampWithTimeZone>),
        ),
    > {
        let rows: Vec<_> = status::rows()
            .into_iter()
            .map(|r| {
                (
                    r.pid,
                    r.database.map(pg_sys::Oid::from),
                    r.kind,
                    (!r.activity.is_empty()).then_some(r.activity),
                    timestamp(r.started_at),
                    timestamp(r.last_run),
                    r.runs,
                    r.errors,
                    (!r.last_error.is_empty()).then_some(r.last_error),
                    timestamp(r.last_error_at),
                    timestamp(r.next_run_at),
                )
            })
            .collect();
        TableIterator::new(rows)
    }
}
