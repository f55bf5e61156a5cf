//! Topic (group) keys as `pallet-groups` hands them out.
//!
//! Each epoch has one topic key pair. Its private key is stored on chain once, as a
//! [`SealedTopicKey`]: PKCS#8 DER under AES-256-GCM with a fresh 32-byte *epoch key*. The
//! epoch key is RSA-OAEP-wrapped to each member's device key. A member unwraps the epoch
//! key with its device key, then decrypts the topic private key; nobody else can.

use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm, Nonce,
};
use codec::{Decode, DecodeAll, Encode};
use rand::{rngs::OsRng, CryptoRng, RngCore};
use rsa::{
    pkcs8::{DecodePrivateKey, EncodePrivateKey},
    Oaep, RsaPrivateKey, RsaPublicKey,
};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::keys::check_public;

/// Domain separation for the AES-GCM associated data of a sealed topic key.
const TOPIC_KEY_AAD_PREFIX: &[u8] = b"keymesh/v1/topic-key";
/// Largest sealed topic key: PKCS#8 DER of an RSA-4096 key is about 2.4 KB.
pub const MAX_SEALED_TOPIC_KEY_LEN: usize = 4096;

/// The epoch's topic private key, encrypted under the epoch key.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SealedTopicKey {
    pub nonce: [u8; 12],
    /// AES-256-GCM of the topic private key's PKCS#8 DER, tag appended.
    pub ciphertext: Vec<u8>,
}

/// Why a topic key could not be sealed or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopicKeyError {
    #[error("sealed topic key is malformed: {0}")]
    Malformed(String),
    #[error("the epoch key does not unwrap under this device's key: not a member")]
    NotMember,
    #[error("the topic key does not decrypt under the epoch key (wrong group or epoch?)")]
    DecryptFailed,
    #[error("the decrypted topic key is not a valid RSA key: {0}")]
    BadTopicKey(String),
    #[error("crypto operation failed: {0}")]
    Crypto(String),
}

fn aad(group: &str, epoch: u32) -> Vec<u8> {
    let mut aad = TOPIC_KEY_AAD_PREFIX.to_vec();
    (group.as_bytes(), epoch).encode_to(&mut aad);
    aad
}

impl SealedTopicKey {
    /// SCALE bytes as stored on chain.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode()
    }

    /// Decodes a sealed topic key, refusing oversize input.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TopicKeyError> {
        if bytes.len() > MAX_SEALED_TOPIC_KEY_LEN {
            return Err(TopicKeyError::Malformed(format!("{} bytes", bytes.len())));
        }
        SealedTopicKey::decode_all(&mut &bytes[..])
            .map_err(|e| TopicKeyError::Malformed(e.to_string()))
    }
}

/// What a key manager submits for one epoch: the sealed topic key and one epoch-key wrap
/// per member, in the order of `members`.
pub struct EpochKeyMaterial {
    pub sealed: SealedTopicKey,
    pub wraps: Vec<Vec<u8>>,
}

