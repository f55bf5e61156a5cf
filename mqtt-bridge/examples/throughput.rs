//! Benchmark, not a test: starts a dev node and the bridge (embedded broker) on loopback,
//! then measures in one run
//! - envelopes per second through the bridge (256-byte payloads, 1111 -> 1113),
//! - the same broker's rate for the same bytes published straight to a topic (no gate),
//! - p50 / p99 of the gate's check, timed in-process on the same envelopes.
//!
//! Both paths are warmed up first, then measured in alternating rounds (the order flips each
//! round, so neither gets the warmer broker), and the median round of each is reported.
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
    tokio::spawn(async move {
        for p in payloads {
            client
                .publish(&topic, QoS::AtLeastOnce, false, p)
                .await
                .unwrap();
        }
    });
    let mut seen = 0;
    while seen < n {
        let (t, _) = receiver
            .next(Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("only {seen} of {n} arrived"));
        if t == on {
            seen += 1;
        }
    }
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000);
    let payload = vec![0x42u8; 256];
    // The gate refuses a message id twice, so every gated send needs its own envelope.
    let total = WARM_UP + ROUNDS * n;
    let envelopes: Vec<Vec<u8>> = tokio::task::spawn_blocking(move || {
        let (key, to) = (device_key("1111"), public("1113"));
        (0..total)
            .map(|_| {
                seal_direct("1111", &key, "1113", &to, 0, &payload)
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
    for id in ["1111", "1113"] {
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
    let mut times: Vec<Duration> = envelopes
        .iter()
        .map(|e| {
            let t = Instant::now();
            gate.check("1111", e, now, &snapshot).expect("passes");
            t.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "gate check: p50 {:?}, p99 {:?}",
        percentile(&times, 0.50),
        percentile(&times, 0.99)
    );

    let stack = Stack::start_with(
        BrokerKind::Embedded,
        &["--rate-per-sec", "1000000", "--rate-burst", "1000000"],
    )
    .await;
    let sender = MqttClient::connect(stack.mqtt_port, "device-1111").await;
    let mut receiver = MqttClient::connect(stack.mqtt_port, "device-1113").await;
    receiver.subscribe(&inbox_topic("1113")).await;
    receiver.subscribe("km/v1/bench/raw").await;

    let (warm_up, rounds) = envelopes.split_at(WARM_UP);
    let raw_topic = "km/v1/bench/raw";
    let inbox = inbox_topic("1113");
    run(&sender, &mut receiver, raw_topic, raw_topic, warm_up).await;
    run(&sender, &mut receiver, "km/v1/in/1111", &inbox, warm_up).await;
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let (mut raw, mut gated) = (Vec::new(), Vec::new());
    for (round, batch) in rounds.chunks(n).enumerate() {
        // `true` is the gated path; the broker alone goes first in even rounds.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for gate in order {
            let (ingress, egress) = if gate {
                ("km/v1/in/1111", inbox.as_str())
            } else {
                (raw_topic, raw_topic)
            };
            let measured = rate(run(&sender, &mut receiver, ingress, egress, batch).await);
            if gate { &mut gated } else { &mut raw }.push(measured);
        }
    }
    let median = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let rounds_text = |rates: &[f64]| {
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "broker alone (same embedded broker, no gate): median {:.0} msg/s (rounds: {})",
        median(&mut raw.clone()),
        rounds_text(&raw)
    );
    println!(
        "through the bridge (gate + attestation):      median {:.0} msg/s (rounds: {})",
        median(&mut gated.clone()),
        rounds_text(&gated)
    );
    println!(
        "bridge / broker alone: {:.0} %",
        100.0 * median(&mut gated) / median(&mut raw)
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
