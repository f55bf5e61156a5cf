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

async fn group_key(args: &Args, group: &str, epoch: u32) -> Result<RsaPublicKey, String> {
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
        if json["epoch"].as_u64() >= Some(epoch.into()) {
            let der = base64::engine::general_purpose::STANDARD
                .decode(json["topicKey"]["publicKey"].as_str().unwrap_or_default())
                .map_err(|e| e.to_string())?;
            return parse_public(&der).map_err(|e| e.to_string());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("group {group} never reached epoch {epoch}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn ensure_group(
    api: &Api,
    args: &Args,
    group: &str,
    members: &[&str],
) -> Result<u32, String> {
    let admin = Value::from_bytes(operator().public_key().0);
    // Created on a first run; a later run finds it there and reuses it.
    if submit(
        api,
        "Groups",
        "create_group",
        vec![bytes(group.as_bytes()), admin],
    )
    .await
    .is_ok()
    {
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
    group_key(args, group, 1).await?;
    let (epoch, _) = topic_key_of(args.rpc_port, group, members[0]).await?;
    Ok(epoch)
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
    let dir = directory();

    say("== 1. Direct message (MTP): 1111 -> 1113; 1112 and 1114 listen on 1113's inbox ==");
    for d in &mut fleet[..] {
        if d.id == "1112" || d.id == "1114" {
            d.mqtt.subscribe(&inbox_topic("1113")).await;
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
        let Some(bytes) = d.next_on(&inbox_topic("1113"), WAIT).await else {
            say(format!("{}: nothing arrived", d.id));
            continue;
        };
        match open_delivery(&bytes, &d.key, &dir) {
            Ok(o) => say(format!(
                "{}: {}; opened: {:?}",
                d.id,
                attested(&bytes),
                String::from_utf8_lossy(&o.payload)
            )),
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
    let epoch = ensure_group(&api, &args, "B", &["1113", "1114"]).await?;
    let b_key = group_key(&args, "B", epoch).await?;
    say(format!(
        "bridge (key manager) keyed B at epoch {epoch}: topic key {}",
        short(&fingerprint(&b_key))
    ));
    for d in &mut fleet[..] {
        d.mqtt.subscribe(&group_topic("B")).await;
    }
    let env = seal_topic("1111", &fleet[0].key, "B", &b_key, epoch, b"lights off")
        .map_err(|e| e.to_string())?;
    fleet[0].send(env.to_bytes()).await;
    for d in &mut fleet[..] {
        let Some(bytes) = d.next_on(&group_topic("B"), WAIT).await else {
            say(format!("{}: nothing arrived", d.id));
            continue;
        };
        match topic_key_of(args.rpc_port, "B", &d.id).await {
            Ok((_, key)) => match open_delivery(&bytes, &key, &dir) {
                Ok(o) => say(format!(
                    "{}: member of B; {}; opened: {:?}",
                    d.id,
                    attested(&bytes),
                    String::from_utf8_lossy(&o.payload)
                )),
                Err(e) => say(format!("{}: member of B but cannot open: {e}", d.id)),
            },
            Err(e) => say(format!(
                "{}: not a member of B, has no topic key ({e}); sees ciphertext only",
                d.id
            )),
        }
    }

    say("\n== 5. Cross-group: hsu0001 = {1112, 1113}, hsu0002 = {1113}; 1112 leaves hsu0001 ==");
    let e1 = ensure_group(&api, &args, "hsu0001", &["1112", "1113"]).await?;
    ensure_group(&api, &args, "hsu0002", &["1113"]).await?;
    say(format!(
        "1113 holds keys of hsu0001 (epoch {e1}) and hsu0002"
    ));
    if submit(
        &api,
        "Groups",
        "remove_member",
        vec![bytes(b"hsu0001"), bytes(b"1112")],
    )
    .await
    .is_ok()
    {
        let key = group_key(&args, "hsu0001", e1 + 1).await?;
        say(format!(
            "removal finalized; bridge rekeyed hsu0001 to epoch {} ({})",
            e1 + 1,
            short(&fingerprint(&key))
        ));
    }
    for id in ["1112", "1113"] {
        match topic_key_of(args.rpc_port, "hsu0001", id).await {
            Ok((epoch, _)) => say(format!("{id}: can read hsu0001 epoch {epoch}")),
            Err(e) => say(format!("{id}: cannot read new hsu0001 messages ({e})")),
        }
    }
    say("\nThe exchange log holds a KeyExchanged event per forwarded message and a KeyMismatch per step-2 refusal.");
    Ok(())
}
