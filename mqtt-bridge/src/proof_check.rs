//! Proving that forwarded envelopes are in the exchange log: each envelope's group and
//! Merkle path from the proof archive ([`crate::proof_archive`]), checked against the
//! `KeysExchanged` event on the chain. The chain is the authority: an archive line with no
//! matching finalized event proves nothing. `keymesh-proof` is the command-line face of this
//! module.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
};

use keymesh_device::exchange_proof::{hex_hash, verify, InclusionProof};
use scale_decode::DecodeAsType;
use serde::Serialize;
use subxt::utils::{AccountId32, H256};

use crate::{
    audit::DEAD_AFTER,
    chain::{query, ChainError, Node},
    gate::Target,
    proof_archive::{self, ArchivedGroup, Found},
};

#[derive(DecodeAsType)]
enum LoggedTarget {
    Device(Vec<u8>),
    Group(Vec<u8>),
}

/// The fields of an `ExchangeLog.KeysExchanged` event.
#[derive(DecodeAsType)]
struct KeysExchanged {
    reporter: AccountId32,
    sender: Vec<u8>,
    target: LoggedTarget,
    fingerprint: [u8; 32],
    checked_at: u32,
    count: u32,
    root: [u8; 32],
}

impl KeysExchanged {
    /// Whether this event is the one the archive line describes.
    fn logs(&self, group: &ArchivedGroup, leaves: u32) -> bool {
        let target_matches = match (&self.target, &group.target) {
            (LoggedTarget::Device(a), Target::Device(b)) => a == b.as_bytes(),
            (LoggedTarget::Group(a), Target::Group(b)) => a == b.as_bytes(),
            _ => false,
        };
        target_matches
            && self.sender == group.sender.as_bytes()
            && self.fingerprint == group.fingerprint
            && self.checked_at == group.checked_at
            && self.count == leaves
            && self.root == group.root
    }
}

/// Where an archive line's event is on chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OnChain {
    pub block: u64,
    #[serde(with = "hex_hash")]
    pub block_hash: [u8; 32],
    /// The bridge account that wrote it (SS58).
    pub reporter: String,
}

/// What became of one envelope hash.
#[derive(Clone, Debug, Serialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "outcome"
)]
pub enum Verdict {
    /// Logged: the event at `on_chain` counts the envelope under `root`, by `proof`.
    Logged {
        #[serde(with = "hex_hash")]
        envelope_hash: [u8; 32],
        on_chain: OnChain,
        sender: String,
        target: Target,
        #[serde(with = "hex_hash")]
        fingerprint: [u8; 32],
        checked_at: u32,
        #[serde(with = "hex_hash")]
        root: [u8; 32],
        proof: InclusionProof,
    },
    /// The archive has no record of it: not forwarded by this bridge, not logged yet, or
    /// logged so long ago that its segment was removed.
    NotArchived {
        #[serde(with = "hex_hash")]
        envelope_hash: [u8; 32],
    },
    /// The archive has it, but no finalized event matches: nothing is proved.
    NotOnChain {
        #[serde(with = "hex_hash")]
        envelope_hash: [u8; 32],
        reason: String,
    },
}

impl Verdict {
    pub fn is_logged(&self) -> bool {
        matches!(self, Verdict::Logged { .. })
    }
}

/// Why proving could not even start.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    #[error("cannot read the proof archive {path}: {source}")]
    Archive {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Chain(#[from] ChainError),
}

/// Proves each of `hashes` from the archives in `archives`, against the chain at `node`.
/// One verdict per hash, in the order given.
pub async fn prove_all(
    archives: &[std::path::PathBuf],
    node: &Node,
    hashes: &[[u8; 32]],
) -> Result<Vec<Verdict>, ProveError> {
    let wanted: HashSet<[u8; 32]> = hashes.iter().copied().collect();
    let mut found: HashMap<[u8; 32], Found> = HashMap::new();
    for dir in archives {
        let more = proof_archive::find(dir, &wanted).map_err(|source| ProveError::Archive {
            path: dir.display().to_string(),
            source,
        })?;
        for (hash, hit) in more {
            found.entry(hash).or_insert(hit);
        }
    }
    let finalized = node
        .api
        .at_current_block()
        .await
        .map_err(query)?
        .block_number();
    // Many envelopes share a group: each group's event is looked up once.
    let mut located: HashMap<[u8; 32], Result<OnChain, String>> = HashMap::new();
    let mut verdicts = Vec::with_capacity(hashes.len());
    for hash in hashes {
        let Some(hit) = found.get(hash) else {
            verdicts.push(Verdict::NotArchived {
                envelope_hash: *hash,
            });
            continue;
        };
        let place = match located.entry(hit.group.root) {
            std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                // A node that pruned the block's state cannot show its events: that group
                // is not proved here, the others still may be.
                let place = locate(node, &hit.group, hit.proof.leaves, finalized)
                    .await
                    .unwrap_or_else(|e| {
                        Err(format!(
                            "{e} (proofs of blocks older than the node's state pruning need a \
                             node run with --state-pruning archive)"
                        ))
                    });
                slot.insert(place)
            }
        };
        verdicts.push(verdict(*hash, hit, place));
    }
    Ok(verdicts)
}

