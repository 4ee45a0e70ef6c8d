//! The pending log: where small commits go instead of becoming segments.
//!
//! Writing a tantivy segment costs ~8 ms and ~10 fsyncs whatever its size (nine files, an fst
//! per field, a manifest publish); a one-row commit paid that in full, so concurrent one-row
//! INSERTs ran at 0.03x a GIN index's rate. Now a transaction that wrote a few rows appends
//! them as one record to the index's pending log, `pending.<seq>.log`, and fsyncs it: one
//! append and one fsync per commit (the fsyncs of concurrent commits overlap on the device). Readers index the log's records in memory (see `reader`), so committed rows are
//! found at once; maintenance (the merge worker, VACUUM, snapshots, committers that find the
//! log long) *drains* it: writes its records as one real segment and moves the manifest's
//! `log.from` past them in the same publish, so every row is in exactly one of the two places.
//!
//! Record: `MAGIC | payload length (u32) | the record's own file offset (u64) | crc32 of offset
//! and payload (u32) | payload`, little-endian; the payload is a count and the documents. A
//! crash can leave a torn record at the end (its transaction never committed: the fsync comes
//! before the commit record); appends after a restart go after it, and readers skip it by
//! searching for the next magic whose record names its own offset and whose checksum holds —
//! bytes inside a payload (user text) cannot pass for a record unless they also name the
//! exact offset they land at.
//!
//! Concurrency: appenders hold an exclusive `flock` on the log file only to learn its size and
//! write (microseconds), then fsync without it, so concurrent commits' fsyncs overlap.
//! Readers take the lock shared to learn the size, so everything before that size is written
//! out: the only bytes that do not parse are torn ones. Rotation to a new file (when the old
//! one is long) copies the records not yet drained into the new file, publishes it and unlinks
//! the old one while holding the old one exclusively; an appender that then gets the lock sees
//! the file unlinked and starts over. A reader that finds its log file gone re-reads the
//! manifest: the file went with a publish that accounts for every record in it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil::{self, flock};
use crate::manifest::{self, LogState, Manifest};
use crate::text::writer::{publish_with, SegmentBuilder};
use crate::text::{Document, KeyValue};

const MAGIC: u32 = 0x474c_5948; // "HYLG"
const HEADER: usize = 20;
/// Largest payload a record may claim; anything bigger is a torn or foreign header.
const MAX_PAYLOAD: usize = 1 << 30;
/// A log longer than this is replaced by a fresh file (the records not drained yet are carried
/// over).
const ROTATE_BYTES: u64 = 4 << 20;
/// A fully drained log longer than this is replaced too, so disk use follows the live rows
/// once writes stop.
const RETIRE_BYTES: u64 = 64 << 10;

/// The log file of `seq` in the index folder `dir`.
pub fn log_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("pending.{seq}.log"))
}

/// The sequence number of a log file name, if `name` is one.
pub fn log_seq(name: &str) -> Option<u64> {
    name.strip_prefix("pending.")?.strip_suffix(".log")?.parse().ok()
}

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

/// Reads the records of the log named by `state`, from byte `offset` (≥ `state.from`). A
/// missing log file has nothing pending (see the module comment). Returns the records and the
/// file's size.
pub fn read_from(dir: &Path, state: LogState, offset: u64) -> Result<(Records, u64)> {
    let path = log_path(dir, state.seq);
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Records { end: offset, ..Default::default() }, 0)),
        Err(e) => return Err(Error::io("open", &path, e)),
    };
    read_open(&mut f, &path, offset, true)
}

/// The records of the open log file `f` (at `path`) from byte `offset`, and its size. A reader
/// that keeps its log open reads through it: a file retired by a rotation after the reader's
/// manifest was read still holds every record that manifest needs. `lock`: take the shared
/// lock to learn the size (not when the caller holds the file exclusively already).
pub fn read_open(f: &mut File, path: &Path, offset: u64, lock: bool) -> Result<(Records, u64)> {
    // Under the shared lock no append is half-written: every byte before `size` is final.
    if lock {
        flock(f, libc::LOCK_SH, path)?;
    }
    let size = f.metadata().map_err(|e| Error::io("stat", path, e));
    if lock {
        flock(f, libc::LOCK_UN, path)?;
    }
    let size = size?.len();
    if size <= offset {
        return Ok((Records { end: offset, ..Default::default() }, size));
    }
    f.seek(SeekFrom::Start(offset)).map_err(|e| Error::io("seek", path, e))?;
    let mut bytes = Vec::with_capacity((size - offset) as usize);
    f.take(size - offset).read_to_end(&mut bytes).map_err(|e| Error::io("read", path, e))?;
    Ok((parse(&bytes, offset), size))
}

