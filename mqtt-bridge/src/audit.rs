//! Audit: what the bridge forwarded or refused for a key reason, queued and written to the
//! exchange log as one `exchange_log.record` call per block; and the writer that signs every
//! chain write of the bridge, one at a time so nonces never race.

use std::sync::Mutex;

use keymesh_primitives::Fingerprint;
use subxt::dynamic::Value;
use subxt_signer::sr25519::Keypair;

use crate::{
    chain::{Api, ChainError},
    gate::Target,
};

/// Most records in one `record` call: the runtime's `MaxBatch`.
pub const MAX_BATCH: usize = 1024;

/// One outcome for the exchange log.
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// Records waiting for the next block.
#[derive(Default)]
pub struct AuditQueue {
    records: Mutex<Vec<Record>>,
}

impl AuditQueue {
    pub fn push(&self, record: Record) {
        if let Ok(mut records) = self.records.lock() {
            records.push(record);
        }
    }

    /// Takes everything queued.
    pub fn take(&self) -> Vec<Record> {
        self.records
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }

    /// Puts records back at the front (a write failed; they go with the next block).
    pub fn requeue(&self, mut batch: Vec<Record>) {
        if let Ok(mut records) = self.records.lock() {
            batch.append(&mut records);
            *records = batch;
        }
    }

    pub fn len(&self) -> usize {
        self.records.lock().map(|r| r.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Signs and submits the bridge's calls, waiting for each to be finalized.
pub struct Writer {
    api: Api,
    signer: Keypair,
}

impl Writer {
    pub fn new(api: Api, signer: Keypair) -> Self {
        Writer { api, signer }
    }

    async fn submit(&self, pallet: &str, call: &str, args: Vec<Value>) -> Result<(), ChainError> {
        let failed = |e: String| ChainError::Query(format!("{pallet}.{call}: {e}"));
        let payload = subxt::dynamic::tx(pallet, call, args);
        self.api
            .tx()
            .await
            .map_err(|e| failed(e.to_string()))?
            .sign_and_submit_then_watch_default(&payload, &self.signer)
            .await
            .map_err(|e| failed(e.to_string()))?
            .wait_for_finalized_success()
            .await
            .map_err(|e| failed(e.to_string()))?;
        Ok(())
    }

    /// Writes `records` to the exchange log, in calls of at most [`MAX_BATCH`].
    pub async fn record(&self, records: &[Record]) -> Result<(), ChainError> {
        for chunk in records.chunks(MAX_BATCH) {
            let batch = Value::unnamed_composite(chunk.iter().map(Record::to_value));
            self.submit("ExchangeLog", "record", vec![batch]).await?;
        }
        Ok(())
    }

    /// Submits one `groups.set_epoch_key` call.
    pub async fn set_epoch_key(
        &self,
        group: &str,
        epoch: u32,
        topic_public_key: &[u8],
        sealed_private_key: &[u8],
        wraps: &[(String, Vec<u8>)],
    ) -> Result<(), ChainError> {
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
        self.submit("Groups", "set_epoch_key", args).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_keeps_order_across_a_failed_write() {
        let queue = AuditQueue::default();
        let record = |n: u8| Record::Mismatch {
            sender: "1111".into(),
            target: Target::Device("1113".into()),
            presented: [n; 32],
            expected: [0; 32],
        };
        queue.push(record(1));
        queue.push(record(2));
        let batch = queue.take();
        assert!(queue.is_empty());
        queue.push(record(3));
        queue.requeue(batch);
        assert_eq!(queue.take(), vec![record(1), record(2), record(3)]);
    }

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