fn verdict(hash: [u8; 32], hit: &Found, place: &Result<OnChain, String>) -> Verdict {
    let not_on_chain = |reason: String| Verdict::NotOnChain {
        envelope_hash: hash,
        reason,
    };
    match place {
        Err(reason) => not_on_chain(reason.clone()),
        Ok(_) if !verify(&hit.group.root, &hash, &hit.proof) => {
            not_on_chain("the archived path does not lead to the logged root".into())
        }
        Ok(on_chain) => Verdict::Logged {
            envelope_hash: hash,
            on_chain: on_chain.clone(),
            sender: hit.group.sender.clone(),
            target: hit.group.target.clone(),
            fingerprint: hit.group.fingerprint,
            checked_at: hit.group.checked_at,
            root: hit.group.root,
            proof: hit.proof.clone(),
        },
    }
}

/// Finds the finalized `KeysExchanged` event for `group`: in the block it landed in if the
/// bridge saw that, else in the blocks its copies could land in.
async fn locate(
    node: &Node,
    group: &ArchivedGroup,
    leaves: u32,
    finalized: u64,
) -> Result<Result<OnChain, String>, ChainError> {
    if let Some(landed_in) = &group.landed_in {
        let hash = parse_block_hash(landed_in)
            .ok_or_else(|| ChainError::Query(format!("archived block hash {landed_in:?}")))?;
        return Ok(event_in(node, H256(hash), group, leaves, finalized)
            .await?
            .ok_or_else(|| format!("block 0x{landed_in} has no matching KeysExchanged event")));
    }
    let last = group
        .signed_at
        .saturating_add(DEAD_AFTER + 1)
        .min(finalized);
    for number in group.signed_at.saturating_add(1)..=last {
        let at = node.api.at_block(number).await.map_err(query)?;
        if let Some(on_chain) = event_in(node, at.block_hash(), group, leaves, finalized).await? {
            return Ok(Ok(on_chain));
        }
    }
    Ok(Err(format!(
        "no matching KeysExchanged event in finalized blocks {}..={last}",
        group.signed_at + 1
    )))
}

fn parse_block_hash(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text.trim_start_matches("0x")).ok()?;
    bytes.try_into().ok()
}

/// The matching event in block `hash`, if that block is finalized (at or below `finalized`,
/// on the canonical chain) and has it.
async fn event_in(
    node: &Node,
    hash: H256,
    group: &ArchivedGroup,
    leaves: u32,
    finalized: u64,
) -> Result<Option<OnChain>, ChainError> {
    let at = node.api.at_block(hash).await.map_err(query)?;
    let number = at.block_number();
    if number > finalized {
        return Ok(None);
    }
    let finalized_hash = node.api.at_block(number).await.map_err(query)?.block_hash();
    if finalized_hash != hash {
        // A block off the finalized chain proves nothing.
        return Ok(None);
    }
    for event in at.events().fetch().await.map_err(query)?.iter() {
        let event = event.map_err(query)?;
        if event.pallet_name() != "ExchangeLog" || event.event_name() != "KeysExchanged" {
            continue;
        }
        let logged = event
            .decode_fields_unchecked_as::<KeysExchanged>()
            .map_err(query)?;
        if logged.logs(group, leaves) {
            return Ok(Some(OnChain {
                block: number,
                block_hash: hash.0,
                reporter: logged.reporter.to_string(),
            }));
        }
    }
    Ok(None)
}

/// The proof archives in a bridge's state directory: one per bridge account.
pub fn archives_in(state_dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(state_dir)? {
        let entry = entry?;
        let is_archive = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with("proofs-"));
        if is_archive && entry.file_type()?.is_dir() {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}
