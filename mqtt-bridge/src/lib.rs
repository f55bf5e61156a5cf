//! The KeyMesh MQTT bridge.
//!
//! It forwards a device's envelope only when the key it was sealed to is the target's
//! current key in **finalized** chain state, attests what it forwarded, refuses the rest
//! with a reason, logs both on chain, and rekeys groups as their key manager.
//!
//! | part | module | does |
//! |---|---|---|
//! | follow | [`chain`] | key cache from finalized storage, updated from finalized events |
//! | gate | [`gate`] | pure rules, no I/O |
//! | replay | [`replay`] | the replay window on disk, so it survives a restart |
//! | forward | [`service`] | MQTT in, attested deliveries and refusals out |
//! | audit | [`audit`], [`audit_journal`] | one `exchange_log.record` per block, journaled so a crash loses no record and doubles none |
//! | keyman | [`keyman`] | new topic and epoch keys on `RekeyRequired` |
//! | directory | [`directory`] | retained, attested key-directory entries on MQTT |
//! | front | [`front`] | the devices' only door to the broker: connect proofs, topic policy (DESIGN §4a) |

pub mod audit;
pub mod audit_journal;
pub mod broker;
pub mod chain;
pub mod config;
pub mod directory;
pub mod front;
pub mod gate;
pub mod keyman;
pub mod metrics;
pub mod replay;
pub mod service;
