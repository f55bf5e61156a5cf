//! The 4-validator local testnet: finality, fault tolerance, and peers limited to the
//! nodes that `pallet-node-authorization` authorizes, on validators and full nodes alike.
// Test helpers fail the test on any error, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{free_port, Node, POLL};
use keymesh_runtime::RuntimeCall;
use sp_core::OpaquePeerId;
use sp_core::Pair;
use sp_keyring::Sr25519Keyring;
use sp_runtime::MultiAddress;

/// The validators' dev node keys and the PeerIds they yield (the `local_testnet` genesis
/// lists exactly these as well-known nodes).
const VALIDATORS: [(&str, &str, &str); 4] = [
    (
        "alice",
        "0000000000000000000000000000000000000000000000000000000000000001",
        "12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp",
    ),
    (
        "bob",
        "0000000000000000000000000000000000000000000000000000000000000002",
        "12D3KooWHdiAxVd8uMQR1hGWXccidmfCwLqcMpGwR6QcTP6QRMuD",
    ),
    (
        "charlie",
        "0000000000000000000000000000000000000000000000000000000000000003",
        "12D3KooWSCufgHzV4fCwRijfH2k3abrpAJxTKxEvN1FDuRXA2U9x",
    ),
    (
        "dave",
        "0000000000000000000000000000000000000000000000000000000000000004",
        "12D3KooWSsChzF81YDUKpe9Uk5AHV5oqAaXAcWNSPYgoLauUk4st",
    ),
];
/// A node key that no genesis authorizes; the test authorizes it on chain.
const FIFTH_NODE_KEY: &str = "0000000000000000000000000000000000000000000000000000000000000005";
/// A node key that nobody ever authorizes.
const INTRUDER_NODE_KEY: &str = "0000000000000000000000000000000000000000000000000000000000000006";

fn fail(what: &str, e: String, nodes: &[&Node]) -> ! {
    let logs: Vec<String> = nodes
        .iter()
        .map(|n| format!("--- {} ---\n{}", n.name, n.log_tail()))
        .collect();
    panic!("{what}: {e}\n{}", logs.join("\n"))
}

