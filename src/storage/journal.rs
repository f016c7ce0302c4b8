//! The journal: the events the intake keeps, on disk before the homeserver hears 200, without
//! sled on the way.
//!
//! Every sled read and write takes sled's one process-wide lock, which waits behind the
//! worker's and the runner's transactions and the flushes before them (`docs/benchmarks-history.md`,
//! "Ingestion, fifth and sixth sittings"). So the events of a transaction (or a catch-up)
//! that knockwarden needs are appended as one record to segment files of their own, and one
//! `fdatasync` makes every record appended before it durable (group commit). The intake
//! answers once its record is durable.
//!
//! The worker reads the records in order ([`JournalLog::next`]) and handles them in its
//! sled batches. Each batch records how far it got (a [`Checkpoint`]) in the same sled
//! transaction as what the events led to, so a record is handled exactly once, whatever
//! crashes when: the events of a record past the checkpoint are handled again after a crash,
//! and their earlier handling was lost with it. A segment is deleted once every record in it
//! is handled and sled has made that durable.
//!
//! On disk: `journal/<the seq of its first record, 20 digits>.log`. A record is its payload's
//! length (u32 LE), the CRC-32 of its payload (u32 LE), and the payload, a [`JournalRecord`]
//! as JSON. Records are numbered in order. Only the last record of the last segment can be
//! cut short by a crash (segments are synced before the next is begun): the journal ends
//! before it when it opens, and its transaction was never acknowledged.
//!
//! Any other damage (a flipped byte, a bad block) is survived and said: the journal looks for
//! the next whole record after it (a header whose payload matches its checksum and is a
//! record numbered further on), keeps the damaged bytes aside in a file of their own
//! (`journal-damaged/` beside `journal/`), and goes on from that record; the records in
//! between are lost, and said to be ([`Damage`]: an ERROR line, a control-room notice, a
//! metric). Damage followed by no whole record of the last segment is its end, as a record
//! cut short is. The segment itself is left as it is: found again at the next start, the
//! same damage is skipped again, and not reported twice (its file exists).
//!
//! Segments are written in place, not appended to, once the journal is busy: an `fdatasync`
//! after writing into a file's existing blocks has no size or block allocation to make
//! durable, only the data. On this project's machine it took half as long as after an append
//! (about 100 µs against 200), and the acknowledgement waits for it (`docs/benchmarks-history.md`,
//! "Ingestion, ninth sitting"). So up to [`SPARES`] handled segments are kept
//! (`<20 digits>.spare`) and renamed to begin the next, whose records then overwrite the
//! older ones; and the first time the journal fills a segment with none spare, a thread
//! writes that many spares of zeros (`.zeroing` while it does), and the tail moves on to the
//! first as soon as it is ready. What follows a segment's own records is older data, or
//! zeros: a segment's records are the ones numbered from its name on, up to the next
//! segment's first (the last segment's, up to zeros or the first record that is cut short or
//! numbered below the one expected).

use std::{
    collections::VecDeque,
    fs::File,
    io,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::SeqCst},
    },
};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{BotMembership, Origin, StoreError};

/// A segment is closed, and the next begun, once it holds this many bytes.
const SEGMENT_BYTES: u64 = 32 * 1024 * 1024;

/// Handled segments kept to be reused (see the module's doc); more are deleted.
const SPARES: usize = 2;

/// A record's header: the payload's length and CRC-32, each a u32 LE.
const HEADER: usize = 8;

/// One record: the events one transaction (or catch-up) brought that knockwarden needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalRecord {
    pub seq: u64,
    pub received_ms: u64,
    pub origin: Origin,
    /// For a pushed transaction: its body's SHA-256, hex (recorded for replay detection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_hash: Option<String>,
    /// The events, as the homeserver sent them.
    pub events: Vec<Box<RawValue>>,
    /// The knockers of the knocks among them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub knockers: Vec<String>,
    /// The bot's own membership changes among them, by room.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bot: Vec<(String, BotMembership)>,
}

/// What the journal needs of a record when it opens (the events are not read).
#[derive(Deserialize)]
struct RecordHead {
    seq: u64,
    origin: Origin,
    #[serde(default)]
    body_hash: Option<String>,
    #[serde(default)]
    knockers: Vec<String>,
    #[serde(default)]
    bot: Vec<(String, BotMembership)>,
    events: Vec<serde::de::IgnoredAny>,
}

/// How far the worker got: the next record to handle, and how many of its events are
/// handled already (more than none only when an event had to wait).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub event: usize,
}

/// Damage found in the journal and skipped (see the module's doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The file the damaged bytes were copied to.
    pub kept_in: PathBuf,
    /// The segment, and the byte of it where the damage begins.
    pub segment: PathBuf,
    pub byte: u64,
    /// The records that could not be read: from this seq, up to (not including) `to`.
    pub from: u64,
    pub to: u64,
    /// Records below this seq were handled before (their loss costs nothing).
    pub handled_below: u64,
    pub why: String,
}

impl Damage {
    /// The records lost that were not handled yet (acknowledged, never acted on).
    pub fn unhandled(&self) -> std::ops::Range<u64> {
        self.from.max(self.handled_below)..self.to
    }
}

/// What opening the journal found that the rest of the store must know.
pub(super) struct Opened {
    pub journal: Journal,
    /// The bot's membership changes in records not handled yet, oldest first.
    pub bot: Vec<(String, BotMembership)>,
    /// The records not handled yet, oldest first.
    pub unhandled: Vec<UnhandledRecord>,
}

