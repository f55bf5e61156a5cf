//! The bridge fails closed (DESIGN §4b), tried as an operator would: each test breaks one
//! real component on loopback (the node, its connection, Mosquitto, the disk, the bridge's
//! standing on chain) and checks that nothing is forwarded on a stale view, that nothing
//! goes out without its record, and that forwarding resumes by itself once the fault ends.
//! Figures print with `--nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use keymesh_device::{
    envelope_hash,
    mqtt::{group_topic, inbox_topic, status_topic},
};
use rumqttc::MqttOptions;
use subxt::dynamic::Value;

/// A device talking to an open broker directly, with no front: what the gate alone sees.
async fn direct_device(stack: &Stack, id: &str) -> Device {
    let mut options = MqttOptions::new(format!("{id}-direct"), "127.0.0.1", stack.broker_port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(2 << 20, 2 << 20);
    let mut mqtt = MqttClient::try_connect(options).await.unwrap();
    mqtt.subscribe_granted(&inbox_topic(id)).await;
    mqtt.subscribe_granted(&status_topic(id)).await;
    Device {
        id: id.to_string(),
        key: device_key(id),
        mqtt,
    }
}

/// Sends fresh envelopes from `from` to `to` until one is delivered; returns how many
/// were refused first, and the reasons.
async fn send_until_delivered(from: &mut Device, to: &mut Device, text: &str) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    let mut refused = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "nothing delivered: {refused:?}");
        from.send(direct(&from.id, &to.id, &public(&to.id), text))
            .await;
        if to
            .next_on(&inbox_topic(&to.id), Duration::from_millis(300))
            .await
            .is_some()
        {
            return refused;
        }
        let status = status_topic(&from.id);
        while let Some(notice) = from.next_on(&status, Duration::from_millis(10)).await {
            let notice: serde_json::Value = serde_json::from_slice(&notice).unwrap();
            refused.push(notice["reason"].as_str().unwrap_or_default().to_string());
        }
    }
}

/// Sends one envelope from `from` to `to` and requires it refused with `reason`, and not
/// delivered; returns when the refusal arrived.
async fn refused_with(from: &mut Device, to: &mut Device, reason: &str) -> Instant {
    from.send(direct(&from.id, &to.id, &public(&to.id), "must not pass"))
        .await;
    assert_eq!(from.refusal(WAIT).await["reason"], reason);
    let refused = Instant::now();
    assert!(
        to.next_on(&inbox_topic(&to.id), QUIET).await.is_none(),
        "delivered although refused"
    );
    refused
}

/// Waits until the bridge's cache holds block `number`; returns when, and the chain's
/// finalized head at that moment.
async fn bridge_applied(stack: &Stack, number: u64) -> (Instant, u64) {
    let at = wait_for(&format!("the bridge to apply #{number}"), WAIT, || async {
        let block = stack.metric("keymesh_bridge_cache_block").await?;
        (block >= number as f64).then(Instant::now)
    })
    .await;
    (at, stack.finalized().await)
}

async fn wait_not_ready(stack: &Stack, because: &str) -> String {
    wait_for(&format!("/readyz to say {because:?}"), WAIT, || async {
        let (ready, body) = stack.readyz().await;
        (!ready && body.contains(because)).then_some(body)
    })
    .await
}

async fn wait_ready(stack: &Stack) {
    wait_for("/readyz to say ready", WAIT, || async {
        stack.readyz().await.0.then_some(())
    })
    .await
}

/// Waits until the chain has finalized block `number`.
async fn until_finalized(stack: &Stack, number: u64) {
    wait_for(&format!("finalized #{number}"), WAIT, || async {
        (stack.finalized().await >= number).then_some(())
    })
    .await;
}

/// Waits until the bridge's log holds `text`.
async fn until_logged(stack: &Stack, text: &str) {
    wait_for(&format!("the bridge to log {text:?}"), WAIT, || async {
        stack.bridge_log().contains(text).then_some(())
    })
    .await;
}

