//! The device agent end to end (issue 14), with a real node, bridge and broker on loopback:
//! a fresh device onboarded from the CLI, a tampered key cache, a rotation mid-stream,
//! groups followed by themselves, and a replay after a listener restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use keymesh_device::{
    agent::{
        peer_cache::{CachedKey, PeerCache},
        Agent, AgentConfig, AgentEvent, Message,
    },
    config::Broker,
    keys::read_private,
    mqtt::Endpoint,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    sync::mpsc,
};

type Events = mpsc::Receiver<AgentEvent>;

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../device/testdata")
        .join(name)
}

fn bridge_hex() -> String {
    hex::encode(bridge_key())
}

/// An agent for device `id` through the stack's front, with its state in `state`.
async fn start_agent(stack: &Stack, id: &str, key_file: &Path, state: &Path) -> (Agent, Events) {
    let config = AgentConfig {
        endpoint: Endpoint::plain(Broker {
            host: "127.0.0.1".into(),
            port: stack.mqtt_port,
            tls: false,
        }),
        device: id.into(),
        key: read_private(key_file).unwrap(),
        key_file: Some(key_file.to_path_buf()),
        audience: AUDIENCE.into(),
        trusted_bridges: vec![bridge_key()],
        state_dir: state.to_path_buf(),
        tag: format!("agent-{}", rand::random::<u32>()),
        grace: Duration::from_secs(30),
    };
    Agent::start(config).await.unwrap()
}

/// A test device's agent with its dev key and a state dir of its own under the stack.
async fn dev_agent(stack: &Stack, id: &str, state: &str) -> (Agent, Events) {
    let dir = stack.dir.path().join(state);
    start_agent(stack, id, &testdata(&format!("{id}.key.pem")), &dir).await
}

