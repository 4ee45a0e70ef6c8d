//! The `.hvec` file of a segment: every vector field of the segment's documents, and HNSW graphs,
//! in one flat, immutable file that is searched in place.
//!
//! tantivy's `MmapDirectory` maps the file, so its bytes live once in the page cache however many
//! backends search it (invariant 6); nothing is deserialised: the reader checks the layout once
//! and then views the arrays as `&[f32]`/`&[u32]` directly in the mapping. That is why every
//! array starts at an offset that is a multiple of 8 (the mapping itself is page-aligned).
//!
//! ## Layout (little-endian)
//!
//! ```text
//! header (32 bytes)
//!   0  magic        b"HYBVEC\0\0"
//!   8  version      u32 (1)
//!  12  num_fields   u32   one section per vector field of the index, in config order
//!  16  max_doc      u32   the segment's max_doc
//!  20  reserved     u32   0
//!  24  meta_hash    u64   FNV-1a 64 of bytes 0..24 and of the field directory
//! field directory (num_fields x 48 bytes)
//!   0  dims         u32
//!   4  metric       u32   0 = l2, 1 = cosine, 2 = inner product
//!   8  num_vectors  u32   documents that have a vector
//!  12  flags        u32   bit 0: the field has a graph
//!  16  presence_off u64   ceil(max_doc / 64) u64 words, bit d set = doc d has a vector
//!  24  vectors_off  u64   max_doc x dims f32, by doc id (zeros where absent);
//!                         unit-normalised under the cosine metric
//!  32  graph_off    u64   0 when there is no graph
//!  40  graph_len    u64
//! graph section (at graph_off)
//!   header (32 bytes): num_nodes u32, m u32, max_level u32, entry u32, num_upper_lists u32,
//!                      reserved u32, reserved u64
//!   node_doc     num_nodes x u32   doc id of each node, strictly increasing
//!   levels       num_nodes x u8    top layer of each node
//!   upper_start  num_nodes x u32   first upper list of the node (u32::MAX for level 0)
//!   layer0       num_nodes x 2m u32, padded with u32::MAX
//!   upper        num_upper_lists x m u32, padded with u32::MAX; the list of node x on
//!                layer l >= 1 is number upper_start[x] + l - 1
//! ```
//! Every array is padded to a multiple of 8 bytes; the file ends right after the last section
//! (tantivy appends its own footer with a CRC, which `Index::validate_checksum` verifies).
//!
//! Graph nodes are numbered by rank among the documents that have a vector, not by doc id, so
//! a column that is mostly NULL does not pay for empty adjacency lists.
//!
//! Opening checks the header, the directory, the sizes and alignment of every array, the
//! presence bitmap and the node-to-doc map; neighbour ids and upper-list offsets are checked
//! when a search reads them (checking every one on open would read the whole graph on every
//! open). Any inconsistency is `Error::Corrupt`, never a panic.

use std::io::{self, Write};
use std::ops::Range;
use std::path::PathBuf;

use tantivy::directory::error::OpenReadError;
use tantivy::directory::OwnedBytes;
use tantivy::index::SegmentComponent;
use tantivy::{DocId, SegmentReader};

use crate::config::{IndexConfig, VectorFieldConfig};
use crate::error::{Error, Result};
use crate::vector::distance::Metric;
use crate::vector::graph::FlatGraph;

#[cfg(target_endian = "big")]
compile_error!("the .hvec format is read in place as little-endian arrays");

/// File extension of the vector file of a segment (`<segment uuid>.hvec`).
pub const EXTENSION: &str = "hvec";
/// A field gets an HNSW graph in a segment holding at least this many of its vectors; smaller
/// segments (typically the delta segments of recent transactions) are scanned exactly, which
/// at this size costs about what a graph walk does.
pub const GRAPH_MIN_VECTORS: usize = 1024;
/// Padding of adjacency lists.
pub const NO_NEIGHBOUR: u32 = u32::MAX;

const MAGIC: [u8; 8] = *b"HYBVEC\0\0";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 32;
const DIR_ENTRY_LEN: usize = 48;
const GRAPH_HEADER_LEN: usize = 32;
const FLAG_GRAPH: u32 = 1;
/// Levels above this are refused as corrupt (hnsw_rs uses at most 16 layers).
const MAX_LEVEL: u32 = 63;

fn metric_code(m: Metric) -> u32 {
    match m {
        Metric::L2 => 0,
        Metric::Cosine => 1,
        Metric::InnerProduct => 2,
    }
}

fn metric_from_code(c: u32) -> Option<Metric> {
    match c {
        0 => Some(Metric::L2),
        1 => Some(Metric::Cosine),
        2 => Some(Metric::InnerProduct),
        _ => None,
    }
}

fn pad8(n: usize) -> usize {
    (n + 7) & !7
}

fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    let mut h = hash;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// One field's content, as handed to [`write_segment_file`].
pub struct FieldData<'a> {
    /// Elements per vector.
    pub dims: usize,
    /// The field's metric.
    pub metric: Metric,
    /// Doc ids having a vector, strictly increasing, each below `max_doc`.
    pub docs: &'a [u32],
    /// `docs.len() x dims` values, in the order of `docs` (already unit-normalised under cosine).
    pub vectors: &'a [f32],
    /// The graph over these vectors (node i = `docs[i]`), if one was built.
    pub graph: Option<&'a FlatGraph>,
}

struct GraphPlan {
    off: usize,
    node_doc: usize,
    levels: usize,
    upper_start: usize,
    layer0: usize,
    upper: usize,
    len: usize,
}

impl GraphPlan {
    /// Offsets of the graph arrays when the graph section starts at `off`; `None` on overflow.
    fn new(off: usize, n: usize, m: usize, upper_lists: usize) -> Option<GraphPlan> {
        let node_doc = off.checked_add(GRAPH_HEADER_LEN)?;
        let levels = node_doc.checked_add(pad8(n.checked_mul(4)?))?;
        let upper_start = levels.checked_add(pad8(n))?;
        let layer0 = upper_start.checked_add(pad8(n.checked_mul(4)?))?;
        let upper = layer0.checked_add(pad8(n.checked_mul(2)?.checked_mul(m)?.checked_mul(4)?))?;
        let end = upper.checked_add(pad8(upper_lists.checked_mul(m)?.checked_mul(4)?))?;
        Some(GraphPlan { off, node_doc, levels, upper_start, layer0, upper, len: end - off })
    }
}

fn presence_len(max_doc: u32) -> usize {
    (max_doc as usize).div_ceil(64) * 8
}

