//! The envelope: wire format, sealing and opening. Byte layout: `docs/envelope.md`.

use std::time::{SystemTime, UNIX_EPOCH};

use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm, Nonce,
};
use codec::{Decode, DecodeAll, Encode};
use rand::{rngs::OsRng, CryptoRng, RngCore};
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::keys::{fingerprint, Fingerprint};

/// The format version this crate writes and reads.
pub const ENVELOPE_VERSION: u8 = 1;
/// Largest payload a device may seal: 1 MiB.
pub const MAX_PAYLOAD_LEN: usize = 1 << 20;
/// Largest encoded envelope anyone needs to decode: the largest payload plus headroom for
/// the header, a 4096-bit wrapped key and signature, and length prefixes.
pub const MAX_ENVELOPE_LEN: usize = MAX_PAYLOAD_LEN + 4096;
/// Size of the AES-256-GCM tag at the end of the ciphertext.
pub const TAG_LEN: usize = 16;
/// RSA moduli KeyMesh accepts, in bytes: wrapped keys and signatures are this long.
const RSA_BYTES: core::ops::RangeInclusive<usize> = 256..=512;

/// Who an envelope is sealed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Kind {
    /// A single device, under its device key (MTP).
    #[codec(index = 0)]
    Direct,
    /// A group (MQTT topic), under the topic key of its current epoch (SSCP).
    #[codec(index = 1)]
    Topic,
}

/// The authenticated, unencrypted part of an envelope. Its SCALE encoding is the AES-GCM
/// associated data.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Header {
    /// Always [`ENVELOPE_VERSION`]; first so a reader can refuse other versions at once.
    pub version: u8,
    /// Direct or topic.
    pub kind: Kind,
    /// Sending device id.
    pub sender: Vec<u8>,
    /// Receiving device id (direct) or group id (topic).
    pub target: Vec<u8>,
    /// SHA-256 of the SubjectPublicKeyInfo DER of the key the AES key is wrapped to.
    pub fingerprint: Fingerprint,
    /// Epoch of that key: the device's rotation count, or the group's epoch.
    pub key_epoch: u32,
    /// 16 random bytes; the bridge and devices drop repeats.
    pub message_id: [u8; 16],
    /// Sender's clock at sealing, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

/// A sealed message as it travels over MQTT.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Envelope {
    pub header: Header,
    /// The 32-byte AES key under RSA-OAEP (SHA-256, MGF1-SHA-256, empty label).
    pub wrapped_key: Vec<u8>,
    /// AES-GCM nonce.
    pub nonce: [u8; 12],
    /// AES-256-GCM ciphertext followed by its 16-byte tag.
    pub ciphertext: Vec<u8>,
    /// Sender's RSA-PSS-SHA-256 signature (salt 32) over [`Envelope::signed_bytes`].
    pub signature: Vec<u8>,
}

/// Why an envelope could not be sealed, decoded, verified or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("envelope of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("payload of {len} bytes exceeds the {max}-byte limit")]
    PayloadTooLarge { len: usize, max: usize },
    #[error("empty input is not an envelope")]
    Empty,
    #[error("envelope version {0} is not supported (this reader speaks {ENVELOPE_VERSION})")]
    UnsupportedVersion(u8),
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("invalid {field} id")]
    InvalidId { field: &'static str },
    #[error("signature does not verify under the sender's key")]
    BadSignature,
    #[error("sealed to key {presented} but this reader's key is {mine}: not the recipient")]
    NotRecipient { presented: String, mine: String },
    #[error("wrapped key does not unwrap under this reader's key")]
    UnwrapFailed,
    #[error("ciphertext fails authentication")]
    DecryptFailed,
    #[error("crypto operation failed: {0}")]
    Crypto(String),
}

impl Envelope {
    /// Everything the signature covers: the encoding of all fields before it.
    pub fn signed_bytes(&self) -> Vec<u8> {
        (
            &self.header,
            &self.wrapped_key,
            &self.nonce,
            &self.ciphertext,
        )
            .encode()
    }

