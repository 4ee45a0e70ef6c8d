//! Deleting entries of dead rows (VACUUM) and merging segments.
//!
//! Both run under the index's maintenance lock, so they never interleave with each other; writers
//! only ever append segments, so neither needs to hold the publish lock while it works, only for
//! the final publish.

use std::path::Path;

use tantivy::directory::TerminatingWrite;
use tantivy::fastfield::write_alive_bitset;
use tantivy::index::{SegmentComponent, SegmentId};
use tantivy::BitSet;
use tantivy::{Index, Segment, SegmentReader};

use crate::directory::SidecarDirectory;
use crate::error::{Error, Result};
use crate::fsutil::FileLock;
use crate::manifest::{self, DeleteEntry, Manifest, SegmentEntry, MAINTENANCE_LOCK, STAGING_DIR};
use crate::schema::CTID_FIELD;
use crate::text::pending::LogSource;
use crate::text::writer::{new_staging_folder, open_tantivy, publish_with, StagedSegment};

/// Takes the maintenance lock of the index in `dir`, calling `wait` between attempts (the
/// caller sleeps and checks for query cancellation there).
pub fn lock_maintenance(dir: &Path, mut wait: impl FnMut()) -> Result<FileLock> {
    loop {
        if let Some(l) = FileLock::try_lock(&dir.join(MAINTENANCE_LOCK))? {
            return Ok(l);
        }
        wait();
    }
}

/// Takes the maintenance lock if it is free.
pub fn try_lock_maintenance(dir: &Path) -> Result<Option<FileLock>> {
    FileLock::try_lock(&dir.join(MAINTENANCE_LOCK))
}

pub(crate) fn tantivy_segment(index: &Index, e: &SegmentEntry) -> Segment {
    let mut meta = index.new_segment_meta(e.segment_id, e.max_doc);
    if let Some(d) = e.deletes {
        meta = meta.with_delete_meta(d.num_deleted_docs, d.opstamp);
    }
    index.segment(meta)
}

pub(crate) fn open_at(dir: &Path, m: &Manifest) -> Result<Index> {
    open_tantivy(SidecarDirectory::with_manifest(dir, m.to_bytes())?, &m.hybrid.config)
}

/// What a deletion pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeleteStats {
    /// Live entries looked at.
    pub examined: u64,
    /// Entries newly marked deleted.
    pub deleted: u64,
    /// Live entries left.
    pub remaining: u64,
}

/// Marks deleted every live entry whose tuple id `is_dead` says is gone, and publishes the result
/// durably before returning (VACUUM may free those tuple ids right after). `progress` is called
/// every few thousand entries (the caller checks for cancellation there). The caller holds the
/// maintenance lock.
pub fn bulk_delete(
    dir: &Path,
    log: &dyn LogSource,
    is_dead: &mut dyn FnMut(u64) -> bool,
    progress: &mut dyn FnMut(u64),
) -> Result<DeleteStats> {
    // Entries still in the pending log must be deletable too: write them as a segment first.
    // Records appended after this are by transactions still running, whose rows VACUUM did not
    // find dead.
    crate::text::pending::drain(dir, log)?;
    let m = Manifest::read(dir)?;
    let index = open_at(dir, &m)?;
    let opstamp = m.opstamp + 1;
    let mut stats = DeleteStats::default();
    let mut changed: Vec<(SegmentId, DeleteEntry)> = Vec::new();
    for e in &m.segments {
        let segment = tantivy_segment(&index, e);
        let reader = SegmentReader::open(&segment)?;
        let ctids = reader.fast_fields().u64(CTID_FIELD)?;
        let mut newly_dead: Vec<u32> = Vec::new();
        for doc in 0..reader.max_doc() {
            if reader.is_deleted(doc) {
                continue;
            }
            stats.examined += 1;
            if stats.examined % 4096 == 0 {
                progress(stats.examined);
            }
            if let Some(ctid) = ctids.first(doc) {
                if is_dead(ctid) {
                    newly_dead.push(doc);
                }
            }
        }
        stats.remaining += u64::from(reader.num_docs()) - newly_dead.len() as u64;
        if newly_dead.is_empty() {
            continue;
        }
        stats.deleted += newly_dead.len() as u64;
        let mut alive = BitSet::with_max_value_and_full(reader.max_doc());
        for doc in 0..reader.max_doc() {
            if reader.is_deleted(doc) {
                alive.remove(doc);
            }
        }
        for doc in &newly_dead {
            alive.remove(*doc);
        }
        let num_deleted = reader.max_doc() - alive.len() as u32;
        let entry = DeleteEntry { num_deleted_docs: num_deleted, opstamp };
        let with_deletes = segment.clone().with_delete_meta(num_deleted, opstamp);
        let path = dir.join(with_deletes.relative_path(SegmentComponent::Delete));
        // A pass that crashed before publishing may have left a file of this name behind.
        let _ = std::fs::remove_file(&path);
        let mut w = with_deletes.open_write(SegmentComponent::Delete).map_err(|e| Error::Tantivy(e.to_string()))?;
        write_alive_bitset(&alive, &mut w).map_err(|e| Error::io("write", &path, e))?;
        w.terminate().map_err(|e| Error::io("fsync", &path, e))?;
        changed.push((e.segment_id, entry));
    }
    progress(stats.examined);
    if !changed.is_empty() {
        manifest::publish(dir, |cur| {
            for (id, d) in &changed {
                if let Some(s) = cur.segments.iter_mut().find(|s| s.segment_id == *id) {
                    s.deletes = Some(*d);
                }
            }
            // Segments with nothing left alive are dropped outright.
            cur.segments.retain(|s| s.num_docs() > 0);
            cur.opstamp = cur.opstamp.max(opstamp);
            crate::fsutil::fsync_dir(dir)
        })?;
        manifest::collect_garbage(dir)?;
    }
    Ok(stats)
}

