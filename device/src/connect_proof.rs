//! The connect proof: the MQTT password with which a device proves, at CONNECT, that it holds
//! the private key registered for it on chain. Byte layout and a test vector:
//! `docs/connect-proof.md`.
//!
//! Nothing is issued out of band and nothing is shared: the proof is a fresh RSA-PSS
//! signature (the envelope's parameters) over the device id, the audience (the broker or
//! bridge deployment it is meant for), the time and a random nonce. The broker's front checks
//! it against the device's key in finalized state and accepts each nonce once.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use codec::{Decode, DecodeAll, Encode};
use rand::{rngs::OsRng, CryptoRng, RngCore};
use rsa::{RsaPrivateKey, RsaPublicKey};

use crate::envelope::now_ms;

/// The proof format this crate writes and reads.
pub const CONNECT_PROOF_VERSION: u8 = 1;
/// Prefixed to the encoded body before signing, so a connect proof's signature can never be
/// taken for an envelope's or the other way round.
pub const CONNECT_PROOF_DOMAIN: &[u8] = b"keymesh/connect-proof/v1";
/// Longest password text a front reads: a 4096-bit signature plus the body, in base64.
pub const MAX_CONNECT_PROOF_TEXT: usize = 1024;

/// What the signature covers.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ConnectClaim {
    /// Always [`CONNECT_PROOF_VERSION`].
    pub version: u8,
    /// The connecting device's id, as registered on chain.
    pub device: Vec<u8>,
    /// The deployment the proof is for: a proof for one broker is useless at another.
    pub audience: Vec<u8>,
    /// The device's clock when it made the proof, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// 16 random bytes; the front accepts each (device, nonce) once inside its window.
    pub nonce: [u8; 16],
}

/// A claim and the device's signature over `CONNECT_PROOF_DOMAIN ‖ SCALE(claim)`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ConnectProof {
    pub claim: ConnectClaim,
    /// RSA-PSS-SHA-256, MGF1-SHA-256, 32-byte salt, as long as the device's modulus.
    pub signature: Vec<u8>,
}

/// Why a proof could not be made or read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectProofError {
    #[error("connect proof of {0} characters is longer than {MAX_CONNECT_PROOF_TEXT}")]
    TooLong(usize),
    #[error("connect proof is not base64url: {0}")]
    NotBase64(String),
    #[error("connect proof is malformed: {0}")]
    Malformed(String),
    #[error(
        "connect proof version {0} is not supported (this reader speaks {CONNECT_PROOF_VERSION})"
    )]
    UnsupportedVersion(u8),
    #[error("invalid {0} in connect proof")]
    InvalidId(&'static str),
    #[error("connect proof signature does not verify under the device's key")]
    BadSignature,
}

impl ConnectClaim {
    /// The exact bytes the device signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = CONNECT_PROOF_DOMAIN.to_vec();
        self.encode_to(&mut out);
        out
    }
}

impl ConnectProof {
    /// A fresh proof for `device` at `audience`, made now with a random nonce.
    pub fn make(
        device: &str,
        audience: &str,
        key: &RsaPrivateKey,
    ) -> Result<ConnectProof, ConnectProofError> {
        let mut nonce = [0u8; 16];
        OsRng.fill_bytes(&mut nonce);
        Self::make_with(&mut OsRng, device, audience, now_ms(), nonce, key)
    }

    /// Makes a proof with the caller's randomness, clock and nonce. Production code uses
    /// [`ConnectProof::make`]; this exists so the test vector can be reproduced.
    pub fn make_with<R: RngCore + CryptoRng>(
        rng: &mut R,
        device: &str,
        audience: &str,
        timestamp_ms: u64,
        nonce: [u8; 16],
        key: &RsaPrivateKey,
    ) -> Result<ConnectProof, ConnectProofError> {
        keymesh_primitives::validate_id(device.as_bytes())
            .map_err(|_| ConnectProofError::InvalidId("device"))?;
        keymesh_primitives::validate_id(audience.as_bytes())
            .map_err(|_| ConnectProofError::InvalidId("audience"))?;
        let claim = ConnectClaim {
            version: CONNECT_PROOF_VERSION,
            device: device.as_bytes().to_vec(),
            audience: audience.as_bytes().to_vec(),
            timestamp_ms,
            nonce,
        };
        let signature = crate::pss::sign(rng, key, &claim.signed_bytes());
        Ok(ConnectProof { claim, signature })
    }

