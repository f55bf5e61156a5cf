//! MQTT transport for devices (rumqttc): publish envelopes, receive them.

use std::time::Duration;

use std::sync::Arc;

use rsa::RsaPrivateKey;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};

use crate::{config::Broker, envelope::MAX_ENVELOPE_LEN, ConnectProof};

/// Topic a device publishes its envelopes to; the bridge checks them there.
pub fn ingress_topic(sender: &str) -> String {
    format!("km/v1/in/{sender}")
}

/// Topic the bridge delivers a device's direct messages to.
pub fn inbox_topic(device: &str) -> String {
    format!("km/v1/dev/{device}/inbox")
}

/// Topic the bridge delivers a group's messages to.
pub fn group_topic(group: &str) -> String {
    format!("km/v1/grp/{group}/msgs")
}

/// Topic the bridge reports a sender's refused messages on.
pub fn status_topic(device: &str) -> String {
    format!("km/v1/dev/{device}/status")
}

/// Why an MQTT operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("MQTT connection to {broker}: {reason}")]
    Connection { broker: String, reason: String },
    #[error("MQTT request failed: {0}")]
    Client(#[from] rumqttc::ClientError),
    #[error("no acknowledgement from the broker within {0:?}")]
    Timeout(Duration),
    #[error("cannot make a connect proof: {0}")]
    Proof(#[from] crate::ConnectProofError),
}

/// Where a device connects: the broker's address, and TLS settings when the URL was
/// `mqtts://`.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub broker: Broker,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Endpoint {
    /// Plain TCP, as on loopback.
    pub fn plain(broker: Broker) -> Self {
        Endpoint { broker, tls: None }
    }

    fn name(&self) -> String {
        format!("{}:{}", self.broker.host, self.broker.port)
    }
}

/// What a device presents at CONNECT: its id as username and client id (with an optional
/// tag, `1111:listen`, so that one device can hold several connections), and a fresh
/// connect proof signed with its key as password (`docs/connect-proof.md`).
pub struct DeviceLogin<'a> {
    pub device: &'a str,
    pub key: &'a RsaPrivateKey,
    /// The deployment's name, which the front checks.
    pub audience: &'a str,
    /// Tells this connection from the device's others; `None` for the plain device id.
    pub tag: Option<&'a str>,
}

impl DeviceLogin<'_> {
    /// The MQTT client id.
    pub fn client_id(&self) -> String {
        match self.tag {
            Some(tag) => format!("{}:{tag}", self.device),
            None => self.device.to_string(),
        }
    }

    /// Puts a fresh proof into `options`. Each proof is accepted once, so call this again
    /// before every reconnect (`EventLoop::mqtt_options`).
    pub fn refresh(&self, options: &mut MqttOptions) -> Result<(), MqttError> {
        let proof = ConnectProof::make(self.device, self.audience, self.key)?;
        options.set_credentials(self.device, proof.to_password());
        Ok(())
    }

    /// Connection options: envelopes up to [`MAX_ENVELOPE_LEN`] in both directions.
    pub fn options(&self, endpoint: &Endpoint) -> Result<MqttOptions, MqttError> {
        let broker = &endpoint.broker;
        let mut options = MqttOptions::new(self.client_id(), broker.host.clone(), broker.port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(MAX_ENVELOPE_LEN + 1024, MAX_ENVELOPE_LEN + 1024);
        if let Some(tls) = &endpoint.tls {
            crate::tls::use_tls(&mut options, tls.clone());
        }
        self.refresh(&mut options)?;
        Ok(options)
    }
}

/// Connects and waits for the broker's CONNACK.
pub async fn connect(
    endpoint: &Endpoint,
    login: &DeviceLogin<'_>,
) -> Result<(AsyncClient, EventLoop), MqttError> {
    let (client, mut events) = AsyncClient::new(login.options(endpoint)?, 64);
    let mut network = events.network_options();
    network.set_tcp_nodelay(true);
    events.set_network_options(network);
    let broker_name = endpoint.name();
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok((client, events)),
            Ok(_) => {}
            Err(e) => {
                return Err(MqttError::Connection {
                    broker: broker_name,
                    reason: e.to_string(),
                })
            }
        }
    }
}

/// Publishes `payload` at QoS 1 and returns once the broker acknowledged it.
pub async fn publish_acked(
    endpoint: &Endpoint,
    login: &DeviceLogin<'_>,
    topic: &str,
    payload: Vec<u8>,
    within: Duration,
) -> Result<(), MqttError> {
    let (client, mut events) = connect(endpoint, login).await?;
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await?;
    let broker_name = endpoint.name();
    let acked = tokio::time::timeout(within, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => {
                    return Err(MqttError::Connection {
                        broker: broker_name.clone(),
                        reason: e.to_string(),
                    })
                }
            }
        }
    })
    .await
    .map_err(|_| MqttError::Timeout(within))?;
    acked?;
    let _ = client.disconnect().await;
    Ok(())
}
