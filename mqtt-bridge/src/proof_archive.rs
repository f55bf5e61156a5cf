//! The proof archive: the envelope hashes behind every `KeysExchanged` event the bridge
//! wrote, so that any forwarded envelope can be proved logged (`keymesh-proof`,
//! `docs/exchange-proof.md`).
//!
//! The chain holds only each group's count and Merkle root; the leaves live here, one JSON
//! line per group. A batch's lines are appended and synced before the audit journal commits
//! the batch. A crash in between appends them again on restart, and a repeated line proves
//! the same thing. Nothing is lost either way.
//!
//! The archive is split into segments of [`SEGMENT_BYTES`], and the newest
//! [`KEEP_SEGMENTS`] are kept: about 14 million envelopes. Hand-written, like the journals:
//! append, scan, drop old files.

use std::{
    collections::{HashMap, HashSet},
    fs::{File, OpenOptions},
    io::{self, BufRead, Write},
    path::{Path, PathBuf},
};

use keymesh_device::exchange_proof::{hex_hash, hex_hashes, prove, InclusionProof};
use serde::{Deserialize, Serialize};

use crate::{
    gate::Target,
    record::{LogRecord, Logged},
    replay::JournalError,
};

const WHAT: &str = "proof archive";

/// A segment is closed once it is this large.
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// Segments kept; older ones are removed.
pub const KEEP_SEGMENTS: usize = 16;

/// One logged group of forwarded envelopes: what its `KeysExchanged` event says, where to
/// find the event, and the leaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchivedGroup {
    /// The block the batch landed in, when the bridge saw it land (hex).
    pub landed_in: Option<String>,
    /// The finalized block the batch was signed at; it landed within
    /// [`crate::audit::DEAD_AFTER`] blocks after it.
    pub signed_at: u64,
    pub sender: String,
    pub target: Target,
    #[serde(with = "hex_hash")]
    pub fingerprint: [u8; 32],
    pub checked_at: u32,
    #[serde(with = "hex_hash")]
    pub root: [u8; 32],
    /// The envelope hashes, in leaf order.
    #[serde(with = "hex_hashes")]
    pub envelopes: Vec<[u8; 32]>,
}

impl ArchivedGroup {
    /// The archive lines for a batch's groups of forwarded envelopes.
    pub fn from_batch(logged: &[Logged], landed_in: Option<[u8; 32]>, signed_at: u64) -> Vec<Self> {
        logged
            .iter()
            .filter_map(|logged| match &logged.record {
                LogRecord::Exchanges {
                    sender,
                    target,
                    fingerprint,
                    checked_at,
                    root,
                    ..
                } => Some(ArchivedGroup {
                    landed_in: landed_in.map(hex::encode),
                    signed_at,
                    sender: sender.clone(),
                    target: target.clone(),
                    fingerprint: *fingerprint,
                    checked_at: *checked_at,
                    root: *root,
                    envelopes: logged.envelopes.clone(),
                }),
                LogRecord::Mismatch { .. } => None,
            })
            .collect()
    }
}

/// The archive, open for appending.
pub struct ProofArchive {
    dir: PathBuf,
    file: File,
    segment: u64,
    /// Bytes in the current segment: where a failed append is cut back to.
    len: u64,
    /// [`SEGMENT_BYTES`]; smaller in tests.
    segment_bytes: u64,
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:012}.jsonl"))
}

/// The segment numbers in `dir`, oldest first.
fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let number = name
            .to_str()
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok());
        numbers.extend(number);
    }
    numbers.sort_unstable();
    Ok(numbers)
}