/// Seals `topic_key` for `group`/`epoch` and wraps the fresh epoch key to every member.
/// The epoch key is zeroized when this returns; the caller then drops `topic_key`.
pub fn seal_topic_key<R: RngCore + CryptoRng>(
    rng: &mut R,
    group: &str,
    epoch: u32,
    topic_key: &RsaPrivateKey,
    members: &[RsaPublicKey],
) -> Result<EpochKeyMaterial, TopicKeyError> {
    let mut epoch_key = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(epoch_key.as_mut());
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut nonce);
    let der = topic_key
        .to_pkcs8_der()
        .map_err(|e| TopicKeyError::Crypto(e.to_string()))?;
    let cipher = Aes256Gcm::new_from_slice(epoch_key.as_ref())
        .map_err(|e| TopicKeyError::Crypto(e.to_string()))?;
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: der.as_bytes(),
                aad: &aad(group, epoch),
            },
        )
        .map_err(|e| TopicKeyError::Crypto(e.to_string()))?;
    let wraps = members
        .iter()
        .map(|member| {
            member
                .encrypt(rng, Oaep::new::<Sha256>(), epoch_key.as_ref())
                .map_err(|e| TopicKeyError::Crypto(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    Ok(EpochKeyMaterial {
        sealed: SealedTopicKey { nonce, ciphertext },
        wraps,
    })
}

/// Opens the topic private key of `group`/`epoch` with this device's key and the epoch-key
/// wrap the chain holds for this device.
pub fn open_topic_key(
    group: &str,
    epoch: u32,
    device_key: &RsaPrivateKey,
    wrapped_epoch_key: &[u8],
    sealed: &SealedTopicKey,
) -> Result<RsaPrivateKey, TopicKeyError> {
    let epoch_key = Zeroizing::new(
        device_key
            .decrypt_blinded(&mut OsRng, Oaep::new::<Sha256>(), wrapped_epoch_key)
            .map_err(|_| TopicKeyError::NotMember)?,
    );
    if epoch_key.len() != 32 {
        return Err(TopicKeyError::NotMember);
    }
    let cipher = Aes256Gcm::new_from_slice(&epoch_key).map_err(|_| TopicKeyError::NotMember)?;
    let der = Zeroizing::new(
        cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad(group, epoch),
                },
            )
            .map_err(|_| TopicKeyError::DecryptFailed)?,
    );
    let key = RsaPrivateKey::from_pkcs8_der(&der)
        .map_err(|e| TopicKeyError::BadTopicKey(e.to_string()))?;
    check_public(&key.to_public_key()).map_err(|e| TopicKeyError::BadTopicKey(e.to_string()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{envelope, keys::read_private};

    fn key(name: &str) -> RsaPrivateKey {
        let path = format!("{}/testdata/{name}.key.pem", env!("CARGO_MANIFEST_DIR"));
        read_private(Path::new(&path)).unwrap()
    }

    #[test]
    fn members_open_the_topic_key_and_read_group_messages_outsiders_do_not() {
        let topic = key("topic-B");
        let (m1, m2, outsider) = (key("1113"), key("1114"), key("1112"));
        let material = seal_topic_key(
            &mut OsRng,
            "B",
            1,
            &topic,
            &[m1.to_public_key(), m2.to_public_key()],
        )
        .unwrap();
        let sealed = SealedTopicKey::from_bytes(&material.sealed.to_bytes()).unwrap();

        let sender = key("1111");
        let msg = envelope::seal_topic("1111", &sender, "B", &topic.to_public_key(), 1, b"hi B")
            .unwrap()
            .to_bytes();
        for (member, wrap) in [(&m1, &material.wraps[0]), (&m2, &material.wraps[1])] {
            let opened_topic = open_topic_key("B", 1, member, wrap, &sealed).unwrap();
            assert_eq!(opened_topic, topic);
            let opened = envelope::open(&msg, &opened_topic, &sender.to_public_key()).unwrap();
            assert_eq!(opened.payload.as_slice(), b"hi B");
        }
        // An outsider holding a member's wrap still cannot unwrap it.
        assert_eq!(
            open_topic_key("B", 1, &outsider, &material.wraps[0], &sealed).unwrap_err(),
            TopicKeyError::NotMember
        );
        // A wrap of another group or epoch does not open this one.
        assert_eq!(
            open_topic_key("B", 2, &m1, &material.wraps[0], &sealed).unwrap_err(),
            TopicKeyError::DecryptFailed
        );
        assert_eq!(
            open_topic_key("A", 1, &m1, &material.wraps[0], &sealed).unwrap_err(),
            TopicKeyError::DecryptFailed
        );
    }

    #[test]
    fn malformed_sealed_keys_are_refused() {
        assert!(matches!(
            SealedTopicKey::from_bytes(&[]),
            Err(TopicKeyError::Malformed(_))
        ));
        assert!(matches!(
            SealedTopicKey::from_bytes(&vec![0u8; MAX_SEALED_TOPIC_KEY_LEN + 1]),
            Err(TopicKeyError::Malformed(_))
        ));
        let m1 = key("1113");
        let sealed = SealedTopicKey {
            nonce: [0; 12],
            ciphertext: vec![1, 2, 3],
        };
        assert_eq!(
            open_topic_key("B", 1, &m1, &[0u8; 256], &sealed).unwrap_err(),
            TopicKeyError::NotMember
        );
    }
}
