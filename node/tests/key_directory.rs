//! `keymesh_*` JSON-RPC against a real dev node: key queries, the seeds' Check/Error,
//! rotation, and answers from finalized state by default.
// Test helpers fail the test on any error, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use base64::Engine;
use common::{wait_for, Node, Rpc};
use jsonrpsee::rpc_params;
use keymesh_runtime::RuntimeCall;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sp_core::crypto::Ss58Codec;
use sp_keyring::Sr25519Keyring;

const KEY_1111: &[u8] = include_bytes!("../../runtime/dev-keys/1111.der");
const KEY_1113: &[u8] = include_bytes!("../../runtime/dev-keys/1113.der");
const NEW_KEY: &[u8] = include_bytes!("../../pallets/devices/testdata/rsa4096.der");

fn fp(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn rotate_1113() -> RuntimeCall {
    RuntimeCall::Devices(pallet_devices::Call::rotate_key {
        device: b"1113".to_vec().try_into().unwrap(),
        public_key: NEW_KEY.to_vec().try_into().unwrap(),
    })
}

async fn check(rpc: &Rpc, device: &str, fingerprint: &str) -> Value {
    rpc.call("keymesh_checkKey", rpc_params![device, fingerprint])
        .await
        .unwrap()
}

async fn error_code(
    rpc: &Rpc,
    method: &str,
    params: jsonrpsee::core::params::ArrayParams,
) -> String {
    rpc.call(method, params).await.unwrap_err()
}

#[tokio::test(flavor = "multi_thread")]
async fn key_queries_check_and_rotation_over_json_rpc() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start("keys", dir.path(), &["--dev", "--sealing", "instant"]);
    let rpc = node.wait_ready(Duration::from_secs(30)).await;

    // The dev genesis devices are there, with their keys.
    let device = rpc
        .call("keymesh_device", rpc_params!["1111"])
        .await
        .unwrap();
    assert_eq!(device["id"], "1111");
    assert_eq!(device["fingerprint"], fp(KEY_1111));
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(device["publicKey"].as_str().unwrap())
            .unwrap(),
        KEY_1111
    );
    assert_eq!(
        device["owner"],
        Sr25519Keyring::Alice.to_account_id().to_ss58check()
    );
    assert_eq!(device["status"], "active");
    assert_eq!(device["epoch"], 0);
    let all = rpc
        .call("keymesh_devices", rpc_params![Value::Null, 10])
        .await
        .unwrap();
    assert_eq!(all.as_array().map(Vec::len), Some(4));

    // The seeds' Check and Error: the right key checks, a tampered one ("None") does not.
    assert_eq!(check(&rpc, "1113", &fp(KEY_1113)).await["result"], "check");
    let tampered = check(&rpc, "1113", &"00".repeat(32)).await;
    assert_eq!(tampered["result"], "mismatch");
    assert_eq!(tampered["expected"], fp(KEY_1113));
    assert_eq!(
        check(&rpc, "9999", &fp(KEY_1113)).await["result"],
        "unknown"
    );

    // Clear errors for unknown ids and malformed arguments.
    assert!(error_code(&rpc, "keymesh_device", rpc_params!["9999"])
        .await
        .contains("unknown device"));
    assert!(error_code(&rpc, "keymesh_device", rpc_params!["a/b"])
        .await
        .contains("invalid id"));
    assert!(
        error_code(&rpc, "keymesh_checkKey", rpc_params!["1113", "None"])
            .await
            .contains("not 64 hex digits")
    );
    assert!(
        error_code(&rpc, "keymesh_devices", rpc_params![Value::Null, 1000])
            .await
            .contains("count must be")
    );

    // The owner (Charlie) rotates 1113's key; once finalized the old key is a mismatch.
    let (from, _) = rpc.finalized_head().await.unwrap();
    let xt = rpc
        .submit(Sr25519Keyring::Charlie, rotate_1113())
        .await
        .unwrap();
    let block = rpc
        .wait_finalized_extrinsic(&xt, from + 1, Duration::from_secs(10))
        .await
        .unwrap();
    let old = check(&rpc, "1113", &fp(KEY_1113)).await;
    assert_eq!(old["result"], "mismatch");
    assert_eq!(old["expected"], fp(NEW_KEY));
    assert_eq!(check(&rpc, "1113", &fp(NEW_KEY)).await["result"], "check");
    let history = rpc
        .call("keymesh_keyHistory", rpc_params!["1113"])
        .await
        .unwrap();
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        (
            history[0]["epoch"].as_u64(),
            history[0]["fingerprint"].as_str()
        ),
        (Some(0), Some(fp(KEY_1113).as_str()))
    );
    assert_eq!(history[0]["fromBlock"], 0);
    assert_eq!(
        (
            history[1]["epoch"].as_u64(),
            history[1]["fingerprint"].as_str()
        ),
        (Some(1), Some(fp(NEW_KEY).as_str()))
    );
    assert_eq!(history[1]["fromBlock"], block);
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_come_from_finalized_state_unless_a_block_is_named() {
    // `--no-grandpa`: Aura keeps authoring but nothing past genesis is ever finalized, so a
    // key change sits in a best block that is not final.
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start("lagging", dir.path(), &["--dev", "--no-grandpa"]);
    let rpc = node.wait_ready(Duration::from_secs(30)).await;
    let xt = rpc
        .submit(Sr25519Keyring::Charlie, rotate_1113())
        .await
        .unwrap();
    // Wait until the rotation is in the best chain.
    let best_hash = wait_for(Duration::from_secs(30), || async {
        let best = rpc.best_number().await?;
        for n in 1..=best {
            let hash = rpc.block_hash(n).await?;
            if rpc.block_extrinsics(hash).await?.contains(&xt) {
                return rpc.block_hash(best).await;
            }
        }
        Err("rotation not in a block yet".to_string())
    })
    .await
    .unwrap();
    let (finalized, _) = rpc.finalized_head().await.unwrap();
    assert_eq!(finalized, 0, "this test needs finality to lag");

    // By default: the finalized state, where the old key is still current.
    assert_eq!(check(&rpc, "1113", &fp(KEY_1113)).await["result"], "check");
    assert_eq!(
        check(&rpc, "1113", &fp(NEW_KEY)).await["result"],
        "mismatch"
    );
    // Naming the best block shows the change.
    let at_best = rpc
        .call(
            "keymesh_checkKey",
            rpc_params!["1113", fp(NEW_KEY), format!("{best_hash:?}")],
        )
        .await
        .unwrap();
    assert_eq!(at_best["result"], "check");
    let device = rpc
        .call(
            "keymesh_device",
            rpc_params!["1113", format!("{best_hash:?}")],
        )
        .await
        .unwrap();
    assert_eq!(device["epoch"], 1);
}
