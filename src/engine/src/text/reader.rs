//! Searching an index folder.
//!
//! A [`TextIndex`] is what one backend keeps open per index. Segment files are mmap'd, so the
//! bytes live once in the page cache whatever the number of backends (invariant 6); the private
//! part is the reader's small per-segment bookkeeping.
//!
//! Before each scan the caller calls [`TextIndex::refresh_with`]: one `stat` of the manifest and
//! a look at the pending log's tail (a shared buffer); only when another process published a
//! new manifest or appended to the log is anything read and the searcher rebuilt. tantivy is handed exactly the manifest bytes
//! we parsed (plus the in-memory segments of the log's rows), so our view and its view never
//! disagree.
//!
//! The pending log's rows (see `text::pending`) are indexed in this process's memory as small
//! segments laid over the folder, so they are searched by the same searcher, with the same
//! BM25 statistics, as the segments on disk. Each new stretch of the log becomes one more such
//! segment; past [`MAX_TAIL_SEGMENTS`] they are rebuilt as one. Drains keep the log short.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector, TopDocs};
use tantivy::columnar::Column;
use tantivy::query::Query;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{DocId, Index, IndexReader, ReloadPolicy, Score, Searcher, SegmentOrdinal, SegmentReader};

use crate::analyzer::build_analyzer;
use crate::config::IndexConfig;
use crate::directory::{SidecarDirectory, MANIFEST_FILE};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, SegmentEntry};
use crate::query::{self, DefaultOperator};
use crate::schema::{fields_of, Fields, CTID_FIELD};
use crate::text::pending::{self, LogSource, NoLog};
use crate::text::writer::{build_in_memory, open_tantivy};
use crate::vector::knn::VectorCache;
use tantivy::directory::RamDirectory;

/// Identity of one version of the manifest file (it is replaced by rename, so a new version is a
/// new inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    ino: u64,
    mtime_ns: i128,
    size: u64,
}

/// Which folder `dir` names now (device and inode): a folder swapped in under the same name
/// is another one.
fn folder_id(dir: &Path) -> Result<(u64, u64)> {
    match std::fs::metadata(dir) {
        Ok(md) => Ok((md.dev(), md.ino())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::Missing { path: dir.to_path_buf(), detail: "the index folder does not exist".into() })
        }
        Err(e) => Err(Error::io("stat", dir, e)),
    }
}

fn stamp(path: &Path) -> Result<FileStamp> {
    let md = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Missing {
                path: path.parent().unwrap_or(path).to_path_buf(),
                detail: format!("{MANIFEST_FILE} not found"),
            }
        } else {
            Error::io("stat", path, e)
        }
    })?;
    Ok(FileStamp {
        ino: md.ino(),
        mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
        size: md.size(),
    })
}

/// How many times opening a generation is retried when its files vanish under us (a concurrent
/// merge published a newer generation and removed them).
const OPEN_RETRIES: usize = 20;

/// In-memory segments of the pending log kept before they are rebuilt as one.
const MAX_TAIL_SEGMENTS: usize = 4;

/// The pending log's rows as this process searches them.
#[derive(Default)]
struct Tail {
    /// The start of the log (`log.from`) the segments were read from.
    from: u64,
    /// Offset just past the last record read.
    end: u64,
    /// The log's tail when last read (`None`: not read yet).
    tail: Option<u64>,
    segments: Vec<(SegmentEntry, RamDirectory)>,
}

