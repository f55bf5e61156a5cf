//! Weights of `pallet-groups`, derived rather than benchmarked.
//!
//! Each weight = its storage accesses priced by the runtime's `DbWeight` (ParityDB) plus
//! compute and proof size:
//! - validating the topic key (DER parse + SHA-256) is priced like `pallet-devices`' key
//!   check: 10 µs + 40 ns per key byte;
//! - each wrap in a `set_epoch_key` call costs one `Members` read, one device record read,
//!   one `EpochWraps` read and one write, plus 2 µs of compute;
//! - each member looked at (to tell whether the key is complete, and when the epoch
//!   switches) costs a `Members` read, a device record read, an `EpochWraps` read and a
//!   delete or event (2 µs);
//! - leaving a group (removal or revocation) costs reads of `Groups`, `Members`,
//!   `PendingKeys` and writes of `Members`, two `EpochWraps`, `PendingKeys`, `Groups`.
//!
//! `set_epoch_key` is charged up front as if it looked at `MaxMembers` members twice and
//! refunded to what it did. Proof sizes take the `MaxEncodedLen` of the records touched.

use core::marker::PhantomData;
use frame_support::{
    traits::Get,
    weights::{constants::WEIGHT_REF_TIME_PER_NANOS, RuntimeDbWeight, Weight},
};

/// Weight functions needed by `pallet-groups`.
pub trait WeightInfo {
    /// `create_group`.
    fn create_group() -> Weight;
    /// `add_member`.
    fn add_member() -> Weight;
    /// `remove_member`.
    fn remove_member() -> Weight;
    /// `set_publishing`.
    fn set_publishing() -> Weight;
    /// `add_key_manager` or `remove_key_manager`.
    fn set_key_manager() -> Weight;
    /// `set_epoch_key` with a `k`-byte topic key and `w` wraps, looking at `m` members (to
    /// tell whether the key is complete, and again if the epoch switches).
    fn set_epoch_key(k: u32, w: u32, m: u32) -> Weight;
    /// A revoked device leaving `g` groups.
    fn leave_groups(g: u32) -> Weight;
}

/// Derived weights for a runtime.
pub struct SubstrateWeight<T>(PhantomData<T>);

const KEY_BASE_NS: u64 = 10_000;
const KEY_PER_BYTE_NS: u64 = 40;
const CALL_BASE_NS: u64 = 8_000;
const PER_WRAP_NS: u64 = 2_000;
const PER_DELIVERY_NS: u64 = 2_000;
/// `MaxEncodedLen` of a group record with a 4096-bit topic key and 4 KiB sealed key, rounded.
const GROUP_PROOF: u64 = 5_000;
const MEMBER_PROOF: u64 = 200;
const WRAP_PROOF: u64 = 640;
/// A device record with a 4096-bit key, rounded.
const DEVICE_PROOF: u64 = 700;
/// A device's group list at 16 groups of 65 bytes, rounded.
const DEVICE_GROUPS_PROOF: u64 = 1_200;
/// A key-manager entry (32-byte account) and the counter, rounded.
const KEY_MANAGER_PROOF: u64 = 100;
/// Eight retired (fingerprint, sealed-key hash) pairs.
const RETIRED_KEYS_PROOF: u64 = 8 * 64 + 8;

fn ns(n: u64) -> Weight {
    Weight::from_parts(n * WEIGHT_REF_TIME_PER_NANOS, 0)
}

fn proof(bytes: u64) -> Weight {
    Weight::from_parts(0, bytes)
}

/// The formulas, for any database weight.
pub struct Formulas(pub RuntimeDbWeight);

