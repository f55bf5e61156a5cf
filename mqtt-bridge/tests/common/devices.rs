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

/// An MQTT client for a device (or an eavesdropper), with its incoming publishes on a channel.
pub struct MqttClient {
    pub client: AsyncClient,
    pub incoming: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    acks: mpsc::UnboundedReceiver<()>,
}

impl MqttClient {
    pub async fn connect(port: u16, client_id: &str) -> MqttClient {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(2 << 20, 2 << 20);
        let (client, mut events): (AsyncClient, EventLoop) = AsyncClient::new(options, 1024);
        let (tx, incoming) = mpsc::unbounded_channel();
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let (ready_tx, mut ready) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(Event::Incoming(Packet::SubAck(_)))
                    | Ok(Event::Incoming(Packet::PubAck(_))) => {
                        let _ = ack_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(20), ready.recv())
            .await
            .expect("MQTT connection");
        MqttClient {
            client,
            incoming,
            acks,
        }
    }

    /// Subscribes at QoS 1 and waits for the SUBACK.
    pub async fn subscribe(&mut self, topic: &str) {
        self.client
            .subscribe(topic, QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.acks.recv())
            .await
            .expect("SUBACK");
    }

    /// Publishes at QoS 1 and waits for the PUBACK.
    pub async fn publish(&mut self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.acks.recv())
            .await
            .expect("PUBACK");
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
        let mut mqtt = MqttClient::connect(mqtt_port, &format!("device-{id}")).await;
        mqtt.subscribe(&mqtt::inbox_topic(id)).await;
        mqtt.subscribe(&mqtt::status_topic(id)).await;
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
    let key = open_topic_key(group, epoch, &device_key(device), &wrap, &sealed)
        .map_err(|e| e.to_string())?;
    Ok((epoch, key))
}

/// A metric's value from the bridge's `/metrics` endpoint on loopback `port`.
pub async fn bridge_metric(port: u16, name: &str) -> Option<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
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