fn as_bytes_f32(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and any byte pattern is a valid u8; the target is
    // little-endian (checked at compile time), which is the file's byte order.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

fn as_bytes_u32(v: &[u32]) -> &[u8] {
    // SAFETY: as above.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// Writes zero bytes up to the next multiple of 8 of `written`.
fn write_pad(w: &mut dyn Write, written: usize) -> io::Result<()> {
    let pad = pad8(written) - written;
    w.write_all(&[0u8; 8][..pad])
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Writes a complete `.hvec` file for a segment of `max_doc` documents.
pub fn write_segment_file(w: &mut dyn Write, max_doc: u32, fields: &[FieldData]) -> io::Result<()> {
    // Check the inputs first: a bad layout must not produce a file that reads back as corrupt.
    for (i, f) in fields.iter().enumerate() {
        if f.dims == 0 || f.vectors.len() != f.docs.len() * f.dims {
            return Err(invalid(format!(
                "vector field {i}: {} values for {} documents of {} dimensions",
                f.vectors.len(),
                f.docs.len(),
                f.dims
            )));
        }
        if f.docs.windows(2).any(|w| w[0] >= w[1]) || f.docs.last().is_some_and(|d| *d >= max_doc) {
            return Err(invalid(format!("vector field {i}: document ids are not increasing below {max_doc}")));
        }
        if let Some(g) = f.graph {
            g.check_shape(f.docs).map_err(invalid)?;
        }
    }
    // Plan the offsets.
    let mut off = HEADER_LEN + DIR_ENTRY_LEN * fields.len();
    let mut dir = Vec::with_capacity(DIR_ENTRY_LEN * fields.len());
    let mut plans = Vec::with_capacity(fields.len());
    for f in fields {
        let presence_off = off;
        off += presence_len(max_doc);
        let vectors_off = off;
        let vectors_len = (max_doc as usize)
            .checked_mul(f.dims)
            .and_then(|x| x.checked_mul(4))
            .ok_or_else(|| invalid("vector section too large".into()))?;
        off = off.checked_add(pad8(vectors_len)).ok_or_else(|| invalid("vector section too large".into()))?;
        let plan = match f.graph {
            Some(g) => {
                let p = GraphPlan::new(off, g.node_doc.len(), g.m as usize, g.num_upper_lists())
                    .ok_or_else(|| invalid("graph too large".into()))?;
                off += p.len;
                Some(p)
            }
            None => None,
        };
        dir.extend_from_slice(&(f.dims as u32).to_le_bytes());
        dir.extend_from_slice(&metric_code(f.metric).to_le_bytes());
        dir.extend_from_slice(&(f.docs.len() as u32).to_le_bytes());
        dir.extend_from_slice(&(if plan.is_some() { FLAG_GRAPH } else { 0 }).to_le_bytes());
        dir.extend_from_slice(&(presence_off as u64).to_le_bytes());
        dir.extend_from_slice(&(vectors_off as u64).to_le_bytes());
        dir.extend_from_slice(&(plan.as_ref().map_or(0, |p| p.off) as u64).to_le_bytes());
        dir.extend_from_slice(&(plan.as_ref().map_or(0, |p| p.len) as u64).to_le_bytes());
        plans.push(plan);
    }
    let mut header = [0u8; HEADER_LEN];
    header[0..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&(fields.len() as u32).to_le_bytes());
    header[16..20].copy_from_slice(&max_doc.to_le_bytes());
    let hash = fnv1a(fnv1a(FNV_OFFSET, &header[0..24]), &dir);
    header[24..32].copy_from_slice(&hash.to_le_bytes());
    w.write_all(&header)?;
    w.write_all(&dir)?;

    let zeros = vec![0u8; 64 << 10];
    for (f, plan) in fields.iter().zip(&plans) {
        // Presence bitmap.
        let mut words = vec![0u64; (max_doc as usize).div_ceil(64)];
        for d in f.docs {
            words[*d as usize / 64] |= 1 << (d % 64);
        }
        for word in &words {
            w.write_all(&word.to_le_bytes())?;
        }
        // Dense vectors by doc id.
        let row = f.dims * 4;
        let mut next = 0usize; // index into docs
        let mut doc = 0u32;
        while doc < max_doc {
            if next < f.docs.len() && f.docs[next] == doc {
                w.write_all(as_bytes_f32(&f.vectors[next * f.dims..(next + 1) * f.dims]))?;
                next += 1;
                doc += 1;
            } else {
                // A run of documents without a vector.
                let run_end = if next < f.docs.len() { f.docs[next] } else { max_doc };
                let mut left = (run_end - doc) as usize * row;
                while left > 0 {
                    let n = left.min(zeros.len());
                    w.write_all(&zeros[..n])?;
                    left -= n;
                }
                doc = run_end;
            }
        }
        write_pad(w, max_doc as usize * row)?;
        // Graph.
        if let (Some(g), Some(_)) = (f.graph, plan) {
            let n = g.node_doc.len();
            let mut gh = [0u8; GRAPH_HEADER_LEN];
            gh[0..4].copy_from_slice(&(n as u32).to_le_bytes());
            gh[4..8].copy_from_slice(&g.m.to_le_bytes());
            gh[8..12].copy_from_slice(&g.max_level.to_le_bytes());
            gh[12..16].copy_from_slice(&g.entry.to_le_bytes());
            gh[16..20].copy_from_slice(&(g.num_upper_lists() as u32).to_le_bytes());
            w.write_all(&gh)?;
            w.write_all(as_bytes_u32(&g.node_doc))?;
            write_pad(w, n * 4)?;
            w.write_all(&g.levels)?;
            write_pad(w, n)?;
            w.write_all(as_bytes_u32(&g.upper_start))?;
            write_pad(w, n * 4)?;
            w.write_all(as_bytes_u32(&g.layer0))?;
            write_pad(w, g.layer0.len() * 4)?;
            w.write_all(as_bytes_u32(&g.upper))?;
            write_pad(w, g.upper.len() * 4)?;
        }
    }
    Ok(())
}

/// Encodes a whole file in memory (tests, small segments).
pub fn encode_segment_file(max_doc: u32, fields: &[FieldData]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    write_segment_file(&mut out, max_doc, fields)?;
    Ok(out)
}

/// The bytes of a file, viewable as 8-byte aligned.
enum Backing {
    /// tantivy's bytes (an mmap for `MmapDirectory`, page-aligned).
    Shared(OwnedBytes),
    /// A copy into 8-byte aligned memory, for bytes that did not come aligned (e.g. a RAM
    /// directory); the second member is the length in bytes.
    Owned(Vec<u64>, usize),
}

impl Backing {
    fn new(bytes: OwnedBytes) -> Backing {
        if (bytes.as_slice().as_ptr() as usize).is_multiple_of(8) {
            return Backing::Shared(bytes);
        }
        let len = bytes.len();
        let mut words = vec![0u64; len.div_ceil(8)];
        // SAFETY: `words` holds at least `len` bytes; u64 has no invalid bit patterns.
        let dst = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), len) };
        dst.copy_from_slice(bytes.as_slice());
        Backing::Owned(words, len)
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Shared(b) => b.as_slice(),
            // SAFETY: the vector holds at least `len` initialised bytes.
            Backing::Owned(w, len) => unsafe { std::slice::from_raw_parts(w.as_ptr().cast::<u8>(), *len) },
        }
    }
}

#[derive(Debug, Clone)]
struct GraphLayout {
    m: usize,
    max_level: u32,
    entry: u32,
    num_upper_lists: usize,
    node_doc: Range<usize>,
    levels: Range<usize>,
    upper_start: Range<usize>,
    layer0: Range<usize>,
    upper: Range<usize>,
}

#[derive(Debug, Clone)]
struct FieldLayout {
    dims: usize,
    metric: Metric,
    num_vectors: usize,
    presence: Range<usize>,
    vectors: Range<usize>,
    graph: Option<GraphLayout>,
}

/// The open `.hvec` file of one segment.
pub struct VectorSegment {
    backing: Backing,
    max_doc: u32,
    fields: Vec<FieldLayout>,
    path: PathBuf,
}

impl std::fmt::Debug for VectorSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorSegment").field("path", &self.path).field("max_doc", &self.max_doc).finish()
    }
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8).map(|s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    })
}

fn cast_u32(b: &[u8]) -> &[u32] {
    debug_assert!((b.as_ptr() as usize).is_multiple_of(4) && b.len().is_multiple_of(4));
    // SAFETY: callers pass ranges validated at open to be 8-byte aligned (base aligned, offsets
    // multiples of 8) and of a length that is a multiple of 4; u32 has no invalid patterns.
    unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<u32>(), b.len() / 4) }
}

