//! Devices 1111..1114 as an application plays them: the fixed dev keys, an MQTT connection
//! to inbox and status topics, attestation checks before opening, and group keys fetched over
//! `keymesh_memberKey`. Shared by the end-to-end tests and `examples/demo.rs`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use keymesh_device::{
    keys::read_private, mqtt, open, open_topic_key, Delivery, Opened, SealedTopicKey,
};
use rsa::{RsaPrivateKey, RsaPublicKey};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use subxt::dynamic::Value;
use subxt_signer::sr25519::{dev, Keypair};
use tokio::sync::mpsc;

pub const DEVICES: [&str; 4] = ["1111", "1112", "1113", "1114"];

/// The operator (Alice on the dev chain).
pub fn operator() -> Keypair {
    dev::alice()
}

/// The dev bridge's public key (//Ferdie).
pub fn bridge_key() -> [u8; 32] {
    dev::ferdie().public_key().0
}

pub fn device_key(id: &str) -> RsaPrivateKey {
    read_private(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../device/testdata")
            .join(format!("{id}.key.pem")),
    )
    .unwrap()
}

pub fn public(id: &str) -> RsaPublicKey {
    device_key(id).to_public_key()
}

/// The audience the test bridges run with (the default).
pub const AUDIENCE: &str = "keymesh-dev";

/// What the broker acknowledged.
#[derive(Debug)]
pub enum Ack {
    Sub(Vec<rumqttc::SubscribeReasonCode>),
    Pub,
}

/// Puts fresh credentials into the options before a reconnect.
type Refresh = Box<dyn Fn(&mut MqttOptions) + Send + Sync>;

/// An MQTT client, with its incoming publishes on a channel.
pub struct MqttClient {
    pub client: AsyncClient,
    pub incoming: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    acks: mpsc::UnboundedReceiver<Ack>,
    /// Closes when the client's connection ended for good.
    pub closed: mpsc::UnboundedReceiver<String>,
}

