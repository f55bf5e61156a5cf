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

/// How many forwarded envelopes `events` log: a `KeysExchanged` event counts `count`.
pub fn exchanged_count(events: &[(String, Value)]) -> usize {
    events
        .iter()
        .map(|(name, value)| match name.as_str() {
            "KeysExchanged" => value.at("count").and_then(|c| c.as_u128()).unwrap() as usize,
            "KeyExchanged" => 1,
            _ => 0,
        })
        .sum()
}

/// How many key mismatches `events` log.
pub fn mismatch_count(events: &[(String, Value)]) -> usize {
    events.iter().filter(|(n, _)| n == "KeyMismatch").count()
}

/// Waits until the finalized exchange log since block `from` counts `exchanged` forwarded
/// envelopes and `mismatched` KeyMismatch events; returns the events.
pub async fn exchange_log(
    stack: &Stack,
    from: u64,
    exchanged: usize,
    mismatched: usize,
) -> Vec<(String, Value)> {
    wait_for("the exchange log", WAIT, || async {
        let events = stack.events(from, "ExchangeLog").await;
        (exchanged_count(&events) == exchanged && mismatch_count(&events) == mismatched)
            .then_some(events)
    })
    .await
}

/// The envelopes among `hashes` that `keymesh-proof` proves logged: found in the bridge's
/// proof archive, on a path to the root of a finalized `KeysExchanged` event. Sorted.
pub async fn proved_logged(stack: &Stack, hashes: &[Vec<u8>]) -> Vec<Vec<u8>> {
    // The bridge archives a batch's leaves once it sees the batch finalized, a moment after
    // a caller that watches the log may have: wait until the bridge has committed all it
    // journaled (a bridge that is not running archives nothing more).
    wait_for("the bridge to archive what it logged", WAIT, || async {
        match stack.metric("keymesh_bridge_audit_backlog").await {
            Some(backlog) => (backlog == 0.0).then_some(()),
            None => Some(()),
        }
    })
    .await;
    let list = stack.dir.path().join(format!("hashes-{}.txt", free_port()));
    let text: Vec<String> = hashes.iter().map(hex::encode).collect();
    std::fs::write(&list, text.join("\n")).unwrap();
    let output = tokio::process::Command::new(sibling_binary("keymesh-proof"))
        .arg("--state-dir")
        .arg(stack.dir.path().join("bridge-state"))
        .arg("--node")
        .arg(format!("ws://127.0.0.1:{}", stack.rpc_port))
        .arg("--hashes-from")
        .arg(&list)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.code() != Some(2), "keymesh-proof: {stderr}");
    let mut proved: Vec<Vec<u8>> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|verdict| verdict["outcome"] == "logged")
        .map(|verdict| hex::decode(verdict["envelopeHash"].as_str().unwrap()).unwrap())
        .collect();
    proved.sort();
    proved
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

/// The number and key of the first epoch of `group` that shuts out whatever changed at or
/// before finalized block `block` (a removal's, say). The epoch is read at `block`, since a
/// rekey already under way may have moved it on; see [`settled_group_key`] for the rest.
pub async fn group_key_after(stack: &Stack, group: &str, block: u64) -> (u32, RsaPublicKey) {
    let hash = stack.api.at_block(block).await.unwrap().block_hash();
    let at = format!("0x{}", hex::encode(hash.0));
    let json = stack
        .rpc("keymesh_group", subxt::rpcs::client::rpc_params![group, at])
        .await;
    let epoch = json["epoch"].as_u64().unwrap() as u32;
    wait_settled(stack, group, epoch + 1).await
}

/// The epoch and key of `group` once every member holds a wrap of the current epoch, no key is
/// pending, and no device that left may read it: the state a rekey leaves when changes have
/// stopped. A key is made for the members as they stood at one block, so members added one
/// block apart may take more than one epoch to all be keyed.
pub async fn settled_group_key(stack: &Stack, group: &str) -> (u32, RsaPublicKey) {
    wait_settled(stack, group, 1).await
}

async fn wait_settled(stack: &Stack, group: &str, from_epoch: u32) -> (u32, RsaPublicKey) {
    let epoch = wait_for(
        &format!("group {group} settled at epoch {from_epoch} or later"),
        WAIT,
        || async {
            let json = stack
                .rpc("keymesh_group", subxt::rpcs::client::rpc_params![group])
                .await;
            let epoch = json["epoch"].as_u64()? as u32;
            if epoch < from_epoch || !json["pendingEpoch"].is_null() {
                return None;
            }
            for member in json["members"].as_array()? {
                let device = member["device"].as_str()?;
                let key = stack
                    .rpc(
                        "keymesh_memberKey",
                        subxt::rpcs::client::rpc_params![group, device],
                    )
                    .await;
                if key["wrappedEpochKey"].is_null() || key["topicKey"]["epoch"] != epoch {
                    return None;
                }
            }
            (!departed_may_read(stack, group).await).then_some(epoch)
        },
    )
    .await;
    (epoch, group_key(stack, group, epoch).await)
}

#[derive(scale_decode::DecodeAsType)]
struct GroupRecord {
    topic_key: Option<TopicKey>,
    departed_at: Option<u32>,
}

#[derive(scale_decode::DecodeAsType)]
struct TopicKey {
    members_at: u32,
}

/// The runtime's rule, read from finalized storage: a device that left after the view the
/// current key was made for may hold it.
async fn departed_may_read(stack: &Stack, group: &str) -> bool {
    let at = stack.api.at_block(stack.finalized().await).await.unwrap();
    let address = subxt::dynamic::storage::<(Vec<u8>,), GroupRecord>("Groups", "Groups");
    let record: GroupRecord = at
        .storage()
        .try_fetch(address, (group.as_bytes().to_vec(),))
        .await
        .unwrap()
        .expect("the group exists")
        .decode()
        .unwrap();
    match (record.departed_at, record.topic_key) {
        (Some(departed), Some(key)) => departed > key.members_at,
        _ => false,
    }
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

/// `count` direct envelopes to `to`, envelope `i` from `senders[i % senders.len()]` with the
/// payload `m{i}` padded to 256 bytes, sealed on every core.
pub fn sealed_burst(count: usize, senders: &[&str], to: &str) -> Vec<Vec<u8>> {
    sealed_burst_to_key(count, senders, to, to)
}

/// [`sealed_burst`], but sealed to `key_of`'s key (another device's: a key mismatch).
pub fn sealed_burst_to_key(count: usize, senders: &[&str], to: &str, key_of: &str) -> Vec<Vec<u8>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let keys: Vec<_> = senders.iter().map(|s| device_key(s)).collect();
                    let to_key = public(key_of);
                    (t * per..((t + 1) * per).min(count))
                        .map(|i| {
                            let k = i % senders.len();
                            let payload = format!("m{i:0>255}");
                            seal_direct(senders[k], &keys[k], to, &to_key, 0, payload.as_bytes())
                                .unwrap()
                                .to_bytes()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}