async fn revoke(stack: &Stack, device: &str) -> u64 {
    stack
        .submit_in_block(
            &operator(),
            "Devices",
            "revoke",
            vec![bytes(device.as_bytes())],
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn node_restart_a_revocation_after_it_is_enforced_within_two_blocks() {
    let mut stack = Stack::start(BrokerKind::OpenMosquitto).await;
    let mut d1111 = direct_device(&stack, "1111").await;
    let mut d1112 = direct_device(&stack, "1112").await;
    send_until_delivered(&mut d1111, &mut d1112, "before the restart").await;

    stack.stop_node();
    stack.start_node(&[]).await;
    wait_ready(&stack).await;
    let revoked_at = revoke(&stack, "1111").await;
    let finalized = Instant::now();
    let (applied, head) = bridge_applied(&stack, revoked_at).await;
    assert!(
        head <= revoked_at + 2,
        "revocation #{revoked_at} applied only with the head at #{head}"
    );
    let refused = refused_with(&mut d1111, &mut d1112, "SenderNotActive").await;
    println!(
        "node restart: revocation finalized at #{revoked_at}, applied by the bridge after {} ms \
         (head #{head}), first refusal {} ms after finality",
        (applied - finalized).as_millis(),
        (refused - finalized).as_millis()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn node_down_every_envelope_is_refused_stale_state_and_forwarding_resumes() {
    let mut stack = Stack::start_with(BrokerKind::Embedded, &["--max-staleness-secs", "4"]).await;
    let mut d1111 = Device::connect(stack.mqtt_port, "1111").await;
    let mut d1112 = Device::connect(stack.mqtt_port, "1112").await;
    send_until_delivered(&mut d1111, &mut d1112, "before").await;
    let forwarded = stack.metric("keymesh_bridge_forwarded_total").await;

    stack.stop_node();
    // Down for longer than max_staleness, by the head's own timestamp.
    let body = wait_not_ready(&stack, "old").await;
    assert!(body.contains("not caught up"), "{body}");
    for _ in 0..3 {
        refused_with(&mut d1111, &mut d1112, "StaleState").await;
    }
    assert_eq!(
        stack.metric("keymesh_bridge_forwarded_total").await,
        forwarded
    );
    assert!(
        stack
            .metric("keymesh_bridge_refused_total{reason=\"StaleState\"}")
            .await
            >= Some(3.0)
    );

    let returned = Instant::now();
    stack.start_node(&[]).await;
    let answering = Instant::now();
    let refused_meanwhile = send_until_delivered(&mut d1111, &mut d1112, "after").await;
    assert!(refused_meanwhile.iter().all(|r| r == "StaleState"));
    println!(
        "node down: first forward {} ms after the node's process started, {} ms after its \
         JSON-RPC answered",
        returned.elapsed().as_millis(),
        answering.elapsed().as_millis()
    );
    wait_ready(&stack).await;
}

/// The best block's number, from the node's `chain_getHeader`.
async fn best_block(stack: &Stack) -> u64 {
    let header = stack
        .rpc("chain_getHeader", subxt::rpcs::client::rpc_params![])
        .await;
    let number = header["number"].as_str().unwrap().trim_start_matches("0x");
    u64::from_str_radix(number, 16).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn finality_stall_refuses_everything_with_stale_state() {
    let mut options =
        StackOptions::new(BrokerKind::Embedded).bridge_args(&["--max-staleness-secs", "6"]);
    options.sealing = "aura";
    let mut stack = Stack::start_options(options).await;
    let mut d1111 = Device::connect(stack.mqtt_port, "1111").await;
    let mut d1112 = Device::connect(stack.mqtt_port, "1112").await;
    send_until_delivered(&mut d1111, &mut d1112, "while finalizing").await;

    // The only authority comes back without its GRANDPA voter: Aura goes on authoring,
    // nothing is finalized any more.
    stack.stop_node();
    stack.start_node(&["--no-grandpa"]).await;
    let stalled_at = stack.finalized().await;
    let body = wait_not_ready(&stack, "old").await;
    println!("finality stall at #{stalled_at}: /readyz says {body:?}");
    for _ in 0..3 {
        refused_with(&mut d1111, &mut d1112, "StaleState").await;
    }
    let best_now = best_block(&stack).await;
    assert!(
        best_now > stalled_at,
        "blocks are still produced: best #{best_now}, finalized #{stalled_at}"
    );
    assert_eq!(stack.finalized().await, stalled_at, "finality moved");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_gaps_blocks_finalized_while_the_bridge_was_cut_off_are_applied() {
    let mut stack = Stack::start_chain(&StackOptions::new(BrokerKind::OpenMosquitto)).await;
    let proxy = Proxy::start(stack.rpc_port).await;
    stack.node_url = Some(format!("ws://127.0.0.1:{}", proxy.port));
    stack.start_bridge().await;
    let mut d1111 = direct_device(&stack, "1111").await;
    let mut d1112 = direct_device(&stack, "1112").await;
    send_until_delivered(&mut d1111, &mut d1112, "before the cut").await;

    proxy.cut();
    wait_not_ready(&stack, "not caught up").await;
    let revoked_at = revoke(&stack, "1111").await;
    // The revocation is well inside the gap: later blocks touch nothing of 1111's.
    until_finalized(&stack, revoked_at + 3).await;
    refused_with(&mut d1111, &mut d1112, "StaleState").await;
    proxy.restore();
    let restored = Instant::now();
    let head = stack.finalized().await;
    bridge_applied(&stack, head).await;
    wait_ready(&stack).await;
    let refused = refused_with(&mut d1111, &mut d1112, "SenderNotActive").await;
    println!(
        "cut off: revocation #{revoked_at} applied after the connection came back; first \
         refusal {} ms after it did",
        (refused - restored).as_millis()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_gaps_a_revocation_in_the_start_up_window_is_applied() {
    // Mosquitto is down when the bridge starts: between its first snapshot and the moment
    // it follows blocks lies as long a window as the broker takes.
    let mut options = StackOptions::new(BrokerKind::OpenMosquitto);
    options.mosquitto_first = false;
    options.wait_for_bridge = false;
    let mut stack = Stack::start_options(options).await;
    stack.spawn_bridge();
    let snapshot_at: u64 = wait_for("the first snapshot", WAIT, || async {
        let log = stack.bridge_log();
        let rest = log.split("key cache at finalized #").nth(1)?;
        rest.split(':').next()?.parse().ok()
    })
    .await;
    let revoked_at = revoke(&stack, "1111").await;
    assert!(revoked_at > snapshot_at);
    let finalized = Instant::now();
    // Blocks after it, so that applying only the newest would miss it.
    until_finalized(&stack, revoked_at + 2).await;
    stack.start_mosquitto(true);
    until_logged(&stack, "forwarding from km/v1/in/+").await;
    wait_ready(&stack).await;
    let mut d1111 = direct_device(&stack, "1111").await;
    let mut d1112 = direct_device(&stack, "1112").await;
    let refused = refused_with(&mut d1111, &mut d1112, "SenderNotActive").await;
    println!(
        "start-up window: snapshot #{snapshot_at}, revocation #{revoked_at}; first refusal {} \
         ms after its finality (the broker was down for most of it)",
        (refused - finalized).as_millis()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_restart_without_persistence_resubscribes_and_delivers_every_acknowledged_message() {
    let mut stack = Stack::start(BrokerKind::Mosquitto).await;
    let mut d1111 = Device::connect(stack.mqtt_port, "1111").await;
    let mut d1112 = Device::connect(stack.mqtt_port, "1112").await;
    send_until_delivered(&mut d1111, &mut d1112, "before").await;

    stack.stop_mosquitto();
    wait_not_ready(&stack, "not subscribed to ingress").await;
    drop((d1111, d1112));
    let returned = Instant::now();
    stack.start_mosquitto(false);
    // The devices' sessions went with the broker's memory: they connect afresh, which the
    // front allows only once the bridge is subscribed again.
    let mut d1112 = Device::connect(stack.mqtt_port, "1112").await;
    let mut d1111 = Device::connect(stack.mqtt_port, "1111").await;
    let refused = send_until_delivered(&mut d1111, &mut d1112, "after").await;
    let resumed = returned.elapsed();
    println!(
        "broker restart: first forward {} ms after Mosquitto came back ({} refused first)",
        resumed.as_millis(),
        refused.len()
    );
    assert!(resumed <= Duration::from_secs(5), "took {resumed:?}");
    // Every message the broker acknowledged to the sender is delivered.
    let sent: Vec<Vec<u8>> = (0..20)
        .map(|i| direct("1111", "1112", &public("1112"), &format!("n{i}")))
        .collect();
    for envelope in &sent {
        d1111.send(envelope.clone()).await;
    }
    for i in 0..sent.len() {
        assert!(
            d1112.next_on(&inbox_topic("1112"), WAIT).await.is_some(),
            "message {i} of {} lost",
            sent.len()
        );
    }
    wait_ready(&stack).await;
}

/// A small tmpfs mounted over a directory for the length of a test.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CAP_SYS_ADMIN): {status:?}"
        );
        Tmpfs(path.to_path_buf())
    }

    /// Writes `filler` until the filesystem has no room left.
    fn fill(&self, filler: &Path) {
        let mut file = std::fs::File::create(filler).unwrap();
        for chunk in [64 * 1024, 4096, 512, 1] {
            while file.write_all(&vec![0u8; chunk]).is_ok() {}
        }
        let _ = file.sync_all();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_full_nothing_is_forwarded_until_records_can_be_written() {
    let mut options = StackOptions::new(BrokerKind::Embedded);
    options.wait_for_bridge = false;
    let mut stack = Stack::start_options(options).await;
    let state = stack.dir.path().join("bridge-state");
    let disk = Tmpfs::mount(&state, "4m");
    stack.start_bridge().await;
    let from = stack.finalized().await;
    let mut d1111 = Device::connect(stack.mqtt_port, "1111").await;
    let mut d1112 = Device::connect(stack.mqtt_port, "1112").await;
    // Nothing forwarded yet: the journals hold no page the filler cannot take.
    let filler = state.join("filler");
    disk.fill(&filler);

    let sent: Vec<Vec<u8>> = (0..3)
        .map(|i| direct("1111", "1112", &public("1112"), &format!("while full {i}")))
        .collect();
    for envelope in &sent {
        d1111.send(envelope.clone()).await;
    }
    assert!(
        d1112.next_on(&inbox_topic("1112"), QUIET).await.is_none(),
        "forwarded with no room for its record"
    );
    let body = wait_not_ready(&stack, "journal").await;
    println!("disk full: /readyz says {body:?}");
    assert_eq!(
        stack.metric("keymesh_bridge_forwarded_total").await,
        Some(0.0)
    );

    std::fs::remove_file(&filler).unwrap();
    for i in 0..sent.len() {
        assert!(
            d1112.next_on(&inbox_topic("1112"), WAIT).await.is_some(),
            "envelope {i} not forwarded after the disk was cleared"
        );
    }
    wait_ready(&stack).await;
    exchange_log(&stack, from, sent.len(), 0).await;
    let mut expected: Vec<Vec<u8>> = sent.iter().map(|e| envelope_hash(e).to_vec()).collect();
    expected.sort();
    assert_eq!(proved_logged(&stack, &expected).await, expected);
}

/// The bridge account's nonce in finalized state: how many transactions it has paid for.
async fn bridge_nonce(stack: &Stack) -> u64 {
    let ferdie = subxt_signer::sr25519::dev::ferdie();
    let account =
        <subxt_signer::sr25519::Keypair as subxt::tx::Signer<subxt::PolkadotConfig>>::account_id(
            &ferdie,
        );
    stack
        .api
        .at_current_block()
        .await
        .unwrap()
        .tx()
        .account_nonce(&account)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn removed_bridge_stops_forwarding_and_stops_paying_fees() {
    let stack = Stack::start(BrokerKind::Embedded).await;
    let mut d1111 = Device::connect(stack.mqtt_port, "1111").await;
    let mut d1112 = Device::connect(stack.mqtt_port, "1112").await;
    send_until_delivered(&mut d1111, &mut d1112, "while listed").await;

    let ferdie = Value::from_bytes(bridge_key());
    let removed_at = stack
        .submit_in_block(&operator(), "ExchangeLog", "remove_bridge", vec![ferdie])
        .await;
    let finalized = Instant::now();
    let (_, head) = bridge_applied(&stack, removed_at).await;
    assert!(head <= removed_at + 2, "applied only at head #{head}");
    let refused = refused_with(&mut d1111, &mut d1112, "BridgeNotListed").await;
    println!(
        "removed bridge: first refusal {} ms after the removal's finality",
        (refused - finalized).as_millis()
    );
    // A batch already on its way when the removal landed may still land (and fail); after
    // that, none is sent, though its records stay pending.
    until_finalized(&stack, removed_at + 2).await;
    let nonce = bridge_nonce(&stack).await;
    for _ in 0..5 {
        refused_with(&mut d1111, &mut d1112, "BridgeNotListed").await;
    }
    assert!(stack
        .bridge_log()
        .contains("the exchange log no longer lists this bridge"));
    wait_not_ready(&stack, "does not list").await;
    until_finalized(&stack, removed_at + 6).await;
    assert_eq!(
        bridge_nonce(&stack).await,
        nonce,
        "the removed bridge sent a transaction"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_the_broker_down_exits_within_10_seconds() {
    let mut stack = Stack::start(BrokerKind::Mosquitto).await;
    stack.stop_mosquitto();
    wait_not_ready(&stack, "not subscribed to ingress").await;
    let mut bridge = stack.bridge.take().unwrap();
    let asked = Instant::now();
    let status = bridge.terminate_within(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "bridge still running or failed 10 s after SIGTERM: {status:?}"
    );
    println!(
        "shutdown with the broker down: exited {} ms after SIGTERM",
        asked.elapsed().as_millis()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rekey_pending_after_a_removal_the_old_epoch_is_refused() {
    let mut stack = Stack::start(BrokerKind::Embedded).await;
    create_group(&stack, "grp1", &["1111", "1112", "1113"], false).await;
    let (first_epoch, first) = settled_group_key(&stack, "grp1").await;
    // Without a key manager the removal's rekey stays pending.
    stack.bridge_args = vec!["--no-keyman".into()];
    stack.start_bridge().await;
    let mut d1111 = Device::connect(stack.mqtt_port, "1111").await;
    let mut d1112 = Device::connect(stack.mqtt_port, "1112").await;
    d1112.mqtt.subscribe_granted(&group_topic("grp1")).await;
    let args = vec![bytes(b"grp1"), bytes(b"1113")];
    let removed_at = stack
        .submit_in_block(&operator(), "Groups", "remove_member", args)
        .await;
    bridge_applied(&stack, removed_at).await;
    d1111
        .send(topic(
            "1111",
            "grp1",
            &first,
            first_epoch,
            "readable by 1113",
        ))
        .await;
    assert_eq!(d1111.refusal(WAIT).await["reason"], "RekeyPending");
    assert!(d1112.next_on(&group_topic("grp1"), QUIET).await.is_none());

    // With the key manager back, the new epoch is set and used. The restart took the
    // embedded broker's sessions with it: the devices connect again.
    stack.bridge_args.clear();
    stack.start_bridge().await;
    let (next, second) = group_key_after(&stack, "grp1", removed_at).await;
    drop((d1111, d1112));
    let mut d1111 = Device::connect(stack.mqtt_port, "1111").await;
    let mut d1112 = Device::connect(stack.mqtt_port, "1112").await;
    d1112.mqtt.subscribe_granted(&group_topic("grp1")).await;
    d1111
        .send(topic("1111", "grp1", &second, next, "after the rekey"))
        .await;
    assert!(d1112.next_on(&group_topic("grp1"), WAIT).await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_set_epoch_key_is_retried_until_it_lands() {
    let stack = Stack::start(BrokerKind::Embedded).await;
    create_group(&stack, "grp2", &["1111"], false).await;
    group_key(&stack, "grp2", 1).await;
    let ferdie = || Value::from_bytes(bridge_key());
    stack
        .submit(&operator(), "Groups", "remove_key_manager", vec![ferdie()])
        .await;
    let role = Value::unnamed_variant("Both", []);
    let args = vec![bytes(b"grp2"), bytes(b"1112"), role];
    stack
        .submit(&operator(), "Groups", "add_member", args)
        .await;
    until_logged(&stack, "epoch 2 of group grp2").await;
    stack
        .submit(&operator(), "Groups", "add_key_manager", vec![ferdie()])
        .await;
    group_key(&stack, "grp2", 2).await;
}
