//! The audit record: what the bridge forwarded, or refused for a key reason. One
//! [`Record`] per envelope is journaled; a batch groups them into the runtime's
//! `ExchangeRecord`s for `exchange_log.record` ([`group`]): forwarded envelopes as counted
//! Merkle roots, refusals one by one.

use keymesh_primitives::Fingerprint;
use serde::{Deserialize, Serialize};
use subxt::dynamic::Value;

use crate::gate::Target;

/// Most records in one `record` call: the runtime's `MaxBatch`.
pub const MAX_BATCH: usize = 1024;

/// One envelope's outcome, as journaled.
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

/// Most envelopes one `record` call logs: about ten seconds of a gate at full speed, so a
/// backlog a burst left is taken in one finality round.
pub const MAX_ENVELOPES: usize = 262_144;

/// One entry of an `exchange_log.record` call: the runtime's `ExchangeRecord`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogRecord {
    /// `count` envelopes forwarded from `sender` to `target` under `fingerprint`, checked at
    /// `checked_at`; `root` is the Merkle root of their hashes in forwarding order.
    Exchanges {
        sender: String,
        target: Target,
        fingerprint: Fingerprint,
        checked_at: u32,
        count: u32,
        root: [u8; 32],
    },
    Mismatch {
        sender: String,
        target: Target,
        presented: Fingerprint,
        expected: Fingerprint,
    },
}

impl LogRecord {
    /// The record as the runtime's `ExchangeRecord`, built from names alone.
    pub fn to_value(&self) -> Value {
        match self {
            LogRecord::Exchanges {
                sender,
                target,
                fingerprint,
                checked_at,
                count,
                root,
            } => Value::named_variant(
                "Exchanges",
                [
                    ("sender", Value::from_bytes(sender)),
                    ("target", target_value(target)),
                    ("fingerprint", Value::from_bytes(fingerprint)),
                    ("checked_at", Value::u128((*checked_at).into())),
                    ("count", Value::u128((*count).into())),
                    ("root", Value::from_bytes(root)),
                ],
            ),
            LogRecord::Mismatch {
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

/// A log entry and the envelopes it logs, in leaf order (none for a mismatch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub record: LogRecord,
    pub envelopes: Vec<[u8; 32]>,
}

/// What forwarded envelopes are logged together under.
type ExchangeKey = (String, Target, Fingerprint, u32);

enum Entry {
    Exchanges(ExchangeKey, Vec<[u8; 32]>),
    Mismatch(LogRecord),
}

/// Groups journaled records, oldest first, into log entries: forwarded envelopes by sender,
/// target, key and checked block, in journal order within each; every mismatch on its own.
/// Stops before a record that would make a `max_records`-th-plus-one entry or log more than
/// [`MAX_ENVELOPES`] envelopes. Returns how many records it took, and the entries.
pub fn group<'a>(
    records: impl IntoIterator<Item = &'a Record>,
    max_records: usize,
) -> (usize, Vec<Logged>) {
    let mut index: std::collections::HashMap<ExchangeKey, usize> = Default::default();
    let mut entries: Vec<Entry> = Vec::new();
    let (mut taken, mut envelopes) = (0, 0);
    for record in records {
        match record {
            Record::Exchanged {
                sender,
                target,
                fingerprint,
                envelope_hash,
                checked_at,
            } => {
                if envelopes == MAX_ENVELOPES {
                    break;
                }
                let key = (sender.clone(), target.clone(), *fingerprint, *checked_at);
                match index.get(&key) {
                    Some(&at) => {
                        if let Entry::Exchanges(_, hashes) = &mut entries[at] {
                            hashes.push(*envelope_hash);
                        }
                    }
                    None if entries.len() == max_records => break,
                    None => {
                        index.insert(key.clone(), entries.len());
                        entries.push(Entry::Exchanges(key, vec![*envelope_hash]));
                    }
                }
                envelopes += 1;
            }
            Record::Mismatch {
                sender,
                target,
                presented,
                expected,
            } => {
                if entries.len() == max_records {
                    break;
                }
                entries.push(Entry::Mismatch(LogRecord::Mismatch {
                    sender: sender.clone(),
                    target: target.clone(),
                    presented: *presented,
                    expected: *expected,
                }));
            }
        }
        taken += 1;
    }
    (taken, entries.into_iter().map(logged).collect())
}

fn logged(entry: Entry) -> Logged {
    match entry {
        Entry::Exchanges((sender, target, fingerprint, checked_at), envelopes) => Logged {
            record: LogRecord::Exchanges {
                sender,
                target,
                fingerprint,
                checked_at,
                // At most MAX_ENVELOPES.
                count: u32::try_from(envelopes.len()).unwrap_or(u32::MAX),
                root: keymesh_device::exchange_proof::exchanges_root(&envelopes),
            },
            envelopes,
        },
        Entry::Mismatch(record) => Logged {
            record,
            envelopes: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchanged(sender: &str, target: &str, hash: u8, checked_at: u32) -> Record {
        Record::Exchanged {
            sender: sender.into(),
            target: Target::Device(target.into()),
            fingerprint: [1; 32],
            envelope_hash: [hash; 32],
            checked_at,
        }
    }

    fn mismatch() -> Record {
        Record::Mismatch {
            sender: "1111".into(),
            target: Target::Device("1113".into()),
            presented: [1; 32],
            expected: [2; 32],
        }
    }

    #[test]
    fn records_carry_the_runtime_field_names() {
        let (_, logged) = group(&[exchanged("1111", "1113", 2, 5)], 8);
        let value = logged[0].record.to_value().to_string();
        for name in [
            "Exchanges",
            "sender",
            "Device",
            "fingerprint",
            "checked_at",
            "count",
            "root",
        ] {
            assert!(value.contains(name), "{name} in {value}");
        }
    }

    #[test]
    fn forwards_are_logged_together_by_sender_target_key_and_block_in_journal_order() {
        let records = [
            exchanged("1111", "1113", 1, 5),
            exchanged("1112", "1113", 2, 5),
            mismatch(),
            exchanged("1111", "1113", 3, 5),
            exchanged("1111", "1113", 4, 6),
            exchanged("1112", "1113", 5, 5),
        ];
        let (taken, logged) = group(&records, 8);
        assert_eq!(taken, 6);
        let envelopes: Vec<Vec<u8>> = logged
            .iter()
            .map(|l| l.envelopes.iter().map(|h| h[0]).collect())
            .collect();
        assert_eq!(envelopes, [vec![1, 3], vec![2, 5], vec![], vec![4]]);
        let LogRecord::Exchanges { count, root, .. } = &logged[0].record else {
            panic!("{:?}", logged[0]);
        };
        assert_eq!(*count, 2);
        assert_eq!(
            *root,
            keymesh_device::exchange_proof::exchanges_root(&[[1; 32], [3; 32]])
        );
        assert!(matches!(logged[2].record, LogRecord::Mismatch { .. }));
    }

    #[test]
    fn grouping_stops_before_a_record_that_needs_one_entry_too_many() {
        let records = [
            exchanged("1111", "1113", 1, 5),
            exchanged("1112", "1113", 2, 5),
            exchanged("1111", "1113", 3, 5),
            exchanged("1113", "1111", 4, 5),
            exchanged("1111", "1113", 5, 5),
        ];
        let (taken, logged) = group(&records, 2);
        // The third sender would need a third entry; nothing after it is taken either, so
        // the batch is a prefix of the journal.
        assert_eq!(taken, 3);
        assert_eq!(logged.len(), 2);
        assert_eq!(group(&records, 0), (0, vec![]));
    }
}