impl Formulas {
    pub fn create_group(&self) -> Weight {
        // Reads and writes: Groups, GroupCount, AdministeredGroups.
        ns(CALL_BASE_NS)
            .saturating_add(proof(GROUP_PROOF))
            .saturating_add(self.0.reads_writes(3, 3))
    }
    pub fn add_member(&self) -> Weight {
        // Reads: Groups, Devices, Members, DeviceGroups, PendingKeys;
        // writes: Members, DeviceGroups, Groups, PendingKeys.
        ns(CALL_BASE_NS)
            .saturating_add(proof(
                GROUP_PROOF + 1_000 + MEMBER_PROOF + DEVICE_GROUPS_PROOF + GROUP_PROOF,
            ))
            .saturating_add(self.0.reads_writes(5, 4))
    }
    fn leave(&self) -> Weight {
        // Reads: Groups, Members, PendingKeys, RetiredKeys; writes: Members, 2 × EpochWraps,
        // PendingKeys, RetiredKeys, Groups.
        ns(CALL_BASE_NS)
            .saturating_add(proof(
                GROUP_PROOF + MEMBER_PROOF + GROUP_PROOF + RETIRED_KEYS_PROOF,
            ))
            .saturating_add(self.0.reads_writes(4, 6))
    }
    pub fn remove_member(&self) -> Weight {
        // Plus the device's group list: one read, one write.
        self.leave()
            .saturating_add(proof(DEVICE_GROUPS_PROOF))
            .saturating_add(self.0.reads_writes(1, 1))
    }
    pub fn set_key_manager(&self) -> Weight {
        // The entry and the counter, read and written.
        ns(CALL_BASE_NS)
            .saturating_add(proof(KEY_MANAGER_PROOF))
            .saturating_add(self.0.reads_writes(2, 2))
    }
    pub fn set_publishing(&self) -> Weight {
        ns(CALL_BASE_NS)
            .saturating_add(proof(GROUP_PROOF))
            .saturating_add(self.0.reads_writes(1, 1))
    }
    pub fn set_epoch_key(&self, k: u32, w: u32, m: u32) -> Weight {
        // Fixed: Groups, PendingKeys read and written; RetiredKeys read.
        let fixed = ns(CALL_BASE_NS + KEY_BASE_NS + KEY_PER_BYTE_NS * k as u64)
            .saturating_add(proof(GROUP_PROOF * 2 + k as u64 + RETIRED_KEYS_PROOF))
            .saturating_add(self.0.reads_writes(3, 2));
        // Per wrap: the member, the device record (status and key), the wrap.
        let per_wrap = ns(PER_WRAP_NS)
            .saturating_add(proof(MEMBER_PROOF + DEVICE_PROOF + WRAP_PROOF))
            .saturating_add(self.0.reads_writes(3, 1));
        // Per member looked at (completeness, then the switch): the member, its device,
        // its new wrap; at the switch its old wrap is deleted.
        let per_delivery = ns(PER_DELIVERY_NS)
            .saturating_add(proof(MEMBER_PROOF + DEVICE_PROOF + WRAP_PROOF))
            .saturating_add(self.0.reads_writes(3, 1));
        fixed
            .saturating_add(per_wrap.saturating_mul(w as u64))
            .saturating_add(per_delivery.saturating_mul(m as u64))
    }
    pub fn leave_groups(&self, g: u32) -> Weight {
        // The device's group list is read and removed once.
        proof(DEVICE_GROUPS_PROOF)
            .saturating_add(self.0.reads_writes(1, 1))
            .saturating_add(self.leave().saturating_mul(g as u64))
    }
}

impl<T: frame_system::Config> WeightInfo for SubstrateWeight<T> {
    fn create_group() -> Weight {
        Formulas(T::DbWeight::get()).create_group()
    }
    fn add_member() -> Weight {
        Formulas(T::DbWeight::get()).add_member()
    }
    fn remove_member() -> Weight {
        Formulas(T::DbWeight::get()).remove_member()
    }
    fn set_publishing() -> Weight {
        Formulas(T::DbWeight::get()).set_publishing()
    }
    fn set_key_manager() -> Weight {
        Formulas(T::DbWeight::get()).set_key_manager()
    }
    fn set_epoch_key(k: u32, w: u32, m: u32) -> Weight {
        Formulas(T::DbWeight::get()).set_epoch_key(k, w, m)
    }
    fn leave_groups(g: u32) -> Weight {
        Formulas(T::DbWeight::get()).leave_groups(g)
    }
}

/// For tests: the same formulas with unit database weights.
impl WeightInfo for () {
    fn create_group() -> Weight {
        Formulas(UNIT_DB).create_group()
    }
    fn add_member() -> Weight {
        Formulas(UNIT_DB).add_member()
    }
    fn remove_member() -> Weight {
        Formulas(UNIT_DB).remove_member()
    }
    fn set_publishing() -> Weight {
        Formulas(UNIT_DB).set_publishing()
    }
    fn set_key_manager() -> Weight {
        Formulas(UNIT_DB).set_key_manager()
    }
    fn set_epoch_key(k: u32, w: u32, m: u32) -> Weight {
        Formulas(UNIT_DB).set_epoch_key(k, w, m)
    }
    fn leave_groups(g: u32) -> Weight {
        Formulas(UNIT_DB).leave_groups(g)
    }
}

const UNIT_DB: RuntimeDbWeight = RuntimeDbWeight { read: 1, write: 1 };
