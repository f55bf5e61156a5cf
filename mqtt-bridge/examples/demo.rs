//! The seeds' scenarios against a running dev stack (`scripts/dev.sh`), with devices
//! 1111..1114. For each step it prints who checked what, who opened the message and who
//! could not. Run through `scripts/demo.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/devices.rs"]
mod devices;

use std::time::Duration;

use base64::Engine;
use clap::Parser;
use devices::*;
use keymesh_device::{
    fingerprint,
    keys::parse_public,
    mqtt::{group_topic, inbox_topic, status_topic},
    seal_direct, seal_topic, Delivery,
};
use rsa::RsaPublicKey;
use subxt::{dynamic::Value, OnlineClient, PolkadotConfig};

const WAIT: Duration = Duration::from_secs(60);

#[derive(Parser)]
struct Args {
    /// The node's JSON-RPC port on loopback.
    #[arg(long, default_value_t = 9944)]
    rpc_port: u16,
    /// The bridge's MQTT port on loopback.
    #[arg(long, default_value_t = 1883)]
    mqtt_port: u16,
    /// The bridge's metrics port on loopback (to wait until its key cache is current).
    #[arg(long, default_value_t = 9630)]
    metrics_port: u16,
}

type Api = OnlineClient<PolkadotConfig>;

fn short(fp: &[u8]) -> String {
    hex::encode(&fp[..6])
}

