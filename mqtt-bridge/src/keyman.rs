//! Keyman: the bridge as key manager. On a finalized `RekeyRequired` it makes a fresh topic
//! key pair and epoch key, wraps the epoch key to each member's current device key, and
//! hands back what `groups.set_epoch_key` needs. The topic private key leaves only sealed
//! under the epoch key; both are dropped (and zeroized) when this returns.

use keymesh_device::{
    keys::{generate, public_der, KeyBits},
    seal_topic_key, TopicKeyError,
};
use keymesh_primitives::Fingerprint;
use rand::rngs::OsRng;
use rsa::RsaPublicKey;

/// Most wraps per `set_epoch_key` call: the runtime's `MaxWrapsPerCall`.
pub const MAX_WRAPS_PER_CALL: usize = 256;

/// What one epoch's `set_epoch_key` calls carry.
pub struct EpochKey {
    pub group: String,
    pub epoch: u32,
    /// The finalized block whose members and device keys the wraps were made for.
    pub members_at: u32,
    pub topic_public_key: Vec<u8>,
    pub sealed_private_key: Vec<u8>,
    /// (member, fingerprint of its device key, epoch key wrapped to that key), in chunks of
    /// at most [`MAX_WRAPS_PER_CALL`] when submitted.
    pub wraps: Vec<(String, Fingerprint, Vec<u8>)>,
}

/// A member to wrap for: its device id, current device key and that key's fingerprint.
pub struct Reader {
    pub device: String,
    pub key: RsaPublicKey,
    pub fingerprint: Fingerprint,
}

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KeymanError {
    #[error("topic key generation failed: {0}")]
    KeyGen(String),
    #[error(transparent)]
    Seal(#[from] TopicKeyError),
}

/// Makes the key of `group`'s `epoch` for `readers`, as they stood at finalized block
/// `members_at`.
pub fn make_epoch_key(
    group: &str,
    epoch: u32,
    members_at: u32,
    readers: &[Reader],
) -> Result<EpochKey, KeymanError> {
    let topic = generate(KeyBits::B2048).map_err(|e| KeymanError::KeyGen(e.to_string()))?;
    let keys: Vec<RsaPublicKey> = readers.iter().map(|r| r.key.clone()).collect();
    let material = seal_topic_key(&mut OsRng, group, epoch, &topic, &keys)?;
    Ok(EpochKey {
        group: group.to_string(),
        epoch,
        members_at,
        topic_public_key: public_der(&topic.to_public_key()),
        sealed_private_key: material.sealed.to_bytes(),
        wraps: readers
            .iter()
            .zip(material.wraps)
            .map(|(r, wrap)| (r.device.clone(), r.fingerprint, wrap))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keymesh_device::{keys::read_private, open_topic_key, SealedTopicKey};
    use std::path::PathBuf;

    fn key(name: &str) -> rsa::RsaPrivateKey {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../device/testdata")
            .join(format!("{name}.key.pem"));
        read_private(&path).unwrap()
    }

    #[test]
    fn members_open_the_new_topic_key_and_others_cannot() {
        let (k1112, k1113, k1114) = (key("1112"), key("1113"), key("1114"));
        let reader = |device: &str, key: &rsa::RsaPrivateKey| Reader {
            device: device.to_string(),
            key: key.to_public_key(),
            fingerprint: [device.as_bytes()[3]; 32],
        };
        let members = vec![reader("1112", &k1112), reader("1113", &k1113)];
        let made = make_epoch_key("hsu0001", 3, 7, &members).unwrap();
        assert_eq!((made.wraps.len(), made.members_at), (2, 7));
        // Each wrap names the device key it was made to.
        assert_eq!(made.wraps[1].1, [b'3'; 32]);
        let sealed = SealedTopicKey::from_bytes(&made.sealed_private_key).unwrap();
        for (id, device_key) in [("1112", &k1112), ("1113", &k1113)] {
            let wrap = &made.wraps.iter().find(|(m, _, _)| m == id).unwrap().2;
            let topic = open_topic_key("hsu0001", 3, device_key, wrap, &sealed).unwrap();
            assert_eq!(public_der(&topic.to_public_key()), made.topic_public_key);
        }
        // 1114 is not a member: no wrap of its own, and another's wrap does not open for it.
        let wrap_1112 = &made.wraps[0].2;
        assert!(open_topic_key("hsu0001", 3, &k1114, wrap_1112, &sealed).is_err());
        // The sealed key is bound to its group and epoch.
        assert!(open_topic_key("hsu0001", 4, &k1112, wrap_1112, &sealed).is_err());
    }
}
