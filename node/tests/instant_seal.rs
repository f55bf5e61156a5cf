//! `--sealing instant`: one block per transaction and a heartbeat, finalized at once.

mod common;

use std::time::{Duration, Instant};

use common::Node;
use keymesh_runtime::{BalancesCall, RuntimeCall, UNIT};
use sp_keyring::Sr25519Keyring;
use sp_runtime::MultiAddress;

#[tokio::test(flavor = "multi_thread")]
async fn signed_transfer_is_finalized_within_2_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start("instant", dir.path(), &["--dev", "--sealing", "instant"]);
    let rpc = node.wait_ready(Duration::from_secs(30)).await;
    let (before, _) = rpc.finalized_head().await.unwrap();

    let transfer = RuntimeCall::Balances(BalancesCall::transfer_keep_alive {
        dest: MultiAddress::Id(Sr25519Keyring::Bob.to_account_id()),
        value: 5 * UNIT,
    });
    let submitted = Instant::now();
    let xt = rpc.submit(Sr25519Keyring::Alice, transfer).await.unwrap();
    let block = rpc
        .wait_finalized_extrinsic(&xt, before + 1, Duration::from_secs(2))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.log_tail()));
    let took = submitted.elapsed();
    println!(
        "instant seal: transfer finalized in #{block} after {} ms",
        took.as_millis()
    );

    // The transfer executed: Alice's nonce moved on.
    assert_eq!(rpc.next_nonce(Sr25519Keyring::Alice).await.unwrap(), 1);
    // An idle chain keeps finalizing (one empty block a heartbeat), so a client that
    // judges staleness by the head's age can tell idle from stalled.
    let idle = rpc
        .wait_finalized(block + 2, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("no heartbeat blocks: {e}\n{}", node.log_tail()));
    assert!(idle >= block + 2);
}
