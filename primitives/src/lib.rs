//! Types that the runtime, the node, the bridge and devices all speak.
//!
//! Kept `no_std` so the runtime can use the same definitions as the off-chain parts:
//! a device id that the bridge accepts is exactly a device id the chain accepts.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

#[cfg(feature = "api")]
pub mod api;
pub mod rsa_key;
pub use rsa_key::{validate_rsa_spki, RsaKeyError, MAX_RSA_BITS, MAX_SPKI_LEN, MIN_RSA_BITS};

use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use scale_info::TypeInfo;
pub use sp_weights::Weight;

/// SHA-256 of a public key's SubjectPublicKeyInfo DER.
pub type Fingerprint = [u8; 32];

/// Where a device stands.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Encode,
    Decode,
    DecodeWithMemTracking,
    TypeInfo,
    MaxEncodedLen,
)]
pub enum DeviceStatus {
    /// May send and receive.
    Active,
    /// Temporarily barred by an operator; can be resumed.
    Suspended,
    /// Barred for good.
    Revoked,
}

/// One key a device has had.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Encode,
    Decode,
    DecodeWithMemTracking,
    TypeInfo,
    MaxEncodedLen,
)]
pub struct KeyHistoryEntry<BlockNumber> {
    /// Rotation count when this key became current (0 = registered key).
    pub epoch: u32,
    /// Fingerprint of the key.
    pub fingerprint: Fingerprint,
    /// Block from which the key was current.
    pub from_block: BlockNumber,
}

/// What a group member may do with the group's topic.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Encode,
    Decode,
    DecodeWithMemTracking,
    TypeInfo,
    MaxEncodedLen,
)]
pub enum Role {
    /// May publish to the topic.
    Publisher,
    /// May read the topic.
    Subscriber,
    /// May publish and read.
    Both,
}

impl Role {
    /// Whether a bridge lets this member publish to the group.
    pub fn may_publish(self) -> bool {
        matches!(self, Role::Publisher | Role::Both)
    }
}

/// What other pallets (groups) may ask of the device registry, so they need not depend on
/// `pallet-devices` itself.
pub trait DeviceDirectory {
    /// The device's status, or `None` if no such device is registered.
    fn status(device: &[u8]) -> Option<DeviceStatus>;
    /// The fingerprint of the device's current key, or `None` if no such device is registered.
    fn fingerprint(device: &[u8]) -> Option<Fingerprint>;
}

/// What another pallet may ask of the group registry.
pub trait GroupDirectory {
    /// Whether a group with this id exists.
    fn exists(group: &[u8]) -> bool;
}

/// How a device changed: what the groups it is in must follow.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Encode,
    Decode,
    DecodeWithMemTracking,
    TypeInfo,
    MaxEncodedLen,
)]
pub enum DeviceChange {
    /// The device has a new key; a wrap made to the old one must not be served.
    Rotated,
    /// The device may no longer read; it gets no wrap until resumed.
    Suspended,
    /// The device may read again; it needs a wrap of a new epoch.
    Resumed,
    /// The device is gone for good; it leaves every group.
    Revoked,
}

/// Told when a device's key or status changes, so that other pallets (groups) can follow.
pub trait OnDeviceChanged {
    /// `device` has just changed as `change` says. Returns the weight used.
    fn on_device_changed(device: &[u8], change: DeviceChange) -> Weight;
    /// The most `on_device_changed` can use, charged up front and refunded after.
    fn max_weight() -> Weight;
}

impl OnDeviceChanged for () {
    fn on_device_changed(_: &[u8], _: DeviceChange) -> Weight {
        Weight::zero()
    }
    fn max_weight() -> Weight {
        Weight::zero()
    }
}

/// Milliseconds between two blocks: the Aura slot.
///
/// One second keeps "registered until usable" short for devices while leaving GRANDPA
/// room to finalize on a small validator set.
pub const MILLISECS_PER_BLOCK: u64 = 1_000;

/// Shortest operator-chosen id (device or group), in bytes.
pub const MIN_ID_LEN: usize = 1;
/// Longest operator-chosen id (device or group), in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Why an operator-chosen id was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdError {
    /// Shorter than [`MIN_ID_LEN`] bytes.
    Empty,
    /// Longer than [`MAX_ID_LEN`] bytes.
    TooLong,
    /// A byte outside `[A-Za-z0-9._-]`, at this position.
    BadByte(usize),
}

/// Checks an operator-chosen device or group id.
///
/// Ids are also MQTT topic segments (`km/v1/dev/<id>/inbox`), so the alphabet excludes
/// the topic separators and wildcards (`/`, `+`, `#`) by construction rather than by
/// escaping.
pub fn validate_id(id: &[u8]) -> Result<(), IdError> {
    if id.len() < MIN_ID_LEN {
        return Err(IdError::Empty);
    }
    if id.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    match id
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')))
    {
        Some(at) => Err(IdError::BadByte(at)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_device_and_group_names_are_valid() {
        for id in [&b"1111"[..], b"A", b"hsu0001", b"plant-3.line_7"] {
            assert_eq!(validate_id(id), Ok(()), "{id:?}");
        }
    }

    #[test]
    fn ids_that_would_break_topics_are_refused() {
        assert_eq!(validate_id(b""), Err(IdError::Empty));
        assert_eq!(validate_id(&[b'a'; 65]), Err(IdError::TooLong));
        assert_eq!(validate_id(&[b'a'; 64]), Ok(()));
        assert_eq!(validate_id(b"a/b"), Err(IdError::BadByte(1)));
        assert_eq!(validate_id(b"+"), Err(IdError::BadByte(0)));
        assert_eq!(validate_id(b"dev#"), Err(IdError::BadByte(3)));
        assert_eq!(validate_id("dé".as_bytes()), Err(IdError::BadByte(1)));
    }
}
