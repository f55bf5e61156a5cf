//! The runtime API the node's `keymesh_*` JSON-RPC methods call.

use alloc::vec::Vec;
use codec::{Codec, Decode, Encode};
use scale_info::TypeInfo;

use crate::{DeviceStatus, Fingerprint, KeyHistoryEntry};

/// A device as the key directory reports it.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub struct DeviceInfo<AccountId, BlockNumber> {
    pub owner: AccountId,
    /// SubjectPublicKeyInfo DER of the current key.
    pub public_key: Vec<u8>,
    pub fingerprint: Fingerprint,
    pub epoch: u32,
    pub status: DeviceStatus,
    pub registered_at: BlockNumber,
}

/// The answer to "is this the current key of that target?": the seeds' Check/Error,
/// answered by consensus state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub enum KeyCheck {
    /// The fingerprint is the target's current key.
    Check,
    /// It is not; `expected` is.
    Mismatch { expected: Fingerprint },
    /// No such target.
    Unknown,
    /// The target is revoked.
    Revoked,
    /// The target is suspended by an operator; nothing may be sent to it for now.
    Suspended,
}

/// Most devices one `devices` call returns.
pub const MAX_DEVICES_PER_PAGE: u32 = 100;

sp_api::decl_runtime_apis! {
    /// Key queries against the state of the block they are called at.
    pub trait KeyDirectoryApi<AccountId, BlockNumber>
    where
        AccountId: Codec,
        BlockNumber: Codec,
    {
        /// The device `id`, if registered.
        fn device(id: Vec<u8>) -> Option<DeviceInfo<AccountId, BlockNumber>>;
        /// Up to `count` (at most [`MAX_DEVICES_PER_PAGE`]) devices in storage order,
        /// starting after `start` (from the first when `None`).
        fn devices(start: Option<Vec<u8>>, count: u32) -> Vec<(Vec<u8>, DeviceInfo<AccountId, BlockNumber>)>;
        /// The keys the device has had, oldest first; `None` if unknown.
        fn key_history(id: Vec<u8>) -> Option<Vec<KeyHistoryEntry<BlockNumber>>>;
        /// Whether `fingerprint` is the current key of device `target`.
        fn check_key(target: Vec<u8>, fingerprint: Fingerprint) -> KeyCheck;
    }
}