/// When to merge.
#[derive(Debug, Clone, Copy)]
pub struct MergePolicy {
    /// Segments of one size tier merged together once this many exist.
    pub merge_factor: usize,
    /// Largest number of segments merged in one go.
    pub max_merge_at_once: usize,
    /// Size tiers grow by this factor (in live documents).
    pub tier_base: f64,
    /// A segment with more than this fraction of deleted entries is rewritten on its own.
    pub max_deleted_ratio: f64,
}

impl Default for MergePolicy {
    fn default() -> Self {
        MergePolicy { merge_factor: 8, max_merge_at_once: 16, tier_base: 8.0, max_deleted_ratio: 0.2 }
    }
}

impl MergePolicy {
    /// Groups of segments worth merging now, smallest first. A tiered policy: segments fall in
    /// tiers by their number of live documents (powers of `tier_base`); a tier holding
    /// `merge_factor` segments or more is merged into one segment of the next tier. With a
    /// steady stream of one-segment commits this keeps about `merge_factor` segments per tier,
    /// and the number of tiers grows with the logarithm of the index size.
    pub fn plan(&self, m: &Manifest) -> Vec<Vec<SegmentId>> {
        let mut by_tier: std::collections::BTreeMap<u32, Vec<&SegmentEntry>> = Default::default();
        for s in &m.segments {
            let live = f64::from(s.num_docs().max(1));
            let tier = (live.ln() / self.tier_base.ln()).floor() as u32;
            by_tier.entry(tier).or_default().push(s);
        }
        let mut plans = Vec::new();
        let mut in_plan = std::collections::HashSet::new();
        for segs in by_tier.values_mut() {
            if segs.len() >= self.merge_factor {
                segs.sort_by_key(|s| s.num_docs());
                let take = segs.len().min(self.max_merge_at_once);
                let group: Vec<SegmentId> = segs[..take].iter().map(|s| s.segment_id).collect();
                in_plan.extend(group.iter().copied());
                plans.push(group);
            }
        }
        for s in &m.segments {
            let ratio = f64::from(s.num_deleted()) / f64::from(s.max_doc.max(1));
            if ratio > self.max_deleted_ratio && !in_plan.contains(&s.segment_id) {
                plans.push(vec![s.segment_id]);
            }
        }
        plans
    }
}

/// Merges the given segments of the index in `dir` into one (dropping deleted entries) and
/// publishes the result. Returns false if the segments changed under us (nothing is published).
/// The caller holds the maintenance lock.
pub fn merge(dir: &Path, ids: &[SegmentId]) -> Result<bool> {
    let m = Manifest::read(dir)?;
    let entries: Vec<SegmentEntry> =
        ids.iter().filter_map(|id| m.segments.iter().find(|s| s.segment_id == *id).cloned()).collect();
    if entries.len() != ids.len() || entries.is_empty() {
        return Ok(false);
    }
    let index = open_at(dir, &m)?;
    let segments: Vec<Segment> = entries.iter().map(|e| tantivy_segment(&index, e)).collect();
    let live: u64 = entries.iter().map(|e| u64::from(e.num_docs())).sum();
    let staged = if live == 0 {
        None
    } else {
        let folder = new_staging_folder(dir)?;
        let out = SidecarDirectory::open(&folder)?;
        let merged = tantivy::indexer::merge_filtered_segments(
            &segments,
            index.settings().clone(),
            vec![None; segments.len()],
            out,
        )?;
        let metas = merged.searchable_segment_metas()?;
        let meta = metas.first().ok_or_else(|| Error::Tantivy("merge produced no segment".into()))?;
        let entry = SegmentEntry { segment_id: meta.id(), max_doc: meta.max_doc(), deletes: None };
        Some(StagedSegment::new(folder, entry))
    };
    let published = publish_with(dir, staged.into_iter().collect(), |cur| {
        if !entries.iter().all(|e| cur.segments.contains(e)) {
            return Ok(false);
        }
        cur.segments.retain(|s| !ids.contains(&s.segment_id));
        Ok(true)
    })?;
    if published.is_some() {
        manifest::collect_garbage(dir)?;
    }
    Ok(published.is_some())
}

/// Runs the merges `policy` asks for until none is left. Returns how many merges ran.
/// The caller holds the maintenance lock, and drains the pending log first if it wants its
/// rows merged too.
pub fn merge_until_settled(dir: &Path, policy: &MergePolicy, mut between: impl FnMut()) -> Result<usize> {
    let mut done = 0;
    loop {
        let m = Manifest::read(dir)?;
        let plans = policy.plan(&m);
        if plans.is_empty() {
            return Ok(done);
        }
        for group in plans {
            between();
            if merge(dir, &group)? {
                done += 1;
            }
        }
    }
}

/// Merges everything into one segment (hybrid.force_merge, and VACUUM FULL-like compaction).
/// The pending log is drained first. The caller holds the maintenance lock.
pub fn merge_all(dir: &Path, log: &dyn LogSource) -> Result<bool> {
    let drained = crate::text::pending::drain(dir, log)?;
    let m = Manifest::read(dir)?;
    if m.segments.len() <= 1 && m.num_deleted() == 0 {
        // Already one segment (the drain's, if it wrote one).
        return Ok(drained.docs > 0);
    }
    let ids: Vec<SegmentId> = m.segments.iter().map(|s| s.segment_id).collect();
    merge(dir, &ids)
}

/// Removes staging folders whose writer process is gone (left by a crash or a `kill -9`).
pub fn sweep_staging(dir: &Path) -> Result<usize> {
    Ok(crate::fsutil::remove_dead_process_folders(&dir.join(STAGING_DIR)))
}
