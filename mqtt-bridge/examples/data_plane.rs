//! Benchmark, not a test: the data-plane figures of `scripts/bench.sh`. It starts a dev
//! node (Aura) and the bridge with its embedded broker on loopback, then measures in one
//! run:
//! - a 1 MiB device-to-device send, sealing to opening, through the front and the gate;
//! - a 256-byte topic message, sealing to opening by a member;
//! - gated throughput against the same broker alone: 256-byte payloads, QoS 1, published
//!   by several connections at once with a wide in-flight window, and received by one
//!   subscriber. Each round reports the rate the generator handed its publishes to its
//!   connections at, and the rate the broker acknowledged them at, next to the rate of
//!   deliveries; and, first, the rate the broker takes the generator's publishes at when
//!   nobody reads them: what the generator can put in, faster than either path delivers;
//! - the bridge's CPU time (user + system, from `/proc`) per gated message;
//! - the exchange log after that load: its backlog when the load stopped, and how long it
//!   took to drain;
//! - the per-envelope crypto ceiling: the rate at which every core of this machine, doing
//!   nothing else, can decode an envelope, verify its sender's RSA signature and sign the
//!   delivery's attestation. No gate can forward faster than this while it checks and
//!   attests each envelope on its own; its share of the broker-alone rate bounds the gated
//!   share from above.
//!
//! It prints one JSON object on its last line.
//!
//! `$CARGO_TARGET_DIR/release/examples/data_plane [messages per round]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use keymesh_device::{
    envelope::{verify_decoded, Envelope},
    mqtt::{group_topic, inbox_topic},
    seal_direct, seal_topic, Attestation,
};
use rumqttc::{MqttOptions, QoS};

/// Publishing connections per path.
const SENDERS: usize = 4;
/// Each sender's in-flight window: wide enough that acknowledgements never hold it back.
const IN_FLIGHT: u16 = 1000;
/// Measured rounds per path, alternating; the median is reported.
const ROUNDS: usize = 2;
const WARM_UP: usize = 400;
const SAMPLES: usize = 10;

/// The bridge process's CPU time so far (user + system).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat (11 and 12 after the command), in the
    // kernel's USER_HZ of 100 per second.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One path of the throughput pair: its senders, its receiver, and where each sends to and
/// the receiver reads from.
struct Path {
    senders: Vec<MqttClient>,
    publish_to: Vec<String>,
    receiver: MqttClient,
    read_on: String,
}

/// The rates of one round, each per second: publishes handed to the senders' connections,
/// publishes acknowledged by the broker, and deliveries.
struct Round {
    handed_over: f64,
    acknowledged: f64,
    delivered: f64,
}

impl Path {
    /// Publishes `batch` from the senders to `topic`, which nobody reads, and returns the
    /// rate the broker acknowledged them at: what the generator can put in.
    async fn publish_only(&mut self, topic: &str, batch: &[Vec<u8>]) -> f64 {
        let started = Instant::now();
        let senders = self.senders.len();
        let publishing = self.senders.iter_mut().enumerate().map(|(s, sender)| {
            let share: Vec<Vec<u8>> = batch.iter().skip(s).step_by(senders).cloned().collect();
            async move {
                let n = share.len();
                for payload in share {
                    sender
                        .client
                        .publish(topic, QoS::AtLeastOnce, false, payload)
                        .await
                        .unwrap();
                }
                assert!(sender.pubacks(n, Duration::from_secs(60)).await);
            }
        });
        futures::future::join_all(publishing).await;
        batch.len() as f64 / started.elapsed().as_secs_f64()
    }

