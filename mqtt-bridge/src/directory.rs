//! The key directory over MQTT: retained, attested entries `km/v1/dir/<device>` and
//! `km/v1/dir/grp/<group>`, so a constrained device needs no JSON-RPC. Each entry is a
//! [`Delivery`] whose payload is the entry's JSON, attested like a forwarded envelope: the
//! bridge signs it with the finalized block it was read at.

use base64::Engine;
use keymesh_device::{keys::public_der, Attestation, Delivery};
use keymesh_primitives::{DeviceStatus, Role};
use serde::Serialize;
use subxt_signer::sr25519::Keypair;

use crate::gate::{DeviceKey, GroupKey, Snapshot};

/// Topic of a device's directory entry.
pub fn device_topic(device: &str) -> String {
    format!("km/v1/dir/{device}")
}

/// Topic of a group's directory entry.
pub fn group_topic(group: &str) -> String {
    format!("km/v1/dir/grp/{group}")
}

/// Topic of what one member needs to read a group: `km/v1/dir/grp/<group>/member/<device>`.
pub fn member_topic(group: &str, device: &str) -> String {
    format!("km/v1/dir/grp/{group}/member/{device}")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeviceEntry<'a> {
    device: &'a str,
    public_key: String,
    fingerprint: String,
    status: &'static str,
    epoch: u32,
    block: u32,
}

/// One member's view of a group: the current epoch's sealed topic key and its own wrap of
/// the epoch key, or, once it was removed, `member: false`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MemberEntry<'a> {
    group: &'a str,
    device: &'a str,
    member: bool,
    role: Option<&'static str>,
    epoch: u32,
    topic_public_key: Option<String>,
    fingerprint: Option<String>,
    sealed_private_key: Option<String>,
    wrapped_epoch_key: Option<String>,
    block: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupEntry<'a> {
    group: &'a str,
    epoch: u32,
    topic_public_key: Option<String>,
    fingerprint: Option<String>,
    open_to_publishers: bool,
    members: Vec<(String, &'static str)>,
    block: u32,
}

fn status(s: DeviceStatus) -> &'static str {
    match s {
        DeviceStatus::Active => "active",
        DeviceStatus::Suspended => "suspended",
        DeviceStatus::Revoked => "revoked",
    }
}

