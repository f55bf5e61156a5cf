//! Opening what the bridge delivers: the attestation must verify under a trusted bridge,
//! the envelope must be addressed where it arrived, its signature must verify under the
//! sender's key in finalized state, and this device must hold the key it was sealed to.

use std::time::Instant;

use rsa::RsaPrivateKey;

use super::{groups::Memberships, keyring::Keyring};
use crate::{envelope, fingerprint, Delivery, Envelope, Kind};

/// An opened message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub sender: String,
    /// The group, for a message read on a group's topic.
    pub group: Option<String>,
    pub message_id: [u8; 16],
    /// The finalized block the bridge checked it against.
    pub block: u32,
    /// The bridge that attested it.
    pub bridge: [u8; 32],
    /// The fingerprint of the key it was sealed to.
    pub sealed_to: [u8; 32],
    pub payload: Vec<u8>,
}

/// Where a delivery arrived.
pub enum Arrival<'a> {
    Inbox { device: &'a str },
    Group { group: &'a str },
}

/// Why a delivery was not opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error(transparent)]
    Attestation(#[from] crate::AttestationError),
    #[error("envelope: {0}")]
    Envelope(String),
    #[error("not addressed here: a {kind:?} envelope for {target:?}")]
    NotAddressed { kind: Kind, target: String },
    #[error("sender {0} is not in finalized state")]
    UnknownSender(String),
    #[error(
        "sealed to key {} of epoch {epoch}, which this device does not hold",
        hex::encode(fingerprint)
    )]
    NoKey { fingerprint: [u8; 32], epoch: u32 },
}

fn addressed(envelope: &Envelope, arrival: &Arrival<'_>) -> Result<(), OpenError> {
    let header = &envelope.header;
    let target = String::from_utf8_lossy(&header.target).into_owned();
    let (kind, expected) = match arrival {
        Arrival::Inbox { device } => (Kind::Direct, *device),
        Arrival::Group { group } => (Kind::Topic, *group),
    };
    if header.kind != kind || target != expected {
        return Err(OpenError::NotAddressed {
            kind: header.kind,
            target,
        });
    }
    Ok(())
}

/// Verifies and opens one delivery. Duplicates are the caller's to drop.
pub fn open_delivery(
    bytes: &[u8],
    arrival: &Arrival<'_>,
    trusted: &[[u8; 32]],
    keyring: &Keyring,
    (own_keys, groups): (&[RsaPrivateKey], &Memberships),
    now: Instant,
) -> Result<Message, OpenError> {
    let delivery = Delivery::verify(bytes, trusted)?;
    let decoded = Envelope::decode_bounded(&delivery.envelope)
        .map_err(|e| OpenError::Envelope(e.to_string()))?;
    addressed(&decoded, arrival)?;
    let header = &decoded.header;
    let sender = String::from_utf8_lossy(&header.sender).into_owned();
    let sender_key = &keyring
        .device(&sender)
        .ok_or_else(|| OpenError::UnknownSender(sender.clone()))?
        .public_key;
    let no_key = || OpenError::NoKey {
        fingerprint: header.fingerprint,
        epoch: header.key_epoch,
    };
    let reader = match arrival {
        Arrival::Inbox { .. } => own_keys
            .iter()
            .find(|k| fingerprint(&k.to_public_key()) == header.fingerprint)
            .ok_or_else(no_key)?,
        Arrival::Group { group } => groups
            .key_for(group, header.key_epoch, now)
            .ok_or_else(no_key)?,
    };
    let opened = envelope::open(&delivery.envelope, reader, sender_key)
        .map_err(|e| OpenError::Envelope(e.to_string()))?;
    Ok(Message {
        sender,
        group: match arrival {
            Arrival::Group { group } => Some(group.to_string()),
            Arrival::Inbox { .. } => None,
        },
        message_id: opened.header.message_id,
        block: delivery.attestation.block_number,
        bridge: delivery.attestation.bridge,
        sealed_to: header.fingerprint,
        payload: opened.payload.to_vec(),
    })
}