    /// Sends `batch`, split across the senders, and waits for every delivery.
    async fn round(&mut self, batch: &[Vec<u8>]) -> Round {
        let started = Instant::now();
        let shares: Vec<Vec<Vec<u8>>> = (0..self.senders.len())
            .map(|s| {
                batch
                    .iter()
                    .skip(s)
                    .step_by(self.senders.len())
                    .cloned()
                    .collect()
            })
            .collect();
        let publishing = self
            .senders
            .iter_mut()
            .zip(&self.publish_to)
            .zip(shares)
            .map(|((sender, topic), share)| async move {
                let n = share.len();
                for payload in share {
                    sender
                        .client
                        .publish(topic.as_str(), QoS::AtLeastOnce, false, payload)
                        .await
                        .unwrap();
                }
                let handed_over = started.elapsed();
                assert!(sender.pubacks(n, Duration::from_secs(60)).await);
                (handed_over, started.elapsed())
            });
        let published = futures::future::join_all(publishing);
        let receiver = &mut self.receiver;
        let read_on = self.read_on.clone();
        let receiving = async move {
            let mut seen = 0;
            while seen < batch.len() {
                let (topic, _) = receiver
                    .next(Duration::from_secs(60))
                    .await
                    .unwrap_or_else(|| panic!("only {seen} of {} delivered", batch.len()));
                if topic == read_on {
                    seen += 1;
                }
            }
            started.elapsed()
        };
        let (published, delivered) = tokio::join!(published, receiving);
        let handed_over = published.iter().map(|p| p.0).max().unwrap_or_default();
        let acked = published.iter().map(|p| p.1).max().unwrap_or_default();
        let n = batch.len() as f64;
        Round {
            handed_over: n / handed_over.as_secs_f64(),
            acknowledged: n / acked.as_secs_f64(),
            delivered: n / delivered.as_secs_f64(),
        }
    }
}

/// Connections straight to the embedded broker, past the front and the gate.
fn raw_options(port: u16, id: &str) -> MqttOptions {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_max_packet_size(2 << 20, 2 << 20);
    options.set_credentials("bench", "bench-secret");
    options.set_inflight(IN_FLIGHT);
    options
}

async fn throughput_paths(stack: &Stack, backend_port: u16) -> (Path, Path) {
    let mut raw_senders = Vec::new();
    let mut gated_senders = Vec::new();
    let mut gated_topics = Vec::new();
    for s in 0..SENDERS {
        raw_senders.push(
            MqttClient::try_connect(raw_options(backend_port, &format!("bench-{s}")))
                .await
                .unwrap(),
        );
        let id = ["1111", "1112"][s % 2];
        let mut options = device_options(stack.mqtt_port, id, &format!("load{s}"), id);
        options.set_inflight(IN_FLIGHT);
        gated_senders.push(MqttClient::try_connect(options).await.unwrap());
        gated_topics.push(format!("km/v1/in/{id}"));
    }
    let mut raw_receiver = MqttClient::try_connect(raw_options(backend_port, "bench-receiver"))
        .await
        .unwrap();
    raw_receiver.subscribe_granted("km/v1/bench/raw").await;
    let mut gated_receiver = MqttClient::device(stack.mqtt_port, "1113", "load").await;
    gated_receiver.subscribe_granted(&inbox_topic("1113")).await;
    (
        Path {
            senders: raw_senders,
            publish_to: vec!["km/v1/bench/raw".to_string(); SENDERS],
            receiver: raw_receiver,
            read_on: "km/v1/bench/raw".to_string(),
        },
        Path {
            senders: gated_senders,
            publish_to: gated_topics,
            receiver: gated_receiver,
            read_on: inbox_topic("1113"),
        },
    )
}