/// A record not handled yet, as the journal found it when it opened (what the intake
/// remembers of it: see `pipeline::intake::memory`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnhandledRecord {
    pub seq: u64,
    /// How many events it holds.
    pub events: usize,
    /// The knockers of the knocks among them.
    pub knockers: Vec<String>,
    /// For a pushed transaction: its txnId and body hash.
    pub txn: Option<(String, [u8; 32])>,
}

/// The segment being appended to.
struct Tail {
    file: Arc<File>,
    len: u64,
    /// Whether its blocks past `len` are written already (a spare's): records overwrite them.
    in_place: bool,
}

/// Where the worker reads next.
struct Cursor {
    /// The seq of the record at `offset`.
    seq: u64,
    /// The first seq of the segment read.
    segment: u64,
    file: File,
    offset: u64,
}

pub(super) struct Journal {
    dir: PathBuf,
    /// A segment is closed once it holds this many bytes ([`SEGMENT_BYTES`]).
    segment_bytes: u64,
    tail: Mutex<Tail>,
    /// The seq the next record gets (records below it are written).
    written: AtomicU64,
    /// Records below this seq are durable.
    synced: AtomicU64,
    /// One `fdatasync` at a time; those who wait are covered by the next.
    syncing: tokio::sync::Mutex<()>,
    /// Where the worker's last committed batch left off.
    handled: Mutex<Checkpoint>,
    /// The first seq of each segment, oldest first; the last is the tail's.
    segments: Mutex<VecDeque<u64>>,
    /// Segments kept to be reused (handled ones, by the first seq they had, or zeros).
    spares: Arc<Mutex<Vec<u64>>>,
    /// Whether spares of zeros are written when needed (see the module's doc).
    zero_spares: bool,
    /// Whether they are being written.
    zeroing: Arc<std::sync::atomic::AtomicBool>,
    cursor: Mutex<Option<Cursor>>,
    /// Damage found and skipped, not yet told ([`Journal::take_damage`]).
    damage: Mutex<Vec<Damage>>,
}

fn journal_error(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Journal(format!("{what}: {e}"))
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.log"))
}

fn spare_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.spare"))
}

fn zeroing_path(dir: &Path, name: u64) -> PathBuf {
    dir.join(format!("{name:020}.zeroing"))
}