impl ProofArchive {
    /// Opens (or creates) the archive in `dir`, appending to its newest segment.
    pub fn open(dir: &Path) -> Result<Self, JournalError> {
        let error = |source| JournalError::new(WHAT, dir, source);
        std::fs::create_dir_all(dir).map_err(error)?;
        let segment = segments(dir).map_err(error)?.last().copied().unwrap_or(0);
        let path = segment_path(dir, segment);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(error)?;
        let mut len = file.metadata().map_err(error)?.len();
        // A line a crash cut short is ended, so the next one starts on its own line.
        if len > 0 && !ends_with_newline(&path, len).map_err(error)? {
            file.write_all(b"\n").map_err(error)?;
            len += 1;
        }
        Ok(ProofArchive {
            dir: dir.to_path_buf(),
            file,
            segment,
            len,
            segment_bytes: SEGMENT_BYTES,
        })
    }

    /// Appends `groups` and puts them on disk before returning.
    pub fn append(&mut self, groups: &[ArchivedGroup]) -> Result<(), JournalError> {
        if groups.is_empty() {
            return Ok(());
        }
        let mut lines = Vec::new();
        for group in groups {
            serde_json::to_writer(&mut lines, group)
                .map_err(|e| self.error(io::Error::new(io::ErrorKind::InvalidData, e)))?;
            lines.push(b'\n');
        }
        let written = self
            .file
            .write_all(&lines)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // A full disk may have taken part of it: cut it off.
            let _ = self.file.set_len(self.len);
            return Err(self.error(e));
        }
        self.len += lines.len() as u64;
        if self.len >= self.segment_bytes {
            self.next_segment().map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    /// Starts a new segment and removes the ones past [`KEEP_SEGMENTS`].
    fn next_segment(&mut self) -> io::Result<()> {
        let segment = self.segment + 1;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(&self.dir, segment))?;
        self.segment = segment;
        self.len = 0;
        let all = segments(&self.dir)?;
        for old in &all[..all.len().saturating_sub(KEEP_SEGMENTS)] {
            std::fs::remove_file(segment_path(&self.dir, *old))?;
        }
        Ok(())
    }

    fn error(&self, source: io::Error) -> JournalError {
        JournalError::new(WHAT, &segment_path(&self.dir, self.segment), source)
    }
}

fn ends_with_newline(path: &Path, len: u64) -> io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// An envelope found in the archive: its group (without the leaves) and its proof.
#[derive(Clone, Debug)]
pub struct Found {
    pub group: ArchivedGroup,
    pub proof: InclusionProof,
}

/// Looks for `wanted` envelope hashes in the archive at `dir`, oldest segment first; the
/// first group holding a hash proves it. Lines that do not parse (one a crash cut short)
/// are skipped.
pub fn find(dir: &Path, wanted: &HashSet<[u8; 32]>) -> io::Result<HashMap<[u8; 32], Found>> {
    let mut found = HashMap::new();
    for segment in segments(dir)? {
        let file = match File::open(segment_path(dir, segment)) {
            Ok(file) => file,
            // Removed by the bridge's rotation since it was listed.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in io::BufReader::new(file).lines() {
            let Ok(group) = serde_json::from_str::<ArchivedGroup>(&line?) else {
                continue;
            };
            take_proofs(group, wanted, &mut found);
        }
    }
    Ok(found)
}

fn take_proofs(
    mut group: ArchivedGroup,
    wanted: &HashSet<[u8; 32]>,
    found: &mut HashMap<[u8; 32], Found>,
) {
    let hits: Vec<(usize, [u8; 32])> = group
        .envelopes
        .iter()
        .enumerate()
        .filter(|(_, hash)| wanted.contains(*hash) && !found.contains_key(*hash))
        .map(|(index, hash)| (index, *hash))
        .collect();
    if hits.is_empty() {
        return;
    }
    let proofs: Vec<_> = hits
        .iter()
        .filter_map(|(index, hash)| Some((*hash, prove(&group.envelopes, *index)?)))
        .collect();
    group.envelopes = Vec::new();
    for (hash, proof) in proofs {
        found.insert(
            hash,
            Found {
                group: group.clone(),
                proof,
            },
        );
    }
}

#[cfg(test)]
mod tests;
