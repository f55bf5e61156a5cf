//! `keymesh_*` JSON-RPC: key queries answered from the latest finalized block by default.

use std::sync::Arc;

use base64::Engine;
use jsonrpsee::{
    core::RpcResult,
    proc_macros::rpc,
    types::{ErrorObject, ErrorObjectOwned},
};
use keymesh_primitives::{
    api::{DeviceInfo, KeyCheck, KeyDirectoryApi, KeyTarget, TopicKeyInfo},
    validate_id, DeviceStatus, Fingerprint, KeyHistoryEntry, Role,
};
use keymesh_runtime::{opaque::Block, AccountId, BlockNumber};
use serde::{Deserialize, Serialize};
use sp_api::ProvideRuntimeApi;
use sp_blockchain::HeaderBackend;
use sp_core::{crypto::Ss58Codec, H256};

/// JSON-RPC error codes of the `keymesh_*` methods.
pub mod codes {
    /// An argument is malformed (id, fingerprint, count).
    pub const INVALID_ARGUMENT: i32 = 4000;
    /// No device with this id.
    pub const UNKNOWN_DEVICE: i32 = 4004;
    /// No group with this id.
    pub const UNKNOWN_GROUP: i32 = 4005;
    /// The device is not a member of the group.
    pub const NOT_A_MEMBER: i32 = 4006;
    /// The runtime call failed (unknown block hash, API missing).
    pub const RUNTIME: i32 = 5000;
}

/// A device, as JSON.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceJson {
    pub id: String,
    /// SS58 address of the owner.
    pub owner: String,
    /// SubjectPublicKeyInfo DER, base64.
    pub public_key: String,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
    pub epoch: u32,
    /// `active`, `suspended` or `revoked`.
    pub status: &'static str,
    pub registered_at: BlockNumber,
}

/// One key a device has had, as JSON.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyHistoryJson {
    pub epoch: u32,
    pub fingerprint: String,
    pub from_block: BlockNumber,
}

/// A group's key for one epoch, as JSON.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TopicKeyJson {
    pub epoch: u32,
    /// SubjectPublicKeyInfo DER of the topic public key, base64: what publishers seal to.
    pub public_key: String,
    pub fingerprint: String,
    /// The topic private key sealed under the epoch key (SCALE `SealedTopicKey`), base64.
    pub sealed_private_key: String,
    pub from_block: BlockNumber,
}

/// A member and its role, as JSON.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MemberJson {
    pub device: String,
    /// `publisher`, `subscriber` or `both`.
    pub role: &'static str,
}

/// A group, as JSON.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GroupJson {
    pub id: String,
    /// SS58 address of the admin.
    pub admin: String,
    /// Current epoch; 0 until the first key is set.
    pub epoch: u32,
    pub topic_key: Option<TopicKeyJson>,
    pub open_to_publishers: bool,
    pub members: Vec<MemberJson>,
    /// The epoch a rekey is assembling, if one is under way.
    pub pending_epoch: Option<u32>,
    pub created_at: BlockNumber,
}

/// What one member needs to read a group's current epoch, as JSON.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MemberKeyJson {
    pub group: String,
    pub device: String,
    pub role: &'static str,
    pub topic_key: Option<TopicKeyJson>,
    /// The epoch key RSA-OAEP-wrapped to the device's key, base64; `null` if the device
    /// joined after the current epoch was set.
    pub wrapped_epoch_key: Option<String>,
}

/// The `target` of `keymesh_checkKey`: a device id as a string, or `{"device": id}` /
/// `{"group": id}`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum TargetParam {
    Device(String),
    Tagged(TaggedTarget),
}

/// A target named by kind.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum TaggedTarget {
    Device(String),
    Group(String),
}

/// The answer of `keymesh_checkKey`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CheckJson {
    /// `check`, `mismatch`, `unknown`, `revoked` or `suspended`.
    pub result: &'static str,
    /// The current fingerprint, for a mismatch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// The block the answer was read at.
    pub at: H256,
}

#[rpc(server, namespace = "keymesh")]
pub trait KeyMeshApi {
    /// The device `id`.
    #[method(name = "device")]
    fn device(&self, id: String, at: Option<H256>) -> RpcResult<DeviceJson>;

    /// Up to `count` (≤ 100) devices, after `start` if given.
    #[method(name = "devices")]
    fn devices(
        &self,
        start: Option<String>,
        count: u32,
        at: Option<H256>,
    ) -> RpcResult<Vec<DeviceJson>>;

    /// The group `id`, with its members and current key.
    #[method(name = "group")]
    fn group(&self, id: String, at: Option<H256>) -> RpcResult<GroupJson>;

    /// What `device` needs to read `group`'s current epoch.
    #[method(name = "memberKey")]
    fn member_key(
        &self,
        group: String,
        device: String,
        at: Option<H256>,
    ) -> RpcResult<MemberKeyJson>;

