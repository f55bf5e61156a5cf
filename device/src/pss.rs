//! RSA-PSS exactly as KeyMesh fixes it everywhere a device signs: SHA-256, MGF1-SHA-256 and
//! a 32-byte salt. Envelopes and connect proofs share it, so a verifier needs one rule.

use rand::{CryptoRng, RngCore};
use rsa::{
    pss::BlindedSigningKey,
    signature::{RandomizedSigner, SignatureEncoding},
    traits::PublicKeyParts,
    RsaPrivateKey, RsaPublicKey,
};
use sha2::Sha256;

/// Signs `message` on the `rsa` crate's blinded path (RUSTSEC-2023-0071 does not reach it).
pub fn sign<R: RngCore + CryptoRng>(rng: &mut R, key: &RsaPrivateKey, message: &[u8]) -> Vec<u8> {
    BlindedSigningKey::<Sha256>::new(key.clone())
        .sign_with_rng(rng, message)
        .to_vec()
}

/// Checks `signature` over `message` under `key`.
///
/// The check runs on `ring` rather than the `rsa` crate: it touches only public data, and
/// `ring`'s verification is about ten times faster, which is what bounds the bridge's
/// throughput. `ring` enforces the 32-byte salt.
pub fn verify(key: &RsaPublicKey, message: &[u8], signature: &[u8]) -> bool {
    // A signature longer than the modulus cannot be valid; say so without parsing.
    if signature.len() != key.size() {
        return false;
    }
    let (modulus, exponent) = (key.n().to_bytes_be(), key.e().to_bytes_be());
    ring::signature::RsaPublicKeyComponents {
        n: modulus.as_slice(),
        e: exponent.as_slice(),
    }
    .verify(
        &ring::signature::RSA_PSS_2048_8192_SHA256,
        message,
        signature,
    )
    .is_ok()
}
