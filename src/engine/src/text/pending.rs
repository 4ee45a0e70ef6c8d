//! The pending log: where small commits go instead of becoming segments.
//!
//! Writing a tantivy segment costs ~8 ms and ~10 fsyncs whatever its size (nine files, an fst
//! per field, a manifest publish); a one-row commit paid that in full, so concurrent one-row
//! INSERTs ran at 0.03x a GIN index's rate. Now a transaction that wrote a few rows appends
//! them as one record to the index's pending log. The log lives in the index relation's own
//! pages and is WAL-logged (the Postgres side, `src/am/log_pages.rs`, like GIN's fast-update
//! list): the record reaches the WAL after the rows' heap records and before the commit
//! record, so the commit's one WAL flush makes both durable, crash recovery restores the log,
//! and an entry can never outlive its row's WAL. Readers index the log's records in memory
//! (see `reader`), so committed rows are found at once; maintenance (the merge worker, VACUUM,
//! snapshots, committers that find the log long) *drains* it: writes its records as one real
//! segment and moves the manifest's `log.from` past them in the same publish, so every row is
//! in exactly one of the two places.
//!
//! Record: `MAGIC | payload length (u32) | the record's own stream offset (u64) | crc32 of
//! offset and payload (u32) | payload`, little-endian; the payload is a count and the
//! documents. The log's tail only moves past complete records, so readers never see a partial
//! one; the offset and checksum still let a reader tell a record from stale bytes.

use std::path::Path;

use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::text::writer::{publish_with, SegmentBuilder};
use crate::text::{Document, KeyValue};

const MAGIC: u32 = 0x474c_5948; // "HYLG"
/// Bytes of a record's header.
pub const HEADER: usize = 20;
/// Largest payload a record may claim; anything bigger is a torn or foreign header.
const MAX_PAYLOAD: usize = 1 << 30;

// ---------------------------------------------------------------------------------------------
// Encoding

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn encode_doc(out: &mut Vec<u8>, d: &Document) {
    out.extend_from_slice(&d.ctid.to_le_bytes());
    match &d.key {
        KeyValue::I64(v) => {
            out.push(0);
            out.extend_from_slice(&v.to_le_bytes());
        }
        KeyValue::Str(s) => {
            out.push(1);
            put_bytes(out, s.as_bytes());
        }
    }
    out.extend_from_slice(&(d.texts.len() as u32).to_le_bytes());
    for t in &d.texts {
        match t {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                put_bytes(out, s.as_bytes());
            }
        }
    }
    out.extend_from_slice(&(d.vectors.len() as u32).to_le_bytes());
    for v in &d.vectors {
        match v {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                for x in v {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
    }
}

/// The payload of a record holding `docs` (framed by [`frame`] once its offset is known).
pub fn encode_payload<'a>(docs: impl IntoIterator<Item = &'a Document>) -> Vec<u8> {
    let mut payload = Vec::new();
    let mut n: u32 = 0;
    payload.extend_from_slice(&0u32.to_le_bytes());
    for d in docs {
        encode_doc(&mut payload, d);
        n += 1;
    }
    payload[..4].copy_from_slice(&n.to_le_bytes());
    payload
}