fn cast_f32(b: &[u8]) -> &[f32] {
    debug_assert!((b.as_ptr() as usize).is_multiple_of(4) && b.len().is_multiple_of(4));
    // SAFETY: as for `cast_u32`; every bit pattern is a valid f32 (NaNs included, which the
    // searches order totally, so garbage values cannot make them panic).
    unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<f32>(), b.len() / 4) }
}

fn cast_u64(b: &[u8]) -> &[u64] {
    debug_assert!((b.as_ptr() as usize).is_multiple_of(8) && b.len().is_multiple_of(8));
    // SAFETY: as for `cast_u32`, with 8-byte alignment.
    unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<u64>(), b.len() / 8) }
}

impl VectorSegment {
    /// Opens the vector file of a segment of an index with `config`. `Ok(None)` when the index
    /// has no vector field (its segments have no vector file).
    pub fn open(reader: &SegmentReader, config: &IndexConfig) -> Result<Option<VectorSegment>> {
        if config.vector_fields.is_empty() {
            return Ok(None);
        }
        Self::open_fields(reader, &config.vector_fields).map(Some)
    }

    /// Opens the vector file of a segment whose vector fields are `fields`.
    pub fn open_fields(reader: &SegmentReader, fields: &[VectorFieldConfig]) -> Result<VectorSegment> {
        let path = PathBuf::from(format!("{}.{EXTENSION}", reader.segment_id().uuid_string()));
        let slice = reader.open_read(SegmentComponent::Custom(EXTENSION.to_string())).map_err(|e| match e {
            OpenReadError::FileDoesNotExist(_) => {
                Error::Missing { path: path.clone(), detail: "the segment has no vector file".into() }
            }
            OpenReadError::IoError { io_error, .. } => {
                if io_error.kind() == io::ErrorKind::UnexpectedEof || io_error.kind() == io::ErrorKind::InvalidData {
                    Error::Corrupt { path: path.clone(), detail: io_error.to_string() }
                } else {
                    Error::io("open", path.clone(), io::Error::new(io_error.kind(), io_error.to_string()))
                }
            }
            other => Error::Corrupt { path: path.clone(), detail: other.to_string() },
        })?;
        let bytes = slice.read_bytes().map_err(|e| Error::io("read", path.clone(), e))?;
        let seg = Self::from_bytes(bytes, fields, path)?;
        if seg.max_doc != reader.max_doc() {
            return Err(Error::Corrupt {
                path: seg.path.clone(),
                detail: format!("vector file is for {} documents, the segment has {}", seg.max_doc, reader.max_doc()),
            });
        }
        Ok(seg)
    }

    /// Checks and opens file bytes (`path` only names the file in errors).
    pub fn from_bytes(bytes: OwnedBytes, fields: &[VectorFieldConfig], path: PathBuf) -> Result<VectorSegment> {
        let backing = Backing::new(bytes);
        let (max_doc, layouts) = match parse(backing.bytes(), fields) {
            Ok(x) => x,
            Err(detail) => return Err(Error::Corrupt { path, detail }),
        };
        Ok(VectorSegment { backing, max_doc, fields: layouts, path })
    }

    /// Size of the file's contents in bytes.
    pub fn byte_len(&self) -> usize {
        self.backing.bytes().len()
    }

    /// The segment's max_doc.
    pub fn max_doc(&self) -> u32 {
        self.max_doc
    }

    /// Number of vector fields.
    pub fn num_fields(&self) -> usize {
        self.fields.len()
    }

    /// The file name, for messages.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// A view of vector field `i` (in `IndexConfig::vector_fields` order).
    pub fn field(&self, i: usize) -> Option<FieldView<'_>> {
        let l = self.fields.get(i)?;
        let b = self.backing.bytes();
        let graph = l.graph.as_ref().map(|g| GraphView {
            m: g.m,
            max_level: g.max_level,
            entry: g.entry,
            num_upper_lists: g.num_upper_lists,
            node_doc: cast_u32(&b[g.node_doc.clone()]),
            levels: &b[g.levels.clone()],
            upper_start: cast_u32(&b[g.upper_start.clone()]),
            layer0: cast_u32(&b[g.layer0.clone()]),
            upper: cast_u32(&b[g.upper.clone()]),
        });
        Some(FieldView {
            dims: l.dims,
            metric: l.metric,
            max_doc: self.max_doc,
            num_vectors: l.num_vectors,
            presence: cast_u64(&b[l.presence.clone()]),
            vectors: cast_f32(&b[l.vectors.clone()]),
            graph,
            path: &self.path,
        })
    }

    /// Checks every neighbour id and upper-list offset of every graph (`hybrid.verify`, tests);
    /// searches check only what they read.
    pub fn validate_graphs(&self) -> Result<()> {
        for i in 0..self.fields.len() {
            if let Some(g) = self.field(i).and_then(|f| f.graph) {
                g.validate().map_err(|detail| Error::Corrupt { path: self.path.clone(), detail })?;
            }
        }
        Ok(())
    }
}

