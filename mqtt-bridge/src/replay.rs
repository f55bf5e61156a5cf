//! The replay window on disk.
//!
//! Every message id the bridge forwards is appended here with the hash of its envelope and
//! the time it leaves the window, so that a copy replayed after a restart is refused just as
//! one replayed before it. The file holds fixed-size records: a record cut short by a crash
//! is dropped on load, and expired records are dropped when the file is compacted.
//!
//! Hand-written rather than an embedded database: the file is append-only, read once at
//! start, and never queried, so a key-value store would add a dependency and a fsync per
//! write for nothing. Writes reach the page cache at once (a killed process loses none);
//! `sync` puts them on disk and runs once a second.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufReader, BufWriter, Read, Write},
    path::{Path, PathBuf},
};

/// One remembered message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub message_id: [u8; 16],
    pub envelope_hash: [u8; 32],
    /// When the id leaves the window, in ms since the Unix epoch.
    pub expiry_ms: u64,
}

const RECORD_LEN: usize = 16 + 32 + 8;

impl Seen {
    fn to_bytes(self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        out[..16].copy_from_slice(&self.message_id);
        out[16..48].copy_from_slice(&self.envelope_hash);
        out[48..].copy_from_slice(&self.expiry_ms.to_le_bytes());
        out
    }

    fn from_bytes(bytes: &[u8; RECORD_LEN]) -> Seen {
        let mut message_id = [0u8; 16];
        let mut envelope_hash = [0u8; 32];
        let mut expiry = [0u8; 8];
        message_id.copy_from_slice(&bytes[..16]);
        envelope_hash.copy_from_slice(&bytes[16..48]);
        expiry.copy_from_slice(&bytes[48..]);
        Seen {
            message_id,
            envelope_hash,
            expiry_ms: u64::from_le_bytes(expiry),
        }
    }
}

/// Why a journal (the replay window's or the audit queue's) cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct JournalError {
    what: &'static str,
    path: String,
    source: io::Error,
}

impl JournalError {
    pub(crate) fn new(what: &'static str, path: &Path, source: io::Error) -> Self {
        JournalError {
            what,
            path: path.display().to_string(),
            source,
        }
    }
}

const WHAT: &str = "replay journal";

/// Puts what `write` writes in place of `path` with one rename, after syncing it under
/// `<path>.new`: a crash leaves the old file or the new one, never part of either.
pub(crate) fn replace_file(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> io::Result<()> {
    let fresh = path.with_extension("new");
    let mut out = BufWriter::new(File::create(&fresh)?);
    write(&mut out)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&fresh, path)
}

/// The open journal file.
pub struct ReplayJournal {
    path: PathBuf,
    /// Unbuffered: every record is one `write`, and a failed one is cut off again, so the
    /// file only ever holds whole records however the disk fails.
    file: File,
    /// Records in the file, live or expired.
    records: usize,
}

