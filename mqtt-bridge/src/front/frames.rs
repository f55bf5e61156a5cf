//! MQTT 3.1.1 framing for the front, on rumqttc's packet codec (`mqttbytes`): whole frames
//! off a byte stream, and the few packets the front writes itself.
//!
//! Frames the policy lets through are relayed as the very bytes the peer sent; only the
//! packets the front must change (CONNECT, a partly refused SUBSCRIBE and its SUBACK) are
//! decoded and encoded again.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::{self, v4, FixedHeader, PacketType};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::mpsc,
};

/// Why a connection's byte stream ended.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("MQTT: {0}")]
    Mqtt(String),
}

impl From<mqttbytes::Error> for FrameError {
    fn from(e: mqttbytes::Error) -> Self {
        FrameError::Mqtt(e.to_string())
    }
}

/// One whole frame: its fixed header, its type, and every byte of it.
pub struct Frame {
    pub header: FixedHeader,
    pub kind: PacketType,
    pub bytes: Bytes,
}

/// Reads whole frames from one side of a connection.
pub struct FrameReader<R> {
    reader: R,
    buffer: BytesMut,
    max_packet: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: R, max_packet: usize) -> Self {
        FrameReader {
            reader,
            buffer: BytesMut::with_capacity(8192),
            max_packet,
        }
    }

    /// The next frame. Cancel-safe: bytes already read stay in the buffer.
    pub async fn next(&mut self) -> Result<Frame, FrameError> {
        loop {
            match mqttbytes::check(self.buffer.iter(), self.max_packet) {
                Ok(header) => {
                    let kind = header.packet_type()?;
                    let bytes = self.buffer.split_to(header.frame_length()).freeze();
                    return Ok(Frame {
                        header,
                        kind,
                        bytes,
                    });
                }
                Err(mqttbytes::Error::InsufficientBytes(_)) => {
                    if self.reader.read_buf(&mut self.buffer).await? == 0 {
                        return Err(FrameError::Closed);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Encodes a packet the front writes itself.
pub fn encode(packet: &v4::Packet) -> Result<Bytes, FrameError> {
    let mut out = BytesMut::new();
    packet.write(&mut out, usize::MAX)?;
    Ok(out.freeze())
}

/// Writes every frame sent on `frames` to `writer`, batching what is already queued into one
/// write. Ends when the channel closes or the peer stops reading.
pub async fn write_frames<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut frames: mpsc::Receiver<Bytes>,
) -> Result<(), FrameError> {
    let mut batch = BytesMut::new();
    while let Some(first) = frames.recv().await {
        batch.extend_from_slice(&first);
        while batch.len() < 256 * 1024 {
            match frames.try_recv() {
                Ok(next) => batch.extend_from_slice(&next),
                Err(_) => break,
            }
        }
        writer.write_all(&batch).await?;
        batch.clear();
    }
    writer.flush().await?;
    Ok(())
}
