//! The audit queue on disk, so that a killed bridge loses no record and writes none twice.
//!
//! Every record is appended here (one JSON line, one `write`) before the message it
//! describes is acknowledged to the broker. A cursor file says how many records are on chain
//! and which batch is in flight under which nonce:
//!
//! - A record cut short by a crash is dropped on load; its message was not acknowledged, so
//!   the broker hands it over again.
//! - A batch in flight at a crash is sent again under the **same nonce**, so at most one of
//!   its copies can land. The bridge's finalized nonce passing it says the batch is in.
//! - A forwarded message's id is in the journal before the replay journal has it, so a
//!   restart remembers it from here too: its redelivery is forwarded again but is not a new
//!   exchange.
//!
//! Hand-written for the same reason as the replay journal: append, read once, rewrite when
//! it has grown; no queries.

use std::{
    collections::{HashSet, VecDeque},
    fs::{File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    record::{self, Logged, Record},
    replay::{replace_file, JournalError, Seen},
};

const WHAT: &str = "audit journal";

/// Records already on chain that are kept, newest last: enough to recognise the broker's
/// redeliveries after a restart (at most its in-flight window per client).
const KEEP_COMMITTED: usize = 4096;

/// One journaled record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    seq: u64,
    /// The envelope the record is about.
    envelope_hash: [u8; 32],
    /// For a forwarded envelope: its message id and when the id leaves the replay window.
    forwarded: Option<([u8; 16], u64)>,
    record: Record,
}

/// A batch whose nonce is fixed: every copy sent is signed with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// One past the last record's sequence number.
    pub end: u64,
    pub nonce: u64,
    /// The finalized block the latest copy was signed at: copies die 32 blocks after it.
    pub signed_at: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    /// Records with a smaller sequence number are on chain.
    committed: u64,
    in_flight: Option<InFlight>,
}

/// The next records to write, as log entries, and the nonce they are pinned to if they were
/// sent before.
#[derive(Debug, PartialEq, Eq)]
pub struct Batch {
    /// One past the last journaled record's sequence number.
    pub end: u64,
    pub logged: Vec<Logged>,
    pub in_flight: Option<InFlight>,
}

/// What the journal remembered at open.
pub struct Restored {
    /// Forwarded message ids still inside the replay window.
    pub forwarded: Vec<Seen>,
    /// Records not yet on chain.
    pub pending: usize,
}

/// The open journal.
pub struct AuditJournal {
    path: PathBuf,
    cursor_path: PathBuf,
    file: File,
    cursor: Cursor,
    next_seq: u64,
    pending: VecDeque<Entry>,
    committed: VecDeque<Entry>,
    /// Envelope hashes of the records in `pending` and `committed`.
    hashes: HashSet<[u8; 32]>,
    /// Lines in the file.
    lines: usize,
    /// Bytes in the file: where a failed append is cut back to, kept here rather than asked
    /// of the file system at every append.
    len: u64,
}