/// The throughput pair in alternating rounds, and the bridge's CPU per gated message.
async fn throughput(stack: &Stack, backend_port: u16, n: usize) -> serde_json::Value {
    let envelopes = tokio::task::spawn_blocking(move || {
        sealed_burst(WARM_UP + ROUNDS * n, &["1111", "1112"], "1113")
    })
    .await
    .unwrap();
    let (mut raw, mut gated) = throughput_paths(stack, backend_port).await;
    let (warm, rounds) = envelopes.split_at(WARM_UP);
    raw.round(warm).await;
    gated.round(warm).await;
    let mut generator = Vec::new();
    for batch in rounds.chunks(n) {
        generator.push(raw.publish_only("km/v1/bench/void", batch).await);
    }
    let pid = stack.bridge_pid();
    let (mut raw_rates, mut gated_rates) = (Vec::new(), Vec::new());
    let (mut raw_acked, mut gated_acked) = (Vec::new(), Vec::new());
    let (mut raw_handed, mut gated_handed) = (Vec::new(), Vec::new());
    let mut cpu = Duration::ZERO;
    for batch in rounds.chunks(n) {
        let r = raw.round(batch).await;
        raw_rates.push(r.delivered);
        raw_acked.push(r.acknowledged);
        raw_handed.push(r.handed_over);
        let before = cpu_time(pid);
        let g = gated.round(batch).await;
        cpu += cpu_time(pid).saturating_sub(before);
        gated_rates.push(g.delivered);
        gated_acked.push(g.acknowledged);
        gated_handed.push(g.handed_over);
    }
    let (raw_rate, gated_rate) = (median(&mut raw_rates), median(&mut gated_rates));
    let ceiling = crypto_ceiling(rounds);
    serde_json::json!({
        "messages_per_round": n,
        "senders": SENDERS,
        "broker_alone_msg_s": raw_rate,
        "generator_alone_msg_s": median(&mut generator),
        "broker_alone_acknowledged_msg_s": median(&mut raw_acked),
        "broker_alone_handed_over_msg_s": median(&mut raw_handed),
        "gated_msg_s": gated_rate,
        "gated_acknowledged_msg_s": median(&mut gated_acked),
        "gated_handed_over_msg_s": median(&mut gated_handed),
        "gated_share": gated_rate / raw_rate,
        "bridge_cpu_us_per_message": cpu.as_secs_f64() * 1e6 / (ROUNDS * n) as f64,
        "crypto_ceiling_share": ceiling["both_msg_s"].as_f64().unwrap_or(0.0) / raw_rate,
        "crypto_ceiling": ceiling,
    })
}

/// Envelopes per second that all cores, doing nothing else, take through `step`.
fn on_all_cores(envelopes: &[Vec<u8>], step: impl Fn(&[u8]) + Sync) -> f64 {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = envelopes.len().div_ceil(threads);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for chunk in envelopes.chunks(per) {
            let step = &step;
            scope.spawn(move || chunk.iter().for_each(|bytes| step(bytes)));
        }
    });
    envelopes.len() as f64 / started.elapsed().as_secs_f64()
}

/// The gate's per-envelope cryptography on all cores, doing nothing else: decoding and the
/// sender's RSA signature, the attestation, and both, in envelopes per second.
fn crypto_ceiling(envelopes: &[Vec<u8>]) -> serde_json::Value {
    let keys: std::collections::HashMap<String, rsa::RsaPublicKey> = ["1111", "1112"]
        .iter()
        .map(|id| (id.to_string(), public(id)))
        .collect();
    let bridge = subxt_signer::sr25519::dev::ferdie();
    let verify = |bytes: &[u8]| {
        let envelope = Envelope::decode_bounded(bytes).unwrap();
        let sender = String::from_utf8_lossy(&envelope.header.sender).to_string();
        verify_decoded(&envelope, &keys[&sender]).unwrap();
    };
    let attest = |bytes: &[u8]| {
        std::hint::black_box(Attestation::sign(&bridge, bytes, 1, [7; 32]));
    };
    serde_json::json!({
        "threads": std::thread::available_parallelism().map_or(2, |n| n.get()),
        "verify_msg_s": on_all_cores(envelopes, verify),
        "attest_msg_s": on_all_cores(envelopes, attest),
        "both_msg_s": on_all_cores(envelopes, |bytes| {
            verify(bytes);
            attest(bytes);
        }),
    })
}