/// Options as a device with a fresh connect proof signed by `signer`'s dev key.
pub fn device_options(port: u16, id: &str, tag: &str, signer: &str) -> MqttOptions {
    let mut options = MqttOptions::new(format!("{id}:{tag}"), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(2 << 20, 2 << 20);
    options.set_credentials(id, proof(id, signer));
    options
}

/// A fresh connect proof for `id`, signed with `signer`'s dev key.
pub fn proof(id: &str, signer: &str) -> String {
    keymesh_device::ConnectProof::make(id, AUDIENCE, &device_key(signer))
        .unwrap()
        .to_password()
}

impl MqttClient {
    /// Connects as device `id` (client id `id:tag`) with a persistent session; reconnects
    /// with a fresh proof whenever the connection drops, as a device agent does.
    pub async fn device(port: u16, id: &str, tag: &str) -> MqttClient {
        let mut options = device_options(port, id, tag, id);
        options.set_clean_session(false);
        let id = id.to_string();
        let refresh = move |options: &mut MqttOptions| {
            options.set_credentials(id.clone(), proof(&id, &id));
        };
        Self::start(options, Some(Box::new(refresh)))
            .await
            .expect("device connects")
    }

    /// Connects with `options` once, as any client might; `Err` says why it was refused.
    pub async fn try_connect(options: MqttOptions) -> Result<MqttClient, String> {
        Self::start(options, None).await
    }

    async fn start(options: MqttOptions, refresh: Option<Refresh>) -> Result<MqttClient, String> {
        let (client, mut events): (AsyncClient, EventLoop) = AsyncClient::new(options, 1024);
        // Without it, Nagle's algorithm and delayed ACKs stall pipelined QoS 1 traffic.
        let mut network = events.network_options();
        network.set_tcp_nodelay(true);
        events.set_network_options(network);
        let (tx, incoming) = mpsc::unbounded_channel();
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let (ready_tx, mut ready) = mpsc::unbounded_channel();
        let (closed_tx, closed) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = ready_tx.send(Ok(()));
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(Event::Incoming(Packet::SubAck(s))) => {
                        let _ = ack_tx.send(Ack::Sub(s.return_codes));
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        let _ = ack_tx.send(Ack::Pub);
                    }
                    Ok(_) => {}
                    // A client the test dropped stops, rather than fight its successor
                    // for the same client id.
                    Err(_) if tx.is_closed() => return,
                    Err(e) => match &refresh {
                        Some(refresh) => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            refresh(&mut events.mqtt_options);
                        }
                        None => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            let _ = closed_tx.send(e.to_string());
                            return;
                        }
                    },
                }
            }
        });
        match tokio::time::timeout(Duration::from_secs(20), ready.recv()).await {
            Ok(Some(Ok(()))) => Ok(MqttClient {
                client,
                incoming,
                acks,
                closed,
            }),
            Ok(Some(Err(e))) => Err(e),
            Ok(None) => Err("connection task ended".into()),
            Err(_) => Err("no CONNACK within 20 s".into()),
        }
    }

    /// Subscribes at QoS 1 and returns what the SUBACK granted.
    pub async fn subscribe(&mut self, topic: &str) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client
            .subscribe(topic, QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.acks.recv()).await {
                Ok(Some(Ack::Sub(codes))) => return codes,
                Ok(Some(Ack::Pub)) => continue,
                Ok(None) | Err(_) => panic!("no SUBACK for {topic}"),
            }
        }
    }

    /// Subscribes and requires the broker to grant it.
    pub async fn subscribe_granted(&mut self, topic: &str) {
        let codes = self.subscribe(topic).await;
        assert!(
            codes
                .iter()
                .all(|c| *c != rumqttc::SubscribeReasonCode::Failure),
            "subscription to {topic} refused"
        );
    }

    /// Publishes at QoS 1 and waits for the PUBACK.
    pub async fn publish(&mut self, topic: &str, payload: Vec<u8>) {
        assert!(
            self.try_publish(topic, payload, false).await,
            "no PUBACK for {topic}"
        );
    }

    /// Publishes at QoS 1; whether the broker acknowledged it within 5 s.
    pub async fn try_publish(&mut self, topic: &str, payload: Vec<u8>, retain: bool) -> bool {
        if self
            .client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .is_err()
        {
            return false;
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(5), self.acks.recv()).await {
                Ok(Some(Ack::Pub)) => return true,
                Ok(Some(Ack::Sub(_))) => continue,
                Ok(None) | Err(_) => return false,
            }
        }
    }

    /// Waits for `n` PUBACKs (of publishes queued with `client` directly); false if one took
    /// longer than `within`.
    pub async fn pubacks(&mut self, n: usize, within: Duration) -> bool {
        let mut seen = 0;
        while seen < n {
            match tokio::time::timeout(within, self.acks.recv()).await {
                Ok(Some(Ack::Pub)) => seen += 1,
                Ok(Some(Ack::Sub(_))) => continue,
                Ok(None) | Err(_) => return false,
            }
        }
        true
    }

    /// The next message within `within`, if any.
    pub async fn next(&mut self, within: Duration) -> Option<(String, Vec<u8>)> {
        tokio::time::timeout(within, self.incoming.recv())
            .await
            .ok()
            .flatten()
    }
}

/// A device: its key, an MQTT connection subscribed to its inbox and status topics.
pub struct Device {
    pub id: String,
    pub key: RsaPrivateKey,
    pub mqtt: MqttClient,
}

impl Device {
    pub async fn connect(mqtt_port: u16, id: &str) -> Device {
        let mut mqtt = MqttClient::device(mqtt_port, id, "app").await;
        mqtt.subscribe_granted(&mqtt::inbox_topic(id)).await;
        mqtt.subscribe_granted(&mqtt::status_topic(id)).await;
        Device {
            id: id.to_string(),
            key: device_key(id),
            mqtt,
        }
    }