impl Tail {
    /// Catches up with `log` after the manifest `m`. Returns whether the segments changed, and
    /// whether the log had reused bytes `m` still names (then `m` is not the newest: see
    /// `TextIndex::refresh`).
    fn update(&mut self, m: &Manifest, log: &dyn LogSource) -> Result<(bool, bool)> {
        let from = m.hybrid.log.from;
        let mut changed = false;
        if from != self.from {
            changed = !self.segments.is_empty();
            *self = Tail { from, end: from, tail: None, segments: Vec::new() };
        }
        let tail = log.tail()?;
        if self.tail == Some(tail) || tail <= self.end {
            self.tail = Some(tail);
            return Ok((changed, false));
        }
        let rebuild = self.segments.len() >= MAX_TAIL_SEGMENTS;
        let start = if rebuild { from } else { self.end };
        let Some(bytes) = log.read(start, tail)? else {
            return Ok((changed, true));
        };
        let records = pending::parse(&bytes, start);
        self.tail = Some(tail);
        if records.docs.is_empty() {
            self.end = records.end;
            return Ok((changed, false));
        }
        let built = build_in_memory(m, &records.docs)?;
        if rebuild {
            self.segments.clear();
        }
        self.segments.extend(built);
        self.end = records.end;
        Ok((true, false))
    }

    fn overlay(&self) -> Vec<(String, RamDirectory)> {
        self.segments.iter().map(|(e, d)| (e.file_prefix(), d.clone())).collect()
    }

    /// The manifest tantivy should see: `m` (whose bytes, if at hand, are `bytes`) with the
    /// in-memory segments added.
    fn compose(&self, m: &Manifest, bytes: Option<Vec<u8>>) -> Vec<u8> {
        if self.segments.is_empty() {
            return bytes.unwrap_or_else(|| m.to_bytes());
        }
        let mut with = m.clone();
        with.segments.extend(self.segments.iter().map(|(e, _)| e.clone()));
        with.to_bytes()
    }

    /// Rows searched from memory.
    fn docs(&self) -> u64 {
        self.segments.iter().map(|(e, _)| u64::from(e.max_doc)).sum()
    }
}

/// An open index folder.
pub struct TextIndex {
    dir: PathBuf,
    /// The folder opened (see [`folder_id`]).
    folder: (u64, u64),
    directory: SidecarDirectory,
    index: Index,
    reader: IndexReader,
    manifest: Arc<Manifest>,
    stamp: FileStamp,
    fields: Fields,
    analyzers: Arc<Vec<TextAnalyzer>>,
    /// Vector files opened so far, shared with the snapshots.
    vectors: Arc<VectorCache>,
    /// The tuple id column of each segment of the current searcher, by segment ordinal.
    /// Opening a fast-field column parses its header; done once per segment, not per query.
    ctids: Arc<Vec<Column<u64>>>,
    /// Queries compiled for this folder (see [`CompiledQueries`]).
    compiled: Arc<CompiledQueries>,
    /// The pending log's rows.
    tail: Tail,
}

/// Queries compiled for one folder, by text, default field and default operator: an
/// application runs the same few queries again and again, and parsing plus analysis is a
/// sizeable part of a short search. A compiled query depends only on the folder's
/// configuration, never on its generation, so entries stay valid for the folder's life.
#[derive(Default)]
pub struct CompiledQueries(
    parking_lot::Mutex<std::collections::HashMap<(String, Option<usize>, DefaultOperator), Box<dyn Query>>>,
);

/// Most queries kept per folder (all are dropped when it is full: simple and rare).
const COMPILED_QUERIES: usize = 256;

/// The tuple id columns of `searcher`'s segments, reusing those of `previous` for segments it
/// already had (segments never change; only their deletes do, which the column ignores).
fn ctid_columns(searcher: &Searcher, previous: Option<(&Searcher, &[Column<u64>])>) -> Result<Arc<Vec<Column<u64>>>> {
    let mut out = Vec::with_capacity(searcher.segment_readers().len());
    for reader in searcher.segment_readers() {
        let id = reader.segment_id();
        let known = previous.and_then(|(s, cols)| {
            s.segment_readers().iter().position(|r| r.segment_id() == id).and_then(|i| cols.get(i).cloned())
        });
        out.push(match known {
            Some(c) => c,
            None => reader.fast_fields().u64(CTID_FIELD)?,
        });
    }
    Ok(Arc::new(out))
}

