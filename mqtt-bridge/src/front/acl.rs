//! Who may publish and subscribe to what (DESIGN §4a), decided from one snapshot of
//! finalized state. Pure: no I/O, so every rule is a unit test.
//!
//! | device `d` may | topics |
//! |---|---|
//! | publish | `km/v1/in/d`, never retained |
//! | subscribe | `km/v1/dev/d/#`; `km/v1/grp/g/msgs` where `d` is a Subscriber or Both member of `g`; `km/v1/dir/#` |
//!
//! A subscription filter is allowed only when every topic it can match is readable, so
//! `#`, `km/v1/in/#` or `km/v1/dev/+/inbox` are refused outright. Each delivery is checked
//! again against the snapshot current when it leaves the broker, which is how a removed member
//! stops receiving a group within one finalized block even though its subscription stands.

use keymesh_primitives::{DeviceStatus, Role};

use crate::gate::Snapshot;

/// Why a publish was denied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublishDenied {
    /// Not the device's own ingress topic.
    Topic(String),
    /// Only the bridge sets retained messages.
    Retained,
}

/// May device `device` publish on `topic`?
pub fn may_publish(device: &str, topic: &str, retain: bool) -> Result<(), PublishDenied> {
    if topic.strip_prefix("km/v1/in/") != Some(device) {
        return Err(PublishDenied::Topic(topic.to_string()));
    }
    if retain {
        return Err(PublishDenied::Retained);
    }
    Ok(())
}

/// Does `device` read `group` as a member of finalized state?
fn reads_group(device: &str, group: &str, snapshot: &Snapshot) -> bool {
    let active = snapshot
        .devices
        .get(device)
        .is_some_and(|d| d.status == DeviceStatus::Active);
    active
        && snapshot
            .groups
            .get(group)
            .and_then(|g| g.members.get(device))
            .is_some_and(|role| matches!(role, Role::Subscriber | Role::Both))
}

/// May `device` be handed a message published on `topic` (no wildcards)?
pub fn may_read(device: &str, topic: &str, snapshot: &Snapshot) -> bool {
    let levels: Vec<&str> = topic.split('/').collect();
    match levels.as_slice() {
        ["km", "v1", "dev", owner, _, ..] => *owner == device,
        ["km", "v1", "dir", _, ..] => true,
        ["km", "v1", "grp", group, "msgs"] => reads_group(device, group, snapshot),
        _ => false,
    }
}

/// May `device` subscribe to `filter`? Only if every topic the filter matches is readable.
pub fn may_subscribe(device: &str, filter: &str, snapshot: &Snapshot) -> bool {
    if !rumqttc::valid_filter(filter) {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let literal = |level: &str| level != "+" && level != "#";
    match levels.as_slice() {
        // Below its own device level anything goes; the device level itself must be literal.
        ["km", "v1", "dev", owner, _, ..] => *owner == device,
        ["km", "v1", "dir", _, ..] => true,
        ["km", "v1", "grp", group, "msgs"] => {
            literal(group) && reads_group(device, group, snapshot)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::gate::{DeviceKey, GroupKey};

    fn snapshot() -> Snapshot {
        let key = keymesh_device::keys::read_private(
            &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../device/testdata/1111.key.pem"),
        )
        .unwrap()
        .to_public_key();
        let mut devices = HashMap::new();
        for id in ["1111", "1112", "1113"] {
            devices.insert(id.to_string(), DeviceKey::active(key.clone()));
        }
        devices.get_mut("1113").unwrap().status = DeviceStatus::Revoked;
        let mut group = GroupKey::default();
        group.members.insert("1111".into(), Role::Subscriber);
        group.members.insert("1112".into(), Role::Publisher);
        group.members.insert("1113".into(), Role::Both);
        Snapshot {
            devices,
            groups: HashMap::from([("B".to_string(), group)]),
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_device_publishes_only_unretained_on_its_own_ingress() {
        assert_eq!(may_publish("1111", "km/v1/in/1111", false), Ok(()));
        assert_eq!(
            may_publish("1111", "km/v1/in/1111", true),
            Err(PublishDenied::Retained)
        );
        for topic in [
            "km/v1/in/1112",
            "km/v1/in/1111/x",
            "km/v1/dev/1112/inbox",
            "km/v1/dev/1111/inbox",
            "km/v1/dev/1111/status",
            "km/v1/grp/B/msgs",
            "km/v1/dir/1113",
            "$SYS/x",
            "",
        ] {
            assert!(may_publish("1111", topic, false).is_err(), "{topic}");
        }
    }

    #[test]
    fn subscriptions_cover_only_what_the_device_may_read() {
        let s = snapshot();
        for ok in [
            "km/v1/dev/1111/#",
            "km/v1/dev/1111/inbox",
            "km/v1/dev/1111/status",
            "km/v1/dev/1111/+",
            "km/v1/dir/#",
            "km/v1/dir/1113",
            "km/v1/dir/grp/+",
            "km/v1/grp/B/msgs",
        ] {
            assert!(may_subscribe("1111", ok, &s), "{ok}");
        }
        for denied in [
            "#",
            "+/#",
            "km/#",
            "km/v1/#",
            "km/v1/in/#",
            "km/v1/in/+",
            "km/v1/in/1111",
            "km/v1/dev/+/inbox",
            "km/v1/dev/#",
            "km/v1/dev/1112/inbox",
            "km/v1/dev/1112/#",
            "km/v1/grp/+/msgs",
            "km/v1/grp/B/#",
            "km/v1/grp/B/+",
            "km/v1/grp/B",
            "km/+/dir/#",
            "$SYS/#",
            "km/v1/dev/1111/#/x",
            "",
        ] {
            assert!(!may_subscribe("1111", denied, &s), "{denied}");
        }
        // A publisher-only member does not read the group; a revoked member reads nothing.
        assert!(!may_subscribe("1112", "km/v1/grp/B/msgs", &s));
        assert!(!may_subscribe("1113", "km/v1/grp/B/msgs", &s));
        assert!(!may_subscribe("9999", "km/v1/grp/B/msgs", &s));
    }

    #[test]
    fn deliveries_follow_the_current_snapshot() {
        let mut s = snapshot();
        assert!(may_read("1111", "km/v1/grp/B/msgs", &s));
        assert!(may_read("1111", "km/v1/dev/1111/inbox", &s));
        assert!(may_read("1111", "km/v1/dir/grp/B", &s));
        assert!(!may_read("1111", "km/v1/dev/1112/inbox", &s));
        assert!(!may_read("1111", "km/v1/in/1112", &s));
        s.groups.get_mut("B").unwrap().members.remove("1111");
        assert!(!may_read("1111", "km/v1/grp/B/msgs", &s));
    }
}