    /// Decodes and checks the shape of an envelope, without any key.
    pub fn decode_bounded(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(EnvelopeError::TooLarge {
                len: bytes.len(),
                max: MAX_ENVELOPE_LEN,
            });
        }
        match bytes.first() {
            None => return Err(EnvelopeError::Empty),
            Some(&ENVELOPE_VERSION) => {}
            Some(&other) => return Err(EnvelopeError::UnsupportedVersion(other)),
        }
        let envelope = Envelope::decode_all(&mut &bytes[..])
            .map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        envelope.check_shape()?;
        Ok(envelope)
    }

    fn check_shape(&self) -> Result<(), EnvelopeError> {
        let malformed = |what: &str| Err(EnvelopeError::Malformed(what.to_string()));
        keymesh_primitives::validate_id(&self.header.sender)
            .map_err(|_| EnvelopeError::InvalidId { field: "sender" })?;
        keymesh_primitives::validate_id(&self.header.target)
            .map_err(|_| EnvelopeError::InvalidId { field: "target" })?;
        if !RSA_BYTES.contains(&self.wrapped_key.len()) {
            return malformed("wrapped key length is not an RSA-2048..4096 block");
        }
        if !RSA_BYTES.contains(&self.signature.len()) {
            return malformed("signature length is not an RSA-2048..4096 block");
        }
        if self.ciphertext.len() < TAG_LEN {
            return malformed("ciphertext shorter than the GCM tag");
        }
        if self.ciphertext.len() - TAG_LEN > MAX_PAYLOAD_LEN {
            return Err(EnvelopeError::PayloadTooLarge {
                len: self.ciphertext.len() - TAG_LEN,
                max: MAX_PAYLOAD_LEN,
            });
        }
        Ok(())
    }

    /// The SCALE encoding that goes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode()
    }
}

/// What a successful [`open`] yields.
#[derive(Debug)]
pub struct Opened {
    pub header: Header,
    pub payload: Zeroizing<Vec<u8>>,
}

/// What to seal, to whom, under which keys.
pub struct SealRequest<'a> {
    pub kind: Kind,
    pub sender: &'a str,
    pub sender_key: &'a RsaPrivateKey,
    pub target: &'a str,
    pub target_key: &'a RsaPublicKey,
    pub key_epoch: u32,
    pub payload: &'a [u8],
}

/// Values a test vector lists that the envelope itself does not show.
pub struct SealSecrets {
    pub aes_key: Zeroizing<[u8; 32]>,
}

/// Seals `payload` to device `recipient` under its current key.
pub fn seal_direct(
    sender: &str,
    sender_key: &RsaPrivateKey,
    recipient: &str,
    recipient_key: &RsaPublicKey,
    key_epoch: u32,
    payload: &[u8],
) -> Result<Envelope, EnvelopeError> {
    seal(SealRequest {
        kind: Kind::Direct,
        sender,
        sender_key,
        target: recipient,
        target_key: recipient_key,
        key_epoch,
        payload,
    })
}

/// Seals `payload` to group `group` under the topic key of epoch `epoch`.
pub fn seal_topic(
    sender: &str,
    sender_key: &RsaPrivateKey,
    group: &str,
    topic_key: &RsaPublicKey,
    epoch: u32,
    payload: &[u8],
) -> Result<Envelope, EnvelopeError> {
    seal(SealRequest {
        kind: Kind::Topic,
        sender,
        sender_key,
        target: group,
        target_key: topic_key,
        key_epoch: epoch,
        payload,
    })
}

fn seal(request: SealRequest<'_>) -> Result<Envelope, EnvelopeError> {
    let mut message_id = [0u8; 16];
    OsRng.fill_bytes(&mut message_id);
    seal_with(&mut OsRng, message_id, now_ms(), request).map(|(envelope, _)| envelope)
}

