//! Hostile MQTT clients against the real stack on loopback: a dev node, the bridge binary
//! with its front, and the embedded broker or Mosquitto behind it. Each test is named for
//! the attack it makes; `docs/security.md` maps every attack to its defence and its test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::*;
use keymesh_device::{
    mqtt::{group_topic, inbox_topic, ingress_topic, status_topic},
    seal_direct, Delivery, Envelope,
};
use rumqttc::{MqttOptions, QoS, SubscribeReasonCode};

/// Options with no credentials at all, or whatever the test sets on them.
fn bare(port: u16, client_id: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options
}

/// Connecting with `options` must fail; returns why.
async fn refused(options: MqttOptions, what: &str) -> String {
    match MqttClient::try_connect(options).await {
        Ok(_) => panic!("{what}: connected"),
        Err(e) => e,
    }
}

/// The dev bridge's client id at the broker: derived from public data.
fn bridge_client_id() -> String {
    format!("keymesh-bridge-{}", hex::encode(&bridge_key()[..8]))
}

async fn connections_without_a_valid_fresh_proof_are_refused(broker: BrokerKind) {
    let stack = Stack::start(broker).await;
    let port = stack.mqtt_port;
    refused(bare(port, "1111"), "anonymous").await;
    let mut wrong = bare(port, "1111");
    wrong.set_credentials("1111", "hunter2");
    refused(wrong, "wrong password").await;
    refused(
        device_options(port, "1111", "x", "1112"),
        "proof by another key",
    )
    .await;
    refused(device_options(port, "9999", "x", "1111"), "unknown device").await;
    let mut other_id = bare(port, "1112");
    other_id.set_credentials("1111", proof("1111", "1111"));
    refused(other_id, "another device's client id").await;
    // A proof captured off the wire is good for one connection only.
    let captured = proof("1111", "1111");
    let mut first = bare(port, "1111:first");
    first.set_credentials("1111", captured.clone());
    let _first = MqttClient::try_connect(first).await.expect("the first use");
    let mut replay = bare(port, "1111:replay");
    replay.set_credentials("1111", captured);
    refused(replay, "replayed proof").await;

    // Revocation: the connected device is kicked, and it cannot come back.
    let mut live = MqttClient::try_connect(device_options(port, "1114", "live", "1114"))
        .await
        .expect("1114 connects while active");
    stack
        .submit(&operator(), "Devices", "revoke", vec![bytes(b"1114")])
        .await;
    let finalized = Instant::now();
    let revoked_at = stack.finalized().await;
    tokio::time::timeout(WAIT, live.closed.recv())
        .await
        .expect("1114 is disconnected after its revocation");
    println!(
        "revocation finalized at #{revoked_at} -> 1114 disconnected after {:?}, bridge cache at #{}",
        finalized.elapsed(),
        stack.metric("keymesh_bridge_cache_block").await.unwrap_or(-1.0)
    );
    refused(
        device_options(port, "1114", "again", "1114"),
        "revoked device",
    )
    .await;

    if broker == BrokerKind::Mosquitto {
        // The broker itself takes no one but the bridge.
        refused(bare(stack.broker_port, "anyone"), "anonymous at the broker").await;
        let mut device_at_broker = bare(stack.broker_port, "1111");
        device_at_broker.set_credentials("1111", proof("1111", "1111"));
        refused(device_at_broker, "a device straight at the broker").await;
    }
    for outcome in [
        "anonymous",
        "bad_signature",
        "replayed",
        "not_active",
        "unknown_device",
    ] {
        let name = format!("keymesh_bridge_front_connects_total{{outcome=\"{outcome}\"}}");
        assert!(stack.metric(&name).await >= Some(1.0), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_without_a_valid_fresh_proof_are_refused_embedded_broker() {
    connections_without_a_valid_fresh_proof_are_refused(BrokerKind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_without_a_valid_fresh_proof_are_refused_mosquitto() {
    connections_without_a_valid_fresh_proof_are_refused(BrokerKind::Mosquitto).await;
}

async fn a_device_cannot_read_ingress_or_another_device_or_a_foreign_group(broker: BrokerKind) {
    let stack = Stack::start(broker).await;
    create_group(&stack, "B", &["1113", "1114"], false).await;
    let port = stack.mqtt_port;
    let mut spy = MqttClient::device(port, "1112", "spy").await;
    for filter in [
        "#",
        "km/#",
        "km/v1/#",
        "km/v1/in/#",
        "km/v1/in/+",
        "km/v1/in/1111",
        "km/v1/dev/+/inbox",
        "km/v1/dev/1113/inbox",
        "km/v1/dev/1113/status",
        "km/v1/dev/1113/#",
        "km/v1/grp/B/msgs",
        "km/v1/grp/+/msgs",
        "km/v1/grp/#",
        "$SYS/#",
    ] {
        assert_eq!(
            spy.subscribe(filter).await,
            vec![SubscribeReasonCode::Failure],
            "1112 subscribed to {filter}"
        );
    }
    // The seeds' tampered key: 1111 seals "to 1113" under 1114's key. 1114 holds that private
    // key, so it must not get the ciphertext from anyone; the bridge refuses it.
    let mut forger = Device::connect(port, "1114").await;
    assert_eq!(
        forger.mqtt.subscribe(&ingress_topic("1111")).await,
        vec![SubscribeReasonCode::Failure]
    );
    let mut d1111 = Device::connect(port, "1111").await;
    let mut d1113 = Device::connect(port, "1113").await;
    d1111
        .send(direct("1111", "1113", &public("1114"), "pin 0000"))
        .await;
    assert_eq!(d1111.refusal(WAIT).await["reason"], "KeyMismatch");
    assert!(
        forger.mqtt.next(QUIET).await.is_none(),
        "the forger got a copy"
    );
    assert!(spy.next(QUIET).await.is_none(), "the spy got a copy");
    assert!(d1113.next_on(&inbox_topic("1113"), QUIET).await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_cannot_read_ingress_or_another_device_or_a_foreign_group_embedded_broker() {
    a_device_cannot_read_ingress_or_another_device_or_a_foreign_group(BrokerKind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_cannot_read_ingress_or_another_device_or_a_foreign_group_mosquitto() {
    a_device_cannot_read_ingress_or_another_device_or_a_foreign_group(BrokerKind::Mosquitto).await;
}

async fn a_device_cannot_write_outside_its_own_ingress_or_set_retained(broker: BrokerKind) {
    let stack = Stack::start(broker).await;
    create_group(&stack, "B", &["1112", "1113"], false).await;
    settled_group_key(&stack, "B").await;
    let port = stack.mqtt_port;
    let mut d1113 = Device::connect(port, "1113").await;
    d1113.mqtt.subscribe_granted(&group_topic("B")).await;
    let attempts: [(&str, bool); 8] = [
        ("km/v1/in/1111", false),
        ("km/v1/dev/1113/inbox", false),
        ("km/v1/dev/1113/status", false),
        ("km/v1/dev/1112/inbox", false),
        ("km/v1/grp/B/msgs", false),
        ("km/v1/dir/1113", true),
        ("km/v1/dir/1113", false),
        ("km/v1/in/1112", true),
    ];
    let genuine = direct("1112", "1113", &public("1113"), "misplaced");
    for (i, (topic, retain)) in attempts.iter().enumerate() {
        let tag = format!("w{i}");
        let mut writer = MqttClient::try_connect(device_options(port, "1112", &tag, "1112"))
            .await
            .unwrap();
        let acked = writer.try_publish(topic, genuine.clone(), *retain).await;
        assert!(!acked, "1112 published to {topic} (retain {retain})");
        tokio::time::timeout(WAIT, writer.closed.recv())
            .await
            .unwrap_or_else(|_| panic!("1112 still connected after writing {topic}"));
    }
    for topic in [inbox_topic("1113"), status_topic("1113"), group_topic("B")] {
        assert!(
            d1113.next_on(&topic, QUIET).await.is_none(),
            "something reached {topic}"
        );
    }
    // The directory entry a new subscriber gets is still the bridge's attested one.
    let mut reader = MqttClient::device(port, "1111", "dir").await;
    reader.subscribe_granted("km/v1/dir/1113").await;
    let (_, retained) = reader.next(WAIT).await.expect("a retained directory entry");
    Delivery::verify(&retained, &[bridge_key()]).expect("attested by the bridge");
    let denied = "keymesh_bridge_front_denied_total{what=\"publish\"}";
    assert!(stack.metric(denied).await >= Some(attempts.len() as f64));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_cannot_write_outside_its_own_ingress_or_set_retained_embedded_broker() {
    a_device_cannot_write_outside_its_own_ingress_or_set_retained(BrokerKind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_cannot_write_outside_its_own_ingress_or_set_retained_mosquitto() {
    a_device_cannot_write_outside_its_own_ingress_or_set_retained(BrokerKind::Mosquitto).await;
}

async fn no_client_can_take_over_the_bridge_client_id(broker: BrokerKind) {
    let stack = Stack::start(broker).await;
    let port = stack.mqtt_port;
    let mut anonymous = bare(port, &bridge_client_id());
    anonymous.set_clean_session(true);
    refused(anonymous, "anonymous with the bridge's client id").await;
    let mut as_device = bare(port, &bridge_client_id());
    as_device.set_credentials("1111", proof("1111", "1111"));
    refused(as_device, "a device with the bridge's client id").await;
    if broker == BrokerKind::Mosquitto {
        refused(
            bare(stack.broker_port, &bridge_client_id()),
            "the bridge's client id at the broker",
        )
        .await;
    }
    // The bridge still hears everything: ten honest messages all arrive.
    let mut d1111 = Device::connect(port, "1111").await;
    let mut d1113 = Device::connect(port, "1113").await;
    for i in 0..10 {
        d1111
            .send(direct("1111", "1113", &public("1113"), &format!("#{i}")))
            .await;
    }
    for i in 0..10 {
        assert!(
            d1113.next_on(&inbox_topic("1113"), WAIT).await.is_some(),
            "only {i} of 10 delivered after the takeover attempts"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_client_can_take_over_the_bridge_client_id_embedded_broker() {
    no_client_can_take_over_the_bridge_client_id(BrokerKind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_client_can_take_over_the_bridge_client_id_mosquitto() {
    no_client_can_take_over_the_bridge_client_id(BrokerKind::Mosquitto).await;
}

async fn a_sniffed_envelope_replayed_with_dup_set_is_not_forwarded(broker: BrokerKind) {
    let stack = Stack::start(broker).await;
    let port = stack.mqtt_port;
    let mut d1111 = Device::connect(port, "1111").await;
    let mut d1113 = Device::connect(port, "1113").await;
    let genuine = direct("1111", "1113", &public("1113"), "once");
    d1111.send(genuine.clone()).await;
    assert!(d1113.next_on(&inbox_topic("1113"), WAIT).await.is_some());
    // The same bytes again, flagged as the broker's redelivery.
    let mut raw = RawSession::device(port, "1111", "raw").await;
    raw.publish(&ingress_topic("1111"), genuine, 7, true).await;
    assert_eq!(d1111.refusal(WAIT).await["reason"], "Replay");
    assert!(d1113.next_on(&inbox_topic("1113"), QUIET).await.is_none());
    // DUP on a first copy means nothing either: a fresh envelope passes once.
    let fresh = direct("1111", "1113", &public("1113"), "fresh");
    raw.publish(&ingress_topic("1111"), fresh, 8, true).await;
    assert!(d1113.next_on(&inbox_topic("1113"), WAIT).await.is_some());
    assert_eq!(
        stack.metric("keymesh_bridge_redelivered_total").await,
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sniffed_envelope_replayed_with_dup_set_is_not_forwarded_embedded_broker() {
    a_sniffed_envelope_replayed_with_dup_set_is_not_forwarded(BrokerKind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sniffed_envelope_replayed_with_dup_set_is_not_forwarded_mosquitto() {
    a_sniffed_envelope_replayed_with_dup_set_is_not_forwarded(BrokerKind::Mosquitto).await;
}

/// A captured wrong-key envelope replayed fifty times: by a sniffer straight at a broker
/// without ACLs, or, behind the front, by the misbehaving sender itself.
async fn fifty_replays_of_a_wrong_key_envelope_put_one_key_mismatch_on_chain(broker: BrokerKind) {
    let stack = Stack::start(broker).await;
    let from = stack.finalized().await;
    let mut d1111 = Device::connect(stack.mqtt_port, "1111").await;
    let wrong_key = direct("1111", "1113", &public("1114"), "tampered");
    d1111.send(wrong_key.clone()).await;
    assert_eq!(d1111.refusal(WAIT).await["reason"], "KeyMismatch");
    let mut replayer = match broker {
        BrokerKind::OpenMosquitto => MqttClient::try_connect(bare(stack.broker_port, "sniffer"))
            .await
            .expect("the open broker takes anyone"),
        _ => MqttClient::device(stack.mqtt_port, "1111", "replay").await,
    };
    for i in 0..49 {
        assert!(
            replayer
                .try_publish(&ingress_topic("1111"), wrong_key.clone(), false)
                .await,
            "replay {i}"
        );
    }
    // The fiftieth with DUP set.
    let mut raw = RawSession::device(stack.mqtt_port, "1111", "raw").await;
    raw.publish(&ingress_topic("1111"), wrong_key, 9, true)
        .await;
    let replays = "keymesh_bridge_refused_total{reason=\"Replay\"}";
    wait_for("50 replays refused", WAIT, || async {
        (stack.metric(replays).await >= Some(50.0)).then_some(())
    })
    .await;
    let events = exchange_log(&stack, from, 0, 1).await;
    assert_eq!(events.len(), 1);
    tokio::time::sleep(QUIET).await;
    assert_eq!(stack.events(from, "ExchangeLog").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_replays_of_a_wrong_key_envelope_put_one_key_mismatch_on_chain_embedded_broker() {
    fifty_replays_of_a_wrong_key_envelope_put_one_key_mismatch_on_chain(BrokerKind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_replays_of_a_wrong_key_envelope_put_one_key_mismatch_on_chain_mosquitto() {
    fifty_replays_of_a_wrong_key_envelope_put_one_key_mismatch_on_chain(BrokerKind::Mosquitto)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_replays_of_a_wrong_key_envelope_put_one_key_mismatch_on_chain_open_broker() {
    fifty_replays_of_a_wrong_key_envelope_put_one_key_mismatch_on_chain(BrokerKind::OpenMosquitto)
        .await;
}

/// Sends `count` honest envelopes 1111 -> 1113 at `per_sec`, and returns how many distinct
/// ones 1113 received.
async fn honest_delivery(stack: &Stack, count: usize, per_sec: u64) -> usize {
    let mut d1111 = Device::connect(stack.mqtt_port, "1111").await;
    let mut d1113 = Device::connect(stack.mqtt_port, "1113").await;
    let envelopes = tokio::task::spawn_blocking(move || {
        (0..count)
            .map(|i| direct("1111", "1113", &public("1113"), &format!("honest {i}")))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / per_sec));
    for envelope in envelopes {
        tick.tick().await;
        d1111.send(envelope).await;
    }
    let mut delivered = HashSet::new();
    while delivered.len() < count {
        let Some(bytes) = d1113.next_on(&inbox_topic("1113"), QUIET * 3).await else {
            break;
        };
        let delivery = Delivery::verify(&bytes, &[bridge_key()]).unwrap();
        let header = Envelope::decode_bounded(&delivery.envelope).unwrap().header;
        delivered.insert(header.message_id);
    }
    delivered.len()
}

/// Publishes `junk` round-robin at 500 a second (QoS 0) until `stop` is set; returns how
/// many it published.
fn flood(
    client: rumqttc::AsyncClient,
    topic: String,
    junk: Vec<Vec<u8>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(2));
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let payload = junk[sent % junk.len()].clone();
            if client
                .publish(&topic, QoS::AtMostOnce, false, payload)
                .await
                .is_err()
            {
                break;
            }
            sent += 1;
        }
        sent
    })
}

/// Envelopes that claim `claimed` as sender but are signed with another key.
async fn junk_claiming(claimed: &'static str) -> Vec<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        (0..20)
            .map(|i| {
                seal_direct(
                    claimed,
                    &device_key("1114"),
                    "1113",
                    &public("1113"),
                    0,
                    format!("junk {i}").as_bytes(),
                )
                .unwrap()
                .to_bytes()
            })
            .chain([b"garbage".to_vec(), vec![0xff; 600]])
            .collect()
    })
    .await
    .unwrap()
}

async fn a_connected_device_flooding_junk_leaves_others_honest_delivery(broker: BrokerKind) {
    const HONEST: usize = 100;
    let stack = Stack::start(broker).await;
    let flooder = MqttClient::device(stack.mqtt_port, "1112", "flood").await;
    let stop = Arc::new(AtomicBool::new(false));
    let junk = junk_claiming("1112").await;
    let flooding = flood(
        flooder.client.clone(),
        ingress_topic("1112"),
        junk,
        stop.clone(),
    );
    let delivered = honest_delivery(&stack, HONEST, 25).await;
    stop.store(true, Ordering::Relaxed);
    let sent = flooding.await.unwrap();
    println!("flood by a connected device: {sent} junk envelopes; {delivered} of {HONEST} honest delivered");
    assert!(
        sent >= 1_000,
        "the flood was too small to mean anything: {sent}"
    );
    assert!(delivered * 100 >= HONEST * 99, "{delivered} of {HONEST}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connected_device_flooding_junk_leaves_others_honest_delivery_embedded_broker() {
    a_connected_device_flooding_junk_leaves_others_honest_delivery(BrokerKind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connected_device_flooding_junk_leaves_others_honest_delivery_mosquitto() {
    a_connected_device_flooding_junk_leaves_others_honest_delivery(BrokerKind::Mosquitto).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn junk_claiming_a_victim_on_a_broker_without_acls_leaves_its_delivery_and_notices_bounded() {
    const HONEST: usize = 100;
    let stack = Stack::start(BrokerKind::OpenMosquitto).await;
    let attacker = MqttClient::try_connect(bare(stack.broker_port, "attacker"))
        .await
        .expect("the open broker takes anyone");
    let mut status = MqttClient::device(stack.mqtt_port, "1111", "status").await;
    status.subscribe_granted(&status_topic("1111")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let junk = junk_claiming("1111").await;
    let started = Instant::now();
    let flooding = flood(
        attacker.client.clone(),
        ingress_topic("1111"),
        junk,
        stop.clone(),
    );
    let delivered = honest_delivery(&stack, HONEST, 25).await;
    stop.store(true, Ordering::Relaxed);
    let sent = flooding.await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let mut notices = 0usize;
    while status.next(Duration::from_millis(500)).await.is_some() {
        notices += 1;
    }
    println!(
        "junk claiming 1111: {sent} sent in {elapsed:.1} s; {delivered} of {HONEST} honest \
         delivered; {notices} refusal notices reached 1111"
    );
    assert!(
        sent >= 1_000,
        "the flood was too small to mean anything: {sent}"
    );
    assert!(delivered * 100 >= HONEST * 99, "{delivered} of {HONEST}");
    // 20 at once, then 5 a second: the bridge does not amplify the flood.
    assert!(
        (notices as f64) <= 20.0 + 5.0 * (elapsed + 2.0),
        "{notices} notices in {elapsed:.1} s"
    );
}