    /// Publishes an envelope on this device's ingress topic.
    pub async fn send(&mut self, envelope: Vec<u8>) {
        let topic = mqtt::ingress_topic(&self.id);
        self.mqtt.publish(&topic, envelope).await;
    }

    /// The next message on `topic` within `within`.
    pub async fn next_on(&mut self, topic: &str, within: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.mqtt.next(left).await {
                Some((t, payload)) if t == topic => return Some(payload),
                Some(_) => continue,
                None => return None,
            }
        }
        None
    }

    /// The next refusal notice on this device's status topic.
    pub async fn refusal(&mut self, within: Duration) -> serde_json::Value {
        let topic = mqtt::status_topic(&self.id);
        let bytes = self
            .next_on(&topic, within)
            .await
            .unwrap_or_else(|| panic!("no refusal on {topic}"));
        serde_json::from_slice(&bytes).unwrap()
    }
}

/// What a device application does with a delivery: verify the attestation, then open.
pub fn open_delivery(
    bytes: &[u8],
    reader: &RsaPrivateKey,
    senders: &HashMap<String, RsaPublicKey>,
) -> Result<Opened, String> {
    let delivery = Delivery::verify(bytes, &[bridge_key()]).map_err(|e| e.to_string())?;
    let decoded =
        keymesh_device::Envelope::decode_bounded(&delivery.envelope).map_err(|e| e.to_string())?;
    let sender = String::from_utf8_lossy(&decoded.header.sender).into_owned();
    let sender_key = senders.get(&sender).ok_or("unknown sender")?;
    open(&delivery.envelope, reader, sender_key).map_err(|e| e.to_string())
}

/// The public keys of 1111..1114.
pub fn directory() -> HashMap<String, RsaPublicKey> {
    DEVICES.iter().map(|d| (d.to_string(), public(d))).collect()
}

/// The topic private key `device` reads `group`'s current epoch with, fetched over
/// `keymesh_memberKey` and unwrapped with the device key; with its epoch.
pub async fn topic_key_of(
    rpc_port: u16,
    group: &str,
    device: &str,
) -> Result<(u32, RsaPrivateKey), String> {
    topic_key_with(rpc_port, group, device, &device_key(device)).await
}

/// As [`topic_key_of`], opening `device`'s wrap with `private` (a key it was rotated to, or
/// from).
pub async fn topic_key_with(
    rpc_port: u16,
    group: &str,
    device: &str,
    private: &RsaPrivateKey,
) -> Result<(u32, RsaPrivateKey), String> {
    use base64::Engine;
    let client = subxt::rpcs::RpcClient::from_insecure_url(format!("ws://127.0.0.1:{rpc_port}"))
        .await
        .map_err(|e| e.to_string())?;
    let member: serde_json::Value = client
        .request(
            "keymesh_memberKey",
            subxt::rpcs::client::rpc_params![group, device],
        )
        .await
        .map_err(|e| e.to_string())?;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().ok_or("not a string")?)
            .map_err(|e| e.to_string())
    };
    let epoch = member["topicKey"]["epoch"].as_u64().ok_or("no key yet")? as u32;
    let wrap = b64(&member["wrappedEpochKey"]).map_err(|_| "no wrap for this device")?;
    let sealed = SealedTopicKey::from_bytes(&b64(&member["topicKey"]["sealedPrivateKey"])?)
        .map_err(|e| e.to_string())?;
    let key = open_topic_key(group, epoch, private, &wrap, &sealed).map_err(|e| e.to_string())?;
    Ok((epoch, key))
}

/// GET `path` from the bridge's health endpoint on loopback `port`: status and body.
pub async fn bridge_http(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// A metric's value from the bridge's `/metrics` endpoint on loopback `port`.
pub async fn bridge_metric(port: u16, name: &str) -> Option<f64> {
    let (_, text) = bridge_http(port, "/metrics").await?;
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

pub fn bytes(b: &[u8]) -> Value {
    Value::from_bytes(b)
}
