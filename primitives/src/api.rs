//! The runtime API the node's `keymesh_*` JSON-RPC methods call.

use alloc::vec::Vec;
use codec::{Codec, Decode, Encode};
use scale_info::TypeInfo;

use crate::{DeviceStatus, Fingerprint, KeyHistoryEntry, Role};

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

/// A group's key for one epoch, as the key directory reports it.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub struct TopicKeyInfo<BlockNumber> {
    /// The epoch this key belongs to (1 for the group's first key).
    pub epoch: u32,
    /// SubjectPublicKeyInfo DER of the topic public key: what publishers seal to.
    pub public_key: Vec<u8>,
    pub fingerprint: Fingerprint,
    /// The topic private key, AES-256-GCM-sealed under the epoch key (SCALE `SealedTopicKey`).
    pub sealed_private_key: Vec<u8>,
    /// Block from which the key is current.
    pub from_block: BlockNumber,
}

/// A group as the key directory reports it.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub struct GroupInfo<AccountId, BlockNumber> {
    /// The account that adds and removes members.
    pub admin: AccountId,
    /// The current epoch; 0 until the first key is set.
    pub epoch: u32,
    /// The current epoch's key; `None` before the first.
    pub topic_key: Option<TopicKeyInfo<BlockNumber>>,
    /// Whether any active device may publish, member or not.
    pub open_to_publishers: bool,
    /// Members and their roles, in storage order.
    pub members: Vec<(Vec<u8>, Role)>,
    /// The epoch a key manager is assembling wraps for, if a rekey is under way.
    pub pending_epoch: Option<u32>,
    pub created_at: BlockNumber,
}

/// What one member needs to read a group's current epoch.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub struct MemberKey<BlockNumber> {
    pub role: Role,
    /// The group's current key; `None` before the first.
    pub topic_key: Option<TopicKeyInfo<BlockNumber>>,
    /// The epoch key, RSA-OAEP-wrapped to the member's device key; `None` if the member
    /// joined after the current epoch was set (it reads from the next one on).
    pub wrapped_epoch_key: Option<Vec<u8>>,
}

/// Whom a key check is about.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub enum KeyTarget {
    /// A device's current key.
    Device(Vec<u8>),
    /// A group's topic key for its current epoch.
    Group(Vec<u8>),
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
        /// The group `id`, with its members, if it exists.
        fn group(id: Vec<u8>) -> Option<GroupInfo<AccountId, BlockNumber>>;
        /// What `device` needs to read `group`'s current epoch; `None` unless it is a member.
        fn member_key(group: Vec<u8>, device: Vec<u8>) -> Option<MemberKey<BlockNumber>>;
        /// Whether `fingerprint` is the current key of `target`. A group without a key yet
        /// is `Unknown`.
        fn check_key(target: KeyTarget, fingerprint: Fingerprint) -> KeyCheck;
    }
}
