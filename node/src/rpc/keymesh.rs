//! `keymesh_*` JSON-RPC: key queries answered from the latest finalized block by default.

use std::sync::Arc;

use base64::Engine;
use jsonrpsee::{
    core::RpcResult,
    proc_macros::rpc,
    types::{ErrorObject, ErrorObjectOwned},
};
use keymesh_primitives::{
    api::{DeviceInfo, KeyCheck, KeyDirectoryApi},
    validate_id, DeviceStatus, Fingerprint, KeyHistoryEntry,
};
use keymesh_runtime::{opaque::Block, AccountId, BlockNumber};
use serde::Serialize;
use sp_api::ProvideRuntimeApi;
use sp_blockchain::HeaderBackend;
use sp_core::{crypto::Ss58Codec, H256};

/// JSON-RPC error codes of the `keymesh_*` methods.
pub mod codes {
    /// An argument is malformed (id, fingerprint, count).
    pub const INVALID_ARGUMENT: i32 = 4000;
    /// No device with this id.
    pub const UNKNOWN_DEVICE: i32 = 4004;
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

    /// Whether `fingerprint` (hex) is the current key of device `target`.
    #[method(name = "checkKey")]
    fn check_key(
        &self,
        target: String,
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

fn device_json(id: &[u8], d: DeviceInfo<AccountId, BlockNumber>) -> DeviceJson {
    DeviceJson {
        id: String::from_utf8_lossy(id).into_owned(),
        owner: d.owner.to_ss58check(),
        public_key: base64::engine::general_purpose::STANDARD.encode(&d.public_key),
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

    fn check_key(
        &self,
        target: String,
        fingerprint: String,
        at: Option<H256>,
    ) -> RpcResult<CheckJson> {
        let raw = checked_id(&target)?;
        let fingerprint = parse_fingerprint(&fingerprint)?;
        let at = self.at(at);
        let answer = self
            .client
            .runtime_api()
            .check_key(at, raw, fingerprint)
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
}