impl TextIndex {
    /// Opens the index in `dir`, without a pending log (see [`TextIndex::open_with`]).
    pub fn open(dir: &Path) -> Result<TextIndex> {
        Self::open_with(dir, &NoLog)
    }

    /// Opens the index in `dir`, whose pending log is `log`.
    pub fn open_with(dir: &Path, log: &dyn LogSource) -> Result<TextIndex> {
        let mut last_err = None;
        for _ in 0..OPEN_RETRIES {
            // Before anything is read: a folder swapped in after this is noticed by `refresh`.
            let folder = folder_id(dir)?;
            let stamp = stamp(&dir.join(MANIFEST_FILE))?;
            let bytes =
                std::fs::read(dir.join(MANIFEST_FILE)).map_err(|e| Error::io("read", dir.join(MANIFEST_FILE), e))?;
            let manifest = Manifest::parse(dir, &bytes)?;
            let config = manifest.hybrid.config.clone();
            let mut tail = Tail::default();
            let (_, stale) = tail.update(&manifest, log)?;
            if stale {
                // Drained into a segment and the space reused after our read of the manifest.
                continue;
            }
            let directory = SidecarDirectory::with_manifest(dir, tail.compose(&manifest, Some(bytes)))?;
            directory.set_overlay(tail.overlay());
            let index = open_tantivy(directory.clone(), &config)?;
            let reader = match index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into() {
                Ok(r) => r,
                Err(e) => {
                    last_err = Some(Error::from(e));
                    continue;
                }
            };
            let fields = fields_of(&index.schema(), &config, dir)?;
            let analyzers = Arc::new(config.text_fields.iter().map(build_analyzer).collect::<Result<Vec<_>>>()?);
            let ctids = match ctid_columns(&reader.searcher(), None) {
                Ok(c) => c,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            return Ok(TextIndex {
                dir: dir.to_path_buf(),
                folder,
                directory,
                index,
                reader,
                manifest: Arc::new(manifest),
                stamp,
                fields,
                analyzers,
                vectors: Arc::default(),
                ctids,
                compiled: Arc::default(),
                tail,
            });
        }
        Err(last_err.unwrap_or_else(|| Error::Tantivy("could not open index".into())))
    }

    /// Picks up a newer published generation, if any, without a pending log (see
    /// [`TextIndex::refresh_with`]).
    pub fn refresh(&mut self) -> Result<bool> {
        self.refresh_with(&NoLog)
    }

    /// Picks up a newer published generation and new records of `log`, if any. Returns
    /// whether anything changed.
    pub fn refresh_with(&mut self, log: &dyn LogSource) -> Result<bool> {
        let path = self.dir.join(MANIFEST_FILE);
        // One `stat` per scan when nothing changed (it was two, with the folder's: 9% of a
        // backend's samples for a rare-term query, path walks both). A folder swapped in by a
        // restore has a manifest published afresh, a new file, so an unchanged manifest is the
        // same folder's.
        let first = match stamp(&path) {
            Ok(s) => s,
            // Say what is missing: the folder, or only its manifest.
            Err(e) => return Err(folder_id(&self.dir).err().unwrap_or(e)),
        };
        if first != self.stamp && folder_id(&self.dir)? != self.folder {
            // The folder was replaced as a whole (a restore swaps a new one in): a file there
            // may have the name of one opened here and other bytes, so nothing opened from the
            // old folder is kept.
            *self = TextIndex::open_with(&self.dir, log)?;
            return Ok(true);
        }
        let mut last_err = None;
        // The tail may change in an attempt whose reload then fails: the next must reload.
        let mut tail_changed = false;
        for attempt in 0..OPEN_RETRIES {
            let now = if attempt == 0 { first } else { stamp(&path)? };
            let (manifest, bytes, manifest_changed) = if now == self.stamp {
                (self.manifest.clone(), None, false)
            } else {
                let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
                let manifest = Manifest::parse(&self.dir, &bytes)?;
                let same = manifest.hybrid.generation == self.manifest.hybrid.generation
                    && manifest.segments == self.manifest.segments
                    && manifest.hybrid.log == self.manifest.hybrid.log;
                (Arc::new(manifest), Some(bytes), !same)
            };
            let (changed, stale) = self.tail.update(&manifest, log)?;
            tail_changed |= changed;
            if stale {
                // Drained into a segment and the space reused after our read of the manifest:
                // the next attempt reads the newer manifest.
                continue;
            }
            if !manifest_changed && !tail_changed {
                self.stamp = now;
                return Ok(false);
            }
            self.directory.set_overlay(self.tail.overlay());
            self.directory.set_manifest(self.tail.compose(&manifest, bytes));
            let before = self.reader.searcher();
            let reloaded = self
                .reader
                .reload()
                .map_err(Error::from)
                .and_then(|()| ctid_columns(&self.reader.searcher(), Some((&before, &self.ctids))));
            match reloaded {
                Ok(ctids) => {
                    let live: Vec<_> =
                        self.reader.searcher().segment_readers().iter().map(|r| r.segment_id()).collect();
                    self.vectors.retain(&live);
                    self.manifest = manifest;
                    self.ctids = ctids;
                    self.stamp = now;
                    return Ok(true);
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| Error::Tantivy("could not reload index".into())))
    }

    /// Rows of the pending log this reader searches from memory.
    pub fn pending_docs(&self) -> u64 {
        self.tail.docs()
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest this reader is at.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The tantivy index.
    pub fn tantivy_index(&self) -> &Index {
        &self.index
    }

    /// A consistent view of the current generation, independent of later refreshes. Cheap:
    /// reference-counted handles only.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            searcher: self.reader.searcher(),
            manifest: self.manifest.clone(),
            fields: self.fields.clone(),
            analyzers: self.analyzers.clone(),
            vectors: self.vectors.clone(),
            ctids: self.ctids.clone(),
            compiled: self.compiled.clone(),
            pending: self.tail.docs(),
        }
    }
}

/// One generation of an index, as a scan sees it from start to end.
#[derive(Clone)]
pub struct Snapshot {
    searcher: Searcher,
    manifest: Arc<Manifest>,
    fields: Fields,
    analyzers: Arc<Vec<TextAnalyzer>>,
    vectors: Arc<VectorCache>,
    /// Tuple id column of each segment, by segment ordinal (see `TextIndex::ctids`).
    ctids: Arc<Vec<Column<u64>>>,
    compiled: Arc<CompiledQueries>,
    /// Rows of the pending log searched from memory.
    pending: u64,
}

impl Snapshot {
    /// Rows of the pending log this generation searches from memory (not in `manifest()`).
    pub fn pending_docs(&self) -> u64 {
        self.pending
    }

