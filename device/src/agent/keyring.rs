//! Check before sealing (the seeds' "Check"/"Error"): the keys a device seals to, held as
//! finalized state last showed them (attested directory entries) beside the device's local
//! copies, and the rule that decides whether a copy may be sealed to.
//!
//! A copy whose key epoch is behind finalized state is stale, and is replaced by the key
//! finalized state holds: the recipient rotated. A copy at the current epoch (or ahead of
//! it) whose fingerprint differs was not made by this agent from finalized state: it is
//! refused, and no ciphertext is made.

use std::collections::HashMap;

use rsa::RsaPublicKey;

use super::{
    entries::{DeviceEntry, GroupEntry},
    peer_cache::{CachedKey, PeerCache, PeerCacheError},
};
use crate::{fingerprint, Fingerprint};

/// Why the agent will not seal to a target.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{target} is not in finalized state (no attested directory entry)")]
    Unknown { target: String },
    #[error("device {device} is not active in finalized state")]
    NotActive { device: String },
    #[error("group {group} has no topic key yet")]
    NoGroupKey { group: String },
    #[error(
        "the local key of {target} is not its current key in finalized state: presented {}, expected {} (block #{block}); nothing was sealed",
        hex::encode(presented),
        hex::encode(expected)
    )]
    KeyMismatch {
        target: String,
        presented: Fingerprint,
        expected: Fingerprint,
        block: u32,
    },
    #[error(transparent)]
    Cache(#[from] PeerCacheError),
}

/// A key the agent may seal to, with its epoch.
#[derive(Clone, Debug)]
pub struct SealingKey {
    pub key: RsaPublicKey,
    pub epoch: u32,
    /// The block whose state confirmed it.
    pub block: u32,
    /// Whether the local copy was replaced because the target rotated.
    pub refreshed: bool,
}

/// Finalized state's devices and groups, and the local copies.
pub struct Keyring {
    devices: HashMap<String, DeviceEntry>,
    groups: HashMap<String, GroupEntry>,
    cache: PeerCache,
}

impl Keyring {
    pub fn new(cache: PeerCache) -> Self {
        Keyring {
            devices: HashMap::new(),
            groups: HashMap::new(),
            cache,
        }
    }

    /// Takes an accepted device entry.
    pub fn learn_device(&mut self, id: &str, entry: DeviceEntry) {
        self.devices.insert(id.to_string(), entry);
    }

    /// Takes an accepted group entry.
    pub fn learn_group(&mut self, id: &str, entry: GroupEntry) {
        self.groups.insert(id.to_string(), entry);
    }

    /// Finalized state's entry of `device`, if the agent has one.
    pub fn device(&self, device: &str) -> Option<&DeviceEntry> {
        self.devices.get(device)
    }

    /// Finalized state's entry of `group`, if the agent has one.
    pub fn group(&self, group: &str) -> Option<&GroupEntry> {
        self.groups.get(group)
    }

    /// The key to seal a direct message to `device` with, after checking the local copy
    /// against finalized state.
    pub fn recipient(&self, device: &str) -> Result<SealingKey, CheckError> {
        let current = self
            .devices
            .get(device)
            .ok_or_else(|| CheckError::Unknown {
                target: device.to_string(),
            })?;
        if !current.active {
            return Err(CheckError::NotActive {
                device: device.to_string(),
            });
        }
        let adopt = |refreshed: bool| -> Result<SealingKey, CheckError> {
            self.cache.store(
                device,
                &CachedKey {
                    public_key: current.public_key.clone(),
                    epoch: current.epoch,
                    block: current.block,
                },
            )?;
            Ok(SealingKey {
                key: current.public_key.clone(),
                epoch: current.epoch,
                block: current.block,
                refreshed,
            })
        };
        let Some(copy) = self.cache.load(device)? else {
            return adopt(false);
        };
        if copy.epoch < current.epoch {
            return adopt(true);
        }
        let presented = fingerprint(&copy.public_key);
        if presented != current.fingerprint {
            return Err(CheckError::KeyMismatch {
                target: device.to_string(),
                presented,
                expected: current.fingerprint,
                block: current.block,
            });
        }
        Ok(SealingKey {
            key: copy.public_key,
            epoch: current.epoch,
            block: current.block,
            refreshed: false,
        })
    }

