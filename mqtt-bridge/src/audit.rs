//! Audit: what the bridge forwarded or refused for a key reason, journaled (see
//! [`crate::audit_journal`]) and written to the exchange log as one `exchange_log.record`
//! call per block; and the writer that signs every chain write of the bridge, one at a time
//! and each under a nonce the caller chooses, so nonces never race.

use keymesh_primitives::Fingerprint;
use serde::{Deserialize, Serialize};
use subxt::{
    config::{DefaultExtrinsicParamsBuilder, RpcConfigFor},
    dynamic::Value,
    error::TransactionEventsError,
    rpcs::{LegacyRpcMethods, RpcClient},
    tx::Signer,
    utils::AccountId32,
    PolkadotConfig,
};
use subxt_signer::sr25519::Keypair;

use crate::{
    audit_journal::{AuditJournal, Batch, InFlight},
    chain::{query, Api, ChainError},
    gate::Target,
    replay::JournalError,
};

/// Most records in one `record` call: the runtime's `MaxBatch`.
pub const MAX_BATCH: usize = 1024;

/// One outcome for the exchange log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    Exchanged {
        sender: String,
        target: Target,
        fingerprint: Fingerprint,
        envelope_hash: [u8; 32],
        checked_at: u32,
    },
    Mismatch {
        sender: String,
        target: Target,
        presented: Fingerprint,
        expected: Fingerprint,
    },
}

fn target_value(target: &Target) -> Value {
    match target {
        Target::Device(id) => Value::unnamed_variant("Device", [Value::from_bytes(id)]),
        Target::Group(id) => Value::unnamed_variant("Group", [Value::from_bytes(id)]),
    }
}

impl Record {
    /// The record as the runtime's `ExchangeRecord`, built from names alone.
    pub fn to_value(&self) -> Value {
        match self {
            Record::Exchanged {
                sender,
                target,
                fingerprint,
                envelope_hash,
                checked_at,
            } => Value::named_variant(
                "Exchanged",
                [
                    ("sender", Value::from_bytes(sender)),
                    ("target", target_value(target)),
                    ("fingerprint", Value::from_bytes(fingerprint)),
                    ("envelope_hash", Value::from_bytes(envelope_hash)),
                    ("checked_at", Value::u128((*checked_at).into())),
                ],
            ),
            Record::Mismatch {
                sender,
                target,
                presented,
                expected,
            } => Value::named_variant(
                "Mismatch",
                [
                    ("sender", Value::from_bytes(sender)),
                    ("target", target_value(target)),
                    ("presented", Value::from_bytes(presented)),
                    ("expected", Value::from_bytes(expected)),
                ],
            ),
        }
    }
}

/// Signs and submits the bridge's calls, waiting for each to be finalized.
pub struct Writer {
    api: Api,
    /// For the nonce the transaction pool expects next (no typed subxt call reads it).
    rpc: LegacyRpcMethods<RpcConfigFor<PolkadotConfig>>,
    signer: Keypair,
}

/// The bridge account as finalized state has it.
#[derive(Clone, Copy, Debug)]
pub struct Finalized {
    pub block: u64,
    /// Transactions of the bridge's in finalized blocks.
    pub nonce: u64,
}

/// Why a write did not go through.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The node refused the transaction: it is in no pool and cannot land.
    #[error("{0}")]
    NotSubmitted(ChainError),
    /// The transaction was in the pool, but it was not seen finalized: it may have landed.
    #[error("{0}")]
    Unsettled(ChainError),
    /// The transaction is in a finalized block and its nonce is spent, but the runtime
    /// refused the call.
    #[error("{0}")]
    Failed(ChainError),
}

