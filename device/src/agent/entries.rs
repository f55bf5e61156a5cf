//! The key directory's JSON entries as the bridge publishes them (`docs/bridge.md`), parsed
//! and checked into keys. An entry reaches this module only after its attestation verified.

use base64::Engine;
use rsa::RsaPublicKey;
use serde::Deserialize;

use crate::{
    keys::{fingerprint, parse_public},
    Fingerprint, SealedTopicKey,
};

/// Why an attested entry could still not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("directory entry on {topic} is not valid JSON of its kind: {reason}")]
    Json { topic: String, reason: String },
    #[error("directory entry on {topic} names {named:?}, not the topic's {expected:?}")]
    WrongSubject {
        topic: String,
        named: String,
        expected: String,
    },
    #[error("directory entry on {topic}: {field} is not valid: {reason}")]
    Field {
        topic: String,
        field: &'static str,
        reason: String,
    },
}

/// Which kind of entry a directory topic carries.
#[derive(Debug, PartialEq, Eq)]
pub enum EntryTopic<'a> {
    Device(&'a str),
    Group(&'a str),
    Member { group: &'a str, device: &'a str },
}

impl<'a> EntryTopic<'a> {
    /// `km/v1/dir/<device>`, `km/v1/dir/grp/<group>`, `km/v1/dir/grp/<group>/member/<device>`.
    pub fn parse(topic: &'a str) -> Option<Self> {
        let rest = topic.strip_prefix("km/v1/dir/")?;
        let levels: Vec<&str> = rest.split('/').collect();
        match levels.as_slice() {
            ["grp", group] => Some(EntryTopic::Group(group)),
            ["grp", group, "member", device] => Some(EntryTopic::Member { group, device }),
            [device] if *device != "grp" => Some(EntryTopic::Device(device)),
            _ => None,
        }
    }
}

/// A device's key as of the entry's block.
#[derive(Clone, Debug)]
pub struct DeviceEntry {
    pub public_key: RsaPublicKey,
    pub fingerprint: Fingerprint,
    pub epoch: u32,
    pub active: bool,
    pub block: u32,
}

/// A group's current topic key and members as of the entry's block.
#[derive(Clone, Debug)]
pub struct GroupEntry {
    pub epoch: u32,
    pub topic_key: Option<(RsaPublicKey, Fingerprint)>,
    pub members: Vec<String>,
    pub open_to_publishers: bool,
    pub block: u32,
}

/// What one member needs to read a group, or that it is no longer a member.
#[derive(Clone, Debug)]
pub struct MemberEntry {
    pub member: bool,
    /// Whether the role lets it read the group's messages.
    pub reads: bool,
    pub epoch: u32,
    pub sealed: Option<SealedTopicKey>,
    pub wrapped_epoch_key: Option<Vec<u8>>,
    pub block: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceJson {
    device: String,
    public_key: String,
    fingerprint: String,
    status: String,
    #[serde(default)]
    epoch: u32,
    block: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupJson {
    group: String,
    epoch: u32,
    topic_public_key: Option<String>,
    fingerprint: Option<String>,
    open_to_publishers: bool,
    members: Vec<(String, String)>,
    block: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MemberJson {
    group: String,
    device: String,
    member: bool,
    role: Option<String>,
    epoch: u32,
    sealed_private_key: Option<String>,
    wrapped_epoch_key: Option<String>,
    block: u32,
}

fn json<T: for<'de> Deserialize<'de>>(topic: &str, bytes: &[u8]) -> Result<T, EntryError> {
    serde_json::from_slice(bytes).map_err(|e| EntryError::Json {
        topic: topic.into(),
        reason: e.to_string(),
    })
}

fn same(topic: &str, named: &str, expected: &str) -> Result<(), EntryError> {
    if named == expected {
        return Ok(());
    }
    Err(EntryError::WrongSubject {
        topic: topic.into(),
        named: named.into(),
        expected: expected.into(),
    })
}

fn field<T>(topic: &str, name: &'static str, r: Result<T, String>) -> Result<T, EntryError> {
    r.map_err(|reason| EntryError::Field {
        topic: topic.into(),
        field: name,
        reason,
    })
}

fn base64(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| e.to_string())
}

/// A public key whose stated fingerprint must be its own.
fn key_with_fingerprint(
    topic: &str,
    key_b64: &str,
    stated: &str,
) -> Result<(RsaPublicKey, Fingerprint), EntryError> {
    let der = field(topic, "publicKey", base64(key_b64))?;
    let key = field(
        topic,
        "publicKey",
        parse_public(&der).map_err(|e| e.to_string()),
    )?;
    let actual = fingerprint(&key);
    if hex::encode(actual) != stated {
        return Err(EntryError::Field {
            topic: topic.into(),
            field: "fingerprint",
            reason: format!("{stated} is not the key's, {}", hex::encode(actual)),
        });
    }
    Ok((key, actual))
}

/// Parses the entry of device `device`.
pub fn device(topic: &str, device: &str, bytes: &[u8]) -> Result<DeviceEntry, EntryError> {
    let entry: DeviceJson = json(topic, bytes)?;
    same(topic, &entry.device, device)?;
    let (public_key, fingerprint) =
        key_with_fingerprint(topic, &entry.public_key, &entry.fingerprint)?;
    Ok(DeviceEntry {
        public_key,
        fingerprint,
        epoch: entry.epoch,
        active: entry.status == "active",
        block: entry.block,
    })
}

/// Parses the entry of group `group`.
pub fn group(topic: &str, group: &str, bytes: &[u8]) -> Result<GroupEntry, EntryError> {
    let entry: GroupJson = json(topic, bytes)?;
    same(topic, &entry.group, group)?;
    let topic_key = match (&entry.topic_public_key, &entry.fingerprint) {
        (Some(key), Some(stated)) => Some(key_with_fingerprint(topic, key, stated)?),
        _ => None,
    };
    Ok(GroupEntry {
        epoch: entry.epoch,
        topic_key,
        members: entry.members.into_iter().map(|(d, _)| d).collect(),
        open_to_publishers: entry.open_to_publishers,
        block: entry.block,
    })
}

/// Parses the member entry of (`group`, `device`).
pub fn member(
    topic: &str,
    (group, device): (&str, &str),
    bytes: &[u8],
) -> Result<MemberEntry, EntryError> {
    let entry: MemberJson = json(topic, bytes)?;
    same(topic, &entry.group, group)?;
    same(topic, &entry.device, device)?;
    let sealed = match &entry.sealed_private_key {
        Some(text) => {
            let bytes = field(topic, "sealedPrivateKey", base64(text))?;
            Some(field(
                topic,
                "sealedPrivateKey",
                SealedTopicKey::from_bytes(&bytes).map_err(|e| e.to_string()),
            )?)
        }
        None => None,
    };
    let wrapped_epoch_key = match &entry.wrapped_epoch_key {
        Some(text) => Some(field(topic, "wrappedEpochKey", base64(text))?),
        None => None,
    };
    Ok(MemberEntry {
        member: entry.member,
        reads: matches!(entry.role.as_deref(), Some("subscriber" | "both")),
        epoch: entry.epoch,
        sealed,
        wrapped_epoch_key,
        block: entry.block,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_name_their_kind_and_nothing_else_parses() {
        assert_eq!(
            EntryTopic::parse("km/v1/dir/1113"),
            Some(EntryTopic::Device("1113"))
        );
        assert_eq!(
            EntryTopic::parse("km/v1/dir/grp/B"),
            Some(EntryTopic::Group("B"))
        );
        assert_eq!(
            EntryTopic::parse("km/v1/dir/grp/B/member/1112"),
            Some(EntryTopic::Member {
                group: "B",
                device: "1112"
            })
        );
        for other in ["km/v1/dir/grp", "km/v1/dev/1113/inbox", "km/v1/dir/a/b", ""] {
            assert_eq!(EntryTopic::parse(other), None, "{other}");
        }
    }

    #[test]
    fn an_entry_for_another_device_or_with_a_false_fingerprint_is_refused() {
        let key = crate::keys::read_private(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/1113.key.pem"
        )))
        .unwrap()
        .to_public_key();
        let der = base64::engine::general_purpose::STANDARD.encode(crate::keys::public_der(&key));
        let fp = hex::encode(fingerprint(&key));
        let entry = |device: &str, fp: &str| {
            format!(
                r#"{{"device":"{device}","publicKey":"{der}","fingerprint":"{fp}","status":"active","epoch":2,"block":7}}"#
            )
        };
        let topic = "km/v1/dir/1113";
        let ok = device(topic, "1113", entry("1113", &fp).as_bytes()).unwrap();
        assert_eq!((ok.epoch, ok.block, ok.active), (2, 7, true));
        assert!(matches!(
            device(topic, "1113", entry("1114", &fp).as_bytes()),
            Err(EntryError::WrongSubject { .. })
        ));
        assert!(matches!(
            device(topic, "1113", entry("1113", &"00".repeat(32)).as_bytes()),
            Err(EntryError::Field {
                field: "fingerprint",
                ..
            })
        ));
        assert!(matches!(
            device(topic, "1113", b"not json"),
            Err(EntryError::Json { .. })
        ));
    }
}