/// Checks the layout and returns (max_doc, field layouts), or what is wrong.
fn parse(b: &[u8], fields: &[VectorFieldConfig]) -> std::result::Result<(u32, Vec<FieldLayout>), String> {
    let short = || format!("vector file is truncated ({} bytes)", b.len());
    if b.len() < HEADER_LEN {
        return Err(short());
    }
    if b[0..8] != MAGIC {
        return Err("vector file has a bad magic number".into());
    }
    let version = read_u32(b, 8).ok_or_else(short)?;
    if version != VERSION {
        return Err(format!("vector file version {version} is not supported (expected {VERSION})"));
    }
    let num_fields = read_u32(b, 12).ok_or_else(short)? as usize;
    let max_doc = read_u32(b, 16).ok_or_else(short)?;
    if num_fields != fields.len() {
        return Err(format!("vector file holds {num_fields} vector fields, the index has {}", fields.len()));
    }
    let dir_end = HEADER_LEN + DIR_ENTRY_LEN * num_fields;
    if b.len() < dir_end {
        return Err(short());
    }
    let stored_hash = read_u64(b, 24).ok_or_else(short)?;
    if fnv1a(fnv1a(FNV_OFFSET, &b[0..24]), &b[HEADER_LEN..dir_end]) != stored_hash {
        return Err("vector file header checksum mismatch".into());
    }
    let range = |off: u64, len: usize, what: &str| -> std::result::Result<Range<usize>, String> {
        let off = usize::try_from(off).map_err(|_| format!("{what} offset out of range"))?;
        if !off.is_multiple_of(8) {
            return Err(format!("{what} is not 8-byte aligned"));
        }
        let end = off.checked_add(len).ok_or_else(|| format!("{what} length overflows"))?;
        if end > b.len() {
            return Err(format!("{what} ends past the end of the vector file ({end} > {})", b.len()));
        }
        Ok(off..end)
    };
    let mut layouts = Vec::with_capacity(num_fields);
    let mut file_end = dir_end;
    for (i, cfg) in fields.iter().enumerate() {
        let e = HEADER_LEN + i * DIR_ENTRY_LEN;
        let dims = read_u32(b, e).ok_or_else(short)? as usize;
        let metric_c = read_u32(b, e + 4).ok_or_else(short)?;
        let num_vectors = read_u32(b, e + 8).ok_or_else(short)? as usize;
        let flags = read_u32(b, e + 12).ok_or_else(short)?;
        let presence_off = read_u64(b, e + 16).ok_or_else(short)?;
        let vectors_off = read_u64(b, e + 24).ok_or_else(short)?;
        let graph_off = read_u64(b, e + 32).ok_or_else(short)?;
        let graph_len = read_u64(b, e + 40).ok_or_else(short)?;
        let name = &cfg.name;
        if dims != cfg.dimensions {
            return Err(format!(
                "field \"{name}\" has {dims} dimensions in the vector file, the index says {}",
                cfg.dimensions
            ));
        }
        let metric =
            metric_from_code(metric_c).ok_or_else(|| format!("field \"{name}\" has unknown metric code {metric_c}"))?;
        if metric != cfg.metric {
            return Err(format!(
                "field \"{name}\" has metric {} in the vector file, the index says {}",
                metric.name(),
                cfg.metric.name()
            ));
        }
        if num_vectors > max_doc as usize {
            return Err(format!("field \"{name}\" claims {num_vectors} vectors for {max_doc} documents"));
        }
        if flags & !FLAG_GRAPH != 0 {
            return Err(format!("field \"{name}\" has unknown flags {flags:#x}"));
        }
        let presence = range(presence_off, presence_len(max_doc), "presence bitmap")?;
        let vectors_len = (max_doc as usize)
            .checked_mul(dims)
            .and_then(|x| x.checked_mul(4))
            .ok_or_else(|| "vector section length overflows".to_string())?;
        let vectors = range(vectors_off, vectors_len, "vector section")?;
        file_end = file_end.max(pad8(vectors.end)).max(presence.end);
        // Presence: exactly num_vectors bits, none past max_doc.
        let words = cast_u64(&b[presence.clone()]);
        let ones: usize = words.iter().map(|w| w.count_ones() as usize).sum();
        if ones != num_vectors {
            return Err(format!(
                "field \"{name}\": presence bitmap has {ones} documents, directory says {num_vectors}"
            ));
        }
        if max_doc % 64 != 0 {
            if let Some(last) = words.last() {
                if last >> (max_doc % 64) != 0 {
                    return Err(format!("field \"{name}\": presence bitmap names documents past max_doc"));
                }
            }
        }
        let graph = if flags & FLAG_GRAPH != 0 {
            let goff = usize::try_from(graph_off).map_err(|_| "graph offset out of range".to_string())?;
            let gh = range(graph_off, GRAPH_HEADER_LEN, "graph header")?;
            let n = read_u32(b, gh.start).ok_or_else(short)? as usize;
            let m = read_u32(b, gh.start + 4).ok_or_else(short)? as usize;
            let max_level = read_u32(b, gh.start + 8).ok_or_else(short)?;
            let entry = read_u32(b, gh.start + 12).ok_or_else(short)?;
            let num_upper_lists = read_u32(b, gh.start + 16).ok_or_else(short)? as usize;
            if n != num_vectors || n == 0 {
                return Err(format!("field \"{name}\": graph has {n} nodes for {num_vectors} vectors"));
            }
            if m == 0 || m > 4096 {
                return Err(format!("field \"{name}\": graph has m = {m}"));
            }
            if max_level > MAX_LEVEL || entry as usize >= n {
                return Err(format!("field \"{name}\": graph entry point {entry} at level {max_level} is invalid"));
            }
            let plan = GraphPlan::new(goff, n, m, num_upper_lists).ok_or_else(|| "graph size overflows".to_string())?;
            if plan.len as u64 != graph_len {
                return Err(format!(
                    "field \"{name}\": graph section is {graph_len} bytes, its header implies {}",
                    plan.len
                ));
            }
            let g = range(graph_off, plan.len, "graph section")?;
            file_end = file_end.max(g.end);
            let layout = GraphLayout {
                m,
                max_level,
                entry,
                num_upper_lists,
                node_doc: plan.node_doc..plan.node_doc + n * 4,
                levels: plan.levels..plan.levels + n,
                upper_start: plan.upper_start..plan.upper_start + n * 4,
                layer0: plan.layer0..plan.layer0 + n * 2 * m * 4,
                upper: plan.upper..plan.upper + num_upper_lists * m * 4,
            };
            // Node -> doc: increasing, below max_doc, each with a vector. O(n), reads 4 bytes
            // per node; it makes every later doc lookup of a search safe.
            let node_doc = cast_u32(&b[layout.node_doc.clone()]);
            let mut prev: Option<u32> = None;
            for &d in node_doc {
                if d >= max_doc || prev.is_some_and(|p| p >= d) || words[d as usize / 64] & (1 << (d % 64)) == 0 {
                    return Err(format!("field \"{name}\": graph node of document {d} is invalid"));
                }
                prev = Some(d);
            }
            let levels = &b[layout.levels.clone()];
            if levels.iter().any(|l| u32::from(*l) > max_level) || u32::from(levels[entry as usize]) != max_level {
                return Err(format!("field \"{name}\": graph levels are inconsistent"));
            }
            Some(layout)
        } else {
            if graph_off != 0 || graph_len != 0 {
                return Err(format!("field \"{name}\": graph offset without a graph"));
            }
            None
        };
        layouts.push(FieldLayout { dims, metric, num_vectors, presence, vectors, graph });
    }
    if file_end != b.len() {
        return Err(format!("vector file is {} bytes, its sections end at {file_end}", b.len()));
    }
    Ok((max_doc, layouts))
}

