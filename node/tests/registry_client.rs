//! A real chain client (subxt, driven by the node's metadata alone: no runtime types) against
//! a real dev node. It registers a device with a signed extrinsic, checks the key directory
//! over JSON-RPC, rotates the key, runs groups and the exchange log through every call, and
//! then decodes every KeyMesh event and storage item with subxt's generic `Value` decoder.
//! It also shows that a funded account with no role is refused at the pool.
// Test helpers fail the test on any error, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use common::{Node, Rpc};
use jsonrpsee::rpc_params;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use subxt::{dynamic::Value, OnlineClient, PolkadotConfig};
use subxt_signer::sr25519::{dev, Keypair};

/// The pallets whose events and storage the generic decoder must handle.
const KEYMESH_PALLETS: [&str; 3] = ["Devices", "Groups", "ExchangeLog"];

const KEY_2001: &[u8] = include_bytes!("../../pallets/devices/testdata/rsa2048-1113.der");
const KEY_2001_NEXT: &[u8] = include_bytes!("../../pallets/devices/testdata/rsa4096.der");
const KEY_2002: &[u8] = include_bytes!("../../pallets/devices/testdata/rsa2048-1111.der");
const KEY_1111: &[u8] = include_bytes!("../../runtime/dev-keys/1111.der");
const KEY_1112: &[u8] = include_bytes!("../../runtime/dev-keys/1112.der");
const TOPIC_KEY_1: &[u8] = include_bytes!("../../runtime/dev-keys/1112.der");
const TOPIC_KEY_2: &[u8] = include_bytes!("../../runtime/dev-keys/1114.der");

type Api = OnlineClient<PolkadotConfig>;