    /// The MQTT password: base64url without padding of the SCALE encoding.
    pub fn to_password(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.encode())
    }

    /// Reads a password. Checks the form only; [`ConnectProof::verify`] checks the signature.
    pub fn from_password(text: &[u8]) -> Result<ConnectProof, ConnectProofError> {
        if text.len() > MAX_CONNECT_PROOF_TEXT {
            return Err(ConnectProofError::TooLong(text.len()));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|e| ConnectProofError::NotBase64(e.to_string()))?;
        let proof = ConnectProof::decode_all(&mut &bytes[..])
            .map_err(|e| ConnectProofError::Malformed(e.to_string()))?;
        if proof.claim.version != CONNECT_PROOF_VERSION {
            return Err(ConnectProofError::UnsupportedVersion(proof.claim.version));
        }
        for (field, value) in [
            ("device", &proof.claim.device),
            ("audience", &proof.claim.audience),
        ] {
            keymesh_primitives::validate_id(value)
                .map_err(|_| ConnectProofError::InvalidId(field))?;
        }
        Ok(proof)
    }

    /// The device id the proof claims (checked to be a valid id when read).
    pub fn device(&self) -> String {
        String::from_utf8_lossy(&self.claim.device).into_owned()
    }

    /// The audience the proof is for.
    pub fn audience(&self) -> String {
        String::from_utf8_lossy(&self.claim.audience).into_owned()
    }

    /// Checks the signature under the device's registered key.
    pub fn verify(&self, key: &RsaPublicKey) -> Result<(), ConnectProofError> {
        if crate::pss::verify(key, &self.claim.signed_bytes(), &self.signature) {
            Ok(())
        } else {
            Err(ConnectProofError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> RsaPrivateKey {
        crate::keys::read_private(
            &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("testdata")
                .join(format!("{id}.key.pem")),
        )
        .unwrap()
    }

    #[test]
    fn a_proof_round_trips_and_verifies_only_under_its_own_key() {
        let proof = ConnectProof::make("1111", "keymesh-dev", &key("1111")).unwrap();
        let read = ConnectProof::from_password(proof.to_password().as_bytes()).unwrap();
        assert_eq!(read, proof);
        assert_eq!(read.device(), "1111");
        read.verify(&key("1111").to_public_key()).unwrap();
        assert_eq!(
            read.verify(&key("1113").to_public_key()),
            Err(ConnectProofError::BadSignature)
        );
    }

    #[test]
    fn any_changed_field_breaks_the_signature() {
        let proof = ConnectProof::make("1111", "keymesh-dev", &key("1111")).unwrap();
        let public = key("1111").to_public_key();
        let mut other = proof.clone();
        other.claim.device = b"1112".to_vec();
        assert!(other.verify(&public).is_err());
        let mut other = proof.clone();
        other.claim.audience = b"elsewhere".to_vec();
        assert!(other.verify(&public).is_err());
        let mut other = proof.clone();
        other.claim.timestamp_ms += 1;
        assert!(other.verify(&public).is_err());
        let mut other = proof;
        other.claim.nonce[0] ^= 1;
        assert!(other.verify(&public).is_err());
    }

    #[test]
    fn garbage_passwords_are_clear_errors() {
        assert!(matches!(
            ConnectProof::from_password(b"not base64!"),
            Err(ConnectProofError::NotBase64(_))
        ));
        assert!(matches!(
            ConnectProof::from_password(b"AAAA"),
            Err(ConnectProofError::Malformed(_))
        ));
        assert!(matches!(
            ConnectProof::from_password(&[b'A'; MAX_CONNECT_PROOF_TEXT + 1]),
            Err(ConnectProofError::TooLong(_))
        ));
        assert!(matches!(
            ConnectProof::from_password(b""),
            Err(ConnectProofError::Malformed(_))
        ));
        let mut proof = ConnectProof::make("1111", "keymesh-dev", &key("1111")).unwrap();
        proof.claim.version = 2;
        assert_eq!(
            ConnectProof::from_password(proof.to_password().as_bytes()),
            Err(ConnectProofError::UnsupportedVersion(2))
        );
        proof.claim.version = 1;
        proof.claim.device = b"a/b".to_vec();
        assert_eq!(
            ConnectProof::from_password(proof.to_password().as_bytes()),
            Err(ConnectProofError::InvalidId("device"))
        );
        assert!(ConnectProof::make("1111", "bad audience", &key("1111")).is_err());
    }
}