/// Seal-to-open of a 1 MiB direct message, 1111 -> 1113.
async fn large_send(stack: &Stack) -> Vec<Duration> {
    let mut sender = Device::connect(stack.mqtt_port, "1111").await;
    let mut reader = Device::connect(stack.mqtt_port, "1113").await;
    let (key, to) = (device_key("1111"), public("1113"));
    let payload = vec![0x5a; 1 << 20];
    let mut samples = Vec::new();
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let sealed = seal_direct("1111", &key, "1113", &to, 0, &payload)
            .unwrap()
            .to_bytes();
        sender.send(sealed).await;
        let delivery = reader
            .next_on(&inbox_topic("1113"), WAIT)
            .await
            .expect("the 1 MiB envelope arrives");
        let opened = open_delivery(&delivery, &reader.key, &directory()).unwrap();
        samples.push(started.elapsed());
        assert_eq!(opened.payload.len(), payload.len());
    }
    samples
}

/// Seal-to-open of a 256-byte topic message, 1111 -> group `bench` -> 1113.
async fn topic_send(stack: &Stack) -> Vec<Duration> {
    create_group(stack, "bench", &["1111", "1113"], false).await;
    let (epoch, group_key) = settled_group_key(stack, "bench").await;
    let (_, reader_key) = topic_key_of(stack.rpc_port, "bench", "1113").await.unwrap();
    let mut sender = Device::connect(stack.mqtt_port, "1111").await;
    let mut reader = Device::connect(stack.mqtt_port, "1113").await;
    reader.mqtt.subscribe_granted(&group_topic("bench")).await;
    let key = device_key("1111");
    let mut samples = Vec::new();
    for _ in 0..SAMPLES * 2 {
        let started = Instant::now();
        let sealed = seal_topic("1111", &key, "bench", &group_key, epoch, &[0x42; 256])
            .unwrap()
            .to_bytes();
        sender.send(sealed).await;
        let delivery = reader
            .next_on(&group_topic("bench"), WAIT)
            .await
            .expect("the topic message arrives");
        open_delivery(&delivery, &reader_key, &directory()).unwrap();
        samples.push(started.elapsed());
    }
    samples
}

/// The exchange log after the load: the backlog when the last delivery arrived, and how
/// long it took to reach zero (`null` if it did not within two minutes).
async fn exchange_log_drain(stack: &Stack) -> serde_json::Value {
    async fn backlog(stack: &Stack) -> f64 {
        stack
            .metric("keymesh_bridge_audit_backlog")
            .await
            .unwrap_or(0.0)
    }
    let at_end = backlog(stack).await;
    let started = Instant::now();
    let mut drained = None;
    while started.elapsed() < Duration::from_secs(120) {
        if backlog(stack).await == 0.0 {
            drained = Some(started.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    serde_json::json!({
        "forwards": stack.metric("keymesh_bridge_forwarded_total").await,
        "backlog_at_end": at_end,
        "drained_s": drained,
    })
}

fn p50_s(samples: &mut [Duration]) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(4_000);
    // The embedded broker on a known port under a known credential, so that the
    // broker-alone path can reach it directly.
    let backend_port = free_port();
    let backend = format!("127.0.0.1:{backend_port}");
    let mut options = StackOptions::new(BrokerKind::Embedded).bridge_args(&[
        "--rate-per-sec",
        "1000000",
        "--rate-burst",
        "1000000",
        "--embedded-broker-listen",
        &backend,
        "--broker-username",
        "bench",
    ]);
    options.bridge_env = vec![("KEYMESH_BROKER_PASSWORD".into(), "bench-secret".into())];
    options.sealing = "aura";
    let stack = Stack::start_options(options).await;
    let mut large = large_send(&stack).await;
    let mut topic = topic_send(&stack).await;
    let pair = throughput(&stack, backend_port, n).await;
    let exchange_log = exchange_log_drain(&stack).await;
    let result = serde_json::json!({
        "exchange_log": exchange_log,
        "figure": "data_plane",
        "send_1mib_p50_s": p50_s(&mut large),
        "topic_256b_p50_s": p50_s(&mut topic),
        "throughput": pair,
    });
    println!("{result}");
}
