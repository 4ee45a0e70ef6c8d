//! The tantivy segment plugin that writes the `.hvec` file of every segment.
//!
//! Registered on every tantivy `Index` we open for an index with vector fields (see
//! `text::writer::open_tantivy`), so all three ways a segment comes to be write one: the
//! multi-threaded `IndexWriter` of a build, the `SegmentWriter` of a transaction's segment, and
//! merges. tantivy records the extension in the manifest (`persisted_custom_extensions`) and
//! refuses to write an index whose plugin set differs, so a segment without its vector file
//! cannot be produced by accident.

use std::any::Any;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tantivy::directory::TerminatingWrite;
use tantivy::index::SegmentComponent;
use tantivy::indexer::doc_id_mapping::{DocIdMapping, MappingType};
use tantivy::plugin::{PluginMergeContext, PluginWriter, PluginWriterContext, SegmentPlugin};
use tantivy::schema::document::ErasedDocument;
use tantivy::schema::{Field, FieldType, Schema, Value};
use tantivy::{DocId, Segment, TantivyDocument, TantivyError};

use crate::config::VectorFieldConfig;
use crate::error::Error;
use crate::schema::VECTOR_TYPE;
use crate::vector::graph::{build_graph, BuildOptions, FlatGraph};
use crate::vector::segment::{write_segment_file, FieldData, VectorSegment, EXTENSION, GRAPH_MIN_VECTORS};
use crate::vector::stored_form;

const EXTENSIONS: &[&str] = &[EXTENSION];

/// Threads a new plugin builds graphs with; 0 = as many as the machine has cores, at most 8.
static DEFAULT_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets the number of threads plugins created from now on build graphs with (e.g. from a
/// setting of the extension); 0 restores the default (cores, at most 8).
pub fn set_default_build_threads(threads: usize) {
    DEFAULT_THREADS.store(threads, Ordering::SeqCst);
}

fn default_build_threads() -> usize {
    match DEFAULT_THREADS.load(Ordering::SeqCst) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8),
        n => n,
    }
}

/// The vector segment plugin of one index.
pub struct VectorPlugin {
    fields: Arc<Vec<VectorFieldConfig>>,
    build_graphs: AtomicBool,
    threads: AtomicUsize,
}

impl VectorPlugin {
    /// A plugin for an index whose vector fields are `fields` (in config order). Graphs are
    /// built with [`set_default_build_threads`] threads.
    pub fn new(fields: Vec<VectorFieldConfig>) -> VectorPlugin {
        VectorPlugin {
            fields: Arc::new(fields),
            build_graphs: AtomicBool::new(true),
            threads: AtomicUsize::new(default_build_threads()),
        }
    }

    /// Whether segments written from now on get graphs. A bulk build turns this off while it
    /// flushes intermediate segments, and on for its one final merge: every graph built before
    /// that merge would be thrown away by it.
    pub fn set_build_graphs(&self, on: bool) {
        self.build_graphs.store(on, Ordering::SeqCst);
    }

    /// Threads used to build one graph.
    pub fn set_build_threads(&self, threads: usize) {
        self.threads.store(threads.max(1), Ordering::SeqCst);
    }

    /// The vector fields.
    pub fn fields(&self) -> &[VectorFieldConfig] {
        &self.fields
    }

    fn options(&self) -> WriteOptions {
        WriteOptions {
            build_graphs: self.build_graphs.load(Ordering::SeqCst),
            threads: self.threads.load(Ordering::SeqCst),
        }
    }
}

#[derive(Clone, Copy)]
struct WriteOptions {
    build_graphs: bool,
    threads: usize,
}

fn to_tantivy(e: Error) -> TantivyError {
    match e {
        Error::Corrupt { path, detail } => {
            TantivyError::DataCorruption(tantivy::error::DataCorruption::new(path, detail))
        }
        Error::Io { source, .. } => TantivyError::IoError(Arc::new(source)),
        other => TantivyError::InvalidArgument(other.to_string()),
    }
}

/// The vectors of one field of a segment being written.
#[derive(Default)]
struct Collected {
    docs: Vec<u32>,
    values: Vec<f32>,
}

/// Builds the graphs (where worthwhile) and writes the file.
fn write_file(
    segment: &Segment,
    fields: &[VectorFieldConfig],
    max_doc: u32,
    data: &[Collected],
    opts: WriteOptions,
) -> tantivy::Result<()> {
    let mut graphs: Vec<Option<FlatGraph>> = Vec::with_capacity(fields.len());
    for (cfg, c) in fields.iter().zip(data) {
        let graph = if opts.build_graphs && c.docs.len() >= GRAPH_MIN_VECTORS {
            let o = BuildOptions {
                metric: cfg.metric,
                m: cfg.m,
                ef_construction: cfg.ef_construction,
                threads: opts.threads,
            };
            Some(build_graph(&o, cfg.dimensions, &c.docs, &c.values).map_err(to_tantivy)?)
        } else {
            None
        };
        graphs.push(graph);
    }
    let sections: Vec<FieldData> = fields
        .iter()
        .zip(data)
        .zip(&graphs)
        .map(|((cfg, c), g)| FieldData {
            dims: cfg.dimensions,
            metric: cfg.metric,
            docs: &c.docs,
            vectors: &c.values,
            graph: g.as_ref(),
        })
        .collect();
    let mut w = segment.open_write(SegmentComponent::Custom(EXTENSION.to_string()))?;
    write_segment_file(&mut w, max_doc, &sections)?;
    w.flush()?;
    w.terminate()?;
    Ok(())
}

