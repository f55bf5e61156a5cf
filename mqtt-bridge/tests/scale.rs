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

/// A stack whose bridge has its rate limit lifted, on a chain that makes blocks on a clock
/// and finalizes them with GRANDPA, as operators run it.
async fn unlimited_stack() -> Stack {
    let mut options = StackOptions::new(BrokerKind::Embedded).bridge_args(&[
        "--rate-per-sec",
        "1000000",
        "--rate-burst",
        "1000000",
    ]);
    options.sealing = "aura";
    Stack::start_options(options).await
}

/// Publishes `envelopes` to the sender's ingress at QoS 1 and waits for the front's PUBACKs.
async fn publish_all(sender: &mut Device, id: &str, envelopes: Vec<Vec<u8>>) {
    let count = envelopes.len();
    for envelope in envelopes {
        sender
            .mqtt
            .client
            .publish(
                keymesh_device::mqtt::ingress_topic(id),
                rumqttc::QoS::AtLeastOnce,
                false,
                envelope,
            )
            .await
            .unwrap();
    }
    assert!(
        sender.mqtt.pubacks(count, WAIT).await,
        "the front took the burst"
    );
}

/// The audit backlog gauge's values until it reads 0, each change once.
async fn backlog_until_drained(stack: &Stack) -> Vec<u64> {
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
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_backlog_gauge_falls_batch_by_batch_as_the_exchange_log_drains() {
    // Key mismatches are logged one record each, and more of them than one exchange-log
    // call holds (1,024), so draining takes several calls.
    const BURST: usize = 3_000;
    let stack = unlimited_stack().await;
    let burst =
        tokio::task::spawn_blocking(|| sealed_burst_to_key(BURST, &["1111"], "1113", "1114"))
            .await
            .unwrap();
    let mut sender = Device::connect(stack.mqtt_port, "1111").await;
    publish_all(&mut sender, "1111", burst).await;
    // Every refusal is journaled before its acknowledgement: once all are counted, the
    // backlog is at its peak, and the gauge must fall through values in between as calls
    // land, not jump to zero.
    let refused = "keymesh_bridge_refused_total{reason=\"KeyMismatch\"}";
    wait_for("every envelope refused", WAIT, || async {
        (stack.metric(refused).await == Some(BURST as f64)).then_some(())
    })
    .await;
    let seen = backlog_until_drained(&stack).await;
    eprintln!("audit_backlog as it drained: {seen:?}");
    let peak = seen.first().copied().unwrap_or(0);
    assert!(peak > 0, "the burst left no backlog to watch: {seen:?}");
    assert!(
        seen.iter().any(|v| *v > 0 && *v < peak),
        "the gauge went from {peak} to 0 with nothing in between: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[1] < w[0]),
        "with no new refusals the backlog only falls: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn under_sustained_gated_load_every_forwarded_envelope_becomes_provable_in_the_log() {
    // Three senders to one device, sent in rounds so that batches land while forwards go
    // on: the log is written under load, not after it.
    const ROUNDS: usize = 8;
    const PER_ROUND: usize = 750;
    let senders = ["1111", "1112", "1114"];
    let stack = unlimited_stack().await;
    let from = stack.finalized().await;
    let burst =
        tokio::task::spawn_blocking(move || sealed_burst(ROUNDS * PER_ROUND, &senders, "1113"))
            .await
            .unwrap();
    let mut devices = Vec::new();
    for id in senders {
        devices.push(Device::connect(stack.mqtt_port, id).await);
    }
    let mut reader = Device::connect(stack.mqtt_port, "1113").await;
    let mut delivered = Vec::new();
    let mut backlog_after_rounds = Vec::new();
    for round in burst.chunks(PER_ROUND) {
        let mut per_sender: Vec<Vec<Vec<u8>>> = vec![Vec::new(); senders.len()];
        for (i, envelope) in round.iter().enumerate() {
            per_sender[i % senders.len()].push(envelope.clone());
        }
        for ((device, id), envelopes) in devices.iter_mut().zip(senders).zip(per_sender) {
            publish_all(device, id, envelopes).await;
        }
        for _ in 0..round.len() {
            let bytes = reader
                .next_on(&inbox_topic("1113"), WAIT)
                .await
                .unwrap_or_else(|| panic!("only {} delivered", delivered.len()));
            let delivery =
                <keymesh_device::Delivery as codec::Decode>::decode(&mut &bytes[..]).unwrap();
            delivered.push(keymesh_device::envelope_hash(&delivery.envelope).to_vec());
        }
        let backlog = stack.metric("keymesh_bridge_audit_backlog").await;
        backlog_after_rounds.push(backlog.unwrap_or(0.0) as u64);
        // A round a finalized block: the flusher writes as the load goes on.
        let now = stack.finalized().await;
        wait_for("the next finalized block", WAIT, || async {
            (stack.finalized().await > now).then_some(())
        })
        .await;
    }
    assert_eq!(delivered.len(), ROUNDS * PER_ROUND);
    assert!(
        backlog_after_rounds
            .windows(2)
            .any(|w| w[1] < w[0] + PER_ROUND as u64),
        "no batch landed while the load went on: {backlog_after_rounds:?}"
    );
    backlog_until_drained(&stack).await;
    delivered.sort();
    let proved = proved_logged(&stack, &delivered).await;
    assert_eq!(
        proved.len(),
        delivered.len(),
        "every forwarded envelope is provable"
    );
    assert_eq!(proved, delivered);
    // Logged once each, and as a few roots rather than one event per envelope.
    let events = stack.events(from, "ExchangeLog").await;
    assert_eq!(exchanged_count(&events), delivered.len());
    let roots = events.iter().filter(|(n, _)| n == "KeysExchanged").count();
    eprintln!(
        "{} forwarded envelopes logged as {roots} KeysExchanged events; backlog after each \
         round: {backlog_after_rounds:?}",
        delivered.len()
    );
    assert!(roots * 10 <= delivered.len(), "{roots} events");
    // Under load, the gate's records are synced in groups, not one sync per envelope.
    let groups = stack
        .metric("keymesh_bridge_write_group_envelopes_count")
        .await
        .unwrap();
    let grouped = stack
        .metric("keymesh_bridge_write_group_envelopes_sum")
        .await
        .unwrap();
    eprintln!("{grouped} envelopes' records synced in {groups} groups");
    assert_eq!(grouped as usize, delivered.len());
    assert!(
        groups * 4.0 <= grouped,
        "{groups} syncs for {grouped} envelopes"
    );
}