    /// Whether `fingerprint` (hex) is the current key of `target`: a device, or a group's
    /// topic key for its current epoch.
    #[method(name = "checkKey")]
    fn check_key(
        &self,
        target: TargetParam,
        fingerprint: String,
        at: Option<H256>,
    ) -> RpcResult<CheckJson>;

    /// The keys device `id` has had, oldest first.
    #[method(name = "keyHistory")]
    fn key_history(&self, id: String, at: Option<H256>) -> RpcResult<Vec<KeyHistoryJson>>;
}

/// Serves the `keymesh_*` methods from a client.
pub struct KeyMesh<C> {
    client: Arc<C>,
}

impl<C> KeyMesh<C> {
    pub fn new(client: Arc<C>) -> Self {
        Self { client }
    }
}

fn error(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObject::owned(code, message.into(), None::<()>)
}

fn checked_id(id: &str) -> RpcResult<Vec<u8>> {
    validate_id(id.as_bytes()).map_err(|e| {
        error(
            codes::INVALID_ARGUMENT,
            format!("invalid id {id:?}: {e:?}; ids are 1..64 bytes of [A-Za-z0-9._-]"),
        )
    })?;
    Ok(id.as_bytes().to_vec())
}

fn parse_fingerprint(hex_text: &str) -> RpcResult<Fingerprint> {
    let bad = || {
        error(
            codes::INVALID_ARGUMENT,
            format!("fingerprint {hex_text:?} is not 64 hex digits"),
        )
    };
    let text = hex_text.strip_prefix("0x").unwrap_or(hex_text);
    let bytes = hex::decode(text).map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
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

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn topic_key_json(k: TopicKeyInfo<BlockNumber>) -> TopicKeyJson {
    TopicKeyJson {
        epoch: k.epoch,
        public_key: base64(&k.public_key),
        fingerprint: hex::encode(k.fingerprint),
        sealed_private_key: base64(&k.sealed_private_key),
        from_block: k.from_block,
    }
}

fn text(id: &[u8]) -> String {
    String::from_utf8_lossy(id).into_owned()
}

fn device_json(id: &[u8], d: DeviceInfo<AccountId, BlockNumber>) -> DeviceJson {
    DeviceJson {
        id: text(id),
        owner: d.owner.to_ss58check(),
        public_key: base64(&d.public_key),
        fingerprint: hex::encode(d.fingerprint),
        epoch: d.epoch,
        status: status(d.status),
        registered_at: d.registered_at,
    }
}

impl<C> KeyMesh<C>
where
    C: ProvideRuntimeApi<Block> + HeaderBackend<Block> + Send + Sync + 'static,
    C::Api: KeyDirectoryApi<Block, AccountId, BlockNumber>,
{
    /// The block to read: the caller's, or the latest finalized one.
    fn at(&self, at: Option<H256>) -> H256 {
        at.unwrap_or_else(|| self.client.info().finalized_hash)
    }

    fn runtime_error(e: impl std::fmt::Display) -> ErrorObjectOwned {
        error(codes::RUNTIME, format!("runtime call failed: {e}"))
    }
}

impl<C> KeyMeshApiServer for KeyMesh<C>
where
    C: ProvideRuntimeApi<Block> + HeaderBackend<Block> + Send + Sync + 'static,
    C::Api: KeyDirectoryApi<Block, AccountId, BlockNumber>,
{
    fn device(&self, id: String, at: Option<H256>) -> RpcResult<DeviceJson> {
        let raw = checked_id(&id)?;
        let at = self.at(at);
        let device = self
            .client
            .runtime_api()
            .device(at, raw.clone())
            .map_err(Self::runtime_error)?;
        device
            .map(|d| device_json(&raw, d))
            .ok_or_else(|| error(codes::UNKNOWN_DEVICE, format!("unknown device {id:?}")))
    }

    fn devices(
        &self,
        start: Option<String>,
        count: u32,
        at: Option<H256>,
    ) -> RpcResult<Vec<DeviceJson>> {
        let max = keymesh_primitives::api::MAX_DEVICES_PER_PAGE;
        if count == 0 || count > max {
            return Err(error(
                codes::INVALID_ARGUMENT,
                format!("count must be 1..={max}"),
            ));
        }
        let start = start.as_deref().map(checked_id).transpose()?;
        let at = self.at(at);
        let page = self
            .client
            .runtime_api()
            .devices(at, start, count)
            .map_err(Self::runtime_error)?;
        Ok(page
            .into_iter()
            .map(|(id, d)| device_json(&id, d))
            .collect())
    }

    fn group(&self, id: String, at: Option<H256>) -> RpcResult<GroupJson> {
        let raw = checked_id(&id)?;
        let at = self.at(at);
        let group = self
            .client
            .runtime_api()
            .group(at, raw)
            .map_err(Self::runtime_error)?
            .ok_or_else(|| error(codes::UNKNOWN_GROUP, format!("unknown group {id:?}")))?;
        Ok(GroupJson {
            id,
            admin: group.admin.to_ss58check(),
            epoch: group.epoch,
            topic_key: group.topic_key.map(topic_key_json),
            open_to_publishers: group.open_to_publishers,
            members: group
                .members
                .into_iter()
                .map(|(device, r)| MemberJson {
                    device: text(&device),
                    role: role(r),
                })
                .collect(),
            pending_epoch: group.pending_epoch,
            created_at: group.created_at,
        })
    }

    fn member_key(
        &self,
        group: String,
        device: String,
        at: Option<H256>,
    ) -> RpcResult<MemberKeyJson> {
        let raw_group = checked_id(&group)?;
        let raw_device = checked_id(&device)?;
        let at = self.at(at);
        let api = self.client.runtime_api();
        let Some(member) = api
            .member_key(at, raw_group.clone(), raw_device)
            .map_err(Self::runtime_error)?
        else {
            // Tell an unknown group apart from a non-member.
            let exists = api
                .group(at, raw_group)
                .map_err(Self::runtime_error)?
                .is_some();
            return Err(if exists {
                error(
                    codes::NOT_A_MEMBER,
                    format!("device {device:?} is not a member of group {group:?}"),
                )
            } else {
                error(codes::UNKNOWN_GROUP, format!("unknown group {group:?}"))
            });
        };
        Ok(MemberKeyJson {
            group,
            device,
            role: role(member.role),
            topic_key: member.topic_key.map(topic_key_json),
            wrapped_epoch_key: member.wrapped_epoch_key.as_deref().map(base64),
        })
    }

    fn check_key(
        &self,
        target: TargetParam,
        fingerprint: String,
        at: Option<H256>,
    ) -> RpcResult<CheckJson> {
        let target = match target {
            TargetParam::Device(id) | TargetParam::Tagged(TaggedTarget::Device(id)) => {
                KeyTarget::Device(checked_id(&id)?)
            }
            TargetParam::Tagged(TaggedTarget::Group(id)) => KeyTarget::Group(checked_id(&id)?),
        };
        let fingerprint = parse_fingerprint(&fingerprint)?;
        let at = self.at(at);
        let answer = self
            .client
            .runtime_api()
            .check_key(at, target, fingerprint)
            .map_err(Self::runtime_error)?;
        let (result, expected) = match answer {
            KeyCheck::Check => ("check", None),
            KeyCheck::Mismatch { expected } => ("mismatch", Some(hex::encode(expected))),
            KeyCheck::Unknown => ("unknown", None),
            KeyCheck::Revoked => ("revoked", None),
            KeyCheck::Suspended => ("suspended", None),
        };
        Ok(CheckJson {
            result,
            expected,
            at,
        })
    }

    fn key_history(&self, id: String, at: Option<H256>) -> RpcResult<Vec<KeyHistoryJson>> {
        let raw = checked_id(&id)?;
        let at = self.at(at);
        let history: Option<Vec<KeyHistoryEntry<BlockNumber>>> = self
            .client
            .runtime_api()
            .key_history(at, raw)
            .map_err(Self::runtime_error)?;
        let history = history
            .ok_or_else(|| error(codes::UNKNOWN_DEVICE, format!("unknown device {id:?}")))?;
        Ok(history
            .into_iter()
            .map(|e| KeyHistoryJson {
                epoch: e.epoch,
                fingerprint: hex::encode(e.fingerprint),
                from_block: e.from_block,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_validated_with_clear_errors() {
        assert!(checked_id("1111").is_ok());
        let err = checked_id("a/b").unwrap_err();
        assert_eq!(err.code(), codes::INVALID_ARGUMENT);
        assert!(err.message().contains("invalid id"));
        assert!(parse_fingerprint(&"ab".repeat(32)).is_ok());
        assert!(parse_fingerprint(&format!("0x{}", "ab".repeat(32))).is_ok());
        for bad in ["", "None", "zz", &"ab".repeat(31), &"ab".repeat(33)] {
            assert_eq!(
                parse_fingerprint(bad).unwrap_err().code(),
                codes::INVALID_ARGUMENT,
                "{bad}"
            );
        }
    }

    #[test]
    fn check_targets_parse_as_string_or_tagged_object() {
        let parse = |json: &str| serde_json::from_str::<TargetParam>(json);
        assert_eq!(
            parse(r#""1113""#).unwrap(),
            TargetParam::Device("1113".into())
        );
        assert_eq!(
            parse(r#"{"group":"A"}"#).unwrap(),
            TargetParam::Tagged(TaggedTarget::Group("A".into()))
        );
        assert_eq!(
            parse(r#"{"device":"1111"}"#).unwrap(),
            TargetParam::Tagged(TaggedTarget::Device("1111".into()))
        );
        for bad in [
            r#"{"topic":"A"}"#,
            r#"{"group":"A","device":"1"}"#,
            "7",
            "null",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