/// Writes spares of zeros, `bytes` each, until there are [`SPARES`] (see the module's doc).
/// Their names count down from `u64::MAX`, clear of the seqs that name the others.
fn write_zeroed_spares(dir: &Path, bytes: u64, spares: &Mutex<Vec<u64>>) -> io::Result<()> {
    let zeros = vec![0u8; 1 << 20];
    let mut name = u64::MAX;
    while spares.lock().len() < SPARES {
        while spares.lock().contains(&name) {
            name -= 1;
        }
        let path = zeroing_path(dir, name);
        let file = File::create(&path)?;
        let mut at = 0;
        while at < bytes {
            let n = zeros.len().min((bytes - at) as usize);
            file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        file.sync_all()?;
        std::fs::rename(&path, spare_path(dir, name))?;
        sync_dir(dir)?;
        spares.lock().push(name);
    }
    Ok(())
}

/// The files in `dir` named `<number><suffix>`, by number: the segments (`.log`) or the
/// spares (`.spare`).
fn list_numbered(dir: &Path, suffix: &str) -> Result<Vec<u64>, StoreError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| journal_error("cannot list the journal", e))? {
        let name = entry.map_err(|e| journal_error("cannot list the journal", e))?.file_name();
        let name = name.to_string_lossy();
        if let Some(first) = name.strip_suffix(suffix).and_then(|n| n.parse::<u64>().ok()) {
            out.push(first);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Keeps a handled segment as a spare, or deletes it if there are [`SPARES`] already. The
/// caller syncs the directory.
fn retire(dir: &Path, first: u64, spares: &mut Vec<u64>) -> Result<(), StoreError> {
    if spares.len() < SPARES {
        std::fs::rename(segment_path(dir, first), spare_path(dir, first))
            .map_err(|e| journal_error("cannot keep a handled segment", e))?;
        spares.push(first);
    } else {
        std::fs::remove_file(segment_path(dir, first)).map_err(|e| journal_error("cannot delete a segment", e))?;
    }
    Ok(())
}

/// Makes the directory's entries (a segment created or removed) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// What is at `offset` of a segment.
enum Read {
    Record(Vec<u8>),
    /// Nothing more: the segment ends here.
    End,
    /// A record cut short, or whose payload does not match its checksum.
    Damaged(String),
}

/// What is at `offset` of a segment. `size`: the segment's size, when what it holds is not
/// known to be whole (when the journal opens), so that a damaged length allocates nothing
/// past it; `None` for records this process wrote or read whole before.
fn read_at(file: &File, offset: u64, size: Option<u64>) -> io::Result<Read> {
    let mut header = [0u8; HEADER];
    let got = read_up_to(file, &mut header, offset)?;
    if got == 0 {
        return Ok(Read::End);
    }
    if got < HEADER {
        return Ok(Read::Damaged(format!("a record header cut short at byte {offset}")));
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len == 0 {
        // No record is empty: these are the zeros of a spare (see the module's doc).
        return Ok(Read::End);
    }
    let left = size.map(|s| s.saturating_sub(offset + HEADER as u64)).unwrap_or(u64::MAX);
    if len as u64 > left {
        return Ok(Read::Damaged(format!("a record cut short at byte {offset} ({left} of {len} bytes)")));
    }
    let mut payload = vec![0u8; len];
    read_up_to(file, &mut payload, offset + HEADER as u64)?;
    if crc32fast::hash(&payload) != crc {
        return Ok(Read::Damaged(format!("the record at byte {offset} does not match its checksum")));
    }
    Ok(Read::Record(payload))
}

/// Reads into `buf` from `offset` until it is full or the file ends; returns the bytes read.
fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The next whole record after damage at `offset`: the first byte offset past it where a
/// record header's payload matches its checksum and is a record numbered `above` or more.
/// Returns its offset and payload. Reads at most to `size`.
fn next_whole_record(file: &File, offset: u64, size: u64, above: u64) -> io::Result<Option<(u64, Vec<u8>, u64)>> {
    let mut at = offset + 1;
    while at + HEADER as u64 <= size {
        let mut header = [0u8; HEADER + 1];
        if read_up_to(file, &mut header, at)? < HEADER + 1 {
            return Ok(None);
        }
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as u64;
        // A record's payload is a JSON object.
        if header[HEADER] == b'{' && len > 0 && at + HEADER as u64 + len <= size {
            let crc = u32::from_le_bytes(header[4..HEADER].try_into().expect("4 bytes"));
            let mut payload = vec![0u8; len as usize];
            read_up_to(file, &mut payload, at + HEADER as u64)?;
            if crc32fast::hash(&payload) == crc
                && let Ok(head) = serde_json::from_slice::<RecordHead>(&payload)
                && head.seq >= above
            {
                return Ok(Some((at, payload, head.seq)));
            }
        }
        at += 1;
    }
    Ok(None)
}

/// Where damage of a segment is kept: `journal-damaged/` beside the journal's directory.
fn damage_path(dir: &Path, segment: u64, byte: u64) -> PathBuf {
    let beside = dir.parent().unwrap_or(dir).join("journal-damaged");
    beside.join(format!("{segment:020}-at-{byte}.bin"))
}

/// Copies bytes `from..to` of a segment aside (unless done before: then `None`, it was
/// told already).
fn keep_aside(dir: &Path, file: &File, segment: u64, from: u64, to: u64) -> Result<Option<PathBuf>, StoreError> {
    let path = damage_path(dir, segment, from);
    if path.exists() {
        return Ok(None);
    }
    let mut bytes = vec![0u8; to.saturating_sub(from) as usize];
    read_up_to(file, &mut bytes, from).map_err(|e| journal_error("cannot read damage", e))?;
    let parent = path.parent().expect("a file in a directory");
    std::fs::create_dir_all(parent).map_err(|e| journal_error("cannot keep damage aside", e))?;
    std::fs::write(&path, &bytes).map_err(|e| journal_error("cannot keep damage aside", e))?;
    File::open(&path).and_then(|f| f.sync_all()).map_err(|e| journal_error("cannot keep damage aside", e))?;
    Ok(Some(path))
}

/// Damage at bytes `from..to` of segment `first`, where records `lost` could not be read:
/// kept aside and logged, and its report returned; `None` when it was kept before (found
/// again at a later start, or by the worker's read after the open's).
#[allow(clippy::too_many_arguments)]
fn note_damage(
    dir: &Path,
    file: &File,
    first: u64,
    from: u64,
    to: u64,
    lost: std::ops::Range<u64>,
    handled_below: u64,
    why: String,
) -> Result<Option<Damage>, StoreError> {
    let Some(kept_in) = keep_aside(dir, file, first, from, to)? else { return Ok(None) };
    let report = Damage {
        kept_in,
        segment: segment_path(dir, first),
        byte: from,
        from: lost.start,
        to: lost.end,
        handled_below,
        why,
    };
    tracing::error!(segment = %report.segment.display(), byte = from, kept_in = %report.kept_in.display(), lost = ?report.unhandled(), why = %report.why, "the journal is damaged: the damaged bytes are kept aside and the records after them handled");
    Ok(Some(report))
}

impl Journal {
    /// Opens the journal in `dir` (creating it), given how far the worker got. Segments
    /// wholly handled are kept as spares or deleted (a crash can leave one behind); the
    /// journal ends before a record cut short at the end of the last segment.
    pub(super) fn open(dir: &Path, handled: Checkpoint) -> Result<Opened, StoreError> {
        Self::open_with(dir, handled, SEGMENT_BYTES, true)
    }

    /// [`Journal::open`] with segments of `segment_bytes`, and spares of zeros written when
    /// needed if `zero_spares` (see the module's doc).
    fn open_with(dir: &Path, handled: Checkpoint, segment_bytes: u64, zero_spares: bool) -> Result<Opened, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| journal_error("cannot create the journal", e))?;
        let mut segments: VecDeque<u64> = list_numbered(dir, ".log")?.into();
        let mut spares = list_numbered(dir, ".spare")?;
        for name in list_numbered(dir, ".zeroing")? {
            // Cut short by a stop: not a spare.
            std::fs::remove_file(zeroing_path(dir, name)).map_err(|e| journal_error("cannot delete a segment", e))?;
        }
        // A segment is handled when the next one begins at or before the checkpoint.
        while segments.len() > 1 && segments[1] <= handled.seq {
            let gone = segments.pop_front().expect("two at least");
            retire(dir, gone, &mut spares)?;
        }
        let mut unhandled = Vec::new();
        let mut bot = Vec::new();
        let mut damaged = Vec::new();
        let mut next = handled.seq;
        let mut tail_len = 0;
        let count = segments.len();
        for (i, &first) in segments.iter().enumerate() {
            let last = i + 1 == count;
            let path = segment_path(dir, first);
            let file = File::options()
                .read(true)
                .write(last)
                .open(&path)
                .map_err(|e| journal_error("cannot open a segment", e))?;
            let size = file.metadata().map_err(|e| journal_error("cannot open a segment", e))?.len();
            let mut offset = 0u64;
            let mut expected = first;
            // A closed segment's records end where the next segment's begin: what follows
            // them, in a reused segment, is older data.
            let ends_at = segments.get(i + 1).copied();
            loop {
                if ends_at.is_some_and(|next| expected >= next) {
                    break;
                }
                let read = read_at(&file, offset, Some(size)).map_err(|e| journal_error("cannot read a segment", e))?;
                // The record's head and length, or why what is here is damage.
                let whole = match read {
                    Read::End => break,
                    Read::Damaged(why) => Err(why),
                    Read::Record(p) => match serde_json::from_slice::<RecordHead>(&p) {
                        // An older record of a reused segment: the journal ends before it.
                        Ok(head) if last && head.seq < expected => break,
                        Ok(head) if head.seq == expected => Ok((head, p.len())),
                        Ok(head) => {
                            Err(format!("the record at byte {offset} is number {}, {expected} was expected", head.seq))
                        }
                        Err(e) => Err(format!("the record at byte {offset} cannot be read: {e}")),
                    },
                };
                let (head, len) = match whole {
                    Ok(whole) => whole,
                    Err(why) => {
                        // Damage: go on from the next whole record, if one follows.
                        let found = next_whole_record(&file, offset, size, expected + 1)
                            .map_err(|e| journal_error("cannot read a segment", e))?
                            .filter(|(_, _, seq)| ends_at.is_none_or(|next| *seq < next));
                        let (to, to_seq) = match found {
                            Some((at, _, seq)) => (at, seq),
                            None if last => {
                                tracing::info!(segment = %path.display(), offset, %why, "the journal ends here: what follows is a record cut short by a crash (never acknowledged) or the older data of a reused segment, and is written over");
                                break;
                            }
                            None => (size, ends_at.expect("not the last segment")),
                        };
                        damaged.extend(note_damage(dir, &file, first, offset, to, expected..to_seq, handled.seq, why)?);
                        if found.is_none() {
                            break;
                        }
                        (offset, expected) = (to, to_seq);
                        continue;
                    }
                };
                if head.seq >= handled.seq {
                    bot.extend(head.bot);
                    let txn = match (head.origin, head.body_hash.as_deref().and_then(parse_hash)) {
                        (Origin::Push { txn_id }, Some(hash)) => Some((txn_id, hash)),
                        _ => None,
                    };
                    unhandled.push(UnhandledRecord {
                        seq: head.seq,
                        events: head.events.len(),
                        knockers: head.knockers,
                        txn,
                    });
                }
                offset += (HEADER + len) as u64;
                expected += 1;
            }
            if last {
                next = expected;
                tail_len = offset;
            }
        }
        // The checkpoint ahead of the journal: its segments were lost. Number on from the
        // checkpoint in a segment of its own, so nothing new is taken for handled.
        if next < handled.seq {
            tracing::warn!(
                journal = next,
                checkpoint = handled.seq,
                "the journal ends before the worker's checkpoint (segments were removed?); starting a new segment"
            );
            next = handled.seq;
        }
        let tail = match segments.back() {
            Some(&first) if tail_len > 0 || first == next => {
                let file = File::options()
                    .read(true)
                    .write(true)
                    .open(segment_path(dir, first))
                    .map_err(|e| journal_error("cannot open a segment", e))?;
                let size = file.metadata().map_err(|e| journal_error("cannot open a segment", e))?.len();
                Tail { file: Arc::new(file), len: tail_len, in_place: size > tail_len }
            }
            _ => {
                let (file, in_place) = begin_segment(dir, next, &mut spares)?;
                segments.push_back(next);
                Tail { file: Arc::new(file), len: 0, in_place }
            }
        };
        sync_dir(dir).map_err(|e| journal_error("cannot sync the journal's directory", e))?;
        let journal = Journal {
            dir: dir.to_owned(),
            segment_bytes,
            tail: Mutex::new(tail),
            written: AtomicU64::new(next),
            synced: AtomicU64::new(next),
            syncing: tokio::sync::Mutex::new(()),
            handled: Mutex::new(handled),
            segments: Mutex::new(segments),
            spares: Arc::new(Mutex::new(spares)),
            zero_spares,
            zeroing: Default::default(),
            cursor: Mutex::new(None),
            damage: Mutex::new(damaged),
        };
        Ok(Opened { journal, bot, unhandled })
    }

    /// Appends a record: `build` gets its seq and returns its payload; `appended` hears its
    /// seq once it is written, before the worker can read it. Not durable until
    /// [`Journal::sync`].
    pub(super) fn append(
        &self,
        build: impl FnOnce(u64) -> Vec<u8>,
        appended: impl FnOnce(u64),
    ) -> Result<u64, StoreError> {
        let mut tail = self.tail.lock();
        let seq = self.written.load(SeqCst);
        let framed = frame(&build(seq));
        let full = tail.len + framed.len() as u64 > self.segment_bytes;
        if tail.len > 0 && (full || (!tail.in_place && !self.spares.lock().is_empty())) {
            self.rotate(&mut tail, seq)?;
        }
        // A write that fails leaves `len` where it was: the next record overwrites what it
        // left.
        tail.file.write_all_at(&framed, tail.len).map_err(|e| journal_error("cannot append to the journal", e))?;
        tail.len += framed.len() as u64;
        // Heard before the record can be read, so the worker cannot be done with it first.
        appended(seq);
        self.written.store(seq + 1, SeqCst);
        Ok(seq)
    }

    /// Closes the tail (synced: everything in it is durable) and begins a segment at `seq`:
    /// a spare, or a new file (and then spares of zeros are written for the next).
    fn rotate(&self, tail: &mut Tail, seq: u64) -> Result<(), StoreError> {
        tail.file.sync_data().map_err(|e| journal_error("cannot sync a segment", e))?;
        self.synced.fetch_max(seq, SeqCst);
        let (file, in_place) = begin_segment(&self.dir, seq, &mut self.spares.lock())?;
        self.segments.lock().push_back(seq);
        *tail = Tail { file: Arc::new(file), len: 0, in_place };
        if !in_place {
            self.write_spares();
        }
        Ok(())
    }

    /// Starts a thread that writes spares of zeros, unless one is at it.
    fn write_spares(&self) {
        if !self.zero_spares || self.zeroing.swap(true, SeqCst) {
            return;
        }
        let (dir, bytes, spares, zeroing) =
            (self.dir.clone(), self.segment_bytes, self.spares.clone(), self.zeroing.clone());
        let started = std::thread::Builder::new().name("journal-spares".into()).spawn(move || {
            if let Err(e) = write_zeroed_spares(&dir, bytes, &spares) {
                // Not needed for anything but speed: the journal appends meanwhile.
                tracing::warn!(error = %e, "cannot write the journal's spare segments; it appends to new ones");
            }
            zeroing.store(false, SeqCst);
        });
        if started.is_err() {
            self.zeroing.store(false, SeqCst);
        }
    }

    /// Makes record `seq` (and every one before it) durable: one `fdatasync` at a time, on a
    /// blocking thread, covering every record written before it began.
    pub(super) async fn sync(&self, seq: u64) -> Result<(), StoreError> {
        if self.synced.load(SeqCst) > seq {
            return Ok(());
        }
        let _one = self.syncing.lock().await;
        if self.synced.load(SeqCst) > seq {
            return Ok(());
        }
        let (file, upto) = {
            let tail = self.tail.lock();
            (tail.file.clone(), self.written.load(SeqCst))
        };
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(|e| journal_error("the sync thread failed", e))?
            .map_err(|e| journal_error("cannot sync the journal", e))?;
        self.synced.fetch_max(upto, SeqCst);
        Ok(())
    }

    /// [`Journal::sync`] of everything written, blocking (shutdown, synchronous callers).
    pub(super) fn sync_blocking(&self) -> Result<(), StoreError> {
        let tail = self.tail.lock();
        let upto = self.written.load(SeqCst);
        tail.file.sync_data().map_err(|e| journal_error("cannot sync the journal", e))?;
        self.synced.fetch_max(upto, SeqCst);
        Ok(())
    }

    /// The first durable record at or after `seq`, if any (the worker's read). Damage is
    /// skipped (see the module's doc).
    pub(super) fn read(&self, seq: u64) -> Result<Option<JournalRecord>, StoreError> {
        if seq >= self.synced.load(SeqCst) {
            return Ok(None);
        }
        let mut cursor = self.cursor.lock();
        if cursor.as_ref().is_none_or(|c| c.seq > seq) {
            *cursor = Some(self.seek(seq)?);
        }
        let c = cursor.as_mut().expect("just set");
        loop {
            // Past the last record of a closed segment (older data may follow it there).
            let next = self.segments.lock().iter().copied().find(|&s| s > c.segment);
            if let Some(next) = next
                && c.seq >= next
            {
                *c = self.open_cursor(next)?;
                continue;
            }
            let read = read_at(&c.file, c.offset, None).map_err(|e| journal_error("cannot read the journal", e))?;
            let damage = match read {
                Read::Record(payload) => match serde_json::from_slice::<JournalRecord>(&payload) {
                    Ok(record) => {
                        c.offset += (HEADER + payload.len()) as u64;
                        c.seq += 1;
                        if record.seq >= self.synced.load(SeqCst) {
                            // Past a gap in the numbering, and not durable yet: read again later.
                            *cursor = None;
                            return Ok(None);
                        }
                        if record.seq >= seq {
                            c.seq = record.seq + 1;
                            return Ok(Some(record));
                        }
                        continue;
                    }
                    Err(e) => format!("the record at byte {} cannot be read: {e}", c.offset),
                },
                Read::End => match next {
                    Some(next) => {
                        *c = self.open_cursor(next)?;
                        continue;
                    }
                    None => return Ok(None),
                },
                Read::Damaged(why) => why,
            };
            if !self.skip_damage(c, next, damage)? {
                return Ok(None);
            }
        }
    }

    /// Moves the cursor past damage at its offset, to the next whole record of its segment
    /// (or to the next segment); keeps the damaged bytes aside and reports them, once.
    /// Returns false when no whole record follows in the last segment (read again later).
    fn skip_damage(&self, c: &mut Cursor, next_segment: Option<u64>, why: String) -> Result<bool, StoreError> {
        let size = c.file.metadata().map_err(|e| journal_error("cannot read the journal", e))?.len();
        let found = next_whole_record(&c.file, c.offset, size, c.seq + 1)
            .map_err(|e| journal_error("cannot read the journal", e))?
            .filter(|(_, _, seq)| next_segment.is_none_or(|next| *seq < next));
        // Where the damage ends, the record read next, and whether it is in this segment.
        let (to, to_seq, here) = match (found, next_segment) {
            (Some((at, _, seq)), _) => (at, seq, true),
            (None, Some(next)) => (size, next, false),
            (None, None) => return Ok(false),
        };
        let handled_below = self.handled.lock().seq;
        let report = note_damage(&self.dir, &c.file, c.segment, c.offset, to, c.seq..to_seq, handled_below, why)?;
        self.damage.lock().extend(report);
        if here {
            c.offset = to;
            c.seq = to_seq;
        } else {
            *c = self.open_cursor(to_seq)?;
        }
        Ok(true)
    }

    /// The damage found and skipped since the last call (to be told).
    pub(super) fn take_damage(&self) -> Vec<Damage> {
        std::mem::take(&mut *self.damage.lock())
    }

    /// A cursor at the start of the segment that holds `seq`.
    fn seek(&self, seq: u64) -> Result<Cursor, StoreError> {
        let first = {
            let segments = self.segments.lock();
            segments.iter().copied().rev().find(|&s| s <= seq).or_else(|| segments.front().copied())
        };
        self.open_cursor(first.unwrap_or(seq))
    }

    fn open_cursor(&self, first: u64) -> Result<Cursor, StoreError> {
        let file = File::open(segment_path(&self.dir, first)).map_err(|e| journal_error("cannot open a segment", e))?;
        Ok(Cursor { seq: first, segment: first, file, offset: 0 })
    }

    /// The worker's batch up to `upto` is committed: the segments it
    /// finished are deleted once `make_durable` has made the checkpoint durable in sled.
    pub(super) fn handled(
        &self,
        upto: Checkpoint,
        make_durable: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        *self.handled.lock() = upto;
        let finished: Vec<u64> = {
            let segments = self.segments.lock();
            segments
                .iter()
                .zip(segments.iter().skip(1))
                .take_while(|(_, next)| **next <= upto.seq)
                .map(|(s, _)| *s)
                .collect()
        };
        if finished.is_empty() {
            return Ok(());
        }
        make_durable()?;
        for first in finished {
            retire(&self.dir, first, &mut self.spares.lock())?;
            self.segments.lock().retain(|&s| s != first);
        }
        sync_dir(&self.dir).map_err(|e| journal_error("cannot sync the journal's directory", e))?;
        Ok(())
    }

    /// Where the worker's last committed batch left off.
    pub(super) fn checkpoint(&self) -> Checkpoint {
        *self.handled.lock()
    }

    /// Records written and not handled yet.
    pub(super) fn pending(&self) -> u64 {
        self.written.load(SeqCst).saturating_sub(self.handled.lock().seq)
    }

    /// The segments on disk, by first seq.
    #[cfg(test)]
    fn segments(&self) -> Vec<u64> {
        self.segments.lock().iter().copied().collect()
    }
}

fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    hex::decode(hex).ok()?.try_into().ok()
}

