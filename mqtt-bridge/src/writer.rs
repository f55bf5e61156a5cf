//! The chain writer: signs every chain write of the bridge, one at a time and each under a
//! nonce the caller chooses, so nonces never race.

use std::sync::Arc;

use subxt::{
    config::DefaultExtrinsicParamsBuilder, dynamic::Value, error::TransactionEventsError,
    tx::Signer, utils::AccountId32, PolkadotConfig,
};
use subxt_signer::sr25519::Keypair;

use keymesh_primitives::Fingerprint;

use crate::{
    chain::{query, ChainError, Node},
    keyman::EpochKey,
    record::LogRecord,
};

/// Blocks a bridge transaction stays valid for, from the finalized block it is signed at.
pub const MORTALITY: u64 = 32;

/// Signs and submits the bridge's calls, waiting for each to be finalized. Its connection
/// to the node is made again after any failure, so a node restart costs one retry.
pub struct Writer {
    url: String,
    signer: Keypair,
    /// The connection; its raw RPC gives the nonce the transaction pool expects next (no
    /// typed subxt call reads it).
    connection: std::sync::Mutex<Option<Arc<Node>>>,
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
    /// A writer for the node at `url`, connecting on first use.
    pub fn new(url: &str, signer: Keypair) -> Self {
        Writer {
            url: url.to_string(),
            signer,
            connection: std::sync::Mutex::new(None),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<Node>>> {
        // The slot holds a handle or nothing; a panic cannot leave it half-written.
        self.connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current connection, made afresh if there is none.
    async fn connection(&self) -> Result<Arc<Node>, ChainError> {
        if let Some(connection) = self.slot().clone() {
            return Ok(connection);
        }
        let connection = Arc::new(crate::chain::connect(&self.url).await?);
        *self.slot() = Some(connection.clone());
        Ok(connection)
    }

    /// Passes `result` on; on an error the connection is dropped, so the next call makes a
    /// new one.
    fn checked<T, E>(&self, result: Result<T, E>) -> Result<T, E> {
        if result.is_err() {
            *self.slot() = None;
        }
        result
    }

    fn account(&self) -> AccountId32 {
        <Keypair as Signer<PolkadotConfig>>::account_id(&self.signer)
    }

    /// The finalized block and the bridge account's nonce in it.
    pub async fn finalized(&self) -> Result<Finalized, ChainError> {
        let result = async {
            let connection = self.connection().await?;
            let at = connection.api.at_current_block().await.map_err(query)?;
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
        .await;
        self.checked(result)
    }

    /// The nonce the node's transaction pool expects next from the bridge: past every
    /// transaction of the bridge's that is ready to land.
    pub async fn next_nonce(&self) -> Result<u64, ChainError> {
        let result = async {
            let connection = self.connection().await?;
            connection
                .rpc
                .system_account_next_index(&self.account())
                .await
                .map_err(query)
        }
        .await;
        self.checked(result)
    }

    /// Signs `pallet.call(args)` with `nonce`, mortal for [`MORTALITY`] blocks from the
    /// finalized block, submits it and waits for it to be finalized; returns the hash of the
    /// block it is in.
    async fn submit(
        &self,
        pallet: &str,
        call: &str,
        args: Vec<Value>,
        nonce: u64,
    ) -> Result<[u8; 32], WriteError> {
        let result = async {
            let connection = self.connection().await.map_err(WriteError::NotSubmitted)?;
            let failed = |e: String| ChainError::Query(format!("{pallet}.{call}: {e}"));
            let payload = subxt::dynamic::tx(pallet, call, args);
            let params = DefaultExtrinsicParamsBuilder::<PolkadotConfig>::new()
                .nonce(nonce)
                .mortal(MORTALITY)
                .build();
            let progress = connection
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
                Ok(_) => Ok(in_block.block_hash().0),
                Err(
                    e @ (TransactionEventsError::ExtrinsicFailed(_)
                    | TransactionEventsError::CannotDecodeDispatchError { .. }),
                ) => Err(WriteError::Failed(failed(e.to_string()))),
                // Finalized, but its events could not be read: most likely it worked.
                Err(e) => Err(WriteError::Unsettled(failed(e.to_string()))),
            }
        }
        .await;
        self.checked(result)
    }

    /// Writes `records` (at most [`crate::record::MAX_BATCH`]) to the exchange log in one call;
    /// returns the hash of the finalized block it is in.
    pub async fn record(&self, records: &[LogRecord], nonce: u64) -> Result<[u8; 32], WriteError> {
        let batch = Value::unnamed_composite(records.iter().map(LogRecord::to_value));
        self.submit("ExchangeLog", "record", vec![batch], nonce)
            .await
    }

    /// Submits one `groups.set_epoch_key` call.
    pub async fn set_epoch_key(
        &self,
        key: &EpochKey,
        wraps: &[(String, Fingerprint, Vec<u8>)],
    ) -> Result<(), WriteError> {
        let wraps = Value::unnamed_composite(wraps.iter().map(|(device, device_key, wrap)| {
            Value::unnamed_composite([
                Value::from_bytes(device),
                Value::from_bytes(device_key),
                Value::from_bytes(wrap),
            ])
        }));
        let args = vec![
            Value::from_bytes(&key.group),
            Value::u128(key.epoch.into()),
            Value::u128(key.members_at.into()),
            Value::from_bytes(&key.topic_public_key),
            Value::from_bytes(&key.sealed_private_key),
            wraps,
        ];
        let nonce = self.next_nonce().await.map_err(WriteError::NotSubmitted)?;
        self.submit("Groups", "set_epoch_key", args, nonce)
            .await
            .map(|_| ())
    }
}