    /// The tuple id column of segment `ord` of this generation's searcher.
    pub(crate) fn ctid_column(&self, ord: SegmentOrdinal) -> &Column<u64> {
        &self.ctids[ord as usize]
    }

    /// The manifest of this generation.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The index configuration.
    pub fn config(&self) -> &IndexConfig {
        &self.manifest.hybrid.config
    }

    /// Field handles.
    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    /// The tantivy searcher of this generation.
    pub fn searcher(&self) -> &Searcher {
        &self.searcher
    }

    /// The open vector files (see `vector::knn`).
    pub(crate) fn vector_cache(&self) -> &VectorCache {
        &self.vectors
    }

    /// Parses and compiles a query. `default_field` is the position of the text field a bare
    /// term searches (the column left of `@@@`); `None` searches every text field.
    pub fn compile(
        &self,
        text: &str,
        default_field: Option<usize>,
        default_op: DefaultOperator,
    ) -> Result<Box<dyn Query>> {
        let key = (text.to_string(), default_field, default_op);
        if let Some(q) = self.compiled.0.lock().get(&key) {
            return Ok(q.box_clone());
        }
        let q = self.compile_uncached(text, default_field, default_op)?;
        let mut map = self.compiled.0.lock();
        if map.len() >= COMPILED_QUERIES {
            map.clear();
        }
        map.insert(key, q.box_clone());
        Ok(q)
    }

