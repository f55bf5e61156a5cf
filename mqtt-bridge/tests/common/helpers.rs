//! Sealing, chain and exchange-log helpers shared by the end-to-end test files.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine;
use keymesh_device::{keys::parse_public, seal_direct, seal_topic};
use rsa::RsaPublicKey;
use subxt::dynamic::{At, Value};

use super::*;

/// Long enough for anything that should happen; polls end as soon as it does.
pub const WAIT: Duration = Duration::from_secs(30);
/// How long "nothing arrives" is watched for.
pub const QUIET: Duration = Duration::from_secs(2);

pub fn direct(from: &str, to: &str, key: &RsaPublicKey, text: &str) -> Vec<u8> {
    seal_direct(from, &device_key(from), to, key, 0, text.as_bytes())
        .unwrap()
        .to_bytes()
}

pub fn topic(from: &str, group: &str, key: &RsaPublicKey, epoch: u32, text: &str) -> Vec<u8> {
    seal_topic(from, &device_key(from), group, key, epoch, text.as_bytes())
        .unwrap()
        .to_bytes()
}

/// A byte-array field of an event, as bytes.
pub fn field(value: &Value, name: &str) -> Vec<u8> {
    let inner = value.at(name).unwrap_or_else(|| panic!("no field {name}"));
    (0..)
        .map_while(|i| inner.at(i).and_then(|b| b.as_u128()))
        .map(|b| b as u8)
        .collect()
}

/// Waits until the finalized exchange log since block `from` has `exchanged` KeyExchanged and
/// `mismatched` KeyMismatch events; returns them.
pub async fn exchange_log(
    stack: &Stack,
    from: u64,
    exchanged: usize,
    mismatched: usize,
) -> Vec<(String, Value)> {
    wait_for("the exchange log", WAIT, || async {
        let events = stack.events(from, "ExchangeLog").await;
        let count = |name: &str| events.iter().filter(|(n, _)| n == name).count();
        (count("KeyExchanged") == exchanged && count("KeyMismatch") == mismatched).then_some(events)
    })
    .await
}

/// The envelope hashes of the `KeyExchanged` events among `events`, sorted.
pub fn exchanged_hashes(events: &[(String, Value)]) -> Vec<Vec<u8>> {
    let mut hashes: Vec<Vec<u8>> = events
        .iter()
        .filter(|(name, _)| name == "KeyExchanged")
        .map(|(_, v)| field(v, "envelope_hash"))
        .collect();
    hashes.sort();
    hashes
}

/// The group's current topic public key and epoch, over `keymesh_group`, once it has one.
pub async fn group_key(stack: &Stack, group: &str, epoch: u32) -> RsaPublicKey {
    let json = wait_for(&format!("group {group} at epoch {epoch}"), WAIT, || async {
        let json = stack
            .rpc("keymesh_group", subxt::rpcs::client::rpc_params![group])
            .await;
        (json["epoch"] == epoch).then_some(json)
    })
    .await;
    // Devices may send once the bridge has the key too.
    stack.bridge_synced().await;
    let der = base64::engine::general_purpose::STANDARD
        .decode(json["topicKey"]["publicKey"].as_str().unwrap())
        .unwrap();
    parse_public(&der).unwrap()
}

/// The number and key of the first epoch of `group` set after finalized block `block` (a removal's,
/// say). A rekey that was already under way may have moved the epoch on before `block`, so
/// the epoch is read at `block` rather than assumed.
pub async fn group_key_after(stack: &Stack, group: &str, block: u64) -> (u32, RsaPublicKey) {
    let hash = stack.api.at_block(block).await.unwrap().block_hash();
    let at = format!("0x{}", hex::encode(hash.0));
    let json = stack
        .rpc("keymesh_group", subxt::rpcs::client::rpc_params![group, at])
        .await;
    let epoch = json["epoch"].as_u64().unwrap() as u32;
    (epoch + 1, group_key(stack, group, epoch + 1).await)
}

pub async fn create_group(stack: &Stack, group: &str, members: &[&str], open: bool) {
    let alice = operator();
    let admin = Value::from_bytes(alice.public_key().0);
    stack
        .submit(
            &alice,
            "Groups",
            "create_group",
            vec![bytes(group.as_bytes()), admin],
        )
        .await;
    if open {
        let args = vec![bytes(group.as_bytes()), Value::bool(true)];
        stack.submit(&alice, "Groups", "set_publishing", args).await;
    }
    for member in members {
        let role = Value::unnamed_variant("Both", []);
        let args = vec![bytes(group.as_bytes()), bytes(member.as_bytes()), role];
        stack.submit(&alice, "Groups", "add_member", args).await;
    }
}