fn say(line: impl AsRef<str>) {
    println!("{}", line.as_ref());
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

/// The attestation of a delivery, for the printout.
fn attested(bytes: &[u8]) -> String {
    match Delivery::verify(bytes, &[bridge_key()]) {
        Ok(d) => format!(
            "bridge {} checked it at finalized block #{}",
            &hex::encode(d.attestation.bridge)[..8],
            d.attestation.block_number
        ),
        Err(e) => format!("unattested ({e})"),
    }
}

/// What a reader holding `key` makes of a delivery: who attested it and the plaintext, or
/// why it cannot open it.
fn read(bytes: &[u8], key: &rsa::RsaPrivateKey) -> Result<String, String> {
    let opened = open_delivery(bytes, key, &directory()).map_err(|e| e.to_string())?;
    Ok(format!(
        "{}; opened: {:?}",
        attested(bytes),
        String::from_utf8_lossy(&opened.payload)
    ))
}

/// Waits until `group` is at `min_epoch` or later with no rekey under way and every one of
/// `members` can open the current epoch's key, then until the bridge's cache has caught up
/// with finalized state. Returns the epoch and its topic public key.
async fn keyed_group(
    api: &Api,
    args: &Args,
    group: &str,
    min_epoch: u32,
    members: &[&str],
) -> Result<(u32, RsaPublicKey), String> {
    let client =
        subxt::rpcs::RpcClient::from_insecure_url(format!("ws://127.0.0.1:{}", args.rpc_port))
            .await
            .map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let json: serde_json::Value = client
            .request("keymesh_group", subxt::rpcs::client::rpc_params![group])
            .await
            .map_err(|e| e.to_string())?;
        let epoch = json["epoch"].as_u64().unwrap_or(0) as u32;
        let mut settled = epoch >= min_epoch && json["pendingEpoch"].is_null();
        for member in members {
            if !settled {
                break;
            }
            settled = matches!(topic_key_of(args.rpc_port, group, member).await,
                Ok((e, _)) if e == epoch);
        }
        if settled {
            let der = base64::engine::general_purpose::STANDARD
                .decode(json["topicKey"]["publicKey"].as_str().unwrap_or_default())
                .map_err(|e| e.to_string())?;
            bridge_caught_up(api, args).await?;
            return Ok((epoch, parse_public(&der).map_err(|e| e.to_string())?));
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "group {group} never settled at epoch {min_epoch} or later"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the bridge's key cache reflects the finalized head.
async fn bridge_caught_up(api: &Api, args: &Args) -> Result<(), String> {
    let head = api
        .at_current_block()
        .await
        .map_err(|e| e.to_string())?
        .block_number() as f64;
    let deadline = std::time::Instant::now() + WAIT;
    while bridge_metric(args.metrics_port, "keymesh_bridge_cache_block")
        .await
        .is_none_or(|cached| cached < head)
    {
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "the bridge's cache never reached finalized #{head} (metrics port {})",
                args.metrics_port
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn ensure_group(
    api: &Api,
    args: &Args,
    group: &str,
    members: &[&str],
) -> Result<(u32, RsaPublicKey), String> {
    let admin = Value::from_bytes(operator().public_key().0);
    // Created on a first run; a later run finds it there and reuses it as it is.
    let created = submit(
        api,
        "Groups",
        "create_group",
        vec![bytes(group.as_bytes()), admin],
    )
    .await
    .is_ok();
    if created {
        submit(
            api,
            "Groups",
            "set_publishing",
            vec![bytes(group.as_bytes()), Value::bool(true)],
        )
        .await?;
        for m in members {
            let role = Value::unnamed_variant("Both", []);
            submit(
                api,
                "Groups",
                "add_member",
                vec![bytes(group.as_bytes()), bytes(m.as_bytes()), role],
            )
            .await?;
        }
    }
    keyed_group(api, args, group, 1, if created { members } else { &[] }).await
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let api = Api::from_insecure_url(format!("ws://127.0.0.1:{}", args.rpc_port))
        .await
        .map_err(|e| format!("no node on port {}: {e}", args.rpc_port))?;
    let mut fleet = Vec::new();
    for id in DEVICES {
        fleet.push(Device::connect(args.mqtt_port, id).await);
    }

    say("== 1. Direct message (MTP): 1111 -> 1113; 1112 and 1114 try to listen on 1113's inbox ==");
    let mut refused = std::collections::HashSet::new();
    for d in &mut fleet[..] {
        if (d.id == "1112" || d.id == "1114")
            && granted(d.mqtt.subscribe(&inbox_topic("1113")).await).is_none()
        {
            say(format!(
                "{}: the front refuses its subscription to 1113's inbox",
                d.id
            ));
            refused.insert(d.id.clone());
        }
    }
    let sealed = seal_direct(
        "1111",
        &fleet[0].key,
        "1113",
        &public("1113"),
        0,
        b"temperature=21.5C",
    )
    .map_err(|e| e.to_string())?;
    say(format!(
        "1111 seals to 1113's key {}",
        short(&sealed.header.fingerprint)
    ));
    fleet[0].send(sealed.to_bytes()).await;
    for d in &mut fleet[1..] {
        if refused.contains(&d.id) {
            let leaked = d
                .next_on(&inbox_topic("1113"), Duration::from_secs(1))
                .await;
            let what = if leaked.is_some() {
                "UNEXPECTED copy"
            } else {
                "receives nothing"
            };
            say(format!("{}: {what}", d.id));
            continue;
        }
        let Some(bytes) = d.next_on(&inbox_topic("1113"), WAIT).await else {
            say(format!("{}: nothing arrived", d.id));
            continue;
        };
        match read(&bytes, &d.key) {
            Ok(text) => say(format!("{}: {text}", d.id)),
            Err(e) => say(format!(
                "{}: sees {} bytes of ciphertext, cannot open: {e}",
                d.id,
                bytes.len()
            )),
        }
    }

    say("\n== 2. Tampered key: 1111's directory says 1113's key is \"None\" (really 1114's) ==");
    let tampered = seal_direct(
        "1111",
        &fleet[0].key,
        "1113",
        &public("1114"),
        0,
        b"pin 0000",
    )
    .map_err(|e| e.to_string())?;
    fleet[0].send(tampered.to_bytes()).await;
    match fleet[0].next_on(&status_topic("1111"), WAIT).await {
        Some(bytes) => {
            let n: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            say(format!(
                "bridge: refused, {} (presented {}, expected {}, finalized #{}); a KeyMismatch event goes on chain",
                n["reason"], n["presented"], n["expected"], n["block"]
            ));
        }
        None => say("bridge: no refusal seen"),
    }
    let nothing = fleet[2]
        .next_on(&inbox_topic("1113"), Duration::from_secs(2))
        .await;
    say(format!(
        "1113: {}",
        if nothing.is_none() {
            "nothing delivered"
        } else {
            "UNEXPECTED delivery"
        }
    ));

    say("\n== 4. Topics (SSCP): A = {1111, 1112}, B = {1113, 1114}; 1111 publishes to B ==");
    ensure_group(&api, &args, "A", &["1111", "1112"]).await?;
    let (epoch, b_key) = ensure_group(&api, &args, "B", &["1113", "1114"]).await?;
    say(format!(
        "bridge (key manager) keyed B at epoch {epoch}: topic key {}",
        short(&fingerprint(&b_key))
    ));
    let mut outside_b = std::collections::HashSet::new();
    for d in &mut fleet[..] {
        if granted(d.mqtt.subscribe(&group_topic("B")).await).is_none() {
            say(format!(
                "{}: not a member of B; the front refuses its subscription",
                d.id
            ));
            outside_b.insert(d.id.clone());
        }
    }
    let env = seal_topic("1111", &fleet[0].key, "B", &b_key, epoch, b"lights off")
        .map_err(|e| e.to_string())?;
    fleet[0].send(env.to_bytes()).await;
    for d in &mut fleet[..] {
        let copy = if outside_b.contains(&d.id) {
            d.next_on(&group_topic("B"), Duration::from_secs(1)).await
        } else {
            d.next_on(&group_topic("B"), WAIT).await
        };
        let Some(bytes) = copy else {
            let why = if outside_b.contains(&d.id) {
                " (not subscribed)"
            } else {
                ""
            };
            say(format!("{}: nothing arrived{why}", d.id));
            continue;
        };
        match topic_key_of(args.rpc_port, "B", &d.id).await {
            Ok((_, key)) => match read(&bytes, &key) {
                Ok(text) => say(format!("{}: member of B; {text}", d.id)),
                Err(e) => say(format!("{}: member of B but cannot open: {e}", d.id)),
            },
            Err(e) => say(format!(
                "{}: not a member of B, has no topic key ({e}); sees ciphertext only",
                d.id
            )),
        }
    }

    say("\n== 5. Cross-group: hsu0001 = {1112, 1113}, hsu0002 = {1113}; 1112 leaves hsu0001 ==");
    let (e1, _) = ensure_group(&api, &args, "hsu0001", &["1112", "1113"]).await?;
    ensure_group(&api, &args, "hsu0002", &["1113"]).await?;
    for group in ["hsu0001", "hsu0002"] {
        match topic_key_of(args.rpc_port, group, "1113").await {
            Ok((epoch, _)) => say(format!("1113: opens the key of {group} epoch {epoch}")),
            Err(e) => say(format!("1113: cannot open the key of {group} ({e})")),
        }
    }
    // What 1112 keeps from its membership: the epoch key it could open while a member.
    let kept_by_1112 = topic_key_of(args.rpc_port, "hsu0001", "1112").await.ok();
    let removed = submit(
        &api,
        "Groups",
        "remove_member",
        vec![bytes(b"hsu0001"), bytes(b"1112")],
    )
    .await
    .is_ok();
    let next = if removed { e1 + 1 } else { e1 };
    let (epoch, key) = keyed_group(&api, &args, "hsu0001", next, &["1113"]).await?;
    if removed {
        say(format!(
            "removal finalized; bridge rekeyed hsu0001 to epoch {epoch} ({})",
            short(&fingerprint(&key))
        ));
    }
    for d in &mut fleet[1..3] {
        if granted(d.mqtt.subscribe(&group_topic("hsu0001")).await).is_none() {
            say(format!(
                "{}: no longer a member; the front refuses its subscription to hsu0001",
                d.id
            ));
        }
    }
    let sealed = seal_topic(
        "1113",
        &fleet[2].key,
        "hsu0001",
        &key,
        epoch,
        b"valve 7 closed",
    )
    .map_err(|e| e.to_string())?;
    fleet[2].send(sealed.to_bytes()).await;
    for d in &mut fleet[1..3] {
        let within = if d.id == "1112" {
            Duration::from_secs(1)
        } else {
            WAIT
        };
        let Some(bytes) = d.next_on(&group_topic("hsu0001"), within).await else {
            say(format!("{}: nothing arrived", d.id));
            continue;
        };
        let held = match d.id.as_str() {
            "1112" => kept_by_1112.clone(),
            _ => topic_key_of(args.rpc_port, "hsu0001", &d.id).await.ok(),
        };
        match held {
            Some((held_epoch, key)) => match read(&bytes, &key) {
                Ok(text) => say(format!("{}: with epoch {held_epoch}: {text}", d.id)),
                Err(e) => say(format!(
                    "{}: holds only epoch {held_epoch}, cannot open epoch {epoch}: {e}",
                    d.id
                )),
            },
            None => say(format!(
                "{}: holds no key of hsu0001; sees ciphertext only",
                d.id
            )),
        }
    }
    say("\nThe bridge logs a KeyExchanged event on chain per forwarded message and a KeyMismatch per key refusal (the scenario_8 test checks them one for one).");
    Ok(())
}

/// `Some(())` if the broker granted every filter of a SUBSCRIBE.
fn granted(codes: Vec<rumqttc::SubscribeReasonCode>) -> Option<()> {
    codes
        .iter()
        .all(|c| *c != rumqttc::SubscribeReasonCode::Failure)
        .then_some(())
}
