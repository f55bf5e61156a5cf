//! The seeds' scenarios against a running dev stack (`scripts/dev.sh`), with devices
//! 1111..1114. Each device is a [`keymesh_device::agent::Agent`], as an application embeds
//! it: it knows only its id, its key and the broker, and takes every other key from the
//! bridge's attested directory. For each step the demo prints who checked what, who opened
//! the message and who could not. Bare MQTT clients play the attackers the agent is not.
//! Run through `scripts/demo.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/devices.rs"]
mod devices;
#[path = "demo/fleet.rs"]
mod fleet;

use std::time::Duration;

use clap::Parser;
use devices::*;
use fleet::{Fleet, WAIT};
use keymesh_device::{
    agent::{
        peer_cache::{CachedKey, PeerCache},
        AgentError, CheckError,
    },
    mqtt::{group_topic, inbox_topic, status_topic},
    seal_direct,
};
use subxt::{dynamic::Value, OnlineClient, PolkadotConfig};

#[derive(Parser)]
struct Args {
    /// The node's JSON-RPC port on loopback.
    #[arg(long, default_value_t = 9944)]
    rpc_port: u16,
    /// The bridge's MQTT port on loopback.
    #[arg(long, default_value_t = 1883)]
    mqtt_port: u16,
    /// The bridge's metrics and health port on loopback: the demo starts once `/readyz`
    /// says the bridge can forward.
    #[arg(long, default_value_t = 9630)]
    metrics_port: u16,
}

type Api = OnlineClient<PolkadotConfig>;

fn say(line: impl AsRef<str>) {
    println!("{}", line.as_ref());
}

fn short(fp: &[u8]) -> String {
    hex::encode(&fp[..6])
}

async fn submit(api: &Api, pallet: &str, call: &str, args: Vec<Value>) -> Result<(), String> {
    let payload = subxt::dynamic::tx(pallet, call, args);
    api.tx()
        .await
        .map_err(|e| e.to_string())?
        .sign_and_submit_then_watch_default(&payload, &operator())
        .await
        .map_err(|e| e.to_string())?
        .wait_for_finalized_success()
        .await
        .map_err(|e| format!("{pallet}.{call}: {e}"))?;
    Ok(())
}

/// Creates `group` with `members` (open to outside publishers) on a first run; a later run
/// finds it there and reuses it as it is. Returns whether it was created.
async fn ensure_group(api: &Api, group: &str, members: &[&str]) -> Result<bool, String> {
    let admin = Value::from_bytes(operator().public_key().0);
    let name = || bytes(group.as_bytes());
    if submit(api, "Groups", "create_group", vec![name(), admin])
        .await
        .is_err()
    {
        return Ok(false);
    }
    submit(
        api,
        "Groups",
        "set_publishing",
        vec![name(), Value::bool(true)],
    )
    .await?;
    for m in members {
        let role = Value::unnamed_variant("Both", []);
        let args = vec![name(), bytes(m.as_bytes()), role];
        submit(api, "Groups", "add_member", args).await?;
    }
    Ok(true)
}

/// `Some(())` if the broker granted every filter of a SUBSCRIBE.
fn granted(codes: Vec<rumqttc::SubscribeReasonCode>) -> Option<()> {
    codes
        .iter()
        .all(|c| *c != rumqttc::SubscribeReasonCode::Failure)
        .then_some(())
}

/// Bare clients of `ids` (no agent) try to read `topic`; returns those the front refused.
async fn intruders(port: u16, ids: &[&str], topic: &str, what: &str) -> Vec<Device> {
    let mut refused = Vec::new();
    for id in ids {
        let mut bare = Device::connect(port, id).await;
        if granted(bare.mqtt.subscribe(topic).await).is_none() {
            say(format!(
                "{id}: the front refuses its subscription to {what}"
            ));
        } else {
            say(format!("{id}: UNEXPECTED: subscribed to {what}"));
        }
        refused.push(bare);
    }
    refused
}

async fn nothing_leaks(bare: &mut [Device], topic: &str) {
    for d in bare {
        let leaked = d.next_on(topic, Duration::from_secs(1)).await.is_some();
        let what = if leaked {
            "UNEXPECTED copy"
        } else {
            "receives nothing"
        };
        say(format!("{}: {what}", d.id));
    }
}

async fn direct_message(fleet: &mut Fleet, port: u16) -> Result<(), String> {
    say("== 1. Direct message (MTP): 1111 -> 1113; 1112 and 1114 try to listen on 1113's inbox ==");
    let mut bare = intruders(
        port,
        &["1112", "1114"],
        &inbox_topic("1113"),
        "1113's inbox",
    )
    .await;
    fleet
        .agent("1111")
        .send("1113", b"temperature=21.5C")
        .await
        .map_err(|e| e.to_string())?;
    say("1111's agent checked 1113's key against the attested directory, then sealed to it");
    fleet.expect_message("1113", WAIT).await;
    nothing_leaks(&mut bare, &inbox_topic("1113")).await;
    Ok(())
}

