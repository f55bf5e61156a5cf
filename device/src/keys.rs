//! RSA key pairs: generation, files, fingerprints.

use std::{fs, io::Write, path::Path};

use rsa::{
    pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding},
    BigUint, RsaPrivateKey, RsaPublicKey,
};
use sha2::{Digest, Sha256};

/// SHA-256 of a public key's SubjectPublicKeyInfo DER: what the chain stores and what an
/// envelope's header names.
pub type Fingerprint = [u8; 32];

/// The only public exponent KeyMesh accepts, as the chain does.
pub const PUBLIC_EXPONENT: u64 = 65_537;

/// Modulus sizes a device may use. The chain accepts 2048 to 4096 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KeyBits {
    /// 2048 bits: the default, and the fastest for constrained devices.
    #[default]
    #[value(name = "2048")]
    B2048,
    /// 3072 bits.
    #[value(name = "3072")]
    B3072,
    /// 4096 bits.
    #[value(name = "4096")]
    B4096,
}

impl KeyBits {
    /// The modulus size in bits.
    pub fn bits(self) -> usize {
        match self {
            KeyBits::B2048 => 2048,
            KeyBits::B3072 => 3072,
            KeyBits::B4096 => 4096,
        }
    }
}

/// Why a key could not be made, read, written or accepted.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a PKCS#8 PEM RSA private key: {reason}")]
    BadPrivateKey { path: String, reason: String },
    #[error("not an RSA SubjectPublicKeyInfo (DER or PEM): {0}")]
    BadPublicKey(String),
    #[error("RSA key of {bits} bits: KeyMesh accepts 2048 to 4096")]
    UnsupportedSize { bits: usize },
    #[error("RSA public exponent must be 65537")]
    UnsupportedExponent,
    #[error("key generation failed: {0}")]
    Generate(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Makes a fresh key pair. The private key never leaves the device.
pub fn generate(bits: KeyBits) -> Result<RsaPrivateKey, KeyError> {
    let mut rng = rand::rngs::OsRng;
    RsaPrivateKey::new_with_exp(&mut rng, bits.bits(), &BigUint::from(PUBLIC_EXPONENT))
        .map_err(|e| KeyError::Generate(e.to_string()))
}

/// Checks exactly what the chain checks (the same code: `keymesh_primitives`), so a key
/// this accepts is a key the runtime accepts.
pub fn check_public(key: &RsaPublicKey) -> Result<(), KeyError> {
    use keymesh_primitives::RsaKeyError;
    match keymesh_primitives::validate_rsa_spki(&public_der(key)) {
        Ok(_) => Ok(()),
        Err(RsaKeyError::UnsupportedSize { bits }) => Err(KeyError::UnsupportedSize {
            bits: bits as usize,
        }),
        Err(RsaKeyError::UnsupportedExponent) => Err(KeyError::UnsupportedExponent),
        Err(other) => Err(KeyError::BadPublicKey(format!("{other:?}"))),
    }
}

/// SubjectPublicKeyInfo DER of a public key.
pub fn public_der(key: &RsaPublicKey) -> Vec<u8> {
    // Encoding an in-memory RSA key to DER cannot fail: no I/O, sizes are bounded.
    key.to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .unwrap_or_default()
}

/// The fingerprint of a public key: SHA-256 of its SubjectPublicKeyInfo DER.
pub fn fingerprint(key: &RsaPublicKey) -> Fingerprint {
    Sha256::digest(public_der(key)).into()
}

/// Parses a public key from SubjectPublicKeyInfo DER or PEM and checks size and exponent.
pub fn parse_public(bytes: &[u8]) -> Result<RsaPublicKey, KeyError> {
    let key = match std::str::from_utf8(bytes) {
        Ok(text) if text.trim_start().starts_with("-----BEGIN") => {
            RsaPublicKey::from_public_key_pem(text.trim())
        }
        _ => RsaPublicKey::from_public_key_der(bytes),
    }
    .map_err(|e| KeyError::BadPublicKey(e.to_string()))?;
    check_public(&key)?;
    Ok(key)
}

/// Reads a public key file (SubjectPublicKeyInfo DER or PEM).
pub fn read_public(path: &Path) -> Result<RsaPublicKey, KeyError> {
    parse_public(&fs::read(path).map_err(io(path))?)
}

/// Reads a PKCS#8 PEM private key file.
pub fn read_private(path: &Path) -> Result<RsaPrivateKey, KeyError> {
    let text = zeroize::Zeroizing::new(fs::read_to_string(path).map_err(io(path))?);
    let key = RsaPrivateKey::from_pkcs8_pem(&text).map_err(|e| KeyError::BadPrivateKey {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    check_public(&key.to_public_key())?;
    Ok(key)
}

/// Writes a private key as PKCS#8 PEM, readable by its owner only (mode 0600).
/// Refuses to overwrite an existing file: a lost device key cannot be recovered.
pub fn write_private(path: &Path, key: &RsaPrivateKey) -> Result<(), KeyError> {
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(pem.as_bytes()).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Writes a public key as SubjectPublicKeyInfo: PEM if the path ends in `.pem`, else DER.
pub fn write_public(path: &Path, key: &RsaPublicKey) -> Result<(), KeyError> {
    let bytes = if path.extension().is_some_and(|e| e == "pem") {
        key.to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Generate(e.to_string()))?
            .into_bytes()
    } else {
        public_der(key)
    };
    fs::write(path, bytes).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_key_file_is_owner_only_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev.key.pem");
        let key = read_private(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/1111.key.pem"
        )))
        .unwrap();
        write_private(&path, &key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(read_private(&path).unwrap(), key);
        // Never overwrite a device key.
        assert!(matches!(
            write_private(&path, &key),
            Err(KeyError::Io { .. })
        ));
    }

    #[test]
    fn public_key_round_trips_as_der_and_pem_with_a_stable_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let key = read_private(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/1113.key.pem"
        )))
        .unwrap();
        let public = key.to_public_key();
        for name in ["k.der", "k.pem"] {
            let path = dir.path().join(name);
            write_public(&path, &public).unwrap();
            let back = read_public(&path).unwrap();
            assert_eq!(fingerprint(&back), fingerprint(&public));
        }
        let from_openssl = read_public(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/1113.spki.pem"
        )))
        .unwrap();
        assert_eq!(fingerprint(&from_openssl), fingerprint(&public));
    }

    #[test]
    fn weak_and_garbage_keys_are_refused() {
        let mut rng = rand::rngs::OsRng;
        let small = RsaPrivateKey::new(&mut rng, 1024).unwrap();
        let der = public_der(&small.to_public_key());
        assert!(matches!(
            parse_public(&der),
            Err(KeyError::UnsupportedSize { bits: 1024 })
        ));
        let e3 = RsaPrivateKey::new_with_exp(&mut rng, 2048, &BigUint::from(3u8)).unwrap();
        assert!(matches!(
            parse_public(&public_der(&e3.to_public_key())),
            Err(KeyError::UnsupportedExponent)
        ));
        assert!(matches!(
            parse_public(b"None"),
            Err(KeyError::BadPublicKey(_))
        ));
        assert!(matches!(parse_public(&[]), Err(KeyError::BadPublicKey(_))));
    }

    #[test]
    fn generated_keys_have_the_requested_size() {
        let key = generate(KeyBits::B2048).unwrap();
        assert_eq!(rsa::traits::PublicKeyParts::n(&key).bits(), 2048);
        assert!(check_public(&key.to_public_key()).is_ok());
    }
}