/// The next event `pick` accepts, within `within`.
async fn next_matching<T>(
    events: &mut Events,
    within: Duration,
    mut pick: impl FnMut(&AgentEvent) -> Option<T>,
) -> Option<T> {
    tokio::time::timeout(within, async {
        while let Some(event) = events.recv().await {
            if let Some(value) = pick(&event) {
                return Some(value);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

async fn next_message(events: &mut Events, within: Duration) -> Option<Message> {
    next_matching(events, within, |e| match e {
        AgentEvent::Message(m) => Some(m.clone()),
        _ => None,
    })
    .await
}

fn device_cli(stack: &Stack, id: &str, key: &Path, state: &Path) -> Command {
    let mut cmd = Command::new(sibling_binary("keymesh-device"));
    cmd.args(["--broker", &format!("mqtt://127.0.0.1:{}", stack.mqtt_port)])
        .args(["--device-id", id, "--key", key.to_str().unwrap()])
        .args(["--trust-bridge", &bridge_hex()])
        .args(["--state-dir", state.to_str().unwrap()]);
    cmd
}

fn signer_file(dir: &Path, name: &str, uri: &str) -> PathBuf {
    let path = dir.join(format!("{name}.suri"));
    std::fs::write(&path, uri).unwrap();
    path
}

fn node_url(stack: &Stack) -> String {
    format!("ws://127.0.0.1:{}", stack.rpc_port)
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_device_registers_and_talks_with_1113_without_key_files() {
    let stack = Stack::start(BrokerKind::Embedded).await;
    let dir = stack.dir.path();
    let key = dir.join("2001.key.pem");
    let state = dir.join("2001-state");
    run_ok(Command::new(sibling_binary("keymesh-device")).args([
        "keygen",
        "--out",
        key.to_str().unwrap(),
    ]));
    let (d1113, mut e1113) = dev_agent(&stack, "1113", "1113-state").await;

    let registering = Instant::now();
    let operator = signer_file(dir, "alice", "//Alice");
    run_ok(device_cli(&stack, "2001", &key, &state).args([
        "register",
        "--node",
        &node_url(&stack),
        "--signer-file",
        operator.to_str().unwrap(),
    ]));
    let mut listener = tokio::process::Command::new(sibling_binary("keymesh-device"))
        .args(["--broker", &format!("mqtt://127.0.0.1:{}", stack.mqtt_port)])
        .args(["--device-id", "2001", "--key", key.to_str().unwrap()])
        .args(["--trust-bridge", &bridge_hex()])
        .args(["--state-dir", state.to_str().unwrap()])
        .args(["listen", "--json", "--count", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(listener.stdout.take().unwrap()).lines();
    let mut errors = BufReader::new(listener.stderr.take().unwrap()).lines();
    // Ready once subscribed: the front admits 2001 as soon as the bridge has its block.
    let ready = tokio::time::timeout(WAIT, errors.next_line()).await;
    let ready = ready.expect("listener ready").unwrap().unwrap_or_default();
    assert!(ready.contains("listening as 2001"), "{ready}");
    // 1113 sends as soon as the directory shows 2001 (the agent waits for it).
    let sent = d1113.send("2001", b"hello 2001").await.unwrap();
    let line = tokio::time::timeout(WAIT, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("listener output");
            if line.contains("\"message\"") {
                return line;
            }
        }
    })
    .await
    .expect("2001 read 1113's message");
    let register_to_delivery = registering.elapsed();
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["payload"], "hello 2001");
    assert_eq!(json["sender"], "1113");
    assert_eq!(json["messageId"], hex::encode(sent));
    eprintln!("FIGURE register → first delivered message: {register_to_delivery:?}");

    // And back, from the CLI, with no key file of 1113 anywhere.
    let out = run_ok(device_cli(&stack, "2001", &key, &state).args([
        "send",
        "--to",
        "1113",
        "--message",
        "hello 1113",
    ]));
    assert!(out.contains("published message"), "{out}");
    let message = next_message(&mut e1113, WAIT)
        .await
        .expect("1113 read 2001");
    assert_eq!(
        (message.sender.as_str(), &message.payload[..]),
        ("2001", &b"hello 1113"[..])
    );
    let files: Vec<_> = std::fs::read_dir(state.join("peers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        files,
        vec!["1113.json".to_string()],
        "only the directory's copy"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_key_cache_fails_before_anything_is_sealed() {
    let stack = Stack::start(BrokerKind::Embedded).await;
    let state = stack.dir.path().join("1111-state");
    let key = testdata("1111.key.pem");
    let (_d1113, mut e1113) = dev_agent(&stack, "1113", "1113-state").await;
    run_ok(device_cli(&stack, "1111", &key, &state).args([
        "send",
        "--to",
        "1113",
        "--message",
        "first",
    ]));
    assert_eq!(
        &next_message(&mut e1113, WAIT).await.unwrap().payload[..],
        b"first"
    );

    // The seeds' "None": the cached key of 1113 is 1114's.
    let cache = PeerCache::open(&state.join("peers")).unwrap();
    cache
        .store(
            "1113",
            &CachedKey {
                public_key: public("1114"),
                epoch: 0,
                block: 1,
            },
        )
        .unwrap();
    // 1111's status topic shows any refusal of what reached the bridge.
    let (watch, mut watch_events) = dev_agent(&stack, "1111", "1111-watch").await;
    let forwarded = stack
        .metric("keymesh_bridge_forwarded_total")
        .await
        .unwrap();
    let out = device_cli(&stack, "1111", &key, &state)
        .args(["send", "--to", "1113", "--message", "to the wrong key"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "send succeeded with a tampered cache"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&hex::encode(keymesh_device::fingerprint(&public("1114")))),
        "{err}"
    );
    assert!(
        err.contains(&hex::encode(keymesh_device::fingerprint(&public("1113")))),
        "{err}"
    );
    assert!(err.contains("nothing was sealed"), "{err}");

    // A marker from 1111 after it: the bridge handles a sender's envelopes in order, so
    // anything the tampered send had published would be refused before this is forwarded.
    watch.send("1113", b"marker").await.unwrap();
    assert_eq!(
        &next_message(&mut e1113, WAIT).await.unwrap().payload[..],
        b"marker"
    );
    let after = stack
        .metric("keymesh_bridge_forwarded_total")
        .await
        .unwrap();
    assert_eq!(after - forwarded, 1.0, "only the marker was forwarded");
    while let Ok(event) = watch_events.try_recv() {
        assert!(!matches!(event, AgentEvent::Refused { .. }), "{event:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_mid_stream_loses_and_repeats_nothing() {
    let stack = Stack::start(BrokerKind::Embedded).await;
    let dir = stack.dir.path();
    let key = dir.join("1113.key.pem");
    std::fs::copy(testdata("1113.key.pem"), &key).unwrap();
    let (_d1113, mut e1113) = start_agent(&stack, "1113", &key, &dir.join("1113-state")).await;
    let (d1111, mut e1111) = dev_agent(&stack, "1111", "1111-state").await;

    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        for i in 0..100 {
            tick.tick().await;
            d1111
                .send("1113", format!("m{i}").as_bytes())
                .await
                .unwrap();
        }
        d1111.flush(WAIT).await.unwrap();
    });
    // Rotate once the stream is under way, with the owner's (Charlie's) signer.
    let first = next_message(&mut e1113, WAIT)
        .await
        .expect("the stream started");
    let mut received = vec![String::from_utf8(first.payload).unwrap()];
    let owner = signer_file(dir, "charlie", "//Charlie");
    let mut rotate = tokio::process::Command::new(sibling_binary("keymesh-device"))
        .args(["--device-id", "1113", "--key", key.to_str().unwrap()])
        .args([
            "rotate",
            "--node",
            &node_url(&stack),
            "--signer-file",
            owner.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let old = keymesh_device::fingerprint(&public("1113"));
    let mut rotated_at = None;
    let mut first_new = None;
    let deadline = Instant::now() + Duration::from_secs(90);
    while received.len() < 100 && Instant::now() < deadline {
        if rotated_at.is_none() {
            if let Ok(Some(status)) = rotate.try_wait() {
                assert!(status.success());
                rotated_at = Some(Instant::now());
            }
        }
        if let Some(m) = next_message(&mut e1113, Duration::from_millis(200)).await {
            if m.sealed_to != old && first_new.is_none() {
                first_new = Some(Instant::now());
            }
            received.push(String::from_utf8(m.payload).unwrap());
        }
    }
    sender.await.unwrap();
    let mut sorted = received.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        received.len(),
        "a message was delivered twice"
    );
    assert_eq!(
        received.len(),
        100,
        "missing: {:?}",
        (0..100)
            .map(|i| format!("m{i}"))
            .filter(|m| !received.contains(m))
            .collect::<Vec<_>>()
    );
    let resent = std::iter::from_fn(|| e1111.try_recv().ok())
        .filter(|e| matches!(e, AgentEvent::Resent { .. }))
        .count();
    let (rotated_at, first_new) = (
        rotated_at.expect("rotate finished"),
        first_new.expect("a message under the new key"),
    );
    // The sender follows the bridge's directory, which applies the finalized block about
    // when the rotate command learns of it: the first new-key delivery may come first.
    let gap_ms = if first_new >= rotated_at {
        first_new.duration_since(rotated_at).as_millis() as i128
    } else {
        -(rotated_at.duration_since(first_new).as_millis() as i128)
    };
    eprintln!(
        "FIGURE rotate command returned (finalized) → first delivery under the new key: {gap_ms} ms ({resent} resent)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn members_follow_joins_and_a_removed_member_is_told() {
    let stack = Stack::start(BrokerKind::Embedded).await;
    create_group(&stack, "B", &["1113", "1114"], true).await;
    let (keyed, _) = settled_group_key(&stack, "B").await;
    let (_d1113, mut e1113) = dev_agent(&stack, "1113", "1113-state").await;
    let (_d1114, mut e1114) = dev_agent(&stack, "1114", "1114-state").await;
    let (_d1112, mut e1112) = dev_agent(&stack, "1112", "1112-state").await;
    let (d1111, _e1111) = dev_agent(&stack, "1111", "1111-state").await;
    for events in [&mut e1113, &mut e1114] {
        next_matching(events, WAIT, |e| {
            matches!(e, AgentEvent::GroupKey { epoch, .. } if *epoch == keyed).then_some(())
        })
        .await
        .expect("members read the keyed epoch");
    }

    let joining = Instant::now();
    let role = subxt::dynamic::Value::unnamed_variant("Both", []);
    let args = vec![bytes(b"B"), bytes(b"1112"), role];
    stack
        .submit(&operator(), "Groups", "add_member", args)
        .await;
    next_matching(&mut e1112, WAIT, |e| {
        matches!(e, AgentEvent::GroupKey { joined: true, .. }).then_some(())
    })
    .await
    .expect("1112 got the group's key by itself");
    d1111.publish("B", b"welcome 1112").await.unwrap();
    let read = next_message(&mut e1112, WAIT).await.expect("1112 reads B");
    assert_eq!(
        (read.group.as_deref(), &read.payload[..]),
        (Some("B"), &b"welcome 1112"[..])
    );
    eprintln!("FIGURE member added → first read: {:?}", joining.elapsed());

    let args = vec![bytes(b"B"), bytes(b"1114")];
    let removed_at = stack
        .submit_in_block(&operator(), "Groups", "remove_member", args)
        .await;
    let removed = next_matching(&mut e1114, WAIT, |e| match e {
        AgentEvent::Removed { group, .. } => Some(group.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        removed.as_deref(),
        Some("B"),
        "1114's agent reports its removal"
    );
    let (shut_out, _) = group_key_after(&stack, "B", removed_at).await;
    let epoch = next_matching(&mut e1113, WAIT, |e| match e {
        AgentEvent::GroupKey { epoch, .. } if *epoch >= shut_out => Some(*epoch),
        _ => None,
    })
    .await
    .expect("1113 follows the epoch that shuts 1114 out");
    d1111.publish("B", b"after the removal").await.unwrap();
    let read = next_matching(&mut e1113, WAIT, |e| match e {
        AgentEvent::Message(m) if m.payload[..] == b"after the removal"[..] => Some(m.clone()),
        _ => None,
    })
    .await;
    assert!(read.is_some(), "1113 reads epoch {epoch}");
    // 1114 holds no key of the new epoch, and the front no longer hands it B's messages.
    let leaked = next_matching(&mut e1114, Duration::from_secs(3), |e| match e {
        AgentEvent::Message(m) => Some(m.clone()),
        _ => None,
    })
    .await;
    assert!(leaked.is_none(), "1114 read {leaked:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_listener_refuses_a_replayed_delivery() {
    let stack = Stack::start(BrokerKind::OpenMosquitto).await;
    // An attacker on the open broker records 1113's inbox.
    let mut sniffer = {
        let mut options = rumqttc::MqttOptions::new("sniffer", "127.0.0.1", stack.broker_port);
        options.set_max_packet_size(1 << 20, 1 << 20);
        MqttClient::try_connect(options).await.unwrap()
    };
    sniffer.subscribe_granted("km/v1/dev/1113/inbox").await;
    let (d1113, mut e1113) = dev_agent(&stack, "1113", "1113-state").await;
    let (d1111, _e1111) = dev_agent(&stack, "1111", "1111-state").await;
    d1111.send("1113", b"once only").await.unwrap();
    assert_eq!(
        &next_message(&mut e1113, WAIT).await.unwrap().payload[..],
        b"once only"
    );
    let (_, captured) = sniffer
        .next(WAIT)
        .await
        .expect("the sniffer saw the delivery");

    d1113.stop().await;
    drop((d1113, e1113));
    let (_d1113, mut e1113) = dev_agent(&stack, "1113", "1113-state").await;
    sniffer.publish("km/v1/dev/1113/inbox", captured).await;
    let refused = next_matching(&mut e1113, WAIT, |e| match e {
        AgentEvent::Undeliverable { reason, .. } => Some(reason.clone()),
        AgentEvent::Message(m) => panic!("the replay was accepted: {m:?}"),
        _ => None,
    })
    .await
    .expect("the replay was seen");
    assert!(refused.contains("replay of message"), "{refused}");
    d1111.send("1113", b"a new one").await.unwrap();
    assert_eq!(
        &next_message(&mut e1113, WAIT).await.unwrap().payload[..],
        b"a new one"
    );
}
