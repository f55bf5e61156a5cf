//! Weights of `pallet-devices`, derived rather than benchmarked.
//!
//! Each weight = its storage accesses priced by the runtime's `DbWeight` (ParityDB) plus
//! compute. The dominant compute is parsing the key DER and hashing it with SHA-256, both
//! linear in the key length `k`; they are priced at 10 µs base + 40 ns per byte, well above
//! the ~3 µs/KiB measured for `sp_io::hashing::sha2_256` plus DER parsing on the
//! development machine, so the estimate errs on the side of overcharging. Proof size covers
//! the largest record (`MaxEncodedLen` of a device record is < 1 KiB).

use core::marker::PhantomData;
use frame_support::{
    traits::Get,
    weights::{constants::WEIGHT_REF_TIME_PER_NANOS, Weight},
};

/// Weight functions needed by `pallet-devices`.
pub trait WeightInfo {
    /// `register` with a key of `k` bytes.
    fn register(k: u32) -> Weight;
    /// `rotate_key` with a key of `k` bytes.
    fn rotate_key(k: u32) -> Weight;
    /// `suspend` or `resume`.
    fn set_status() -> Weight;
    /// `revoke`, before the groups pallet's share.
    fn revoke() -> Weight;
}

/// Derived weights for a runtime.
pub struct SubstrateWeight<T>(PhantomData<T>);

const KEY_BASE_NS: u64 = 10_000;
const KEY_PER_BYTE_NS: u64 = 40;
const RECORD_PROOF: u64 = 1_024;
const HISTORY_PROOF: u64 = 4_096;

fn key_check(k: u32) -> Weight {
    Weight::from_parts(
        (KEY_BASE_NS + KEY_PER_BYTE_NS * k as u64) * WEIGHT_REF_TIME_PER_NANOS,
        k as u64,
    )
}

impl<T: frame_system::Config> WeightInfo for SubstrateWeight<T> {
    fn register(k: u32) -> Weight {
        // Reads and writes: Devices, DeviceCount, KeyHistory, OwnedDevices.
        key_check(k)
            .saturating_add(Weight::from_parts(0, RECORD_PROOF + HISTORY_PROOF))
            .saturating_add(T::DbWeight::get().reads_writes(4, 4))
    }
    fn rotate_key(k: u32) -> Weight {
        // Reads: Devices, KeyHistory; writes: Devices, KeyHistory.
        key_check(k)
            .saturating_add(Weight::from_parts(0, RECORD_PROOF + HISTORY_PROOF))
            .saturating_add(T::DbWeight::get().reads_writes(2, 2))
    }
    fn set_status() -> Weight {
        Weight::from_parts(5_000 * WEIGHT_REF_TIME_PER_NANOS, RECORD_PROOF)
            .saturating_add(T::DbWeight::get().reads_writes(1, 1))
    }
    fn revoke() -> Weight {
        // Reads and writes: Devices, OwnedDevices.
        Weight::from_parts(5_000 * WEIGHT_REF_TIME_PER_NANOS, RECORD_PROOF)
            .saturating_add(T::DbWeight::get().reads_writes(2, 2))
    }
}

/// For tests: the same formulas, with unit database weights.
impl WeightInfo for () {
    fn register(k: u32) -> Weight {
        key_check(k).saturating_add(Weight::from_parts(4, 0))
    }
    fn rotate_key(k: u32) -> Weight {
        key_check(k).saturating_add(Weight::from_parts(2, 0))
    }
    fn set_status() -> Weight {
        Weight::from_parts(5_000 * WEIGHT_REF_TIME_PER_NANOS, RECORD_PROOF)
    }
    fn revoke() -> Weight {
        Weight::from_parts(5_000 * WEIGHT_REF_TIME_PER_NANOS, RECORD_PROOF)
    }
}