/// The seeds' "None": 1111's local copy of 1113's key is really 1114's.
async fn tampered_key(fleet: &mut Fleet, port: u16) -> Result<(), String> {
    say("\n== 2. Tampered key: 1111's local copy of 1113's key is \"None\" (really 1114's) ==");
    fleet.stop("1111").await;
    let cache =
        PeerCache::open(&fleet.state_dir("1111").join("peers")).map_err(|e| e.to_string())?;
    let wrong = CachedKey {
        public_key: public("1114"),
        epoch: 0,
        block: 1,
    };
    cache.store("1113", &wrong).map_err(|e| e.to_string())?;
    fleet.start(port, "1111").await?;
    match fleet.agent("1111").send("1113", b"pin 0000").await {
        Err(AgentError::Check(CheckError::KeyMismatch {
            presented,
            expected,
            ..
        })) => say(format!(
            "1111's agent: refuses to seal: its copy {} is not 1113's key {} in finalized state; no ciphertext exists",
            short(&presented),
            short(&expected)
        )),
        other => say(format!("1111's agent: UNEXPECTED: {other:?}")),
    }
    // A device without the agent seals anyway; the bridge is the second line.
    let mut bare = Device::connect(port, "1111").await;
    let sealed = seal_direct("1111", &bare.key, "1113", &public("1114"), 0, b"pin 0000")
        .map_err(|e| e.to_string())?;
    bare.send(sealed.to_bytes()).await;
    match bare.next_on(&status_topic("1111"), WAIT).await {
        Some(bytes) => {
            let n: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            say(format!(
                "a bare client of 1111 (no agent) seals to it anyway: the bridge refuses it, {} (presented {}, expected {}, finalized #{}); a KeyMismatch event goes on chain",
                n["reason"], n["presented"], n["expected"], n["block"]
            ));
        }
        None => say("bridge: no refusal seen"),
    }
    fleet.expect_nothing("1113", Duration::from_secs(2)).await;
    Ok(())
}

async fn topics(fleet: &mut Fleet, api: &Api, port: u16) -> Result<(), String> {
    say("\n== 4. Topics (SSCP): A = {1111, 1112}, B = {1113, 1114}; 1111 publishes to B ==");
    ensure_group(api, "A", &["1111", "1112"]).await?;
    ensure_group(api, "B", &["1113", "1114"]).await?;
    for member in ["1113", "1114"] {
        fleet.expect_group_key(member, "B", 1).await?;
    }
    let mut bare = intruders(port, &["1111", "1112"], &group_topic("B"), "B's messages").await;
    fleet
        .agent("1111")
        .publish("B", b"lights off")
        .await
        .map_err(|e| e.to_string())?;
    say("1111's agent (not a member, B is open to publishers) sealed to B's current topic key");
    for member in ["1113", "1114"] {
        fleet.expect_message(member, WAIT).await;
    }
    nothing_leaks(&mut bare, &group_topic("B")).await;
    Ok(())
}

async fn cross_group(fleet: &mut Fleet, api: &Api) -> Result<(), String> {
    say("\n== 5. Cross-group: hsu0001 = {1112, 1113}, hsu0002 = {1113}; 1112 leaves hsu0001 ==");
    ensure_group(api, "hsu0001", &["1112", "1113"]).await?;
    ensure_group(api, "hsu0002", &["1113"]).await?;
    let before = fleet.expect_group_key("1113", "hsu0001", 1).await?;
    fleet.expect_group_key("1113", "hsu0002", 1).await?;
    let removal = vec![bytes(b"hsu0001"), bytes(b"1112")];
    if submit(api, "Groups", "remove_member", removal)
        .await
        .is_err()
    {
        say("(1112 already left hsu0001 on an earlier run)");
    } else {
        fleet.expect_removed("1112", "hsu0001").await;
        let epoch = fleet
            .expect_group_key("1113", "hsu0001", before + 1)
            .await?;
        say(format!(
            "the bridge (key manager) rekeyed hsu0001 to epoch {epoch}, wrapped for 1113 alone"
        ));
    }
    fleet
        .agent("1113")
        .publish("hsu0001", b"valve 7 closed")
        .await
        .map_err(|e| e.to_string())?;
    fleet.expect_message("1113", WAIT).await;
    fleet.expect_nothing("1112", Duration::from_secs(2)).await;
    Ok(())
}

/// Waits until the bridge can forward. On a chain that has just started, the bridge
/// rightly refuses everything until a recent block is finalized (`StaleState`).
async fn bridge_ready(metrics_port: u16) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut told = false;
    loop {
        let answer = bridge_http(metrics_port, "/readyz").await;
        if matches!(answer, Some((200, _))) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("the bridge is not ready: {answer:?}"));
        }
        if !told {
            say("(waiting for the bridge to be ready: a fresh chain needs a finalized block)");
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let (api, _) =
        keymesh_device::node_client::connect(&format!("ws://127.0.0.1:{}", args.rpc_port))
            .await
            .map_err(|e| format!("no node on port {}: {e}", args.rpc_port))?;
    bridge_ready(args.metrics_port).await?;
    let mut fleet = Fleet::new()?;
    for id in DEVICES {
        fleet.start(args.mqtt_port, id).await?;
    }
    direct_message(&mut fleet, args.mqtt_port).await?;
    tampered_key(&mut fleet, args.mqtt_port).await?;
    topics(&mut fleet, &api, args.mqtt_port).await?;
    cross_group(&mut fleet, &api).await?;
    say("\nThe bridge logs a KeyExchanged event on chain per forwarded message and a KeyMismatch per key refusal (the scenario_8 test checks them one for one).");
    fleet.stop_all().await;
    Ok(())
}