fn checksum(offset: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&offset.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// The record of `payload` written at file offset `offset`.
pub fn frame(payload: &[u8], offset: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&checksum(offset, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

struct Cursor<'a> {
    b: &'a [u8],
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.b.len() < n {
            return None;
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Some(h)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

fn decode_doc(c: &mut Cursor) -> Option<Document> {
    let ctid = c.u64()?;
    let key = match c.u8()? {
        0 => KeyValue::I64(c.u64()? as i64),
        1 => KeyValue::Str(c.string()?),
        _ => return None,
    };
    let n = c.u32()? as usize;
    let mut texts = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        texts.push(match c.u8()? {
            0 => None,
            1 => Some(c.string()?),
            _ => return None,
        });
    }
    let n = c.u32()? as usize;
    let mut vectors = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        vectors.push(match c.u8()? {
            0 => None,
            1 => {
                let dims = c.u32()? as usize;
                let raw = c.take(dims.checked_mul(4)?)?;
                Some(raw.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect())
            }
            _ => return None,
        });
    }
    Some(Document { ctid, key, texts, vectors })
}

fn decode_payload(payload: &[u8]) -> Option<Vec<Document>> {
    let mut c = Cursor { b: payload };
    let n = c.u32()? as usize;
    let mut docs = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        docs.push(decode_doc(&mut c)?);
    }
    c.b.is_empty().then_some(docs)
}

/// The valid record starting at `pos` of `bytes` (file offset `base + pos`), if one does: its
/// documents and its length.
fn record_at(bytes: &[u8], pos: usize, base: u64) -> Option<(Vec<Document>, usize)> {
    let h = bytes.get(pos..pos + HEADER)?;
    if u32::from_le_bytes(h[0..4].try_into().unwrap()) != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
    let offset = u64::from_le_bytes(h[8..16].try_into().unwrap());
    let crc = u32::from_le_bytes(h[16..20].try_into().unwrap());
    if len > MAX_PAYLOAD || offset != base + pos as u64 {
        return None;
    }
    let payload = bytes.get(pos + HEADER..pos + HEADER + len)?;
    if checksum(offset, payload) != crc {
        return None;
    }
    Some((decode_payload(payload)?, HEADER + len))
}

/// What a read of a log found.
#[derive(Debug, Default)]
pub struct Records {
    /// Documents of the valid records, in log order.
    pub docs: Vec<Document>,
    /// Offset just past the last valid record (or the start, if none): everything before it is
    /// accounted for. Bytes after it are an append in flight or the torn end of a crashed one.
    pub end: u64,
    /// Bytes skipped as torn (between valid records).
    pub skipped: u64,
}

/// Parses the records in `bytes`, which start at file offset `base`.
pub fn parse(bytes: &[u8], base: u64) -> Records {
    let mut out = Records { end: base, ..Default::default() };
    let mut pos = 0;
    let mut valid_end = 0;
    while pos + HEADER <= bytes.len() {
        if let Some((docs, len)) = record_at(bytes, pos, base) {
            out.docs.extend(docs);
            pos += len;
            out.skipped += (pos - len - valid_end) as u64;
            valid_end = pos;
            continue;
        }
        // Not a record here: the torn end of a crashed append. Look for the next record.
        pos += 1;
        match bytes[pos..].windows(4).position(|w| w == MAGIC.to_le_bytes()) {
            Some(i) => pos += i,
            None => break,
        }
    }
    out.end = base + valid_end as u64;
    out
}

// ---------------------------------------------------------------------------------------------
// Where the log lives

/// The byte stream the log's records are appended to. The extension keeps it in the index
/// relation's own pages, WAL-logged (`src/am/log_pages.rs`); the engine only reads it.
///
/// Offsets are positions in the stream since the index was built: they only grow. The
/// manifest's `log.from` is such an offset; the space before it may be reused for new records.
pub trait LogSource {
    /// The offset just past the last complete record.
    fn tail(&self) -> Result<u64>;
    /// The bytes `[from, to)` (`to` ≤ a `tail()` seen before), or `None` when part of them has
    /// been reused for newer records: a drain moved `log.from` past them, so the manifest the
    /// caller holds is not the newest.
    fn read(&self, from: u64, to: u64) -> Result<Option<Vec<u8>>>;
    /// Makes every record read so far durable, so a drain may publish segments holding them
    /// (a segment must never hold an entry whose row could still be lost in a crash).
    fn make_durable(&self) -> Result<()>;
}

/// An index with nothing pending: a folder searched without its relation (the engine's own
/// tools and tests, and a restore's staging folder).
pub struct NoLog;

impl LogSource for NoLog {
    fn tail(&self) -> Result<u64> {
        Ok(0)
    }
    fn read(&self, _from: u64, _to: u64) -> Result<Option<Vec<u8>>> {
        Ok(Some(Vec::new()))
    }
    fn make_durable(&self) -> Result<()> {
        Ok(())
    }
}

/// The complete records of `log` from offset `from` on, and where they end. `None`: the
/// bytes were reused (see [`LogSource::read`]).
pub fn read_from(log: &dyn LogSource, from: u64) -> Result<Option<Records>> {
    let tail = log.tail()?;
    if tail <= from {
        return Ok(Some(Records { end: from, ..Default::default() }));
    }
    Ok(log.read(from, tail)?.map(|bytes| parse(&bytes, from)))
}

/// Documents pending in `log` after the manifest `m` (for usage counts and quotas).
pub fn pending_docs(log: &dyn LogSource, m: &Manifest) -> Result<u64> {
    Ok(read_from(log, m.hybrid.log.from)?.map_or(0, |r| r.docs.len() as u64))
}

// ---------------------------------------------------------------------------------------------
// Draining

/// What [`drain`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Documents written into a segment.
    pub docs: u64,
}