    fn compile_uncached(
        &self,
        text: &str,
        default_field: Option<usize>,
        default_op: DefaultOperator,
    ) -> Result<Box<dyn Query>> {
        let ast = query::parse(text, default_op)?;
        let ctx = query::compile::Context {
            config: self.config(),
            fields: &self.fields,
            analyzers: &self.analyzers,
            default_field,
            query_text: text,
        };
        query::compile::compile(&ast, &ctx)
    }

    /// `col = 'value'` on text field `field` (see `query::compile::equality`): the query and
    /// whether it is exact.
    pub fn equality(&self, field: usize, value: &str) -> (Box<dyn Query>, bool) {
        query::compile::equality(self.config(), &self.fields, &self.analyzers, field, value)
    }

    /// The tuple ids of every live document matching `query`, in no particular order.
    pub fn matching_ctids(&self, query: &dyn Query) -> Result<Vec<u64>> {
        let segs = self.searcher.search(query, &CtidCollector { scored: false, ctids: self.ctids.clone() })?;
        Ok(segs.into_iter().flatten().map(|(_, c)| c).collect())
    }

    /// Every match with its BM25 score, in no particular order.
    pub fn scored_ctids(&self, query: &dyn Query) -> Result<Vec<(Score, u64)>> {
        let segs = self.searcher.search(query, &CtidCollector { scored: true, ctids: self.ctids.clone() })?;
        Ok(segs.into_iter().flatten().collect())
    }

    /// The best `limit` matches after skipping `offset`, by descending score (ties by document
    /// address, so repeated calls on one generation page consistently).
    pub fn top_ctids(&self, query: &dyn Query, limit: usize, offset: usize) -> Result<Vec<(Score, u64)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let top = self.searcher.search(query, &TopDocs::with_limit(limit).and_offset(offset).order_by_score())?;
        Ok(top
            .into_iter()
            .filter_map(|(score, addr)| self.ctid_column(addr.segment_ord).first(addr.doc_id).map(|c| (score, c)))
            .collect())
    }

    /// Tuple ids of every live document in the index (for `hybrid.verify`).
    pub fn all_ctids(&self) -> Result<Vec<u64>> {
        self.matching_ctids(&tantivy::query::AllQuery)
    }
}

/// Collects (score, ctid) of every live match.
struct CtidCollector {
    scored: bool,
    ctids: Arc<Vec<Column<u64>>>,
}

struct CtidSegmentCollector {
    column: Column<u64>,
    out: Vec<(Score, u64)>,
}

impl Collector for CtidCollector {
    type Fruit = Vec<Vec<(Score, u64)>>;
    type Child = CtidSegmentCollector;

    fn for_segment(&self, ord: SegmentOrdinal, _reader: &SegmentReader) -> tantivy::Result<Self::Child> {
        Ok(CtidSegmentCollector { column: self.ctids[ord as usize].clone(), out: Vec::new() })
    }

    fn requires_scoring(&self) -> bool {
        self.scored
    }

    fn merge_fruits(&self, fruits: Vec<Vec<(Score, u64)>>) -> tantivy::Result<Self::Fruit> {
        Ok(fruits)
    }
}

impl SegmentCollector for CtidSegmentCollector {
    type Fruit = Vec<(Score, u64)>;

    fn collect(&mut self, doc: DocId, score: Score) {
        if let Some(ctid) = self.column.first(doc) {
            self.out.push((score, ctid));
        }
    }

    fn harvest(self) -> Self::Fruit {
        self.out
    }
}