impl Writer {
    /// Connects the writer's own JSON-RPC client to `url`.
    pub async fn connect(api: Api, url: &str, signer: Keypair) -> Result<Self, ChainError> {
        let rpc = RpcClient::from_insecure_url(url)
            .await
            .map_err(|e| ChainError::Connect {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Writer {
            api,
            rpc: LegacyRpcMethods::new(rpc),
            signer,
        })
    }

    fn account(&self) -> AccountId32 {
        <Keypair as Signer<PolkadotConfig>>::account_id(&self.signer)
    }

    /// The finalized block and the bridge account's nonce in it.
    pub async fn finalized(&self) -> Result<Finalized, ChainError> {
        let at = self.api.at_current_block().await.map_err(query)?;
        let nonce = at
            .tx()
            .account_nonce(&self.account())
            .await
            .map_err(query)?;
        Ok(Finalized {
            block: at.block_number(),
            nonce,
        })
    }

    /// The nonce the node's transaction pool expects next from the bridge: past every
    /// transaction of the bridge's that is ready to land.
    pub async fn next_nonce(&self) -> Result<u64, ChainError> {
        self.rpc
            .system_account_next_index(&self.account())
            .await
            .map_err(query)
    }

    /// Signs `pallet.call(args)` with `nonce`, mortal for [`MORTALITY`] blocks from the
    /// finalized block, submits it and waits for it to be finalized.
    async fn submit(
        &self,
        pallet: &str,
        call: &str,
        args: Vec<Value>,
        nonce: u64,
    ) -> Result<(), WriteError> {
        let failed = |e: String| ChainError::Query(format!("{pallet}.{call}: {e}"));
        let payload = subxt::dynamic::tx(pallet, call, args);
        let params = DefaultExtrinsicParamsBuilder::<PolkadotConfig>::new()
            .nonce(nonce)
            .mortal(MORTALITY)
            .build();
        let progress = self
            .api
            .tx()
            .await
            .map_err(|e| WriteError::NotSubmitted(failed(e.to_string())))?
            .sign_and_submit_then_watch(&payload, &self.signer, params)
            .await
            .map_err(|e| WriteError::NotSubmitted(failed(e.to_string())))?;
        let in_block = progress
            .wait_for_finalized()
            .await
            .map_err(|e| WriteError::Unsettled(failed(e.to_string())))?;
        match in_block.wait_for_success().await {
            Ok(_) => Ok(()),
            Err(
                e @ (TransactionEventsError::ExtrinsicFailed(_)
                | TransactionEventsError::CannotDecodeDispatchError { .. }),
            ) => Err(WriteError::Failed(failed(e.to_string()))),
            // Finalized, but its events could not be read: most likely it worked.
            Err(e) => Err(WriteError::Unsettled(failed(e.to_string()))),
        }
    }

    /// Writes `records` (at most [`MAX_BATCH`]) to the exchange log in one call.
    pub async fn record(&self, records: &[Record], nonce: u64) -> Result<(), WriteError> {
        let batch = Value::unnamed_composite(records.iter().map(Record::to_value));
        self.submit("ExchangeLog", "record", vec![batch], nonce)
            .await
    }

    /// Submits one `groups.set_epoch_key` call.
    pub async fn set_epoch_key(
        &self,
        group: &str,
        epoch: u32,
        topic_public_key: &[u8],
        sealed_private_key: &[u8],
        wraps: &[(String, Vec<u8>)],
    ) -> Result<(), WriteError> {
        let wraps = Value::unnamed_composite(wraps.iter().map(|(device, wrap)| {
            Value::unnamed_composite([Value::from_bytes(device), Value::from_bytes(wrap)])
        }));
        let args = vec![
            Value::from_bytes(group),
            Value::u128(epoch.into()),
            Value::from_bytes(topic_public_key),
            Value::from_bytes(sealed_private_key),
            wraps,
        ];
        let nonce = self.next_nonce().await.map_err(WriteError::NotSubmitted)?;
        self.submit("Groups", "set_epoch_key", args, nonce).await
    }
}

/// The audit journal, shared by the forward loop (which appends) and the writer (which
/// commits).
pub type SharedJournal = std::sync::Mutex<AuditJournal>;

/// Locks the journal. A panic elsewhere cannot leave it half-updated (every change is one
/// file write or one rename), so a poisoned lock is still used.
pub fn lock(journal: &SharedJournal) -> std::sync::MutexGuard<'_, AuditJournal> {
    journal
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Finalized blocks after which every copy of a pinned batch is certainly dead: its
/// mortality, with room for the finalized block moving between reading it and signing.
const DEAD_AFTER: u64 = 4 * MORTALITY;

/// Why a flush stopped; the records stay journaled for the next one.
#[derive(Debug, thiserror::Error)]
enum FlushError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("batch pinned to nonce {nonce} waits for its copies to expire after block {after}")]
    CopiesAlive { nonce: u64, after: u64 },
}

