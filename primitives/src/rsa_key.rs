//! RSA public-key checks that the runtime (wasm, `no_std`) and the devices share.
//!
//! Parses SubjectPublicKeyInfo DER with the small RustCrypto DER crates: no big-integer
//! arithmetic and no randomness, so it runs in the runtime and every node agrees.

use spki::{der::asn1::AnyRef, ObjectIdentifier, SubjectPublicKeyInfoRef};

/// rsaEncryption (PKCS #1), the algorithm of every key KeyMesh stores.
pub const RSA_ENCRYPTION_OID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Smallest RSA modulus KeyMesh accepts, in bits.
pub const MIN_RSA_BITS: u32 = 2048;
/// Largest RSA modulus KeyMesh accepts, in bits.
pub const MAX_RSA_BITS: u32 = 4096;
/// Longest SubjectPublicKeyInfo DER KeyMesh stores: a 4096-bit key with e = 65537 is
/// 550 bytes; the slack covers DER length-encoding variants, nothing larger is valid.
pub const MAX_SPKI_LEN: u32 = 600;
/// The only public exponent accepted, big-endian: 65537.
const EXPONENT_65537: [u8; 3] = [0x01, 0x00, 0x01];

/// Why a public key was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsaKeyError {
    /// Longer than [`MAX_SPKI_LEN`].
    TooLong,
    /// Not DER SubjectPublicKeyInfo, or trailing bytes.
    Malformed,
    /// The algorithm is not rsaEncryption (1.2.840.113549.1.1.1) with NULL parameters.
    NotRsa,
    /// Modulus outside 2048..=4096 bits.
    UnsupportedSize { bits: u32 },
    /// Public exponent other than 65537.
    UnsupportedExponent,
}

/// Checks an RSA SubjectPublicKeyInfo; returns the modulus size in bits.
pub fn validate_rsa_spki(der: &[u8]) -> Result<u32, RsaKeyError> {
    if der.len() > MAX_SPKI_LEN as usize {
        return Err(RsaKeyError::TooLong);
    }
    let spki = SubjectPublicKeyInfoRef::try_from(der).map_err(|_| RsaKeyError::Malformed)?;
    if spki.algorithm.oid != RSA_ENCRYPTION_OID {
        return Err(RsaKeyError::NotRsa);
    }
    // RFC 3279 §2.3.1: the parameters of rsaEncryption are present and NULL.
    match spki.algorithm.parameters {
        Some(p) if p == AnyRef::NULL => {}
        _ => return Err(RsaKeyError::NotRsa),
    }
    let key_bytes = spki
        .subject_public_key
        .as_bytes()
        .ok_or(RsaKeyError::Malformed)?;
    let key = pkcs1::RsaPublicKey::try_from(key_bytes).map_err(|_| RsaKeyError::Malformed)?;
    let modulus = key.modulus.as_bytes();
    let bits = match modulus.first() {
        Some(&top) => (modulus.len() as u32 - 1) * 8 + (8 - top.leading_zeros()),
        None => 0,
    };
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(RsaKeyError::UnsupportedSize { bits });
    }
    if key.public_exponent.as_bytes() != EXPONENT_65537 {
        return Err(RsaKeyError::UnsupportedExponent);
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_2048: &[u8] = include_bytes!("../../pallets/devices/testdata/rsa2048-1111.der");
    const RSA_4096: &[u8] = include_bytes!("../../pallets/devices/testdata/rsa4096.der");
    const RSA_1024: &[u8] = include_bytes!("../../pallets/devices/testdata/rsa1024.der");
    const RSA_E3: &[u8] = include_bytes!("../../pallets/devices/testdata/rsa2048-e3.der");
    const ED25519: &[u8] = include_bytes!("../../pallets/devices/testdata/ed25519.der");

    #[test]
    fn accepts_rsa_2048_and_4096_with_e_65537() {
        assert_eq!(validate_rsa_spki(RSA_2048), Ok(2048));
        assert_eq!(validate_rsa_spki(RSA_4096), Ok(4096));
    }

    #[test]
    fn refuses_everything_else() {
        assert_eq!(
            validate_rsa_spki(RSA_1024),
            Err(RsaKeyError::UnsupportedSize { bits: 1024 })
        );
        assert_eq!(
            validate_rsa_spki(RSA_E3),
            Err(RsaKeyError::UnsupportedExponent)
        );
        assert_eq!(validate_rsa_spki(ED25519), Err(RsaKeyError::NotRsa));
        assert_eq!(validate_rsa_spki(b"None"), Err(RsaKeyError::Malformed));
        assert_eq!(validate_rsa_spki(&[]), Err(RsaKeyError::Malformed));
        assert_eq!(validate_rsa_spki(&[0u8; 601]), Err(RsaKeyError::TooLong));
        let mut trailing = RSA_2048.to_vec();
        trailing.push(0);
        assert_eq!(validate_rsa_spki(&trailing), Err(RsaKeyError::Malformed));
        for i in 0..RSA_2048.len() {
            let mut t = RSA_2048.to_vec();
            t[i] ^= 0x80;
            // A flipped bit must never turn into an accepted key of another shape by
            // accident in the structural bytes; inside the modulus it may stay valid.
            if let Ok(bits) = validate_rsa_spki(&t) {
                assert!((2048..=4096).contains(&bits));
            }
        }
    }
}
