//! The audit record: what the bridge forwarded, or refused for a key reason, as the
//! runtime's `ExchangeRecord` for `exchange_log.record`.

use keymesh_primitives::Fingerprint;
use serde::{Deserialize, Serialize};
use subxt::dynamic::Value;

use crate::gate::Target;

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