impl ReplayJournal {
    /// Opens (or creates) `dir/<name>`, returning the journal and the ids still inside the
    /// window at `now_ms`, oldest first. The file is rewritten with just those.
    pub fn open(dir: &Path, name: &str, now_ms: u64) -> Result<(Self, Vec<Seen>), JournalError> {
        let path = dir.join(name);
        let error = |source| JournalError::new(WHAT, &path, source);
        std::fs::create_dir_all(dir).map_err(error)?;
        let mut live = Vec::new();
        match File::open(&path) {
            Ok(file) => {
                let mut reader = BufReader::new(file);
                let mut record = [0u8; RECORD_LEN];
                loop {
                    match reader.read_exact(&mut record) {
                        Ok(()) => {
                            let seen = Seen::from_bytes(&record);
                            if seen.expiry_ms > now_ms {
                                live.push(seen);
                            }
                        }
                        // The end, or a record a crash cut short.
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                        Err(e) => return Err(error(e)),
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(error(e)),
        }
        live.sort_by_key(|s| s.expiry_ms);
        let mut journal = ReplayJournal {
            file: Self::rewrite(&path, &live).map_err(error)?,
            path,
            records: live.len(),
        };
        journal.sync()?;
        Ok((journal, live))
    }

    /// Writes `live` to a new file and puts it in place of `path`, returning it open for
    /// appending.
    fn rewrite(path: &Path, live: &[Seen]) -> io::Result<File> {
        replace_file(path, |out| {
            live.iter()
                .try_for_each(|seen| out.write_all(&seen.to_bytes()))
        })?;
        OpenOptions::new().append(true).open(path)
    }

    fn error(&self, source: io::Error) -> JournalError {
        JournalError::new(WHAT, &self.path, source)
    }

    /// Appends one forwarded message. It reaches the operating system before this returns.
    pub fn append(&mut self, seen: Seen) -> Result<(), JournalError> {
        if let Err(e) = self.file.write_all(&seen.to_bytes()) {
            // A full disk may have taken part of the record: cut it off, or every record
            // after it would be read out of step.
            let whole = (self.records as u64).saturating_mul(RECORD_LEN as u64);
            let _ = self.file.set_len(whole);
            return Err(self.error(e));
        }
        self.records += 1;
        Ok(())
    }

    /// Puts everything appended so far on disk.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(|e| self.error(e))
    }

    /// Records in the file, expired ones included.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Replaces the file's contents with `live` (what the gate still remembers).
    pub fn compact(&mut self, live: &[Seen]) -> Result<(), JournalError> {
        self.file = Self::rewrite(&self.path, live).map_err(|e| self.error(e))?;
        self.records = live.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(n: u8, expiry_ms: u64) -> Seen {
        Seen {
            message_id: [n; 16],
            envelope_hash: [n.wrapping_add(100); 32],
            expiry_ms,
        }
    }

    #[test]
    fn ids_survive_a_reopen_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, restored) = ReplayJournal::open(dir.path(), "replay", 0).unwrap();
        assert!(restored.is_empty());
        for (n, expiry) in [(1, 500), (2, 2_000), (3, 1_500)] {
            journal.append(seen(n, expiry)).unwrap();
        }
        drop(journal);
        let (journal, restored) = ReplayJournal::open(dir.path(), "replay", 1_000).unwrap();
        assert_eq!(restored, vec![seen(3, 1_500), seen(2, 2_000)]);
        // The expired record is gone from the file too.
        assert_eq!(journal.records(), 2);
        assert_eq!(
            std::fs::metadata(dir.path().join("replay")).unwrap().len(),
            2 * RECORD_LEN as u64
        );
    }

    #[test]
    fn a_record_cut_short_by_a_crash_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = ReplayJournal::open(dir.path(), "replay", 0).unwrap();
        journal.append(seen(1, 9_000)).unwrap();
        drop(journal);
        let path = dir.path().join("replay");
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&seen(2, 9_000).to_bytes()[..20]).unwrap();
        drop(file);
        let (_, restored) = ReplayJournal::open(dir.path(), "replay", 0).unwrap();
        assert_eq!(restored, vec![seen(1, 9_000)]);
    }

    #[test]
    fn compaction_keeps_only_what_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = ReplayJournal::open(dir.path(), "replay", 0).unwrap();
        for n in 0..10 {
            journal.append(seen(n, 100 + u64::from(n))).unwrap();
        }
        assert_eq!(journal.records(), 10);
        journal.compact(&[seen(9, 109)]).unwrap();
        journal.append(seen(10, 110)).unwrap();
        drop(journal);
        let (_, restored) = ReplayJournal::open(dir.path(), "replay", 0).unwrap();
        assert_eq!(restored, vec![seen(9, 109), seen(10, 110)]);
    }

    #[test]
    fn an_unwritable_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"not a directory").unwrap();
        let Err(e) = ReplayJournal::open(&blocker, "replay", 0) else {
            panic!("opened a journal under a file");
        };
        assert!(e.to_string().contains("replay journal"), "{e}");
    }
}
