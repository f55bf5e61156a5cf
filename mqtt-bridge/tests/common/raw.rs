//! An MQTT client written packet by packet, for what well-behaved clients never send: a
//! PUBLISH with the `DUP` flag set on its first copy, say.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::{v4, QoS};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A bare connection on which the test writes every packet itself.
pub struct RawSession {
    stream: TcpStream,
    buffer: BytesMut,
}

impl RawSession {
    /// Connects as device `id` (client id `id:tag`) with a fresh connect proof.
    pub async fn device(port: u16, id: &str, tag: &str) -> RawSession {
        let mut connect = v4::Connect::new(format!("{id}:{tag}"));
        connect.keep_alive = 30;
        connect.set_login(id, super::proof(id, id));
        let mut session = RawSession {
            stream: TcpStream::connect(("127.0.0.1", port)).await.unwrap(),
            buffer: BytesMut::new(),
        };
        session.send(v4::Packet::Connect(connect)).await;
        match session.next().await {
            Some(v4::Packet::ConnAck(ack)) => {
                assert_eq!(ack.code, v4::ConnectReturnCode::Success)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
        session
    }

    pub async fn send(&mut self, packet: v4::Packet) {
        let mut out = BytesMut::new();
        packet.write(&mut out, usize::MAX).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// Publishes at QoS 1 with the flags given and waits for the PUBACK.
    pub async fn publish(&mut self, topic: &str, payload: Vec<u8>, pkid: u16, dup: bool) {
        let mut publish = v4::Publish::new(topic, QoS::AtLeastOnce, payload);
        publish.pkid = pkid;
        publish.dup = dup;
        self.send(v4::Packet::Publish(publish)).await;
        loop {
            match self.next().await {
                Some(v4::Packet::PubAck(ack)) if ack.pkid == pkid => return,
                Some(_) => continue,
                None => panic!("connection closed before the PUBACK of {pkid}"),
            }
        }
    }

    /// The next packet within 10 s, or `None` once the connection is closed.
    pub async fn next(&mut self) -> Option<v4::Packet> {
        loop {
            match v4::Packet::read(&mut self.buffer, 4 << 20) {
                Ok(packet) => return Some(packet),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => panic!("bad packet from the broker: {e}"),
            }
            let read = tokio::time::timeout(
                Duration::from_secs(10),
                self.stream.read_buf(&mut self.buffer),
            )
            .await
            .expect("the broker answers within 10 s")
            .ok()?;
            if read == 0 {
                return None;
            }
        }
    }
}
