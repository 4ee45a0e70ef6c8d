//! `hybrid.snapshot_log` (read through the view `hybrid.snapshots`): one row per snapshot an
//! index has in the snapshot store, written after its manifest is, pruned with the store's
//! retention, removed with the index.

use hybrid_engine::snapshot::{IndexIdentity, SnapshotReport};
use pgrx::prelude::*;

use super::as_extension_owner;
use crate::position::lsn_text;

/// Who index `index` is, for a snapshot manifest; `None` if it has no catalog row.
pub fn identity(index: pg_sys::Oid) -> Option<IndexIdentity> {
    as_extension_owner(|| {
        Spi::connect(|c| {
            let rows = c.select(
                "SELECT r.id::text, c.relname::text, i.indrelid::regclass::text, r.settings->>'key_field'
                   FROM hybrid.index_registry r
                   JOIN pg_catalog.pg_class c ON c.oid = r.index_oid
                   JOIN pg_catalog.pg_index i ON i.indexrelid = r.index_oid
                  WHERE r.index_oid = $1",
                Some(1),
                &[index.into()],
            )?;
            for row in rows {
                return Ok::<_, pgrx::spi::Error>(Some(IndexIdentity {
                    uuid: row.get::<String>(1)?.unwrap_or_default(),
                    name: row.get::<String>(2)?.unwrap_or_default(),
                    table: row.get::<String>(3)?.unwrap_or_default(),
                    key: row.get::<String>(4)?.unwrap_or_default(),
                }));
            }
            Ok(None)
        })
    })
    .unwrap_or_else(|e| pgrx::error!("pg_hybrid: could not read hybrid.index_registry: {e}"))
}

/// The generation and age in seconds of the newest snapshot of `index` in the store at `url`.
pub fn newest(index: pg_sys::Oid, url: &str) -> Option<(i64, f64)> {
    as_extension_owner(|| {
        Spi::connect(|c| {
            let rows = c.select(
                "SELECT s.generation, extract(epoch FROM now() - s.finished_at)::float8
                   FROM hybrid.snapshot_log s JOIN hybrid.index_registry r ON r.id = s.index_id
                  WHERE r.index_oid = $1 AND s.store_url = $2
                  ORDER BY s.sequence DESC LIMIT 1",
                Some(1),
                &[index.into(), url.into()],
            )?;
            for row in rows {
                return Ok::<_, pgrx::spi::Error>(Some((
                    row.get::<i64>(1)?.unwrap_or(-1),
                    row.get::<f64>(2)?.unwrap_or(f64::MAX),
                )));
            }
            Ok(None)
        })
    })
    .unwrap_or_else(|e| pgrx::error!("pg_hybrid: could not read hybrid.snapshot_log: {e}"))
}

/// Records a snapshot that was just written (unless its index was dropped meanwhile), and forgets those retention removed from the
/// store (all but the newest `keep` of the index in that store).
pub fn record(identity: &IndexIdentity, url: &str, report: &SnapshotReport, started_at: i64, keep: usize) {
    let r = as_extension_owner(|| {
        Spi::run_with_args(
            "INSERT INTO hybrid.snapshot_log
                    (index_id, store_url, sequence, generation, files, bytes_total, files_uploaded,
                     bytes_uploaded, wal_position, manifest_key, started_at, finished_at)
             SELECT $1::uuid, $2, $3, $4, $5, $6, $7, $8, $9::pg_lsn, $10, to_timestamp($11), to_timestamp($12)
              WHERE EXISTS (SELECT 1 FROM hybrid.index_registry WHERE id = $1::uuid)
             ON CONFLICT (index_id, store_url, sequence) DO NOTHING",
            &[
                identity.uuid.as_str().into(),
                url.into(),
                (report.sequence as i64).into(),
                (report.generation as i64).into(),
                (report.files as i32).into(),
                (report.bytes_total as i64).into(),
                (report.files_uploaded as i32).into(),
                (report.bytes_uploaded as i64).into(),
                lsn_text(report.position.lsn).into(),
                report.manifest_key.as_str().into(),
                (started_at as f64).into(),
                (report.created_at as f64).into(),
            ],
        )?;
        Spi::run_with_args(
            "DELETE FROM hybrid.snapshot_log s
              WHERE s.index_id = $1::uuid AND s.store_url = $2
                AND s.sequence < (SELECT min(sequence) FROM (SELECT sequence FROM hybrid.snapshot_log
                                   WHERE index_id = $1::uuid AND store_url = $2
                                   ORDER BY sequence DESC LIMIT $3) newest)",
            &[identity.uuid.as_str().into(), url.into(), (keep as i64).into()],
        )
    });
    r.unwrap_or_else(|e| pgrx::error!("pg_hybrid: could not record the snapshot in hybrid.snapshot_log: {e}"));
}