fn fp(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn bytes(b: &[u8]) -> Value {
    Value::from_bytes(b)
}

fn account(who: &Keypair) -> Value {
    Value::from_bytes(who.public_key().0)
}

fn unit_variant(name: &str) -> Value {
    Value::unnamed_variant(name, [])
}

/// Wraps of a fake epoch key for `devices`: the chain checks their count, owners and length.
fn wraps(devices: &[&str]) -> Value {
    Value::unnamed_composite(devices.iter().map(|d| {
        Value::unnamed_composite([
            bytes(d.as_bytes()),
            bytes(&device_key(d)),
            bytes(&[0x5a; 256]),
        ])
    }))
}

/// The fingerprint of a test device's current key in the group test: 2001's rotated key,
/// 2002's registered one, 1111's and 1112's genesis keys.
fn device_key(device: &str) -> [u8; 32] {
    let der = match device {
        "2001" => KEY_2001_NEXT,
        "2002" => KEY_2002,
        "1111" => KEY_1111,
        "1112" => KEY_1112,
        other => panic!("no test key for {other}"),
    };
    Sha256::digest(der).into()
}

/// Alice, a key manager, submits (part of) `group`'s key for `epoch`, made for the members
/// as they stood at block `members_at`.
async fn set_epoch_key(
    api: &Api,
    group: &str,
    epoch: u32,
    members_at: u64,
    topic: &[u8],
    devices: &[&str],
) {
    // The sealed key differs per (topic key, epoch), as a fresh one would: the chain refuses
    // the current epoch's sealed key and those retired by a removal.
    let mut seal = Sha256::digest(topic).to_vec();
    seal.extend_from_slice(&[epoch as u8; 32]);
    let args = vec![
        bytes(group.as_bytes()),
        Value::u128(epoch.into()),
        Value::u128(members_at.into()),
        bytes(topic),
        bytes(&seal),
        wraps(devices),
    ];
    submit(api, &dev::alice(), "Groups", "set_epoch_key", args).await;
}

/// Signs `pallet.call(args)` with `signer`, waits until it is finalized and succeeded, and
/// returns the number of its block.
async fn submit(api: &Api, signer: &Keypair, pallet: &str, call: &str, args: Vec<Value>) -> u64 {
    let payload = subxt::dynamic::tx(pallet, call, args);
    let in_block = api
        .tx()
        .await
        .unwrap()
        .sign_and_submit_then_watch_default(&payload, signer)
        .await
        .unwrap_or_else(|e| panic!("{pallet}.{call} not submitted: {e}"))
        .wait_for_finalized()
        .await
        .unwrap_or_else(|e| panic!("{pallet}.{call} not finalized: {e}"));
    in_block
        .wait_for_success()
        .await
        .unwrap_or_else(|e| panic!("{pallet}.{call} failed: {e}"));
    api.at_block(in_block.block_hash())
        .await
        .unwrap()
        .block_number()
}

/// Bob, the owner, rotates device 2001 to `KEY_2001_NEXT`; returns the block.
async fn rotate_2001(api: &Api) -> u64 {
    let args = vec![bytes(b"2001"), bytes(KEY_2001_NEXT)];
    submit(api, &dev::bob(), "Devices", "rotate_key", args).await
}

async fn start() -> (Node, Rpc, Api, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start("client", dir.path(), &["--dev", "--sealing", "instant"]);
    let rpc = node.wait_ready(Duration::from_secs(30)).await;
    let api = Api::from_insecure_url(format!("ws://127.0.0.1:{}", node.rpc_port))
        .await
        .unwrap();
    (node, rpc, api, dir)
}

async fn check(rpc: &Rpc, target: Json, fingerprint: &str) -> Json {
    rpc.call("keymesh_checkKey", rpc_params![target, fingerprint])
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_registered_by_a_real_client_is_served_over_json_rpc() {
    let (mut node, rpc, api, _dir) = start().await;
    let (alice, bob) = (dev::alice(), dev::bob());

    // Alice is an operator on the dev chain; Bob will own the device.
    let registered_at = submit(
        &api,
        &alice,
        "Devices",
        "register",
        vec![bytes(b"2001"), bytes(KEY_2001), account(&bob)],
    )
    .await;

    let device = rpc
        .call("keymesh_device", rpc_params!["2001"])
        .await
        .unwrap();
    assert_eq!(device["fingerprint"], fp(KEY_2001));
    assert_eq!(device["registeredAt"], registered_at);
    assert_eq!(
        check(&rpc, "2001".into(), &fp(KEY_2001)).await["result"],
        "check"
    );
    // The seeds' attack: the key replaced by "None". The chain names the expected key.
    let tampered = check(&rpc, "2001".into(), &fp(b"None")).await;
    assert_eq!(tampered["result"], "mismatch");
    assert_eq!(tampered["expected"], fp(KEY_2001));

    // The owner rotates; once that is finalized the old key is a mismatch.
    let rotated_at = rotate_2001(&api).await;
    assert!(rotated_at > registered_at);
    let old = check(&rpc, serde_json::json!({"device": "2001"}), &fp(KEY_2001)).await;
    assert_eq!(old["result"], "mismatch");
    assert_eq!(old["expected"], fp(KEY_2001_NEXT));
    let history = rpc
        .call("keymesh_keyHistory", rpc_params!["2001"])
        .await
        .unwrap();
    assert_eq!(
        history,
        serde_json::json!([
            {"epoch": 0, "fingerprint": fp(KEY_2001), "fromBlock": registered_at},
            {"epoch": 1, "fingerprint": fp(KEY_2001_NEXT), "fromBlock": rotated_at},
        ])
    );
    node.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_keymesh_event_and_storage_item_decodes_generically() {
    let (mut node, rpc, api, _dir) = start().await;
    let (alice, bob, charlie) = (dev::alice(), dev::bob(), dev::charlie());

    // Devices: every call.
    for (id, key) in [(&b"2001"[..], KEY_2001), (b"2002", KEY_2002)] {
        submit(
            &api,
            &alice,
            "Devices",
            "register",
            vec![bytes(id), bytes(key), account(&bob)],
        )
        .await;
    }
    rotate_2001(&api).await;
    submit(&api, &alice, "Devices", "suspend", vec![bytes(b"2001")]).await;
    submit(&api, &alice, "Devices", "resume", vec![bytes(b"2001")]).await;

    // Alice becomes bridge (exchange log) and key manager (groups); Charlie comes and goes.
    for (pallet, add, remove) in [
        ("ExchangeLog", "add_bridge", "remove_bridge"),
        ("Groups", "add_key_manager", "remove_key_manager"),
    ] {
        submit(&api, &alice, pallet, add, vec![account(&alice)]).await;
        submit(&api, &alice, pallet, add, vec![account(&charlie)]).await;
        submit(&api, &alice, pallet, remove, vec![account(&charlie)]).await;
    }
    let checked_at = api.at_current_block().await.unwrap().block_number();
    let device = |id: &[u8]| Value::unnamed_variant("Device", [bytes(id)]);
    let batch = Value::unnamed_composite([
        Value::named_variant(
            "Exchanged",
            [
                ("sender", bytes(b"1111")),
                ("target", device(b"2001")),
                ("fingerprint", bytes(&Sha256::digest(KEY_2001_NEXT))),
                ("envelope_hash", bytes(&[7; 32])),
                ("checked_at", Value::u128(checked_at.into())),
            ],
        ),
        Value::named_variant(
            "Exchanges",
            [
                ("sender", bytes(b"1111")),
                ("target", device(b"2001")),
                ("fingerprint", bytes(&Sha256::digest(KEY_2001_NEXT))),
                ("checked_at", Value::u128(checked_at.into())),
                ("count", Value::u128(3)),
                ("root", bytes(&[8; 32])),
            ],
        ),
        Value::named_variant(
            "Mismatch",
            [
                ("sender", bytes(b"1111")),
                ("target", device(b"2001")),
                ("presented", bytes(&Sha256::digest(b"None"))),
                ("expected", bytes(&Sha256::digest(KEY_2001_NEXT))),
            ],
        ),
    ]);
    submit(&api, &alice, "ExchangeLog", "record", vec![batch]).await;

    // Groups: every call, a rekey that starts over, one that completes, revocation.
    submit(
        &api,
        &alice,
        "Groups",
        "create_group",
        vec![bytes(b"hsu0001"), account(&alice)],
    )
    .await;
    submit(
        &api,
        &alice,
        "Groups",
        "set_publishing",
        vec![bytes(b"hsu0001"), Value::bool(true)],
    )
    .await;
    for (id, role) in [
        ("2001", "Both"),
        ("1111", "Publisher"),
        ("2002", "Subscriber"),
    ] {
        let args = vec![bytes(b"hsu0001"), bytes(id.as_bytes()), unit_variant(role)];
        submit(&api, &alice, "Groups", "add_member", args).await;
    }
    let view = api.at_current_block().await.unwrap().block_number();
    let members = ["2001", "1111", "2002"];
    // A first attempt, dropped for another key (which retires it), then completed.
    set_epoch_key(&api, "hsu0001", 1, view, TOPIC_KEY_1, &members[..1]).await;
    set_epoch_key(&api, "hsu0001", 1, view, TOPIC_KEY_2, &members[..2]).await;
    set_epoch_key(&api, "hsu0001", 1, view, TOPIC_KEY_2, &members[2..]).await;
    let group_check = check(
        &rpc,
        serde_json::json!({"group": "hsu0001"}),
        &fp(TOPIC_KEY_2),
    )
    .await;
    assert_eq!(group_check["result"], "check");
    let member_key = rpc
        .call("keymesh_memberKey", rpc_params!["hsu0001", "2002"])
        .await
        .unwrap();
    assert_eq!(member_key["role"], "subscriber");
    assert_eq!(member_key["topicKey"]["epoch"], 1);
    assert_eq!(member_key["topicKey"]["fingerprint"], fp(TOPIC_KEY_2));
    assert!(member_key["wrappedEpochKey"].is_string());

    submit(
        &api,
        &alice,
        "Groups",
        "remove_member",
        vec![bytes(b"hsu0001"), bytes(b"1111")],
    )
    .await;
    submit(&api, &bob, "Devices", "revoke", vec![bytes(b"2002")]).await;
    // Leave a rekey half done, so the pending-key storage has an entry to decode.
    let args = vec![
        bytes(b"hsu0001"),
        bytes(b"1112"),
        unit_variant("Subscriber"),
    ];
    let view = submit(&api, &alice, "Groups", "add_member", args).await;
    set_epoch_key(&api, "hsu0001", 2, view, KEY_2002, &["2001"]).await;
    let group = rpc
        .call("keymesh_group", rpc_params!["hsu0001"])
        .await
        .unwrap();
    assert_eq!(group["epoch"], 1);
    assert_eq!(group["pendingEpoch"], 2);
    let mut in_group: Vec<&str> = group["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["device"].as_str().unwrap())
        .collect();
    in_group.sort();
    assert_eq!(in_group, ["1112", "2001"]);
    // A member's device changes: its groups follow (MemberChanged). 1112 holds no wrap, so
    // 2001's stay for the storage check below.
    submit(&api, &alice, "Devices", "suspend", vec![bytes(b"1112")]).await;

    let head = api.at_current_block().await.unwrap();
    let metadata = head.metadata();

    // Events: decode every KeyMesh event of every block; the names seen must be exactly the
    // variants the metadata declares.
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for number in 1..=head.block_number() {
        let at = api.at_block(number).await.unwrap();
        let events = at.events().fetch().await.unwrap();
        for event in events.iter() {
            let event = event.unwrap();
            if !KEYMESH_PALLETS.contains(&event.pallet_name()) {
                continue;
            }
            let fields = event
                .decode_fields_unchecked_as::<Value>()
                .unwrap_or_else(|e| panic!("{}.{}: {e}", event.pallet_name(), event.event_name()));
            assert!(!fields.to_string().is_empty());
            seen.insert((event.pallet_name().into(), event.event_name().into()));
        }
    }
    let declared: BTreeSet<(String, String)> = KEYMESH_PALLETS
        .iter()
        .flat_map(|pallet| {
            let variants = metadata
                .pallet_by_name(pallet)
                .and_then(|p| p.event_variants())
                .unwrap_or_else(|| panic!("{pallet} has no events in the metadata"));
            variants
                .iter()
                .map(|v| (pallet.to_string(), v.name.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(seen, declared, "events seen vs declared");

    // Storage: every KeyMesh item has entries, and every key part and value decodes.
    let mut entries: BTreeMap<(String, String), usize> = BTreeMap::new();
    for item in head.storage().entries() {
        if !KEYMESH_PALLETS.contains(&item.pallet_name()) {
            continue;
        }
        let name = (
            item.pallet_name().to_string(),
            item.entry_name().to_string(),
        );
        let entry = item.entry().unwrap();
        let mut count = 0;
        if entry.is_plain() {
            let value = entry.fetch(Vec::new()).await.unwrap();
            value.decode_as::<Value>().unwrap();
            count = 1;
        } else {
            let mut all = entry.iter(Vec::<Value>::new()).await.unwrap();
            while let Some(kv) = all.next().await {
                let kv = kv.unwrap();
                let key = kv.key().unwrap();
                for part in key.parts() {
                    // Every KeyMesh map uses a transparent hasher: the key itself decodes.
                    let decoded = part.decode_as::<Value>().unwrap();
                    assert!(decoded.is_some(), "{name:?}: opaque key part");
                }
                kv.value().decode_as::<Value>().unwrap();
                count += 1;
            }
        }
        entries.insert(name, count);
    }
    // Devices: 4 items; ExchangeLog: 2 maps and their 2 counters; Groups: 8 items.
    assert_eq!(entries.len(), 16, "storage items: {entries:?}");
    for (name, count) in &entries {
        assert!(*count > 0, "{name:?} had no entry to decode: {entries:?}");
    }
    node.stop();
}

/// Submits `pallet.call(args)` signed by `signer` and returns the pool's refusal, if any.
async fn refusal(
    api: &Api,
    signer: &Keypair,
    pallet: &str,
    call: &str,
    args: Vec<Value>,
) -> Option<String> {
    let payload = subxt::dynamic::tx(pallet, call, args);
    match api
        .tx()
        .await
        .unwrap()
        .sign_and_submit_then_watch_default(&payload, signer)
        .await
    {
        // The pool answers a watched submission with a status: `invalid` is its refusal.
        Ok(progress) => progress
            .wait_for_finalized_success()
            .await
            .err()
            .map(|e| e.to_string()),
        Err(e) => Some(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_funded_stranger_is_refused_at_the_pool_and_the_roles_go_through() {
    let (mut node, _rpc, api, _dir) = start().await;
    // Eve is endowed on the dev chain and has no role.
    let (eve, bob) = (dev::eve(), dev::bob());
    let remark = || vec![bytes(b"spam")];
    let transfer = || {
        vec![
            Value::unnamed_variant("Id", [account(&bob)]),
            Value::u128(1_000_000_000_000),
        ]
    };
    for (call, args) in [("remark", remark()), ("transfer_keep_alive", transfer())] {
        let pallet = if call == "remark" {
            "System"
        } else {
            "Balances"
        };
        let refused = refusal(&api, &eve, pallet, call, args)
            .await
            .unwrap_or_else(|| panic!("{pallet}.{call} from a stranger was admitted"));
        assert!(
            refused.contains("Invalid signing address"),
            "{pallet}.{call}: {refused}"
        );
    }
    // An operator (Alice), a device owner (Bob) and the bridge (Ferdie) are admitted.
    for known in [dev::alice(), bob.clone(), dev::ferdie()] {
        assert_eq!(
            refusal(&api, &known, "System", "remark", remark()).await,
            None
        );
    }
    // Eve becomes a group admin: from then on she may transact.
    submit(
        &api,
        &dev::alice(),
        "Groups",
        "create_group",
        vec![bytes(b"eve-s"), account(&eve)],
    )
    .await;
    assert_eq!(
        refusal(&api, &eve, "System", "remark", remark()).await,
        None
    );
    node.stop();
}