/// Milliseconds since the Unix epoch on this machine's clock (0 if it is set before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seals with the caller's randomness, id and clock. Production code uses [`seal_direct`]
/// and [`seal_topic`]; this exists so test vectors can be reproduced and listed.
pub fn seal_with<R: RngCore + CryptoRng>(
    rng: &mut R,
    message_id: [u8; 16],
    timestamp_ms: u64,
    request: SealRequest<'_>,
) -> Result<(Envelope, SealSecrets), EnvelopeError> {
    if request.payload.len() > MAX_PAYLOAD_LEN {
        return Err(EnvelopeError::PayloadTooLarge {
            len: request.payload.len(),
            max: MAX_PAYLOAD_LEN,
        });
    }
    keymesh_primitives::validate_id(request.sender.as_bytes())
        .map_err(|_| EnvelopeError::InvalidId { field: "sender" })?;
    keymesh_primitives::validate_id(request.target.as_bytes())
        .map_err(|_| EnvelopeError::InvalidId { field: "target" })?;

    let header = Header {
        version: ENVELOPE_VERSION,
        kind: request.kind,
        sender: request.sender.as_bytes().to_vec(),
        target: request.target.as_bytes().to_vec(),
        fingerprint: fingerprint(request.target_key),
        key_epoch: request.key_epoch,
        message_id,
        timestamp_ms,
    };

    let mut aes_key = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(aes_key.as_mut());
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut nonce);

    let wrapped_key = request
        .target_key
        .encrypt(rng, Oaep::new::<Sha256>(), aes_key.as_ref())
        .map_err(|e| EnvelopeError::Crypto(e.to_string()))?;
    let cipher = Aes256Gcm::new_from_slice(aes_key.as_ref())
        .map_err(|e| EnvelopeError::Crypto(e.to_string()))?;
    let aad = header.encode();
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: request.payload,
                aad: &aad,
            },
        )
        .map_err(|e| EnvelopeError::Crypto(e.to_string()))?;

    let mut envelope = Envelope {
        header,
        wrapped_key,
        nonce,
        ciphertext,
        signature: Vec::new(),
    };
    envelope.signature = crate::pss::sign(rng, request.sender_key, &envelope.signed_bytes());
    Ok((envelope, SealSecrets { aes_key }))
}

/// Decodes an envelope and checks its signature under the sender's key.
/// This is what the bridge runs: it needs no private key and reveals nothing.
pub fn verify_signature(
    bytes: &[u8],
    sender_key: &RsaPublicKey,
) -> Result<Envelope, EnvelopeError> {
    let envelope = Envelope::decode_bounded(bytes)?;
    verify_decoded(&envelope, sender_key)?;
    Ok(envelope)
}

/// Checks a decoded envelope's signature under the sender's key ([`crate::pss::verify`]).
pub fn verify_decoded(envelope: &Envelope, sender_key: &RsaPublicKey) -> Result<(), EnvelopeError> {
    if crate::pss::verify(sender_key, &envelope.signed_bytes(), &envelope.signature) {
        Ok(())
    } else {
        Err(EnvelopeError::BadSignature)
    }
}

/// Opens an envelope sealed to `reader` (a device key, or a topic private key).
///
/// The signature is checked first, so nothing unauthenticated is ever decrypted; then the
/// header's fingerprint must name `reader`'s key.
pub fn open(
    bytes: &[u8],
    reader: &RsaPrivateKey,
    sender_key: &RsaPublicKey,
) -> Result<Opened, EnvelopeError> {
    let envelope = verify_signature(bytes, sender_key)?;
    let mine = fingerprint(&reader.to_public_key());
    if envelope.header.fingerprint != mine {
        return Err(EnvelopeError::NotRecipient {
            presented: hex::encode(envelope.header.fingerprint),
            mine: hex::encode(mine),
        });
    }
    let aes_key = Zeroizing::new(
        reader
            .decrypt_blinded(&mut OsRng, Oaep::new::<Sha256>(), &envelope.wrapped_key)
            .map_err(|_| EnvelopeError::UnwrapFailed)?,
    );
    if aes_key.len() != 32 {
        return Err(EnvelopeError::UnwrapFailed);
    }
    let cipher = Aes256Gcm::new_from_slice(&aes_key).map_err(|_| EnvelopeError::UnwrapFailed)?;
    let aad = envelope.header.encode();
    let payload = cipher
        .decrypt(
            Nonce::from_slice(&envelope.nonce),
            Payload {
                msg: &envelope.ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| EnvelopeError::DecryptFailed)?;
    Ok(Opened {
        header: envelope.header,
        payload: Zeroizing::new(payload),
    })
}

#[cfg(test)]
mod tests;
