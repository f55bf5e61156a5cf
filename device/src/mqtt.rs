//! MQTT transport for devices (rumqttc): publish envelopes, receive them.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};

use crate::{config::Broker, envelope::MAX_ENVELOPE_LEN};

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
}

/// Connection options for a device: envelopes up to [`MAX_ENVELOPE_LEN`] in both directions.
pub fn options(broker: &Broker, client_id: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(MAX_ENVELOPE_LEN + 1024, MAX_ENVELOPE_LEN + 1024);
    options
}

/// Connects and waits for the broker's CONNACK.
pub async fn connect(
    broker: &Broker,
    client_id: &str,
) -> Result<(AsyncClient, EventLoop), MqttError> {
    let (client, mut events) = AsyncClient::new(options(broker, client_id), 64);
    let broker_name = format!("{}:{}", broker.host, broker.port);
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
    broker: &Broker,
    client_id: &str,
    topic: &str,
    payload: Vec<u8>,
    within: Duration,
) -> Result<(), MqttError> {
    let (client, mut events) = connect(broker, client_id).await?;
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await?;
    let broker_name = format!("{}:{}", broker.host, broker.port);
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