fn role(r: Role) -> &'static str {
    match r {
        Role::Publisher => "publisher",
        Role::Subscriber => "subscriber",
        Role::Both => "both",
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn attest(signer: &Keypair, snapshot: &Snapshot, json: Vec<u8>) -> Vec<u8> {
    Delivery {
        attestation: Attestation::sign(signer, &json, snapshot.block_number, snapshot.block_hash),
        envelope: json,
    }
    .to_bytes()
}

fn device_changed(old: Option<&DeviceKey>, new: &DeviceKey) -> bool {
    old.is_none_or(|o| o.fingerprint != new.fingerprint || o.status != new.status)
}

fn group_changed(old: Option<&GroupKey>, new: &GroupKey) -> bool {
    old.is_none_or(|o| {
        o.epoch != new.epoch
            || o.topic_key.as_ref().map(|k| k.1) != new.topic_key.as_ref().map(|k| k.1)
            || o.members != new.members
            || o.open_to_publishers != new.open_to_publishers
            || o.member_keys != new.member_keys
    })
}

/// The member entries of a changed group: one per member, and a `member: false` one for
/// each device that `old` had and `new` does not.
fn member_entries(
    id: &str,
    old: Option<&GroupKey>,
    new: &GroupKey,
    snapshot: &Snapshot,
    signer: &Keypair,
    out: &mut Vec<(String, Vec<u8>)>,
) {
    let keys = new.member_keys.as_deref();
    let topic_key = new.topic_key.as_ref();
    let mut entry = |device: &str, role: Option<Role>| {
        let member = role.is_some();
        let entry = MemberEntry {
            group: id,
            device,
            member,
            role: role.map(self::role),
            epoch: new.epoch,
            topic_public_key: topic_key
                .filter(|_| member)
                .map(|(k, _)| b64(&public_der(k))),
            fingerprint: topic_key.filter(|_| member).map(|(_, f)| hex::encode(f)),
            sealed_private_key: keys.filter(|_| member).map(|k| b64(&k.sealed_private_key)),
            wrapped_epoch_key: keys
                .filter(|_| member)
                .and_then(|k| k.wraps.get(device))
                .map(|w| b64(w)),
            block: snapshot.block_number,
        };
        if let Ok(json) = serde_json::to_vec(&entry) {
            out.push((member_topic(id, device), attest(signer, snapshot, json)));
        }
    };
    for (device, role) in &new.members {
        entry(device, Some(*role));
    }
    for device in old.iter().flat_map(|o| o.members.keys()) {
        if !new.members.contains_key(device) {
            entry(device, None);
        }
    }
}

/// The (topic, attested payload) of every entry that differs between `old` and `new`
/// (all of them when `old` is `None`).
pub fn changed_entries(
    old: Option<&Snapshot>,
    new: &Snapshot,
    signer: &Keypair,
) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (id, device) in &new.devices {
        if !device_changed(old.and_then(|o| o.devices.get(id)), device) {
            continue;
        }
        let entry = DeviceEntry {
            device: id,
            public_key: b64(&public_der(&device.public_key)),
            fingerprint: hex::encode(device.fingerprint),
            status: status(device.status),
            epoch: device.epoch,
            block: new.block_number,
        };
        if let Ok(json) = serde_json::to_vec(&entry) {
            out.push((device_topic(id), attest(signer, new, json)));
        }
    }
    for (id, group) in &new.groups {
        let before = old.and_then(|o| o.groups.get(id));
        if !group_changed(before, group) {
            continue;
        }
        member_entries(id, before, group, new, signer, &mut out);
        let mut members: Vec<_> = group
            .members
            .iter()
            .map(|(d, r)| (d.clone(), role(*r)))
            .collect();
        members.sort();
        let entry = GroupEntry {
            group: id,
            epoch: group.epoch,
            topic_public_key: group.topic_key.as_ref().map(|(k, _)| b64(&public_der(k))),
            fingerprint: group.topic_key.as_ref().map(|(_, f)| hex::encode(f)),
            open_to_publishers: group.open_to_publishers,
            members,
            block: new.block_number,
        };
        if let Ok(json) = serde_json::to_vec(&entry) {
            out.push((group_topic(id), attest(signer, new, json)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::MemberKeys;
    use keymesh_device::keys::read_private;

    #[test]
    fn only_changed_entries_are_republished_and_they_verify() {
        let key = read_private(
            &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../device/testdata/1113.key.pem"),
        )
        .unwrap()
        .to_public_key();
        let mut snapshot = Snapshot {
            block_number: 4,
            ..Default::default()
        };
        snapshot
            .devices
            .insert("1113".into(), DeviceKey::active(key));
        snapshot.groups.insert("B".into(), GroupKey::default());
        let bridge = subxt_signer::sr25519::dev::ferdie();
        let all = changed_entries(None, &snapshot, &bridge);
        assert_eq!(all.len(), 2);
        let (topic, payload) = all.iter().find(|(t, _)| t == "km/v1/dir/1113").unwrap();
        assert_eq!(topic, "km/v1/dir/1113");
        let delivery = Delivery::verify(payload, &[bridge.public_key().0]).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&delivery.envelope).unwrap();
        assert_eq!(json["status"], "active");
        assert_eq!(delivery.attestation.block_number, 4);
        assert!(changed_entries(Some(&snapshot), &snapshot, &bridge).is_empty());
        let mut revoked = snapshot.clone();
        revoked.devices.get_mut("1113").unwrap().status = DeviceStatus::Revoked;
        let changed = changed_entries(Some(&snapshot), &revoked, &bridge);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].0, "km/v1/dir/1113");
    }

    #[test]
    fn members_get_their_wrap_and_a_removed_member_is_told() {
        let bridge = subxt_signer::sr25519::dev::ferdie();
        let mut snapshot = Snapshot {
            block_number: 8,
            ..Default::default()
        };
        let keys = MemberKeys {
            sealed_private_key: vec![1, 2, 3],
            wraps: [("1113".to_string(), vec![9; 4])].into(),
        };
        snapshot.groups.insert(
            "B".into(),
            GroupKey {
                epoch: 2,
                members: [("1113".into(), Role::Both), ("1114".into(), Role::Both)].into(),
                member_keys: Some(std::sync::Arc::new(keys)),
                ..Default::default()
            },
        );
        let entry = |entries: &[(String, Vec<u8>)], device: &str| -> serde_json::Value {
            let (_, payload) = entries
                .iter()
                .find(|(t, _)| *t == member_topic("B", device))
                .unwrap();
            let delivery = Delivery::verify(payload, &[bridge.public_key().0]).unwrap();
            serde_json::from_slice(&delivery.envelope).unwrap()
        };
        let all = changed_entries(None, &snapshot, &bridge);
        let member = entry(&all, "1113");
        assert_eq!(member["member"], true);
        assert_eq!(member["epoch"], 2);
        assert_eq!(member["wrappedEpochKey"], b64(&[9; 4]));
        assert_eq!(member["sealedPrivateKey"], b64(&[1, 2, 3]));
        // 1114 joined after the epoch was set: a member, with no wrap yet.
        assert_eq!(
            entry(&all, "1114")["wrappedEpochKey"],
            serde_json::Value::Null
        );

        let mut removed = snapshot.clone();
        removed.block_number = 9;
        removed.groups.get_mut("B").unwrap().members.remove("1114");
        let changed = changed_entries(Some(&snapshot), &removed, &bridge);
        let gone = entry(&changed, "1114");
        assert_eq!(gone["member"], false);
        assert_eq!(gone["block"], 9);
        assert_eq!(gone["wrappedEpochKey"], serde_json::Value::Null);
        assert_eq!(gone["sealedPrivateKey"], serde_json::Value::Null);
    }
}