    /// The topic key to seal a message to `group` with: its current epoch's.
    pub fn topic(&self, group: &str) -> Result<SealingKey, CheckError> {
        let current = self.groups.get(group).ok_or_else(|| CheckError::Unknown {
            target: format!("group {group}"),
        })?;
        let (key, _) = current
            .topic_key
            .as_ref()
            .ok_or_else(|| CheckError::NoGroupKey {
                group: group.to_string(),
            })?;
        Ok(SealingKey {
            key: key.clone(),
            epoch: current.epoch,
            block: current.block,
            refreshed: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::read_private;

    fn public(id: &str) -> RsaPublicKey {
        read_private(std::path::Path::new(&format!(
            "{}/testdata/{id}.key.pem",
            env!("CARGO_MANIFEST_DIR")
        )))
        .unwrap()
        .to_public_key()
    }

    fn entry(key: &RsaPublicKey, epoch: u32, block: u32) -> DeviceEntry {
        DeviceEntry {
            public_key: key.clone(),
            fingerprint: fingerprint(key),
            epoch,
            active: true,
            block,
        }
    }

    #[test]
    fn a_tampered_copy_is_refused_and_a_stale_one_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PeerCache::open(dir.path()).unwrap();
        let mut keyring = Keyring::new(PeerCache::open(dir.path()).unwrap());
        assert!(matches!(
            keyring.recipient("1113"),
            Err(CheckError::Unknown { .. })
        ));
        keyring.learn_device("1113", entry(&public("1113"), 0, 5));
        // First contact: the finalized key becomes the copy.
        let first = keyring.recipient("1113").unwrap();
        assert_eq!(fingerprint(&first.key), fingerprint(&public("1113")));
        assert!(!first.refreshed);
        assert_eq!(cache.load("1113").unwrap().unwrap().epoch, 0);

        // The seeds' "None": the copy of 1113 holds 1114's key.
        let tampered = CachedKey {
            public_key: public("1114"),
            epoch: 0,
            block: 5,
        };
        cache.store("1113", &tampered).unwrap();
        match keyring.recipient("1113") {
            Err(CheckError::KeyMismatch {
                presented,
                expected,
                ..
            }) => {
                assert_eq!(presented, fingerprint(&public("1114")));
                assert_eq!(expected, fingerprint(&public("1113")));
            }
            other => panic!("sealed to a tampered copy: {other:?}"),
        }
        // Claiming a later epoch does not help it either.
        cache
            .store(
                "1113",
                &CachedKey {
                    epoch: 9,
                    ..tampered
                },
            )
            .unwrap();
        assert!(matches!(
            keyring.recipient("1113"),
            Err(CheckError::KeyMismatch { .. })
        ));

        // 1113 rotated (to 1112's key, for the test): the copy is behind and is replaced.
        cache
            .store(
                "1113",
                &CachedKey {
                    public_key: public("1113"),
                    epoch: 0,
                    block: 5,
                },
            )
            .unwrap();
        keyring.learn_device("1113", entry(&public("1112"), 1, 9));
        let rotated = keyring.recipient("1113").unwrap();
        assert!(rotated.refreshed);
        assert_eq!(rotated.epoch, 1);
        assert_eq!(fingerprint(&rotated.key), fingerprint(&public("1112")));
        assert_eq!(cache.load("1113").unwrap().unwrap().block, 9);

        // A revoked device gets nothing; a garbled copy is an error, not a panic.
        keyring.learn_device(
            "1113",
            DeviceEntry {
                active: false,
                ..entry(&public("1112"), 1, 10)
            },
        );
        assert!(matches!(
            keyring.recipient("1113"),
            Err(CheckError::NotActive { .. })
        ));
        keyring.learn_device("1113", entry(&public("1112"), 1, 11));
        std::fs::write(cache.path("1113"), b"{").unwrap();
        assert!(matches!(
            keyring.recipient("1113"),
            Err(CheckError::Cache(PeerCacheError::Corrupt { .. }))
        ));
    }
}
