//! Benchmark, not a test: starts a dev node and the bridge (embedded broker) on loopback,
//! then measures in one run
//! - envelopes per second through the front and the gate (256-byte payloads, 1111 -> 1113):
//!   the path devices take,
//! - the same through the gate with the devices connected straight to the embedded broker,
//!   past the front: the path before the front existed,
//! - the same broker's rate for the same bytes published straight to a topic (no gate),
//! - p50 / p99 of the gate's check, timed in-process on the same envelopes,
//! - authenticated CONNECTs per second at the front (proofs made beforehand).
//!
//! The paths are warmed up first, then measured in rounds whose order rotates, so none gets
//! the warmer broker, and the median round of each is reported.
//!
//! `cargo run --release -p keymesh-bridge --example throughput [-- <messages per round>]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

/// Measured rounds per path; the median is reported.
const ROUNDS: usize = 5;
/// Envelopes sent down each path before measuring.
const WARM_UP: usize = 200;

use common::*;
use keymesh_bridge::gate::{DeviceKey, Gate, Limits, Snapshot};
use keymesh_device::{mqtt::inbox_topic, seal_direct};
use rumqttc::QoS;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Publishes `payloads` to `topic` (QoS 1, pipelined) and returns how long until `receiver`
/// has seen them all on `on`.
async fn run(
    sender: &MqttClient,
    receiver: &mut MqttClient,
    topic: &str,
    on: &str,
    payloads: &[Vec<u8>],
) -> Duration {
    let started = Instant::now();
    let client = sender.client.clone();
    let (topic, payloads) = (topic.to_string(), payloads.to_vec());
    let n = payloads.len();
    let published = async move {
        for p in payloads {
            client
                .publish(&topic, QoS::AtLeastOnce, false, p)
                .await
                .unwrap();
        }
        started.elapsed()
    };
    let mut seen = 0;
    // The generator must outrun the path it measures: say when it had everything out.
    let published = tokio::spawn(published);
    while seen < n {
        let (t, _) = receiver
            .next(Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("only {seen} of {n} arrived"));
        if t == on {
            seen += 1;
        }
    }
    let delivered = started.elapsed();
    if let Ok(handed_over) = published.await {
        let share = handed_over.as_secs_f64() / delivered.as_secs_f64();
        GENERATOR.lock().unwrap().push(share);
    }
    delivered
}

/// For each run: the time the generator took to hand every publish to its client, as a share
/// of the time until the last delivery.
static GENERATOR: std::sync::Mutex<Vec<f64>> = std::sync::Mutex::new(Vec::new());