impl AuditJournal {
    /// Opens (or creates) `dir/<name>` and its cursor `dir/<name>.cursor`.
    pub fn open(dir: &Path, name: &str, now_ms: u64) -> Result<(Self, Restored), JournalError> {
        let path = dir.join(name);
        let cursor_path = dir.join(format!("{name}.cursor"));
        let error = |source| JournalError::new(WHAT, &path, source);
        std::fs::create_dir_all(dir).map_err(error)?;
        let cursor: Cursor = match std::fs::read(&cursor_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                JournalError::new(
                    WHAT,
                    &cursor_path,
                    io::Error::new(io::ErrorKind::InvalidData, e),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Cursor::default(),
            Err(e) => return Err(JournalError::new(WHAT, &cursor_path, e)),
        };
        let text = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(error(e)),
        };
        // Only complete lines count: the part after the last newline is a write a crash cut.
        let complete = text
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(&text[..0], |end| &text[..end]);
        let mut entries = Vec::new();
        if !complete.is_empty() {
            for (number, line) in complete.split(|&b| b == b'\n').enumerate() {
                let entry: Entry = serde_json::from_slice(line).map_err(|e| {
                    error(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("line {}: {e}", number + 1),
                    ))
                })?;
                entries.push(entry);
            }
        }
        let mut journal = AuditJournal {
            // Appending until the compaction below replaces the file in one rename.
            file: OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(error)?,
            path,
            cursor_path,
            cursor,
            next_seq: cursor.committed,
            pending: VecDeque::new(),
            committed: VecDeque::new(),
            hashes: HashSet::new(),
            lines: 0,
            len: 0,
        };
        for entry in entries {
            journal.next_seq = journal.next_seq.max(entry.seq.saturating_add(1));
            journal.keep(entry);
        }
        let forwarded = journal
            .committed
            .iter()
            .chain(&journal.pending)
            .filter_map(|e| {
                let (message_id, expiry_ms) = e.forwarded?;
                (expiry_ms > now_ms).then_some(Seen {
                    message_id,
                    envelope_hash: e.envelope_hash,
                    expiry_ms,
                })
            })
            .collect();
        journal.compact().map_err(|e| journal.error(e))?;
        let restored = Restored {
            forwarded,
            pending: journal.pending.len(),
        };
        Ok((journal, restored))
    }

    /// Files `entry` under pending or committed, by the cursor.
    fn keep(&mut self, entry: Entry) {
        self.hashes.insert(entry.envelope_hash);
        if entry.seq >= self.cursor.committed {
            self.pending.push_back(entry);
        } else {
            self.committed.push_back(entry);
            if self.committed.len() > KEEP_COMMITTED {
                if let Some(old) = self.committed.pop_front() {
                    self.hashes.remove(&old.envelope_hash);
                }
            }
        }
    }

    fn rewrite(path: &Path, entries: &[&Entry]) -> io::Result<File> {
        replace_file(path, |out| {
            entries.iter().try_for_each(|entry| {
                serde_json::to_writer(&mut *out, entry)?;
                out.write_all(b"\n")
            })
        })?;
        OpenOptions::new().append(true).open(path)
    }

    /// Rewrites the file with just the kept records.
    fn compact(&mut self) -> io::Result<()> {
        let entries: Vec<&Entry> = self.committed.iter().chain(&self.pending).collect();
        self.file = Self::rewrite(&self.path, &entries)?;
        self.lines = entries.len();
        self.len = self.file.metadata()?.len();
        Ok(())
    }

    fn error(&self, source: io::Error) -> JournalError {
        JournalError::new(WHAT, &self.path, source)
    }

    /// Appends `record` about the envelope `envelope_hash` (and, if it was forwarded, its
    /// message id and window expiry). It reaches the operating system before this returns.
    pub fn append(
        &mut self,
        record: Record,
        envelope_hash: [u8; 32],
        forwarded: Option<([u8; 16], u64)>,
    ) -> Result<(), JournalError> {
        let entry = Entry {
            seq: self.next_seq,
            envelope_hash,
            forwarded,
            record,
        };
        let mut line = serde_json::to_vec(&entry)
            .map_err(|e| self.error(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        line.push(b'\n');
        if let Err(e) = self.file.write_all(&line) {
            // A full disk may have taken part of the line: cut it off, or the next line
            // would be glued to it and the journal would not load.
            let _ = self.file.set_len(self.len);
            return Err(self.error(e));
        }
        self.len += line.len() as u64;
        self.next_seq += 1;
        self.lines += 1;
        self.keep(entry);
        Ok(())
    }

    /// Whether a record about `envelope_hash` is in the journal (a redelivered envelope's
    /// refusal is not logged twice).
    pub fn has_record_of(&self, envelope_hash: &[u8; 32]) -> bool {
        self.hashes.contains(envelope_hash)
    }

    /// The next batch: the one in flight if there is one, else the pending records that
    /// make at most `max` log entries ([`record::group`]).
    pub fn next_batch(&self, max: usize) -> Option<Batch> {
        let (end, logged) = match self.cursor.in_flight {
            // Grouping is deterministic: every copy of a pinned batch says the same.
            Some(in_flight) => {
                let records = self
                    .pending
                    .iter()
                    .take_while(|e| e.seq < in_flight.end)
                    .map(|e| &e.record);
                (in_flight.end, record::group(records, usize::MAX).1)
            }
            None => {
                let (taken, logged) = record::group(self.pending.iter().map(|e| &e.record), max);
                (self.pending.get(taken.checked_sub(1)?)?.seq + 1, logged)
            }
        };
        Some(Batch {
            end,
            logged,
            in_flight: self.cursor.in_flight,
        })
    }

    /// Fixes the nonce of the batch ending at `end` before a copy of it is sent.
    pub fn pin(&mut self, in_flight: InFlight) -> Result<(), JournalError> {
        self.store(Cursor {
            committed: self.cursor.committed,
            in_flight: Some(in_flight),
        })
    }

    /// Forgets the pinned nonce: no copy of the batch can land any more.
    pub fn unpin(&mut self) -> Result<(), JournalError> {
        self.store(Cursor {
            committed: self.cursor.committed,
            in_flight: None,
        })
    }

    /// The batch ending at `end` is on chain.
    pub fn commit(&mut self, end: u64) -> Result<(), JournalError> {
        self.store(Cursor {
            committed: end,
            in_flight: None,
        })?;
        while self.pending.front().is_some_and(|e| e.seq < end) {
            if let Some(entry) = self.pending.pop_front() {
                self.keep(entry);
            }
        }
        if self.lines > 2 * (self.pending.len() + self.committed.len()) + KEEP_COMMITTED {
            self.compact().map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    fn store(&mut self, cursor: Cursor) -> Result<(), JournalError> {
        let error = |source| JournalError::new(WHAT, &self.cursor_path, source);
        let json = serde_json::to_vec(&cursor)
            .map_err(|e| error(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        replace_file(&self.cursor_path, |out| out.write_all(&json)).map_err(error)?;
        self.cursor = cursor;
        Ok(())
    }

    /// Puts everything appended so far on disk.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(|e| self.error(e))
    }

    /// Records not yet on chain.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The batch in flight, if any.
    pub fn in_flight(&self) -> Option<InFlight> {
        self.cursor.in_flight
    }
}

#[cfg(test)]
mod tests;
