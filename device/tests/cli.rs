//! The `keymesh-device` binary end to end: offline key and envelope commands, and
//! `send`/`listen` through a real MQTT broker (Mosquitto) on loopback.
#![allow(clippy::unwrap_used)]

use keymesh_test_ports::free_port;
use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use keymesh_device::{Attestation, Delivery};
use subxt_signer::sr25519;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keymesh-device"))
}

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

fn run(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// `keymesh-device` acting as test device `id` on `broker`, trusting Alice as its bridge,
/// with its state under `state`.
fn device_cmd(broker: &str, id: &str, state: &Path) -> Command {
    let key = testdata(&format!("{id}.key.pem"));
    let mut cmd = Command::new(bin());
    cmd.args([
        "--broker",
        broker,
        "--device-id",
        id,
        "--key",
        key.to_str().unwrap(),
        "--trust-bridge",
        &alice_hex(),
    ])
    .args(["--state-dir", state.join(id).to_str().unwrap()]);
    cmd
}

/// A directory entry of test device `id` at `block`, attested by Alice.
fn device_entry(id: &str, block: u32) -> Vec<u8> {
    let key = keymesh_device::keys::read_public(&testdata(&format!("{id}.spki.pem"))).unwrap();
    let json = serde_json::json!({
        "device": id,
        "publicKey": base64_der(&key),
        "fingerprint": hex::encode(keymesh_device::fingerprint(&key)),
        "status": "active",
        "epoch": 0,
        "block": block,
    })
    .to_string();
    Delivery {
        attestation: Attestation::sign(&sr25519::dev::alice(), json.as_bytes(), block, [1; 32]),
        envelope: json.into_bytes(),
    }
    .to_bytes()
}

fn base64_der(key: &rsa::RsaPublicKey) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(keymesh_device::keys::public_der(key))
}

/// Publishes `payload` to `topic` with mosquitto_pub.
fn mosquitto_pub(port: u16, topic: &str, payload: &[u8], retain: bool) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), payload).unwrap();
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
        .args(["-t", topic, "-f", file.path().to_str().unwrap()]);
    if retain {
        cmd.arg("-r");
    }
    assert!(cmd.status().unwrap().success());
}

/// `keymesh-device open` with device `reader`'s test key, trusting `sender_key`.
fn open_as(reader: &str, sender_key: &Path, envelope: &[u8]) -> std::process::Output {
    let key = testdata(&format!("{reader}.key.pem"));
    run(
        &[
            "--key",
            key.to_str().unwrap(),
            "open",
            "--sender-key",
            sender_key.to_str().unwrap(),
        ],
        envelope,
    )
}

#[test]
fn every_command_has_help() {
    for cmd in [
        "keygen",
        "fingerprint",
        "seal",
        "open",
        "send",
        "publish",
        "listen",
        "register",
        "rotate",
    ] {
        let out = run(&[cmd, "--help"], b"");
        assert!(out.status.success(), "{cmd}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{cmd}"
        );
    }
}

#[test]
fn keygen_fingerprint_seal_and_open_offline() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("1111.key.pem");
    let out = run(&["keygen", "--out", key.to_str().unwrap()], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Refuses to overwrite a device key, with a clear error.
    let again = run(&["keygen", "--out", key.to_str().unwrap()], b"");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("error:"));

    let public = dir.path().join("1111.key.spki.pem");
    let fp_pub = run(&["fingerprint", public.to_str().unwrap()], b"");
    let fp_priv = run(&["fingerprint", key.to_str().unwrap()], b"");
    assert_eq!(fp_pub.stdout, fp_priv.stdout);
    assert_eq!(String::from_utf8_lossy(&fp_pub.stdout).trim().len(), 64);

    let recipient = testdata("1113.spki.pem");
    let sealed = run(
        &[
            "--device-id",
            "1111",
            "--key",
            key.to_str().unwrap(),
            "seal",
            "--to",
            "1113",
            "--recipient-key",
            recipient.to_str().unwrap(),
        ],
        b"hello 1113",
    );
    assert!(
        sealed.status.success(),
        "{}",
        String::from_utf8_lossy(&sealed.stderr)
    );
    let opened = open_as("1113", &public, &sealed.stdout);
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    assert_eq!(opened.stdout, b"hello 1113");

    // 1112 cannot open it, and says why.
    let denied = open_as("1112", &public, &sealed.stdout);
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("not the recipient"));
    // Garbage input is a clear error, not a panic.
    let garbage = open_as("1113", &public, b"None");
    assert_eq!(garbage.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&garbage.stderr).contains("error:"));
}

