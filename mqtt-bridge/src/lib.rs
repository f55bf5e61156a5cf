//! The KeyMesh MQTT bridge.
//!
//! It forwards a device's envelope only when the key it was sealed to is the target's
//! current key in **finalized** chain state, attests what it forwarded, refuses the rest
//! with a reason, logs both on chain, and rekeys groups as their key manager.
//!
//! | part | module | does |
//! |---|---|---|
//! | follow | [`follow`], [`chain`] | the key cache on finalized state, across reconnects, with no block skipped |
//! | gate | [`gate`] | pure rules, no I/O, `StaleState` included |
//! | forward | [`forward`], [`prepare`], [`notice`] | MQTT in, attested deliveries and refusal notices out, each after its records are durable; signature checks and attestations on every core ahead of each envelope's turn |
//! | ingress | [`ingress`], [`outbox`] | the bridge's broker session: resubscribes and resends after a lost session; which publishes the broker has acknowledged |
//! | audit record | [`record`] | what the exchange log is told |
//! | journal | [`audit_journal`], [`replay`] | the audit queue and the replay window on disk |
//! | audit | [`audit`] | journaled records to the chain in batches, with backoff and splitting |
//! | proofs | [`proof_archive`], [`proof_check`] | the leaves behind each logged Merkle root; proving an envelope was logged (`keymesh-proof`) |
//! | chain writer | [`writer`], [`write_queue`] | signs every chain write, one at a time; none while the bridge is not listed |
//! | keyman | [`keyman`], [`rekey`] | new topic and epoch keys on `RekeyRequired`, retried with backoff |
//! | directory | [`directory`], [`directory_feed`] | retained, attested key-directory entries on MQTT |
//! | front | [`front`] | the devices' only door to the broker: connect proofs, topic policy (DESIGN §4a) |
//! | health | [`health`], [`metrics`] | `/metrics`, `/healthz`, `/readyz` |
//! | wiring | [`service`] | starts the tasks above and connects their queues |

pub mod audit;
pub mod audit_journal;
pub mod backoff;
pub mod broker;
pub mod chain;
pub mod clock;
pub mod config;
pub mod directory;
pub mod directory_feed;
pub mod follow;
pub mod forward;
pub mod front;
pub mod gate;
pub mod health;
pub mod ingress;
pub mod keyman;
pub mod metrics;
pub mod notice;
pub mod outbox;
pub mod prepare;
pub mod proof_archive;
pub mod proof_check;
pub mod record;
pub mod rekey;
pub mod replay;
pub mod service;
pub mod write_queue;
pub mod writer;