/// Documents pending in the log of manifest `m` (for usage counts and quotas).
pub fn pending_docs(dir: &Path, m: &Manifest) -> Result<u64> {
    Ok(read_from(dir, m.hybrid.log, m.hybrid.log.from)?.0.docs.len() as u64)
}

// ---------------------------------------------------------------------------------------------
// Appending

/// Creates the empty log file `seq` in a folder being assembled (not published yet).
pub(crate) fn create_empty_log(dir: &Path, seq: u64) -> Result<()> {
    write_log_file(dir, seq, &[])
}

/// Creates the log file `seq`, durably, holding `carried` as its first record if not empty.
/// A file of this number can only be left by a rotation that crashed before publishing: no
/// manifest ever named it, so nobody appended to it, and it is replaced.
fn write_log_file(dir: &Path, seq: u64, carried: &[Document]) -> Result<()> {
    let path = log_path(dir, seq);
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io("create", &path, e))?;
    if !carried.is_empty() {
        (&f).write_all(&frame(&encode_payload(carried), 0)).map_err(|e| Error::io("write", &path, e))?;
    }
    f.sync_all().map_err(|e| Error::io("fsync", &path, e))?;
    fsutil::fsync_dir(dir)
}

/// Creates the log file `seq` (see [`write_log_file`]) and names it in `m`. Runs inside a
/// publish, so the garbage collection of old logs never sees it unnamed.
fn start_log(dir: &Path, m: &mut Manifest, seq: u64, carried: &[Document]) -> Result<()> {
    write_log_file(dir, seq, carried)?;
    m.hybrid.log = LogState { seq, from: 0 };
    Ok(())
}

/// Where the log stood after an append.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    /// The log's size just after the record.
    pub size: u64,
    /// Where its undrained records start (as of the manifest the append went by).
    pub from: u64,
}

/// Appends a record of `payload` (from [`encode_payload`]) to the index's log and makes it
/// durable.
pub fn append(dir: &Path, payload: &[u8]) -> Result<Appended> {
    for _ in 0..1000 {
        let state = Manifest::read(dir)?.hybrid.log;
        let seq = state.seq;
        let path = log_path(dir, seq);
        let f = match OpenOptions::new().append(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A folder restored from a snapshot, or written before the log existed: start
                // a log. Unless someone else just did (or a rotation retired this one).
                manifest::publish_if(dir, |m| {
                    if m.hybrid.log.seq != seq {
                        return Ok(false);
                    }
                    start_log(dir, m, seq + 1, &[])?;
                    Ok(true)
                })?;
                continue;
            }
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        flock(&f, libc::LOCK_EX, &path)?;
        let md = f.metadata().map_err(|e| Error::io("stat", &path, e))?;
        if md.nlink() == 0 {
            // Retired by a rotation while we waited: the manifest names its successor.
            continue;
        }
        let record = frame(payload, md.len());
        // One write call: a failure can leave a torn record, never a record inside another.
        let written = (&f).write(&record);
        flock(&f, libc::LOCK_UN, &path)?;
        let n = written.map_err(|e| Error::io("append to", &path, e))?;
        if n != record.len() {
            return Err(Error::io(
                "append to",
                &path,
                std::io::Error::other(format!("short write ({n} of {} bytes)", record.len())),
            ));
        }
        // Concurrent commits fsync side by side; a queue where one fsyncs for all (tried, with
        // a lock file) ran at 0.75x: it serialises the fsyncs the device would overlap.
        f.sync_data().map_err(|e| Error::io("fsync", &path, e))?;
        return Ok(Appended { size: md.len() + n as u64, from: state.from });
    }
    Err(Error::io("append to", log_path(dir, 0), std::io::Error::other("the pending log kept being replaced")))
}