struct Reaped(Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_mosquitto(dir: &Path) -> (Reaped, u16) {
    let port = free_port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
    )
    .unwrap();
    let child = Command::new("mosquitto")
        .args(["-c", conf.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto (scripts/test.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Reaped(child), port)
}

/// Starts `keymesh-device listen` as device 1113 and waits until it says it is subscribed.
fn start_listener(command: &mut Command) -> Reaped {
    let mut listener = Reaped(
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut err = BufReader::new(listener.0.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("listening as 1113"), "{line}");
    listener
}

fn alice_hex() -> String {
    hex::encode(sr25519::dev::alice().public_key().0)
}

#[test]
fn send_and_listen_through_a_real_broker() {
    // The test plays the bridge: it takes what `send` sealed from the ingress topic with
    // mosquitto's own client and publishes it to the inbox, raw or attested.
    let dir = tempfile::tempdir().unwrap();
    let (_broker, port) = start_mosquitto(dir.path());
    let broker = format!("mqtt://127.0.0.1:{port}");
    let peers = dir.path().join("state");
    // The keys come from the (retained, attested) directory, as the bridge publishes it.
    for id in ["1111", "1113"] {
        mosquitto_pub(port, &format!("km/v1/dir/{id}"), &device_entry(id, 3), true);
    }

    let mut listener =
        start_listener(device_cmd(&broker, "1113", &peers).args(["listen", "--count", "5"]));

    // Relay: take one message from the ingress topic and republish it to the inbox.
    let sealed_path = dir.path().join("sealed.bin");
    let mut grab = Reaped(
        Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                "km/v1/in/1111",
                "-C",
                "1",
                "-N",
                "-q",
                "1",
            ])
            .stdout(Stdio::from(std::fs::File::create(&sealed_path).unwrap()))
            .spawn()
            .unwrap(),
    );
    // mosquitto_sub has no readiness signal; publish until it has taken one message.
    let send = |msg: &str| {
        let out = device_cmd(&broker, "1111", &peers)
            .args(["send", "--to", "1113", "--message", msg])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        send("hello from 1111");
        if let Ok(Some(_)) = grab.0.try_wait() {
            break;
        }
        assert!(Instant::now() < deadline, "ingress message never seen");
        std::thread::sleep(Duration::from_millis(200));
    }
    let relay = |file: &Path| {
        let status = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                "km/v1/dev/1113/inbox",
                "-q",
                "1",
                "-f",
                file.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(status.success());
    };
    // Straight to the inbox, past any gate: refused.
    relay(&sealed_path);
    // Attested by a bridge the device trusts: opened; the same delivery again is a duplicate.
    let sealed = std::fs::read(&sealed_path).unwrap();
    let attested_envelope = |bridge: &sr25519::Keypair, name: &str, envelope: &[u8]| {
        let path = dir.path().join(name);
        let delivery = Delivery {
            attestation: Attestation::sign(bridge, envelope, 7, [7; 32]),
            envelope: envelope.to_vec(),
        };
        std::fs::write(&path, delivery.to_bytes()).unwrap();
        path
    };
    let attested = |bridge: &sr25519::Keypair, name: &str| attested_envelope(bridge, name, &sealed);
    let trusted = attested(&sr25519::dev::alice(), "trusted.bin");
    relay(&trusted);
    relay(&trusted);
    // Attested by a bridge it does not trust: refused.
    relay(&attested(&sr25519::dev::bob(), "untrusted.bin"));
    // Addressed to 1112, though sealed under 1113's key (it would open): not for this inbox.
    let misrouted = keymesh_device::seal_direct(
        "1111",
        &keymesh_device::keys::read_private(&testdata("1111.key.pem")).unwrap(),
        "1112",
        &keymesh_device::keys::read_public(&testdata("1113.spki.pem")).unwrap(),
        0,
        b"for 1112",
    )
    .unwrap()
    .to_bytes();
    relay(&attested_envelope(
        &sr25519::dev::alice(),
        "misrouted.bin",
        &misrouted,
    ));

    let out = listener.0.stdout.take().unwrap();
    let lines: Vec<String> = BufReader::new(out).lines().map(|l| l.unwrap()).collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(
        lines[0].contains("cannot open: not an attested delivery"),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        format!(
            "km/v1/dev/1113/inbox: from 1111: hello from 1111 (checked by bridge {} at block #7)",
            &alice_hex()[..8]
        )
    );
    assert!(
        lines[2].contains("cannot open: replay of message"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].contains("which this device does not trust"),
        "{}",
        lines[3]
    );
    assert!(
        lines[4].contains("cannot open: not addressed here"),
        "{}",
        lines[4]
    );
}

#[test]
fn listen_refuses_a_directory_entry_older_than_one_it_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, port) = start_mosquitto(dir.path());
    let broker = format!("mqtt://127.0.0.1:{port}");
    let mut listener =
        start_listener(device_cmd(&broker, "1113", dir.path()).args(["listen", "--count", "2"]));
    // A newer entry, a stale one replayed after it, and an unattested one.
    mosquitto_pub(port, "km/v1/dir/1114", &device_entry("1114", 9), false);
    mosquitto_pub(port, "km/v1/dir/1114", &device_entry("1114", 7), false);
    mosquitto_pub(port, "km/v1/dir/1114", b"", false);
    let out = listener.0.stdout.take().unwrap();
    let lines: Vec<String> = BufReader::new(out).lines().map(|l| l.unwrap()).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("entry at block #7 is older than #9"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("not an attested delivery"),
        "{}",
        lines[1]
    );
}
