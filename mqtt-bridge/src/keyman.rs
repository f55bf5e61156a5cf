//! Keyman: the bridge as key manager. On a finalized `RekeyRequired` it makes a fresh topic
//! key pair and epoch key, wraps the epoch key to each member's current device key, and
//! hands back what `groups.set_epoch_key` needs. The topic private key leaves only sealed
//! under the epoch key; both are dropped (and zeroized) when this returns.

use keymesh_device::{
    keys::{generate, public_der, KeyBits},
    seal_topic_key, TopicKeyError,
};
use rand::rngs::OsRng;
use rsa::RsaPublicKey;

/// Most wraps per `set_epoch_key` call: the runtime's `MaxWrapsPerCall`.
pub const MAX_WRAPS_PER_CALL: usize = 256;

/// What one epoch's `set_epoch_key` calls carry.
pub struct EpochKey {
    pub group: String,
    pub epoch: u32,
    pub topic_public_key: Vec<u8>,
    pub sealed_private_key: Vec<u8>,
    /// (member, epoch key wrapped to its device key), in chunks of at most
    /// [`MAX_WRAPS_PER_CALL`] when submitted.
    pub wraps: Vec<(String, Vec<u8>)>,
}

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KeymanError {
    #[error("topic key generation failed: {0}")]
    KeyGen(String),
    #[error(transparent)]
    Seal(#[from] TopicKeyError),
}

/// Makes the key of `group`'s `epoch` for `members` (device id, current device key).
pub fn make_epoch_key(
    group: &str,
    epoch: u32,
    members: &[(String, RsaPublicKey)],
) -> Result<EpochKey, KeymanError> {
    let topic = generate(KeyBits::B2048).map_err(|e| KeymanError::KeyGen(e.to_string()))?;
    let keys: Vec<RsaPublicKey> = members.iter().map(|(_, k)| k.clone()).collect();
    let material = seal_topic_key(&mut OsRng, group, epoch, &topic, &keys)?;
    Ok(EpochKey {
        group: group.to_string(),
        epoch,
        topic_public_key: public_der(&topic.to_public_key()),
        sealed_private_key: material.sealed.to_bytes(),
        wraps: members
            .iter()
            .map(|(id, _)| id.clone())
            .zip(material.wraps)
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
        let members = vec![
            ("1112".to_string(), k1112.to_public_key()),
            ("1113".to_string(), k1113.to_public_key()),
        ];
        let made = make_epoch_key("hsu0001", 3, &members).unwrap();
        assert_eq!(made.wraps.len(), 2);
        let sealed = SealedTopicKey::from_bytes(&made.sealed_private_key).unwrap();
        for (id, device_key) in [("1112", &k1112), ("1113", &k1113)] {
            let wrap = &made.wraps.iter().find(|(m, _)| m == id).unwrap().1;
            let topic = open_topic_key("hsu0001", 3, device_key, wrap, &sealed).unwrap();
            assert_eq!(public_der(&topic.to_public_key()), made.topic_public_key);
        }
        // 1114 is not a member: no wrap of its own, and another's wrap does not open for it.
        let wrap_1112 = &made.wraps[0].1;
        assert!(open_topic_key("hsu0001", 3, &k1114, wrap_1112, &sealed).is_err());
        // The sealed key is bound to its group and epoch.
        assert!(open_topic_key("hsu0001", 4, &k1112, wrap_1112, &sealed).is_err());
    }
}