/// Authenticated CONNECTs per second at the front: proofs are made first (signing is the
/// device's cost), then 16 clients at a time connect, each with its own proof.
async fn connect_rate(stack: &Stack) {
    // Each device may hold 64 live proofs (`front::auth::NONCES_PER_DEVICE`); 60 each.
    const CONNECTS: usize = 4 * 60;
    let proofs: Vec<(String, String)> = tokio::task::spawn_blocking(|| {
        (0..CONNECTS)
            .map(|i| {
                let id = DEVICES[i % 4];
                (id.to_string(), proof(id, id))
            })
            .collect()
    })
    .await
    .unwrap();
    let port = stack.mqtt_port;
    let started = Instant::now();
    let mut pending = proofs.into_iter().enumerate();
    let mut connected = 0usize;
    loop {
        let batch: Vec<_> = pending.by_ref().take(16).collect();
        if batch.is_empty() {
            break;
        }
        let attempts = batch.into_iter().map(|(i, (id, proof))| async move {
            let mut options = rumqttc::MqttOptions::new(format!("{id}:c{i}"), "127.0.0.1", port);
            options.set_credentials(id, proof);
            let (client, mut events) = rumqttc::AsyncClient::new(options, 8);
            let ok = matches!(
                events.poll().await,
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))
            );
            let _ = client.disconnect().await;
            let _ = tokio::time::timeout(Duration::from_millis(100), events.poll()).await;
            ok
        });
        connected += futures::future::join_all(attempts)
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "authenticated CONNECTs at the front: {connected} of {CONNECTS} in {elapsed:.2} s = {:.0} per second",
        connected as f64 / elapsed
    );
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000);
    let payload = vec![0x42u8; 256];
    // The gate refuses a message id twice, so every gated send needs its own envelope.
    let total = 2 * (WARM_UP + ROUNDS * n);
    // 1111 -> 1113 through the front, 1112 -> 1114 on the old path: no receiver sees the
    // other path's deliveries.
    let envelopes: Vec<Vec<u8>> = tokio::task::spawn_blocking(move || {
        let (sealed_front, sealed_direct) = (
            (device_key("1111"), public("1113")),
            (device_key("1112"), public("1114")),
        );
        (0..total)
            .map(|i| {
                let (from, key, to, to_key) = if i < total / 2 {
                    ("1111", &sealed_front.0, "1113", &sealed_front.1)
                } else {
                    ("1112", &sealed_direct.0, "1114", &sealed_direct.1)
                };
                seal_direct(from, key, to, to_key, 0, &payload)
                    .unwrap()
                    .to_bytes()
            })
            .collect()
    })
    .await
    .unwrap();
    println!(
        "{ROUNDS} rounds of {n} envelopes of {} bytes (256-byte payload), after {WARM_UP} to \
         warm up",
        envelopes[0].len()
    );

    // The gate alone, in-process.
    let mut snapshot = Snapshot::default();
    for id in DEVICES {
        snapshot
            .devices
            .insert(id.into(), DeviceKey::active(public(id)));
    }
    let mut gate = Gate::new(Limits {
        rate_per_sec: u32::MAX,
        rate_burst: u32::MAX,
        ..Limits::default()
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let half = envelopes.len() / 2;
    let mut times: Vec<Duration> = envelopes
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let sender = if i < half { "1111" } else { "1112" };
            let t = Instant::now();
            gate.check(sender, e, now, &snapshot).expect("passes");
            t.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "gate check: p50 {:?}, p99 {:?}",
        percentile(&times, 0.50),
        percentile(&times, 0.99)
    );

    // The embedded broker on a known port under a known credential, so that the broker-alone
    // path can reach it directly, past the front and the gate.
    let backend_port = free_port();
    let backend = format!("127.0.0.1:{backend_port}");
    let stack = Stack::start_with_env(
        BrokerKind::Embedded,
        &[
            "--rate-per-sec",
            "1000000",
            "--rate-burst",
            "1000000",
            "--embedded-broker-listen",
            &backend,
            "--broker-username",
            "bench",
        ],
        &[("KEYMESH_BROKER_PASSWORD", "bench-secret")],
    )
    .await;
    let raw_options = |id: &str| {
        let mut options = rumqttc::MqttOptions::new(id, "127.0.0.1", backend_port);
        options.set_max_packet_size(2 << 20, 2 << 20);
        options.set_credentials("bench", "bench-secret");
        options
    };
    let raw_sender = MqttClient::try_connect(raw_options("bench-sender"))
        .await
        .unwrap();
    let mut raw_receiver = MqttClient::try_connect(raw_options("bench-receiver"))
        .await
        .unwrap();
    raw_receiver.subscribe_granted("km/v1/bench/raw").await;
    let sender = MqttClient::device(stack.mqtt_port, "1111", "load").await;
    let mut receiver = MqttClient::device(stack.mqtt_port, "1113", "load").await;
    receiver.subscribe_granted(&inbox_topic("1113")).await;

    // The path before the front: devices on the embedded broker itself.
    let direct_sender = MqttClient::try_connect(raw_options("1112-direct"))
        .await
        .unwrap();
    let mut direct_receiver = MqttClient::try_connect(raw_options("1114-direct"))
        .await
        .unwrap();
    direct_receiver
        .subscribe_granted(&inbox_topic("1114"))
        .await;
    let direct_inbox = inbox_topic("1114");

    let raw_topic = "km/v1/bench/raw";
    let inbox = inbox_topic("1113");
    // Each gated path needs its own envelopes: the gate takes a message id once.
    let (front_batches, direct_batches) = envelopes.split_at(WARM_UP + ROUNDS * n);
    let (front_warm, front_rounds) = front_batches.split_at(WARM_UP);
    let (direct_warm, direct_rounds) = direct_batches.split_at(WARM_UP);
    run(
        &raw_sender,
        &mut raw_receiver,
        raw_topic,
        raw_topic,
        front_warm,
    )
    .await;
    run(&sender, &mut receiver, "km/v1/in/1111", &inbox, front_warm).await;
    run(
        &direct_sender,
        &mut direct_receiver,
        "km/v1/in/1112",
        &direct_inbox,
        direct_warm,
    )
    .await;
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let (mut raw, mut fronted, mut direct) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (front_batch, direct_batch) = (
            &front_rounds[round * n..(round + 1) * n],
            &direct_rounds[round * n..(round + 1) * n],
        );
        for path in (0..3).map(|i| (i + round) % 3) {
            match path {
                0 => raw.push(rate(
                    run(
                        &raw_sender,
                        &mut raw_receiver,
                        raw_topic,
                        raw_topic,
                        front_batch,
                    )
                    .await,
                )),
                1 => fronted.push(rate(
                    run(&sender, &mut receiver, "km/v1/in/1111", &inbox, front_batch).await,
                )),
                _ => direct.push(rate(
                    run(
                        &direct_sender,
                        &mut direct_receiver,
                        "km/v1/in/1112",
                        &direct_inbox,
                        direct_batch,
                    )
                    .await,
                )),
            }
        }
    }
    let median = |rates: &[f64]| {
        let mut sorted = rates.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    };
    let rounds_text = |rates: &[f64]| {
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (label, rates) in [
        ("broker alone (embedded rumqttd, no front, no gate)", &raw),
        ("gate, devices straight on the broker (old path)  ", &direct),
        (
            "front + gate (the devices' path now)             ",
            &fronted,
        ),
    ] {
        println!(
            "{label}: median {:.0} msg/s (rounds: {})",
            median(rates),
            rounds_text(rates)
        );
    }
    println!(
        "front + gate / broker alone: {:.0} %; front + gate / old path: {:.0} %",
        100.0 * median(&fronted) / median(&raw),
        100.0 * median(&fronted) / median(&direct)
    );
    connect_rate(&stack).await;
    let shares = GENERATOR.lock().unwrap().clone();
    println!(
        "load generator: handed over every publish within {:.0}-{:.0} % of the time to the last delivery",
        100.0 * shares.iter().copied().fold(f64::INFINITY, f64::min),
        100.0 * shares.iter().copied().fold(0.0, f64::max)
    );
    if let Some(count) = stack.metric("keymesh_bridge_check_seconds_count").await {
        let sum = stack
            .metric("keymesh_bridge_check_seconds_sum")
            .await
            .unwrap_or(0.0);
        println!(
            "bridge's own histogram: {count} checks, mean {:.0} µs",
            sum / count * 1e6
        );
    }
}