/// One vector field of one segment, viewed in place.
#[derive(Clone, Copy)]
pub struct FieldView<'a> {
    dims: usize,
    metric: Metric,
    max_doc: u32,
    num_vectors: usize,
    presence: &'a [u64],
    vectors: &'a [f32],
    graph: Option<GraphView<'a>>,
    path: &'a std::path::Path,
}

impl<'a> FieldView<'a> {
    /// Elements per vector.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The field's metric.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// The segment's max_doc.
    pub fn max_doc(&self) -> u32 {
        self.max_doc
    }

    /// Documents that have a vector (deleted ones included).
    pub fn num_vectors(&self) -> usize {
        self.num_vectors
    }

    /// Whether `doc` has a vector.
    #[inline]
    pub fn has_vector(&self, doc: DocId) -> bool {
        doc < self.max_doc && self.presence[doc as usize / 64] & (1 << (doc % 64)) != 0
    }

    /// The stored vector of `doc` (unit-normalised under cosine), if it has one.
    #[inline]
    pub fn vector(&self, doc: DocId) -> Option<&'a [f32]> {
        self.has_vector(doc).then(|| self.vector_unchecked(doc))
    }

    /// The stored row of `doc` (zeros for a document without a vector); `doc < max_doc`.
    #[inline]
    pub(crate) fn vector_unchecked(&self, doc: DocId) -> &'a [f32] {
        let start = doc as usize * self.dims;
        &self.vectors[start..start + self.dims]
    }

    /// Every document with a vector, in increasing order.
    pub fn present_docs(&self) -> impl Iterator<Item = DocId> + 'a {
        let words = self.presence;
        words.iter().enumerate().flat_map(|(i, w)| {
            let mut w = *w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let bit = w.trailing_zeros();
                w &= w - 1;
                Some(i as u32 * 64 + bit)
            })
        })
    }

    /// Whether the field has an HNSW graph in this segment.
    pub fn has_graph(&self) -> bool {
        self.graph.is_some()
    }

    /// The graph, if any.
    pub fn graph(&self) -> Option<GraphView<'a>> {
        self.graph
    }

    pub(crate) fn corrupt(&self, detail: String) -> Error {
        Error::Corrupt { path: self.path.to_path_buf(), detail }
    }
}