/// Held while a drain runs. Its own lock, not the maintenance lock: a long merge must not
/// hold up drains (measured: readers re-indexing a log that grew behind a merge of the whole
/// index answered at a fifth of their rate). It also makes `log.from` move only under it, so
/// a drain reads bytes nobody may reuse meanwhile.
pub const DRAIN_LOCK: &str = "drain.lock";

/// Writes every complete record of the log as one segment, published together with the new
/// start of the log. Waits for a drain running elsewhere to finish first, so every record
/// appended before the call is in a segment when it returns.
pub fn drain(dir: &Path, log: &dyn LogSource) -> Result<Drained> {
    let _lock = crate::fsutil::FileLock::lock(&dir.join(DRAIN_LOCK))?;
    drain_locked(dir, log)
}

/// Like [`drain`], unless another drain is running (then `None`: it does the work).
pub fn try_drain(dir: &Path, log: &dyn LogSource) -> Result<Option<Drained>> {
    let Some(_lock) = crate::fsutil::FileLock::try_lock(&dir.join(DRAIN_LOCK))? else { return Ok(None) };
    drain_locked(dir, log).map(Some)
}

fn drain_locked(dir: &Path, log: &dyn LogSource) -> Result<Drained> {
    let m = Manifest::read(dir)?;
    let from = m.hybrid.log.from;
    let records = read_from(log, from)?.ok_or_else(|| {
        // Only drains move `from`, and we hold the drain lock: nothing before the tail we
        // read could be reused.
        Error::io("read", dir, std::io::Error::other("the pending log was overwritten during a drain"))
    })?;
    let mut out = Drained::default();
    if records.end <= from {
        return Ok(out);
    }
    let staged = if records.docs.is_empty() {
        None
    } else {
        let bytes: usize = records.docs.iter().map(Document::approx_bytes).sum();
        let mut builder = SegmentBuilder::new(dir, &m, bytes.saturating_mul(4))?;
        for d in &records.docs {
            builder.add(d)?;
        }
        builder.finish()?
    };
    // WAL before data: the records must not be lost in a crash once a segment holds them.
    log.make_durable()?;
    let published = publish_with(dir, staged.into_iter().collect(), |cur| {
        if cur.hybrid.log.from != from {
            return Ok(false);
        }
        cur.hybrid.log.from = records.end;
        Ok(true)
    })?;
    if published.is_some() {
        out.docs = records.docs.len() as u64;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(ctid: u64, text: &str) -> Document {
        Document {
            ctid,
            key: KeyValue::Str(format!("k{ctid}")),
            texts: vec![Some(text.into()), None],
            vectors: vec![Some(vec![1.0, -2.5]), None],
        }
    }

    #[test]
    fn records_round_trip() {
        let a = [doc(1, "one"), doc(2, "two")];
        let bytes = frame(&encode_payload(&a), 100);
        let r = parse(&bytes, 100);
        assert_eq!(r.docs, a);
        assert_eq!(r.end, 100 + bytes.len() as u64);
        assert_eq!(r.skipped, 0);
    }

    #[test]
    fn a_torn_record_is_skipped_and_an_unfinished_one_waits() {
        let first = frame(&encode_payload(&[doc(1, "first")]), 0);
        let torn = frame(&encode_payload(&[doc(2, "torn")]), first.len() as u64);
        let mut bytes = first.clone();
        bytes.extend_from_slice(&torn[..torn.len() - 3]);
        let third = frame(&encode_payload(&[doc(3, "third")]), bytes.len() as u64);
        // Unfinished at the end: only the first counts, and `end` stops before the torn bytes
        // (they may be an append still being written).
        let r = parse(&bytes, 0);
        assert_eq!(r.docs, [doc(1, "first")]);
        assert_eq!(r.end, first.len() as u64);
        // A record after it proves the torn one will never finish: it is skipped.
        bytes.extend_from_slice(&third);
        let r = parse(&bytes, 0);
        assert_eq!(r.docs, [doc(1, "first"), doc(3, "third")]);
        assert_eq!(r.end, bytes.len() as u64);
        assert_eq!(r.skipped, (torn.len() - 3) as u64);
        // A flipped payload byte fails the checksum.
        let mut bad = first.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x55;
        assert!(parse(&bad, 0).docs.is_empty());
        // A record framed for another offset (as text inside a payload would have to be) does
        // not count.
        let elsewhere = frame(&encode_payload(&[doc(4, "forged")]), 7);
        assert!(parse(&elsewhere, 0).docs.is_empty());
    }
}
