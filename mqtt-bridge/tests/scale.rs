//! Scale: a batch of registrations submitted at once, through a real node (Aura and
//! GRANDPA, as operators run it), the bridge and its embedded broker. The batch is
//! submitted by `keymesh-bench bulk`, the tool `scripts/bench.sh` measures with.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{process::Command, time::Duration};

use common::*;
use keymesh_device::{keys::public_der, mqtt::inbox_topic};

/// The batch size the issue names.
const BATCH: u32 = 1000;

/// Submits `BATCH` registrations at once with `keymesh-bench bulk`; its JSON report.
fn submit_batch(stack: &Stack, prefix: &str, key: &std::path::Path) -> serde_json::Value {
    let output = Command::new(sibling_binary("keymesh-bench"))
        .args([
            "bulk",
            "--node",
            &format!("ws://127.0.0.1:{}", stack.rpc_port),
        ])
        .args(["--count", &BATCH.to_string(), "--prefix", prefix])
        .args(["--key", key.to_str().unwrap()])
        .args([
            "--bridge-metrics",
            &format!("127.0.0.1:{}", stack.metrics_port),
        ])
        // A generous bound for a busy 2-core machine: the test asserts that all land, not
        // how fast.
        .args(["--within-s", "300"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "keymesh-bench bulk failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_registrations_submitted_at_once_all_become_usable() {
    let mut options = StackOptions::new(BrokerKind::Embedded);
    options.sealing = "aura";
    let stack = Stack::start_options(options).await;
    // Every device of the batch is registered with 1112's key, so a connect proof and an
    // envelope for any of them can be made with 1112's dev key.
    let key = stack.dir.path().join("1112.der");
    std::fs::write(&key, public_der(&public("1112"))).unwrap();

    let report = submit_batch(&stack, "bulk-", &key);
    eprintln!("{report}");
    assert_eq!(report["refused"], 0, "the pool refused some: {report}");
    assert_eq!(
        report["finalized"], BATCH,
        "not every registration reached a finalized block: {report}"
    );
    assert!(
        report["bridge_usable_s"].is_number(),
        "the bridge never reached the batch's last block: {report}"
    );

    // Usable means the bridge forwards to them: the first and the last of the batch each
    // receive an envelope sealed to their registered key.
    let mut sender = Device::connect(stack.mqtt_port, "1111").await;
    for i in [0, BATCH - 1] {
        let id = format!("bulk-{i}");
        let mut reader = MqttClient::try_connect(device_options(stack.mqtt_port, &id, "t", "1112"))
            .await
            .unwrap_or_else(|e| panic!("{id} may not connect: {e}"));
        reader.subscribe_granted(&inbox_topic(&id)).await;
        sender.send(direct("1111", &id, &public("1112"), &id)).await;
        let delivery = reader
            .next(WAIT)
            .await
            .unwrap_or_else(|| panic!("{id} received nothing"));
        assert_eq!(delivery.0, inbox_topic(&id));
        let opened = open_delivery(&delivery.1, &device_key("1112"), &directory()).unwrap();
        assert_eq!(&opened.payload[..], id.as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_backlog_gauge_falls_batch_by_batch_as_the_exchange_log_drains() {
    // More records than one exchange-log batch holds (1,024), so draining takes several
    // finalized blocks; the bridge's rate limit is lifted for the burst.
    const BURST: usize = 3_000;
    let mut options = StackOptions::new(BrokerKind::Embedded).bridge_args(&[
        "--rate-per-sec",
        "1000000",
        "--rate-burst",
        "1000000",
    ]);
    options.sealing = "aura";
    let stack = Stack::start_options(options).await;
    let burst = tokio::task::spawn_blocking(|| sealed_burst(BURST, &["1111"], "1113"))
        .await
        .unwrap();
    let mut sender = Device::connect(stack.mqtt_port, "1111").await;
    let mut reader = Device::connect(stack.mqtt_port, "1113").await;
    for envelope in burst {
        sender
            .mqtt
            .client
            .publish(
                keymesh_device::mqtt::ingress_topic("1111"),
                rumqttc::QoS::AtLeastOnce,
                false,
                envelope,
            )
            .await
            .unwrap();
    }
    assert!(
        sender.mqtt.pubacks(BURST, WAIT).await,
        "the front took the burst"
    );
    for i in 0..BURST {
        reader
            .next_on(&inbox_topic("1113"), WAIT)
            .await
            .unwrap_or_else(|| panic!("only {i} of {BURST} delivered"));
    }
    // Every forward is journaled before its delivery: the backlog is at its peak now, and
    // the gauge must fall through values in between as batches land, not jump to zero.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while seen.last() != Some(&0) {
        assert!(
            std::time::Instant::now() < deadline,
            "the backlog did not drain: {seen:?}"
        );
        if let Some(value) = stack.metric("keymesh_bridge_audit_backlog").await {
            if seen.last() != Some(&(value as u64)) {
                seen.push(value as u64);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("audit_backlog as it drained: {seen:?}");
    let peak = seen.first().copied().unwrap_or(0);
    assert!(peak > 0, "the burst left no backlog to watch: {seen:?}");
    assert!(
        seen.iter().any(|v| *v > 0 && *v < peak),
        "the gauge went from {peak} to 0 with nothing in between: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[1] < w[0]),
        "with no new forwards the backlog only falls: {seen:?}"
    );
}
