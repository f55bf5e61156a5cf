//! The groups a device reads: each one's current epoch key, opened from the member entry
//! the directory holds for this device, and the previous epoch's key for a bounded grace
//! time, for messages sealed just before a rekey.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use rsa::RsaPrivateKey;

use super::entries::MemberEntry;
use crate::{open_topic_key, TopicKeyError};

/// How long the previous epoch's key still opens messages after a rekey.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// What a member entry changed.
#[derive(Debug, PartialEq, Eq)]
pub enum MemberChange {
    /// This device reads the group at `epoch` now; `joined` on the first epoch it reads.
    Reading { epoch: u32, joined: bool },
    /// A member, with no wrap of the current epoch yet (it joined after the epoch was set,
    /// or its role does not read): it reads from the next epoch on.
    AwaitingKey { epoch: u32 },
    /// The chain removed this device from the group at `block`.
    Removed { block: u32 },
    /// Nothing new.
    Unchanged,
}

struct EpochKey {
    epoch: u32,
    key: RsaPrivateKey,
}

#[derive(Default)]
struct Membership {
    current: Option<EpochKey>,
    previous: Option<(EpochKey, Instant)>,
    removed: bool,
}

/// This device's groups.
pub struct Memberships {
    groups: HashMap<String, Membership>,
    grace: Duration,
}

impl Memberships {
    pub fn new(grace: Duration) -> Self {
        Memberships {
            groups: HashMap::new(),
            grace,
        }
    }

    /// Applies the member entry of `group`, opening its epoch key with whichever of
    /// `device_keys` the wrap was made for.
    pub fn apply(
        &mut self,
        group: &str,
        entry: &MemberEntry,
        device_keys: &[RsaPrivateKey],
        now: Instant,
    ) -> Result<MemberChange, TopicKeyError> {
        let grace = self.grace;
        let membership = self.groups.entry(group.to_string()).or_default();
        if !entry.member {
            if membership.removed {
                return Ok(MemberChange::Unchanged);
            }
            // The current key is kept for the grace time only: messages of the epoch it was
            // removed in may still be in flight, nothing after it opens.
            if let Some(current) = membership.current.take() {
                membership.previous = Some((current, now + grace));
            }
            membership.removed = true;
            return Ok(MemberChange::Removed { block: entry.block });
        }
        membership.removed = false;
        if membership.current.as_ref().map(|c| c.epoch) == Some(entry.epoch) {
            return Ok(MemberChange::Unchanged);
        }
        let (Some(wrap), Some(sealed), true) =
            (&entry.wrapped_epoch_key, &entry.sealed, entry.reads)
        else {
            return Ok(MemberChange::AwaitingKey { epoch: entry.epoch });
        };
        let mut last = TopicKeyError::NotMember;
        for device_key in device_keys {
            match open_topic_key(group, entry.epoch, device_key, wrap, sealed) {
                Ok(key) => {
                    let joined = membership.current.is_none();
                    let next = EpochKey {
                        epoch: entry.epoch,
                        key,
                    };
                    if let Some(old) = membership.current.replace(next) {
                        membership.previous = Some((old, now + grace));
                    }
                    return Ok(MemberChange::Reading {
                        epoch: entry.epoch,
                        joined,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The key that opens `group`'s messages of `epoch`, if this device holds it.
    pub fn key_for(&self, group: &str, epoch: u32, now: Instant) -> Option<&RsaPrivateKey> {
        let membership = self.groups.get(group)?;
        if let Some(current) = membership.current.as_ref().filter(|c| c.epoch == epoch) {
            return Some(&current.key);
        }
        membership
            .previous
            .as_ref()
            .filter(|(old, until)| old.epoch == epoch && now < *until)
            .map(|(old, _)| &old.key)
    }

    /// Whether the chain removed this device from `group`.
    pub fn removed(&self, group: &str) -> bool {
        self.groups.get(group).is_some_and(|m| m.removed)
    }

    /// The groups this device reads now.
    pub fn reading(&self) -> impl Iterator<Item = &str> {
        self.groups
            .iter()
            .filter(|(_, m)| m.current.is_some())
            .map(|(g, _)| g.as_str())
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::OsRng;

    use super::*;
    use crate::{keys::read_private, seal_topic_key};

    fn key(name: &str) -> RsaPrivateKey {
        read_private(std::path::Path::new(&format!(
            "{}/testdata/{name}.key.pem",
            env!("CARGO_MANIFEST_DIR")
        )))
        .unwrap()
    }

    fn entry(epoch: u32, block: u32, member: &RsaPrivateKey, topic: &RsaPrivateKey) -> MemberEntry {
        let material =
            seal_topic_key(&mut OsRng, "B", epoch, topic, &[member.to_public_key()]).unwrap();
        MemberEntry {
            member: true,
            reads: true,
            epoch,
            sealed: Some(material.sealed),
            wrapped_epoch_key: material.wraps.into_iter().next(),
            block,
        }
    }

    #[test]
    fn a_member_follows_epochs_keeps_the_last_for_its_grace_and_hears_of_its_removal() {
        let me = key("1113");
        let (topic1, topic2) = (key("topic-B"), key("1111"));
        let mut groups = Memberships::new(Duration::from_secs(30));
        let t0 = Instant::now();
        let keys = [key("1112"), me.clone()];
        assert_eq!(
            groups
                .apply("B", &entry(1, 4, &me, &topic1), &keys, t0)
                .unwrap(),
            MemberChange::Reading {
                epoch: 1,
                joined: true
            }
        );
        assert_eq!(
            groups
                .apply("B", &entry(1, 5, &me, &topic1), &keys, t0)
                .unwrap(),
            MemberChange::Unchanged
        );
        assert_eq!(
            groups
                .apply("B", &entry(2, 9, &me, &topic2), &keys, t0)
                .unwrap(),
            MemberChange::Reading {
                epoch: 2,
                joined: false
            }
        );
        assert_eq!(groups.key_for("B", 2, t0), Some(&topic2));
        assert_eq!(groups.key_for("B", 1, t0), Some(&topic1));
        assert_eq!(groups.key_for("B", 1, t0 + Duration::from_secs(31)), None);

        let removed = MemberEntry {
            member: false,
            reads: false,
            epoch: 2,
            sealed: None,
            wrapped_epoch_key: None,
            block: 12,
        };
        assert_eq!(
            groups.apply("B", &removed, &keys, t0).unwrap(),
            MemberChange::Removed { block: 12 }
        );
        assert!(groups.removed("B"));
        assert_eq!(
            groups.apply("B", &removed, &keys, t0).unwrap(),
            MemberChange::Unchanged
        );
        assert_eq!(groups.key_for("B", 3, t0), None);
        assert_eq!(groups.reading().count(), 0);
    }

    #[test]
    fn a_wrap_for_someone_else_opens_nothing() {
        let mut groups = Memberships::new(DEFAULT_GRACE);
        let other = entry(1, 4, &key("1114"), &key("topic-B"));
        assert_eq!(
            groups.apply("B", &other, &[key("1113")], Instant::now()),
            Err(TopicKeyError::NotMember)
        );
        let no_wrap = MemberEntry {
            wrapped_epoch_key: None,
            ..other
        };
        assert_eq!(
            groups
                .apply("B", &no_wrap, &[key("1113")], Instant::now())
                .unwrap(),
            MemberChange::AwaitingKey { epoch: 1 }
        );
    }
}