/// Writes the journal's pending records, a batch at a time, until none is left or a write
/// does not go through (the rest waits for the next flush).
///
/// Every copy of a batch is signed with the nonce pinned to it first, so however many
/// copies a crash or a lost connection makes, at most one can land; the bridge's finalized
/// nonce moving past the pinned one says it did. A batch gets a fresh nonce only when no
/// copy can land any more.
pub async fn flush(writer: &Writer, journal: &SharedJournal) {
    loop {
        // The lock is released before any await.
        let next = lock(journal).next_batch(MAX_BATCH);
        let Some(batch) = next else { return };
        if let Err(e) = write_batch(writer, journal, &batch).await {
            tracing::warn!("exchange log write, will retry: {e}");
            return;
        }
        tracing::debug!("{} exchange record(s) written", batch.records.len());
    }
}

/// Flushes until no batch holds a pinned nonce, so that the caller may sign something else
/// without taking that nonce.
pub async fn settle(writer: &Writer, journal: &SharedJournal) {
    loop {
        flush(writer, journal).await;
        if lock(journal).in_flight().is_none() {
            return;
        }
        // Nothing else may be signed meanwhile; a pinned batch settles within its mortality.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

async fn write_batch(
    writer: &Writer,
    journal: &SharedJournal,
    batch: &Batch,
) -> Result<(), FlushError> {
    let now = writer.finalized().await?;
    let nonce = match batch.in_flight {
        Some(pinned) if now.nonce > pinned.nonce => {
            // A copy sent before (perhaps before a restart) is in.
            return Ok(lock(journal).commit(batch.end)?);
        }
        Some(pinned) if now.block <= pinned.signed_at.saturating_add(DEAD_AFTER) => {
            if writer.next_nonce().await? < pinned.nonce {
                // A transaction below ours left the pool: our copies cannot land until they
                // expire, and a fresh nonce now could let both land.
                return Err(FlushError::CopiesAlive {
                    nonce: pinned.nonce,
                    after: pinned.signed_at.saturating_add(DEAD_AFTER),
                });
            }
            pinned.nonce
        }
        // A new batch, or one whose copies have all expired.
        _ => writer.next_nonce().await?,
    };
    lock(journal).pin(InFlight {
        end: batch.end,
        nonce,
        signed_at: now.block,
    })?;
    match writer.record(&batch.records, nonce).await {
        Ok(()) => Ok(lock(journal).commit(batch.end)?),
        Err(e @ WriteError::Failed(_)) => {
            // The nonce is spent on a call the runtime refused: the next try gets a new one.
            lock(journal).unpin()?;
            Err(e.into())
        }
        // The pin stays: even a copy the node seemed to refuse might be in a pool.
        Err(e) => Err(e.into()),
    }
}

/// Blocks a bridge transaction stays valid for, from the finalized block it is signed at.
pub const MORTALITY: u64 = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_the_runtime_field_names() {
        let value = Record::Exchanged {
            sender: "1111".into(),
            target: Target::Group("B".into()),
            fingerprint: [1; 32],
            envelope_hash: [2; 32],
            checked_at: 5,
        }
        .to_value()
        .to_string();
        for name in [
            "Exchanged",
            "sender",
            "Group",
            "fingerprint",
            "envelope_hash",
            "checked_at",
        ] {
            assert!(value.contains(name), "{name} in {value}");
        }
    }
}