/// Begins the segment whose first record is `first`: a spare renamed, if there is one (its
/// records are then written over what it holds: `true`), or a new file. Its name is durable
/// when this returns.
fn begin_segment(dir: &Path, first: u64, spares: &mut Vec<u64>) -> Result<(File, bool), StoreError> {
    let path = segment_path(dir, first);
    let spare = spares.pop();
    if let Some(spare) = spare {
        std::fs::rename(spare_path(dir, spare), &path).map_err(|e| journal_error("cannot reuse a segment", e))?;
    }
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| journal_error("cannot create a segment", e))?;
    sync_dir(dir).map_err(|e| journal_error("cannot sync the journal's directory", e))?;
    Ok((file, spare.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(j: &Journal, n: usize, knocker: &str) -> u64 {
        j.append(
            |seq| {
                let record = JournalRecord {
                    seq,
                    received_ms: 1,
                    origin: Origin::Push { txn_id: format!("t{seq}") },
                    body_hash: Some(hex::encode([seq as u8; 32])),
                    events: vec![serde_json::value::to_raw_value(&"x".repeat(n)).unwrap()],
                    knockers: vec![knocker.to_owned()],
                    bot: vec![],
                };
                serde_json::to_vec(&record).unwrap()
            },
            |_| {},
        )
        .unwrap()
    }

    /// A journal in `dir` holding one durable record (10 events, knocker `@a:x`), closed.
    fn one_record_written(dir: &Path) {
        let j = Journal::open(dir, Checkpoint::default()).unwrap().journal;
        append(&j, 10, "@a:x");
        j.sync_blocking().unwrap();
    }

    fn seqs(j: &Journal, from: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut at = from;
        while let Some(r) = j.read(at).unwrap() {
            out.push(r.seq);
            at = r.seq + 1;
        }
        out
    }

    #[test]
    fn records_are_read_in_order_once_durable_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), Checkpoint::default()).unwrap().journal;
        for k in ["@a:x", "@b:x", "@c:x"] {
            append(&j, 10, k);
        }
        assert!(j.read(0).unwrap().is_none(), "not durable yet");
        j.sync_blocking().unwrap();
        assert_eq!(seqs(&j, 0), [0, 1, 2]);
        assert_eq!(seqs(&j, 1), [1, 2], "a read behind the cursor seeks back");
        drop(j);
        let opened = Journal::open(dir.path(), Checkpoint { seq: 1, event: 0 }).unwrap();
        let j = opened.journal;
        assert_eq!(seqs(&j, 1), [1, 2]);
        assert_eq!(j.pending(), 2);
        // What the intake remembers: the records not handled, with their knockers and
        // transactions.
        let unhandled: Vec<_> = opened.unhandled.iter().map(|r| (r.seq, r.knockers.clone(), r.txn.clone())).collect();
        assert_eq!(
            unhandled,
            [
                (1, vec!["@b:x".to_owned()], Some(("t1".to_owned(), [1; 32]))),
                (2, vec!["@c:x".to_owned()], Some(("t2".to_owned(), [2; 32])))
            ]
        );
        assert_eq!(append(&j, 10, "@d:x"), 3);
    }

    #[test]
    fn a_record_cut_short_by_a_crash_is_written_over() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), Checkpoint::default()).unwrap().journal;
        append(&j, 10, "@a:x");
        append(&j, 10, "@b:x");
        j.sync_blocking().unwrap();
        let path = segment_path(dir.path(), 0);
        let whole = std::fs::metadata(&path).unwrap().len();
        drop(j);
        // Half of a third record, as a crash in the middle of its write leaves it.
        let third = frame(br#"{"seq":2,"received_ms":1,"origin":{"kind":"push","txn_id":"t"},"events":[]}"#);
        let file = File::options().write(true).open(&path).unwrap();
        file.write_all_at(&third[..third.len() / 2], whole).unwrap();
        let j = Journal::open(dir.path(), Checkpoint::default()).unwrap().journal;
        j.sync_blocking().unwrap();
        assert_eq!(seqs(&j, 0), [0, 1]);
        assert_eq!(append(&j, 10, "@c:x"), 2, "numbered on from the last whole record");
        j.sync_blocking().unwrap();
        assert_eq!(seqs(&j, 0), [0, 1, 2]);
        drop(j);
        let j = Journal::open(dir.path(), Checkpoint::default()).unwrap().journal;
        assert_eq!(seqs(&j, 0), [0, 1, 2], "the half record is written over");
    }

    fn spares(dir: &Path) -> usize {
        list_numbered(dir, ".spare").unwrap().len()
    }

    /// A new journal in `dir` with segments of `segment_bytes` (no spares of zeros), holding
    /// `n` durable records of `len` characters each (knockers `@u0:x`, `@u1:x`...).
    fn filled(dir: &Path, segment_bytes: u64, n: usize, len: usize) -> Journal {
        let j = Journal::open_with(dir, Checkpoint::default(), segment_bytes, false).unwrap().journal;
        for i in 0..n {
            append(&j, len, &format!("@u{i}:x"));
        }
        j.sync_blocking().unwrap();
        j
    }

    #[test]
    fn handled_segments_are_reused_and_their_older_records_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let j = filled(dir.path(), 1_000, 12, 300);
        let tail = *j.segments().last().unwrap();
        let at = Checkpoint { seq: tail, event: 0 };
        j.handled(at, || Ok(())).unwrap();
        assert_eq!(spares(dir.path()), SPARES, "kept to be reused; the others deleted");
        assert_eq!(list_numbered(dir.path(), ".log").unwrap(), [tail]);
        // Shorter records now: the reused segments hold more of them, over longer older ones.
        for i in 12..40 {
            append(&j, 20, &format!("@v{i}:x"));
        }
        j.sync_blocking().unwrap();
        assert_eq!(spares(dir.path()), 0, "taken");
        assert_eq!(seqs(&j, tail), (tail..40).collect::<Vec<_>>());
        drop(j);
        let j = Journal::open_with(dir.path(), at, 1_000, false).unwrap().journal;
        assert_eq!(seqs(&j, tail), (tail..40).collect::<Vec<_>>());
        assert_eq!(j.pending(), 40 - tail);
        assert_eq!(append(&j, 20, "@w:x"), 40);
    }

    #[test]
    fn a_busy_journal_writes_spares_of_zeros_and_moves_onto_them() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open_with(dir.path(), Checkpoint::default(), 1_000, true).unwrap().journal;
        // The first segment fills and a new one begins, with no spare: zeros are written.
        for i in 0..4 {
            append(&j, 300, &format!("@u{i}:x"));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while spares(dir.path()) < SPARES || j.zeroing.load(SeqCst) {
            assert!(std::time::Instant::now() < deadline, "no spares written");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(list_numbered(dir.path(), ".zeroing").unwrap().is_empty());
        // The tail, a new file, is left for the first spare at once.
        let seq = append(&j, 20, "@a:x");
        assert_eq!(j.segments().last(), Some(&seq));
        assert_eq!(spares(dir.path()), SPARES - 1);
        assert_eq!(std::fs::metadata(segment_path(dir.path(), seq)).unwrap().len(), 1_000, "written over in place");
        j.sync_blocking().unwrap();
        assert_eq!(seqs(&j, 0), (0..=seq).collect::<Vec<_>>());
        drop(j);
        // A spare cut short by a stop is not taken for one.
        std::fs::write(zeroing_path(dir.path(), 7), [0u8; 10]).unwrap();
        let j = Journal::open_with(dir.path(), Checkpoint::default(), 1_000, true).unwrap().journal;
        assert!(list_numbered(dir.path(), ".zeroing").unwrap().is_empty() && spares(dir.path()) == SPARES - 1);
        assert_eq!(seqs(&j, 0), (0..=seq).collect::<Vec<_>>(), "the zeros after the last record end it");
        assert_eq!(append(&j, 20, "@b:x"), seq + 1);
    }

    #[test]
    fn a_reused_last_segment_ends_at_its_own_records() {
        let dir = tempfile::tempdir().unwrap();
        let j = filled(dir.path(), 700, 6, 150);
        assert_eq!(j.segments(), [0, 2, 4], "two records a segment");
        j.handled(Checkpoint { seq: 4, event: 0 }, || Ok(())).unwrap();
        assert_eq!(spares(dir.path()), 2);
        // Record 6 begins a reused segment, over an older record of the same length: the
        // other older record follows it whole, its checksum good, numbered below.
        assert_eq!(append(&j, 150, "@x6:x"), 6);
        j.sync_blocking().unwrap();
        assert_eq!(j.segments(), [4, 6]);
        drop(j);
        let at = Checkpoint { seq: 4, event: 0 };
        let j = Journal::open_with(dir.path(), at, 700, false).unwrap().journal;
        assert_eq!(seqs(&j, 4), [4, 5, 6]);
        assert_eq!(j.pending(), 3);
        // The next is written over the older record; a shorter one leaves part of it behind.
        assert_eq!(append(&j, 10, "@b:x"), 7);
        j.sync_blocking().unwrap();
        drop(j);
        let j = Journal::open_with(dir.path(), at, 700, false).unwrap().journal;
        assert_eq!(seqs(&j, 4), [4, 5, 6, 7]);
        assert_eq!(append(&j, 10, "@c:x"), 8);
    }

    #[test]
    fn a_damaged_length_is_a_record_cut_short_not_an_allocation() {
        let dir = tempfile::tempdir().unwrap();
        one_record_written(dir.path());
        let path = segment_path(dir.path(), 0);
        let file = File::options().read(true).write(true).open(&path).unwrap();
        let end = file.metadata().unwrap().len();
        file.write_all_at(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], end).unwrap();
        match read_at(&file, end, Some(file.metadata().unwrap().len())).unwrap() {
            Read::Damaged(why) => assert!(why.contains("cut short"), "{why}"),
            _ => panic!("not read as damaged"),
        }
        let j = Journal::open(dir.path(), Checkpoint::default()).unwrap().journal;
        j.sync_blocking().unwrap();
        assert_eq!(seqs(&j, 0), [0]);
    }

    #[test]
    fn damage_in_a_closed_segment_is_kept_aside_and_the_rest_read() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("journal");
        let j = Journal::open_with(&dir, Checkpoint::default(), 200, false).unwrap().journal;
        for k in ["@a:x", "@b:x", "@c:x"] {
            append(&j, 150, k);
        }
        j.sync_blocking().unwrap();
        assert_eq!(j.segments(), [0, 1, 2], "one record a segment");
        drop(j);
        let path = segment_path(&dir, 1);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 20] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        // Opens (twice: no numbering trap), and reads what follows the damage.
        for open in 0..2 {
            let opened = Journal::open(&dir, Checkpoint::default()).unwrap();
            let damage = opened.journal.take_damage();
            if open == 0 {
                assert_eq!(damage.len(), 1, "{damage:?}");
                let d = &damage[0];
                assert_eq!((d.from, d.to, d.byte), (1, 2, 0));
                assert_eq!(d.unhandled(), 1..2);
                assert!(d.why.contains("does not match its checksum"), "{}", d.why);
                assert!(d.kept_in.starts_with(root.path().join("journal-damaged")));
                assert_eq!(std::fs::read(&d.kept_in).unwrap().len() as u64, std::fs::metadata(&path).unwrap().len());
            } else {
                assert!(damage.is_empty(), "told once: {damage:?}");
            }
            assert_eq!(seqs(&opened.journal, 0), [0, 2]);
        }
    }

    #[test]
    fn a_flipped_byte_before_the_last_records_is_skipped_not_taken_for_the_end() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("journal");
        let j = Journal::open(&dir, Checkpoint::default()).unwrap().journal;
        let mut offsets = Vec::new();
        for i in 0..6 {
            offsets.push(j.tail.lock().len);
            append(&j, 20, &format!("@u{i}:x"));
        }
        j.sync_blocking().unwrap();
        drop(j);
        // A byte of record 2's payload flips.
        let path = segment_path(&dir, 0);
        let file = File::options().read(true).write(true).open(&path).unwrap();
        let mut b = [0u8; 1];
        file.read_exact_at(&mut b, offsets[2] + HEADER as u64 + 5).unwrap();
        file.write_all_at(&[b[0] ^ 0x20], offsets[2] + HEADER as u64 + 5).unwrap();
        drop(file);
        let mut expected = vec![0, 1, 3, 4, 5];
        for open in 0..2u64 {
            let opened = Journal::open(&dir, Checkpoint::default()).unwrap();
            let damage = opened.journal.take_damage();
            assert_eq!(damage.len(), usize::from(open == 0), "{damage:?}");
            opened.journal.sync_blocking().unwrap();
            assert_eq!(seqs(&opened.journal, 0), expected, "the records after the damage are read");
            expected.push(6 + open);
            let knockers: Vec<String> = opened.unhandled.iter().flat_map(|r| r.knockers.clone()).collect();
            assert!(knockers.contains(&"@u5:x".to_owned()) && !knockers.contains(&"@u2:x".to_owned()));
            // New records number on after the last.
            assert_eq!(append(&opened.journal, 20, "@new:x"), 6 + open);
            opened.journal.sync_blocking().unwrap();
        }
        let opened = Journal::open(&dir, Checkpoint::default()).unwrap();
        assert_eq!(seqs(&opened.journal, 0), [0, 1, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn segments_roll_over_and_go_once_handled_and_durable() {
        let dir = tempfile::tempdir().unwrap();
        let j = filled(dir.path(), 1_000, 10, 300);
        let segments = j.segments();
        assert!(segments.len() >= 4, "{segments:?}");
        assert_eq!(seqs(&j, 0), (0..10).collect::<Vec<_>>(), "read across segments");
        // Handled into the third segment: the first two go, after the checkpoint is durable.
        let at = Checkpoint { seq: segments[2] + 1, event: 0 };
        let mut durable = 0;
        j.handled(at, || {
            durable += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(durable, 1);
        assert_eq!(j.segments(), segments[2..]);
        assert!(!segment_path(dir.path(), segments[0]).exists());
        // Nothing more to delete: durability is not asked for again.
        j.handled(at, || panic!("not needed")).unwrap();
        drop(j);
        let j = Journal::open_with(dir.path(), at, 1_000, false).unwrap().journal;
        assert_eq!(seqs(&j, at.seq), (at.seq..10).collect::<Vec<_>>());
        assert_eq!(j.pending(), 10 - at.seq);
    }

    #[test]
    fn a_checkpoint_past_the_journal_numbers_on_from_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        one_record_written(dir.path());
        let j = Journal::open(dir.path(), Checkpoint { seq: 40, event: 0 }).unwrap().journal;
        assert_eq!(append(&j, 10, "@b:x"), 40, "nothing new is taken for handled");
        j.sync_blocking().unwrap();
        assert_eq!(seqs(&j, 40), [40]);
    }
}