// ---------------------------------------------------------------------------------------------
// Draining

/// What [`drain`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Documents written into a segment.
    pub docs: u64,
    /// Whether the log file was replaced by a fresh one.
    pub rotated: bool,
}

/// Held while a drain runs. Its own lock, not the maintenance lock: a long merge must not
/// hold up drains (measured: readers re-indexing a log that grew behind a merge of the whole
/// index answered at a fifth of their rate). Correctness does not rest on it (a drain publishes
/// only if `log` is still what it read); it only keeps two drains from doing the same work.
pub const DRAIN_LOCK: &str = "drain.lock";

/// Writes every complete record of the log as one segment, published together with the new
/// start of the log, then replaces the log file if it is long. Waits for a drain running
/// elsewhere to finish first, so every record appended before the call is in a segment when it
/// returns.
pub fn drain(dir: &Path) -> Result<Drained> {
    let _lock = crate::fsutil::FileLock::lock(&dir.join(DRAIN_LOCK))?;
    drain_locked(dir)
}

/// Like [`drain`], unless another drain is running (then `None`: it does the work).
pub fn try_drain(dir: &Path) -> Result<Option<Drained>> {
    let Some(_lock) = crate::fsutil::FileLock::try_lock(&dir.join(DRAIN_LOCK))? else { return Ok(None) };
    drain_locked(dir).map(Some)
}

fn drain_locked(dir: &Path) -> Result<Drained> {
    let m = Manifest::read(dir)?;
    let state = m.hybrid.log;
    remove_old_logs(dir, state.seq)?;
    let (records, _) = read_from(dir, state, state.from)?;
    let mut out = Drained::default();
    if records.end > state.from {
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
        let published = publish_with(dir, staged.into_iter().collect(), |cur| {
            if cur.hybrid.log != state {
                return Ok(false);
            }
            cur.hybrid.log.from = records.end;
            Ok(true)
        })?;
        if published.is_some() {
            out.docs = records.docs.len() as u64;
        }
    }
    out.rotated = rotate(dir)?;
    Ok(out)
}

/// Replaces the log by a fresh file once it is long, or drained and not short. Records appended
/// since the drain are carried over into the new file (under steady load the log is never
/// empty).
fn rotate(dir: &Path) -> Result<bool> {
    let state = Manifest::read(dir)?.hybrid.log;
    let path = log_path(dir, state.seq);
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("open", &path, e)),
    };
    let len = f.metadata().map_err(|e| Error::io("stat", &path, e))?.len();
    let drained = len == state.from;
    if len < ROTATE_BYTES && !(drained && len >= RETIRE_BYTES) {
        return Ok(false);
    }
    flock(&f, libc::LOCK_EX, &path)?;
    // No append is in flight now: bytes after `from` are records appended since the drain
    // (carried over) or the torn end of a crashed append (garbage, dropped).
    let (records, _) = read_open(&mut f, &path, state.from, false)?;
    let published = manifest::publish_if(dir, |m| {
        if m.hybrid.log != state {
            return Ok(false);
        }
        start_log(dir, m, state.seq + 1, &records.docs)?;
        Ok(true)
    })?;
    if published.is_none() {
        return Ok(false);
    }
    // Unlinked before the lock is released: an appender waiting for it sees the file gone.
    remove_old_logs(dir, state.seq + 1)?;
    drop(f);
    Ok(true)
}

/// Removes log files older than `current` (retired by a rotation; left behind if it crashed
/// before removing them).
pub fn remove_old_logs(dir: &Path, current: u64) -> Result<usize> {
    fsutil::remove_files_where(dir, |name| log_seq(name).is_some_and(|seq| seq < current))
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

    #[test]
    fn log_names() {
        assert_eq!(log_seq("pending.12.log"), Some(12));
        assert_eq!(log_seq("pending.x.log"), None);
        assert_eq!(log_seq("meta.json"), None);
        assert_eq!(log_path(Path::new("/d"), 3), Path::new("/d/pending.3.log"));
    }
}