/// The HNSW graph of one field of one segment, viewed in place.
#[derive(Clone, Copy)]
pub struct GraphView<'a> {
    m: usize,
    max_level: u32,
    entry: u32,
    num_upper_lists: usize,
    node_doc: &'a [u32],
    levels: &'a [u8],
    upper_start: &'a [u32],
    layer0: &'a [u32],
    upper: &'a [u32],
}

impl<'a> GraphView<'a> {
    /// Number of nodes (= documents with a vector).
    pub fn num_nodes(&self) -> usize {
        self.node_doc.len()
    }

    /// Neighbours per node on the upper layers (twice as many on layer 0).
    pub fn m(&self) -> usize {
        self.m
    }

    /// The top layer.
    pub fn max_level(&self) -> u32 {
        self.max_level
    }

    /// The node searches start from.
    pub fn entry(&self) -> u32 {
        self.entry
    }

    /// The document of a node (`node < num_nodes`).
    #[inline]
    pub fn doc(&self, node: u32) -> DocId {
        self.node_doc[node as usize]
    }

    /// The top layer of a node (`node < num_nodes`).
    #[inline]
    pub fn level(&self, node: u32) -> u32 {
        u32::from(self.levels[node as usize])
    }

    /// The layer-0 neighbours of a node (`node < num_nodes`), padded with [`NO_NEIGHBOUR`].
    #[inline]
    pub fn layer0(&self, node: u32) -> &'a [u32] {
        let w = 2 * self.m;
        &self.layer0[node as usize * w..(node as usize + 1) * w]
    }

    /// The neighbours of `node` on `layer >= 1`: empty if the node does not reach that layer,
    /// `Err` if its offset is out of range (damaged file).
    #[inline]
    pub fn upper(&self, node: u32, layer: u32) -> std::result::Result<&'a [u32], String> {
        if layer == 0 || layer > self.level(node) {
            return Ok(&[]);
        }
        let start = self.upper_start[node as usize];
        let list = start as usize + (layer as usize - 1);
        if start == NO_NEIGHBOUR || list >= self.num_upper_lists {
            return Err(format!("graph node {node}: upper list {list} out of range"));
        }
        Ok(&self.upper[list * self.m..(list + 1) * self.m])
    }

    /// Checks every neighbour id and every upper-list offset.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let n = self.num_nodes() as u32;
        for node in 0..n {
            for l in 0..=self.level(node) {
                let list = if l == 0 { self.layer0(node) } else { self.upper(node, l)? };
                for &nb in list {
                    if nb != NO_NEIGHBOUR && nb >= n {
                        return Err(format!("graph node {node}: neighbour {nb} out of range on layer {l}"));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::graph::{build_graph, BuildOptions};

    fn cfg(dims: usize, metric: Metric) -> VectorFieldConfig {
        VectorFieldConfig { name: "v".into(), dimensions: dims, metric, m: 8, ef_construction: 32 }
    }

    fn sample(n: usize, dims: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n * dims)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect()
    }

    fn open(bytes: Vec<u8>, fields: &[VectorFieldConfig]) -> Result<VectorSegment> {
        VectorSegment::from_bytes(OwnedBytes::new(bytes), fields, PathBuf::from("x.hvec"))
    }

    /// A two-field file: field 0 with a graph, field 1 without, both with absent documents.
    fn two_fields() -> (Vec<u8>, Vec<VectorFieldConfig>, Vec<u32>, Vec<f32>) {
        let dims = 5;
        let docs: Vec<u32> = (0..300u32).filter(|d| d % 7 != 3).collect();
        let vecs = sample(docs.len(), dims, 1);
        let graph = build_graph(
            &BuildOptions { metric: Metric::L2, m: 4, ef_construction: 16, threads: 1 },
            dims,
            &docs,
            &vecs,
        )
        .unwrap();
        let docs2: Vec<u32> = vec![0, 5, 299];
        let vecs2 = sample(3, 2, 2);
        let fields =
            vec![cfg(dims, Metric::L2), VectorFieldConfig { name: "w".into(), ..cfg(2, Metric::InnerProduct) }];
        let bytes = encode_segment_file(
            300,
            &[
                FieldData { dims, metric: Metric::L2, docs: &docs, vectors: &vecs, graph: Some(&graph) },
                FieldData { dims: 2, metric: Metric::InnerProduct, docs: &docs2, vectors: &vecs2, graph: None },
            ],
        )
        .unwrap();
        (bytes, fields, docs, vecs)
    }

    #[test]
    fn round_trip() {
        let (bytes, fields, docs, vecs) = two_fields();
        let seg = open(bytes.clone(), &fields).unwrap();
        assert_eq!(seg.max_doc(), 300);
        let f = seg.field(0).unwrap();
        assert_eq!((f.dims(), f.num_vectors(), f.has_graph()), (5, docs.len(), true));
        for (i, d) in docs.iter().enumerate() {
            assert_eq!(f.vector(*d).unwrap(), &vecs[i * 5..i * 5 + 5]);
        }
        assert_eq!(f.vector(3), None);
        assert_eq!(f.vector(300), None);
        assert_eq!(f.present_docs().collect::<Vec<_>>(), docs);
        let g = f.graph().unwrap();
        assert_eq!(g.num_nodes(), docs.len());
        g.validate().unwrap();
        let w = seg.field(1).unwrap();
        assert!(!w.has_graph());
        assert_eq!(w.present_docs().collect::<Vec<_>>(), vec![0, 5, 299]);
        assert!(seg.field(2).is_none());
        seg.validate_graphs().unwrap();
        // Unaligned bytes are copied, not refused.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&bytes);
        let ob = OwnedBytes::new(shifted).slice(1..bytes.len() + 1);
        let seg = VectorSegment::from_bytes(ob, &fields, PathBuf::from("x")).unwrap();
        assert_eq!(seg.field(0).unwrap().vector(docs[1]).unwrap(), &vecs[5..10]);
    }

    #[test]
    fn empty_segment_and_config_mismatch() {
        let fields = vec![cfg(3, Metric::Cosine)];
        let bytes = encode_segment_file(
            0,
            &[FieldData { dims: 3, metric: Metric::Cosine, docs: &[], vectors: &[], graph: None }],
        )
        .unwrap();
        let seg = open(bytes.clone(), &fields).unwrap();
        assert_eq!(seg.field(0).unwrap().present_docs().count(), 0);
        assert!(matches!(open(bytes.clone(), &[cfg(4, Metric::Cosine)]), Err(Error::Corrupt { .. })));
        assert!(matches!(open(bytes.clone(), &[cfg(3, Metric::L2)]), Err(Error::Corrupt { .. })));
        assert!(matches!(open(bytes, &[]), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn truncation_is_corrupt() {
        let (bytes, fields, _, _) = two_fields();
        for len in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
            match open(bytes[..len].to_vec(), &fields) {
                Err(Error::Corrupt { .. }) => {}
                other => panic!("truncated to {len}: {:?}", other.map(|_| ())),
            }
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0; 8]);
        assert!(matches!(open(longer, &fields), Err(Error::Corrupt { .. })));
    }

    /// Flipping any byte of the metadata is detected; flipping any byte anywhere never panics,
    /// and searching a damaged graph returns results or `Corrupt`, never a panic.
    #[test]
    fn garbled_bytes_never_panic() {
        let (bytes, fields, _, _) = two_fields();
        let meta_len = HEADER_LEN + 2 * DIR_ENTRY_LEN;
        for i in 0..meta_len {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            assert!(matches!(open(b, &fields), Err(Error::Corrupt { .. })), "byte {i}");
        }
        let q = [0.1f32, 0.2, -0.3, 0.0, 0.5];
        let mut visited = crate::vector::search::VisitedSet::default();
        let mut s = 12345u64;
        for _ in 0..3000 {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            let i = meta_len + (s >> 20) as usize % (bytes.len() - meta_len);
            let mut b = bytes.clone();
            b[i] ^= (s >> 8) as u8 | 1;
            if let Ok(seg) = open(b, &fields) {
                let f = seg.field(0).unwrap();
                let _ = crate::vector::search::search_graph(&f, &q, 10, 20, None, &mut |_| true, &mut visited);
                let _ = crate::vector::search::exact(&f, &q, 10, &mut |_| true);
                let _ = seg.validate_graphs();
            }
        }
        // A neighbour id out of range is reported by the search that reads it.
        let seg = open(bytes.clone(), &fields).unwrap();
        let f = seg.field(0).unwrap();
        let g = f.graph().unwrap();
        let layer0_start = {
            let base = seg.backing.bytes().as_ptr() as usize;
            g.layer0(0).as_ptr() as usize - base
        };
        let mut b = bytes.clone();
        for j in 0..2 * g.m() * g.num_nodes() {
            b[layer0_start + 4 * j..layer0_start + 4 * j + 4].copy_from_slice(&999_999u32.to_le_bytes());
        }
        let seg = open(b, &fields).unwrap();
        assert!(matches!(seg.validate_graphs(), Err(Error::Corrupt { .. })));
        let f = seg.field(0).unwrap();
        let mut visited = crate::vector::search::VisitedSet::default();
        let r = crate::vector::search::search_graph(&f, &q, 10, 20, None, &mut |_| true, &mut visited);
        assert!(matches!(r, Err(Error::Corrupt { .. })), "{:?}", r.map(|o| o.hits.len()));
    }

    #[test]
    fn writer_refuses_bad_input() {
        let e = encode_segment_file(
            10,
            &[FieldData { dims: 2, metric: Metric::L2, docs: &[3, 2], vectors: &[0.0; 4], graph: None }],
        );
        assert!(e.is_err());
        let e = encode_segment_file(
            3,
            &[FieldData { dims: 2, metric: Metric::L2, docs: &[3], vectors: &[0.0; 2], graph: None }],
        );
        assert!(e.is_err());
        let e = encode_segment_file(
            10,
            &[FieldData { dims: 2, metric: Metric::L2, docs: &[1], vectors: &[0.0; 3], graph: None }],
        );
        assert!(e.is_err());
    }
}