impl SegmentPlugin for VectorPlugin {
    fn extensions(&self) -> &[&str] {
        EXTENSIONS
    }

    fn create_writer(&self, ctx: &PluginWriterContext) -> tantivy::Result<Box<dyn PluginWriter>> {
        let schema = ctx.segment.schema();
        let handles = resolve_fields(&schema, &self.fields)?;
        Ok(Box::new(VectorPluginWriter {
            fields: self.fields.clone(),
            handles,
            data: (0..self.fields.len()).map(|_| Collected::default()).collect(),
            max_doc: 0,
            opts: self.options(),
        }))
    }

    fn merge(&self, ctx: PluginMergeContext) -> tantivy::Result<()> {
        // tantivy does not expose the new-to-old map itself; without index sorting (which we
        // never configure) it is the concatenation of the alive documents of each reader, in
        // order, which is what we rebuild here.
        if ctx.doc_id_mapping.mapping_type() == MappingType::Shuffled {
            return Err(TantivyError::InvalidArgument("vector fields do not support index sorting".into()));
        }
        let fields: &[VectorFieldConfig] = &self.fields;
        let sources = ctx
            .readers
            .iter()
            .map(|r| VectorSegment::open_fields(r, fields))
            .collect::<Result<Vec<_>, Error>>()
            .map_err(to_tantivy)?;
        let mut data: Vec<Collected> = (0..fields.len()).map(|_| Collected::default()).collect();
        let mut new_doc: u32 = 0;
        for (reader, source) in ctx.readers.iter().zip(&sources) {
            let views: Vec<_> = (0..fields.len()).filter_map(|i| source.field(i)).collect();
            for old in reader.doc_ids_alive() {
                for (c, view) in data.iter_mut().zip(&views) {
                    // Copied bit for bit: the vectors are already in stored form, and
                    // normalising twice could change the last bit of a cosine vector.
                    if let Some(v) = view.vector(old) {
                        c.docs.push(new_doc);
                        c.values.extend_from_slice(v);
                    }
                }
                new_doc += 1;
            }
        }
        write_file(ctx.target_segment, fields, new_doc, &data, self.options())
    }
}

/// The schema fields of the vector fields, checked to be `hybrid_vector` custom fields.
fn resolve_fields(schema: &Schema, fields: &[VectorFieldConfig]) -> tantivy::Result<Vec<Field>> {
    fields
        .iter()
        .map(|f| {
            let field = schema.get_field(&f.name)?;
            match schema.get_field_entry(field).field_type() {
                FieldType::Custom(o) if o.type_name() == VECTOR_TYPE => Ok(field),
                _ => Err(TantivyError::SchemaError(format!("field \"{}\" is not a {VECTOR_TYPE} field", f.name))),
            }
        })
        .collect()
}

/// Collects the vectors of the documents of one segment being written.
struct VectorPluginWriter {
    fields: Arc<Vec<VectorFieldConfig>>,
    handles: Vec<Field>,
    data: Vec<Collected>,
    max_doc: u32,
    opts: WriteOptions,
}

impl PluginWriter for VectorPluginWriter {
    fn add_document(&mut self, doc_id: DocId, doc: &dyn ErasedDocument, _schema: &Schema) -> tantivy::Result<()> {
        let doc = doc
            .as_any()
            .downcast_ref::<TantivyDocument>()
            .ok_or_else(|| TantivyError::InvalidArgument("the vector plugin only indexes TantivyDocument".into()))?;
        for ((cfg, field), c) in self.fields.iter().zip(&self.handles).zip(&mut self.data) {
            let mut values = doc.get_all(*field);
            let Some(value) = values.next() else { continue };
            if values.next().is_some() {
                return Err(TantivyError::InvalidArgument(format!(
                    "document {doc_id} has several vectors for field \"{}\"",
                    cfg.name
                )));
            }
            let bytes = value.as_custom().ok_or_else(|| {
                TantivyError::InvalidArgument(format!("field \"{}\" holds a value that is not a vector", cfg.name))
            })?;
            if bytes.len() % 4 != 0 {
                return Err(TantivyError::InvalidArgument(format!(
                    "vector of field \"{}\" is {} bytes, not whole f32s",
                    cfg.name,
                    bytes.len()
                )));
            }
            let v: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            cfg.check(&v, "vector").map_err(to_tantivy)?;
            let stored = stored_form(cfg.metric, &v).map_err(to_tantivy)?;
            if c.docs.last().is_some_and(|d| *d >= doc_id) {
                return Err(TantivyError::InvalidArgument("documents reached the vector plugin out of order".into()));
            }
            c.docs.push(doc_id);
            c.values.extend_from_slice(&stored);
        }
        self.max_doc = self.max_doc.max(doc_id + 1);
        Ok(())
    }

    fn serialize(self: Box<Self>, segment: &Segment, doc_id_map: Option<&DocIdMapping>) -> tantivy::Result<()> {
        if doc_id_map.is_some() {
            return Err(TantivyError::InvalidArgument("vector fields do not support index sorting".into()));
        }
        // Documents without any vector still count: the file covers every doc id.
        let max_doc = self.max_doc.max(segment.meta().max_doc());
        write_file(segment, &self.fields, max_doc, &self.data, self.opts)
    }

    fn mem_usage(&self) -> usize {
        self.data.iter().map(|c| c.values.capacity() * 4 + c.docs.capacity() * 4).sum()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
