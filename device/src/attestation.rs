//! What a bridge attaches to every envelope it forwards.
//!
//! The bridge checked the envelope against one finalized block. It says which one, and signs
//! (envelope hash, block number, block hash) with its sr25519 chain account. A device accepts
//! a delivery only if the signature verifies under a bridge key it trusts, so an envelope
//! published straight to an inbox, past the gate, is refused.

use codec::{Decode, DecodeAll, Encode};
use sha2::{Digest, Sha256};
use subxt_signer::sr25519;

use crate::envelope::MAX_ENVELOPE_LEN;

/// Domain separation for attestation signatures.
const ATTESTATION_CONTEXT: &[u8] = b"keymesh/v1/attestation";

/// A bridge's statement that it checked an envelope against a finalized block.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Attestation {
    /// The bridge's sr25519 public key: its chain account, and its id.
    pub bridge: [u8; 32],
    /// The finalized block whose state the check used.
    pub block_number: u32,
    pub block_hash: [u8; 32],
    /// sr25519 signature over [`Attestation::message`].
    pub signature: [u8; 64],
}

/// What a bridge publishes to an inbox or group topic: the attestation, then the envelope
/// exactly as the sender sealed it.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Delivery {
    pub attestation: Attestation,
    pub envelope: Vec<u8>,
}

/// Why a delivery is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttestationError {
    #[error("not an attested delivery: {0}")]
    Malformed(String),
    #[error("attested by bridge {0}, which this device does not trust")]
    UntrustedBridge(String),
    #[error("the bridge's signature does not verify")]
    BadSignature,
}

/// SHA-256 of the envelope bytes: what the exchange log and attestations name.
pub fn envelope_hash(envelope: &[u8]) -> [u8; 32] {
    Sha256::digest(envelope).into()
}

impl Attestation {
    /// The bytes a bridge signs.
    pub fn message(envelope_hash: &[u8; 32], block_number: u32, block_hash: &[u8; 32]) -> Vec<u8> {
        let mut message = ATTESTATION_CONTEXT.to_vec();
        (envelope_hash, block_number, block_hash).encode_to(&mut message);
        message
    }

    /// Signs for `envelope` as checked at (`block_number`, `block_hash`).
    pub fn sign(
        bridge: &sr25519::Keypair,
        envelope: &[u8],
        block_number: u32,
        block_hash: [u8; 32],
    ) -> Attestation {
        let message = Self::message(&envelope_hash(envelope), block_number, &block_hash);
        Attestation {
            bridge: bridge.public_key().0,
            block_number,
            block_hash,
            signature: bridge.sign(&message).0,
        }
    }
}

impl Delivery {
    /// SCALE bytes as published.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode()
    }

    /// Decodes a delivery (bounded) and checks its attestation against `trusted` bridge keys.
    /// Returns the delivery, whose `envelope` the device may then open.
    pub fn verify(bytes: &[u8], trusted: &[[u8; 32]]) -> Result<Delivery, AttestationError> {
        if bytes.len() > MAX_ENVELOPE_LEN + 256 {
            return Err(AttestationError::Malformed(format!(
                "{} bytes",
                bytes.len()
            )));
        }
        let delivery = Delivery::decode_all(&mut &bytes[..]).map_err(|e| {
            // SCALE errors span several lines; a device log wants one.
            let reason = e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            AttestationError::Malformed(reason)
        })?;
        let a = &delivery.attestation;
        if !trusted.contains(&a.bridge) {
            return Err(AttestationError::UntrustedBridge(hex::encode(a.bridge)));
        }
        let message = Attestation::message(
            &envelope_hash(&delivery.envelope),
            a.block_number,
            &a.block_hash,
        );
        let ok = sr25519::verify(
            &sr25519::Signature(a.signature),
            message,
            &sr25519::PublicKey(a.bridge),
        );
        if !ok {
            return Err(AttestationError::BadSignature);
        }
        Ok(delivery)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_verify_only_under_a_trusted_bridge_and_untouched() {
        let bridge = sr25519::dev::alice();
        let other = sr25519::dev::bob();
        let envelope = b"sealed bytes".to_vec();
        let delivery = Delivery {
            attestation: Attestation::sign(&bridge, &envelope, 7, [3; 32]),
            envelope: envelope.clone(),
        };
        let bytes = delivery.to_bytes();
        let trusted = [bridge.public_key().0];
        assert_eq!(Delivery::verify(&bytes, &trusted), Ok(delivery.clone()));
        assert!(matches!(
            Delivery::verify(&bytes, &[other.public_key().0]),
            Err(AttestationError::UntrustedBridge(_))
        ));
        // Any change to the envelope, block or signature breaks it.
        for at in [0, 40, 70, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(Delivery::verify(&bad, &trusted).is_err(), "flip at {at}");
        }
        // A raw envelope, or a delivery signed by someone else claiming the bridge's key.
        assert!(matches!(
            Delivery::verify(&envelope, &trusted),
            Err(AttestationError::Malformed(_))
        ));
        let mut forged = delivery.clone();
        forged.attestation.signature = Attestation::sign(&other, &envelope, 7, [3; 32]).signature;
        assert_eq!(
            Delivery::verify(&forged.to_bytes(), &trusted),
            Err(AttestationError::BadSignature)
        );
    }
}