#[tokio::test(flavor = "multi_thread")]
async fn local_testnet_finality_fault_tolerance_and_permissioning() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<(u16, u16)> = VALIDATORS
        .iter()
        .map(|_| (free_port(), free_port()))
        .collect();
    let bootnodes: Vec<String> = VALIDATORS
        .iter()
        .zip(&ports)
        .map(|((_, _, peer), (_, p2p))| format!("/ip4/127.0.0.1/tcp/{p2p}/p2p/{peer}"))
        .collect();

    let mut validators: Vec<Node> = VALIDATORS
        .iter()
        .zip(&ports)
        .map(|((name, key, _), (rpc, p2p))| {
            let mut args = vec!["--chain", "local", "--validator", "--node-key", key];
            let flag = format!("--{name}");
            args.push(&flag);
            let mut boot = vec!["--bootnodes"];
            boot.extend(bootnodes.iter().map(String::as_str));
            args.extend(boot);
            Node::start_on(name, &dir.path().join(name), *rpc, *p2p, &args)
        })
        .collect();

    // 1. All four validators finalize.
    for v in validators.iter_mut() {
        v.wait_ready(Duration::from_secs(60)).await;
    }
    for v in &validators {
        v.rpc()
            .wait_finalized(3, Duration::from_secs(90))
            .await
            .unwrap_or_else(|e| {
                fail(
                    "all four finalize",
                    e,
                    &validators.iter().collect::<Vec<_>>(),
                )
            });
    }

    // 2. Kill one validator: the other three (3 of 4 > 2/3) still finalize.
    validators[3].kill();
    let alice = validators[0].rpc();
    let (f0, _) = alice.finalized_head().await.unwrap();
    for v in &validators[..3] {
        v.rpc()
            .wait_finalized(f0 + 3, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| {
                fail(
                    "three validators finalize",
                    e,
                    &validators.iter().collect::<Vec<_>>(),
                )
            });
    }

    // 3. Restart it: it catches up to the same finalized chain.
    validators[3].restart();
    let dave = validators[3].wait_ready(Duration::from_secs(60)).await;
    let (target, target_hash) = alice.finalized_head().await.unwrap();
    // Usually within seconds. Once in a cold CI-like run the restarted validator sat at its
    // old best block for a minute with three peers and no block downloaded ("Syncing
    // 0.0 bps"); the bound leaves room for the sync to recover, and the test still fails if
    // it never does.
    dave.wait_finalized(target, Duration::from_secs(180))
        .await
        .unwrap_or_else(|e| fail("restarted validator catches up", e, &[&validators[3]]));
    assert_eq!(dave.block_hash(target).await.unwrap(), target_hash);
    let (dave_final, dave_hash) = dave.finalized_head().await.unwrap();
    alice
        .wait_finalized(dave_final, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        alice.block_hash(dave_final).await.unwrap(),
        dave_hash,
        "restarted validator forked"
    );

    // 4. An unauthorized fifth node gets no peers (or no blocks) for 20 s.
    let mut intruder_args = vec![
        "--chain",
        "local",
        "--node-key",
        INTRUDER_NODE_KEY,
        "--bootnodes",
    ];
    intruder_args.extend(bootnodes.iter().map(String::as_str));
    let mut intruder = Node::start("intruder", &dir.path().join("intruder"), &intruder_args);
    let intruder_rpc = intruder.wait_ready(Duration::from_secs(60)).await;
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(20) {
        let peers = intruder_rpc.peers().await.unwrap();
        let best = intruder_rpc.best_number().await.unwrap();
        assert!(
            peers == 0 || best == 0,
            "unauthorized node has {peers} peers and block #{best}\n{}",
            intruder.log_tail()
        );
        tokio::time::sleep(POLL).await;
    }
    drop(intruder);

    // 5. Authorize a fifth node on chain (root adds it to the well-known nodes): it syncs.
    let fifth_p2p = free_port();
    let fifth_peer = peer_id_of(FIFTH_NODE_KEY);
    let fifth_peer_bytes = fifth_peer.clone();
    let add = RuntimeCall::Sudo(pallet_sudo::Call::sudo {
        call: Box::new(RuntimeCall::NodeAuthorization(
            pallet_node_authorization::Call::add_well_known_node {
                node: OpaquePeerId(fifth_peer.clone()),
                owner: MultiAddress::Id(Sr25519Keyring::Eve.to_account_id()),
            },
        )),
    });
    let (from, _) = alice.finalized_head().await.unwrap();
    let xt = alice.submit(Sr25519Keyring::Alice, add).await.unwrap();
    alice
        .wait_finalized_extrinsic(&xt, from + 1, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| fail("authorization finalized", e, &[&validators[0]]));

    let mut fifth_args = vec![
        "--chain",
        "local",
        "--node-key",
        FIFTH_NODE_KEY,
        "--bootnodes",
    ];
    fifth_args.extend(bootnodes.iter().map(String::as_str));
    let mut fifth = Node::start_on(
        "fifth",
        &dir.path().join("fifth"),
        free_port(),
        fifth_p2p,
        &fifth_args,
    );
    let fifth_rpc = fifth.wait_ready(Duration::from_secs(60)).await;
    let reported = fifth_rpc.local_peer_id().await.unwrap();
    let expected = sc_network::PeerId::from_bytes(&fifth_peer_bytes)
        .unwrap()
        .to_base58();
    assert_eq!(
        reported, expected,
        "the authorized PeerId is not the fifth node's"
    );
    let (goal, goal_hash) = alice.finalized_head().await.unwrap();
    fifth_rpc
        .wait_finalized(goal, Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| fail("authorized fifth node syncs", e, &[&fifth, &validators[0]]));
    assert_eq!(fifth_rpc.block_hash(goal).await.unwrap(), goal_hash);
    assert!(fifth_rpc.peers().await.unwrap() > 0);

    // 6. The fifth node is a full node: it does not validate, and by default runs no
    //    offchain worker. An unauthorized node that knows only it still gets nothing from
    //    it, and was never let in, however briefly.
    let intruder_peer = sc_network::PeerId::from_bytes(&peer_id_of(INTRUDER_NODE_KEY))
        .unwrap()
        .to_base58();
    let fifth_addr = format!("/ip4/127.0.0.1/tcp/{fifth_p2p}/p2p/{expected}");
    let second_intruder_args = [
        "--chain",
        "local",
        "--node-key",
        INTRUDER_NODE_KEY,
        "--bootnodes",
        &fifth_addr,
    ];
    let mut intruder = Node::start(
        "intruder-2",
        &dir.path().join("intruder-2"),
        &second_intruder_args,
    );
    let intruder_rpc = intruder.wait_ready(Duration::from_secs(60)).await;
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(20) {
        let admitted = fifth_rpc.peer_ids().await.unwrap();
        assert!(
            !admitted.contains(&intruder_peer),
            "the authorized full node admitted the unauthorized node\n{}",
            fifth.log_tail()
        );
        assert_eq!(
            intruder_rpc.best_number().await.unwrap(),
            0,
            "the unauthorized node got blocks\n{}",
            intruder.log_tail()
        );
        tokio::time::sleep(POLL).await;
    }
    drop(intruder);
}

/// The PeerId bytes of an Ed25519 node key: the identity multihash of the protobuf-encoded
/// public key, as libp2p derives it.
fn peer_id_of(node_key_hex: &str) -> Vec<u8> {
    let seed: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&node_key_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let seed: [u8; 32] = seed.try_into().unwrap();
    let public = sp_core::ed25519::Pair::from_seed(&seed).public();
    let mut peer = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
    peer.extend_from_slice(&public.0);
    peer
}
