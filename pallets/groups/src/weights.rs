//! Weights of `pallet_groups`, generated from its FRAME benchmarks (`src/benchmarking.rs`).
//!
//! Do not edit: `scripts/benchmark-weights.sh` writes this file with `frame-omni-bencher`
//! against the runtime wasm built with `--features runtime-benchmarks`.
//! Steps `20`, repeat `5`, wasm execution `Compiled`,
//! bencher 64.0.0, CPU `AMD EPYC`.
//!
//! `SubstrateWeight<T>` prices storage with the runtime's `DbWeight`; `()` (for mocks) with
//! ParityDB's, the runtime's database. Proof sizes are the benchmarks' worst-case estimates.

#![allow(unused_parens)]
#![allow(unused_imports)]

use core::marker::PhantomData;
use frame_support::{
    traits::Get,
    weights::{constants::ParityDbWeight, Weight},
};

/// Weight functions needed by `pallet_groups`: one per benchmark.
pub trait WeightInfo {
    /// Benchmark `create_group`.
    fn create_group() -> Weight;
    /// Benchmark `add_member`.
    fn add_member() -> Weight;
    /// Benchmark `remove_member`.
    fn remove_member() -> Weight;
    /// Benchmark `set_publishing`.
    fn set_publishing() -> Weight;
    /// Benchmark `set_key_manager`.
    fn set_key_manager() -> Weight;
    /// Benchmark `set_epoch_key`.
    /// Component `w` was measured over `[1, 256]`.
    /// Component `m` was measured over `[1, 768]`.
    fn set_epoch_key(w: u32, m: u32) -> Weight;
    /// Benchmark `start_attempt`.
    fn start_attempt() -> Weight;
    /// Benchmark `leave_groups`.
    /// Component `g` was measured over `[0, 16]`.
    fn leave_groups(g: u32) -> Weight;
}

/// Weights measured by the benchmarks, for a runtime.
pub struct SubstrateWeight<T>(PhantomData<T>);
impl<T: frame_system::Config> WeightInfo for SubstrateWeight<T> {
    /// Storage: `Groups::Groups` (r:1 w:1)
    /// Proof: `Groups::Groups` (`max_values`: None, `max_size`: Some(4891), added: 7366, mode: `MaxEncodedLen`)
    /// Storage: `Groups::GroupCount` (r:1 w:1)
    /// Proof: `Groups::GroupCount` (`max_values`: Some(1), `max_size`: Some(4), added: 499, mode: `MaxEncodedLen`)
    /// Storage: `Groups::AdministeredGroups` (r:1 w:1)
    /// Proof: `Groups::AdministeredGroups` (`max_values`: None, `max_size`: Some(52), added: 2527, mode: `MaxEncodedLen`)
    fn create_group() -> Weight {
        // Proof size measured: `65`;
        // estimated: `8356`.
        // Minimum execution time: 10_305_000 ps.
        Weight::from_parts(10_926_000, 8356)
            .saturating_add(T::DbWeight::get().reads(3))
            .saturating_add(T::DbWeight::get().writes(3))
    }
    /// Storage: `Groups::Groups` (r:1 w:1)
    /// Proof: `Groups::Groups` (`max_values`: None, `max_size`: Some(4891), added: 7366, mode: `MaxEncodedLen`)
    /// Storage: `Operators::Members` (r:1 w:0)
    /// Proof: `Operators::Members` (`max_values`: Some(1), `max_size`: Some(1025), added: 1520, mode: `MaxEncodedLen`)
    /// Storage: `Devices::Devices` (r:1 w:0)
    /// Proof: `Devices::Devices` (`max_values`: None, `max_size`: Some(757), added: 3232, mode: `MaxEncodedLen`)
    /// Storage: `Groups::Members` (r:1 w:1)
    /// Proof: `Groups::Members` (`max_values`: None, `max_size`: Some(169), added: 2644, mode: `MaxEncodedLen`)
    /// Storage: `Groups::DeviceGroups` (r:1 w:1)
    /// Proof: `Groups::DeviceGroups` (`max_values`: None, `max_size`: Some(1139), added: 3614, mode: `MaxEncodedLen`)
    /// Storage: `Groups::PendingKeys` (r:1 w:0)
    /// Proof: `Groups::PendingKeys` (`max_values`: None, `max_size`: Some(4834), added: 7309, mode: `MaxEncodedLen`)
    fn add_member() -> Weight {
        // Proof size measured: `2234`;
        // estimated: `8356`.
        // Minimum execution time: 36_335_000 ps.
        Weight::from_parts(37_837_000, 8356)
            .saturating_add(T::DbWeight::get().reads(6))
            .saturating_add(T::DbWeight::get().writes(3))
    }
    /// Storage: `Groups::Groups` (r:1 w:1)
    /// Proof: `Groups::Groups` (`max_values`: None, `max_size`: Some(4891), added: 7366, mode: `MaxEncodedLen`)
    /// Storage: `Operators::Members` (r:1 w:0)
    /// Proof: `Operators::Members` (`max_values`: Some(1), `max_size`: Some(1025), added: 1520, mode: `MaxEncodedLen`)
    /// Storage: `Groups::Members` (r:1 w:1)
    /// Proof: `Groups::Members` (`max_values`: None, `max_size`: Some(169), added: 2644, mode: `MaxEncodedLen`)
    /// Storage: `Groups::DeviceGroups` (r:1 w:1)
    /// Proof: `Groups::DeviceGroups` (`max_values`: None, `max_size`: Some(1139), added: 3614, mode: `MaxEncodedLen`)
    /// Storage: `Groups::EpochWraps` (r:1 w:2)
    /// Proof: `Groups::EpochWraps` (`max_values`: None, `max_size`: Some(726), added: 3201, mode: `MaxEncodedLen`)
    /// Storage: `Groups::PendingKeys` (r:1 w:1)
    /// Proof: `Groups::PendingKeys` (`max_values`: None, `max_size`: Some(4834), added: 7309, mode: `MaxEncodedLen`)
    fn remove_member() -> Weight {
        // Proof size measured: `11505`;
        // estimated: `8356`.
        // Minimum execution time: 48_183_000 ps.
        Weight::from_parts(50_346_000, 8356)
            .saturating_add(T::DbWeight::get().reads(6))
            .saturating_add(T::DbWeight::get().writes(6))
    }
    /// Storage: `Groups::Groups` (r:1 w:1)
    /// Proof: `Groups::Groups` (`max_values`: None, `max_size`: Some(4891), added: 7366, mode: `MaxEncodedLen`)
    /// Storage: `Operators::Members` (r:1 w:0)
    /// Proof: `Operators::Members` (`max_values`: Some(1), `max_size`: Some(1025), added: 1520, mode: `MaxEncodedLen`)
    fn set_publishing() -> Weight {
        // Proof size measured: `288`;
        // estimated: `8356`.
        // Minimum execution time: 11_687_000 ps.
        Weight::from_parts(12_539_000, 8356)
            .saturating_add(T::DbWeight::get().reads(2))
            .saturating_add(T::DbWeight::get().writes(1))
    }
    /// Storage: `Groups::KeyManagers` (r:1 w:1)
    /// Proof: `Groups::KeyManagers` (`max_values`: None, `max_size`: Some(48), added: 2523, mode: `MaxEncodedLen`)
    /// Storage: `Groups::CounterForKeyManagers` (r:1 w:1)
    /// Proof: `Groups::CounterForKeyManagers` (`max_values`: Some(1), `max_size`: Some(4), added: 499, mode: `MaxEncodedLen`)
    fn set_key_manager() -> Weight {
        // Proof size measured: `436`;
        // estimated: `3513`.
        // Minimum execution time: 11_237_000 ps.
        Weight::from_parts(12_238_000, 3513)
            .saturating_add(T::DbWeight::get().reads(2))
            .saturating_add(T::DbWeight::get().writes(2))
    }
    /// Storage: `Groups::KeyManagers` (r:1 w:0)
    /// Proof: `Groups::KeyManagers` (`max_values`: None, `max_size`: Some(48), added: 2523, mode: `MaxEncodedLen`)
    /// Storage: `Groups::Groups` (r:1 w:1)
    /// Proof: `Groups::Groups` (`max_values`: None, `max_size`: Some(4891), added: 7366, mode: `MaxEncodedLen`)
    /// Storage: `Groups::PendingKeys` (r:1 w:1)
    /// Proof: `Groups::PendingKeys` (`max_values`: None, `max_size`: Some(4834), added: 7309, mode: `MaxEncodedLen`)
    /// Storage: `Groups::Members` (r:1025 w:0)
    /// Proof: `Groups::Members` (`max_values`: None, `max_size`: Some(169), added: 2644, mode: `MaxEncodedLen`)
    /// Storage: `Devices::Devices` (r:1024 w:0)
    /// Proof: `Devices::Devices` (`max_values`: None, `max_size`: Some(757), added: 3232, mode: `MaxEncodedLen`)
    /// Storage: `Groups::EpochWraps` (r:1024 w:1280)
    /// Proof: `Groups::EpochWraps` (`max_values`: None, `max_size`: Some(726), added: 3201, mode: `MaxEncodedLen`)
    fn set_epoch_key(w: u32, m: u32) -> Weight {
        // Proof size measured: `10704 + m * (184 ±0) + w * (112 ±0)`;
        // estimated: `8356 + m * (3232 ±0) + w * (3232 ±0)`.
        // Minimum execution time: 8_455_656_000 ps.
        Weight::from_parts(0, 8356)
            // Standard error: 0.
            .saturating_add(Weight::from_parts(42_149_280, 0).saturating_mul(w.into()))
            // Standard error: 0.
            .saturating_add(Weight::from_parts(25_712_543, 0).saturating_mul(m.into()))
            .saturating_add(T::DbWeight::get().reads(4))
            .saturating_add(T::DbWeight::get().reads((3_u64).saturating_mul(w.into())))
            .saturating_add(T::DbWeight::get().reads((3_u64).saturating_mul(m.into())))
            .saturating_add(T::DbWeight::get().writes(2))
            .saturating_add(T::DbWeight::get().writes((2_u64).saturating_mul(w.into())))
            .saturating_add(T::DbWeight::get().writes((1_u64).saturating_mul(m.into())))
            .saturating_add(Weight::from_parts(0, 3232).saturating_mul(m.into()))
            .saturating_add(Weight::from_parts(0, 3232).saturating_mul(w.into()))
    }
    /// Storage: `Groups::KeyManagers` (r:1 w:0)
    /// Proof: `Groups::KeyManagers` (`max_values`: None, `max_size`: Some(48), added: 2523, mode: `MaxEncodedLen`)
    /// Storage: `Groups::Groups` (r:1 w:1)
    /// Proof: `Groups::Groups` (`max_values`: None, `max_size`: Some(4891), added: 7366, mode: `MaxEncodedLen`)
    /// Storage: `Groups::PendingKeys` (r:1 w:1)
    /// Proof: `Groups::PendingKeys` (`max_values`: None, `max_size`: Some(4834), added: 7309, mode: `MaxEncodedLen`)
    /// Storage: `Groups::RetiredKeys` (r:1 w:1)
    /// Proof: `Groups::RetiredKeys` (`max_values`: None, `max_size`: Some(595), added: 3070, mode: `MaxEncodedLen`)
    /// Storage: `Groups::Members` (r:3 w:0)
    /// Proof: `Groups::Members` (`max_values`: None, `max_size`: Some(169), added: 2644, mode: `MaxEncodedLen`)
    /// Storage: `Devices::Devices` (r:2 w:0)
    /// Proof: `Devices::Devices` (`max_values`: None, `max_size`: Some(757), added: 3232, mode: `MaxEncodedLen`)
    /// Storage: `Groups::EpochWraps` (r:2 w:1)
    /// Proof: `Groups::EpochWraps` (`max_values`: None, `max_size`: Some(726), added: 3201, mode: `MaxEncodedLen`)
    fn start_attempt() -> Weight {
        // Proof size measured: `11623`;
        // estimated: `8922`.
        // Minimum execution time: 70_987_000 ps.
        Weight::from_parts(74_542_000, 8922)
            .saturating_add(T::DbWeight::get().reads(11))
            .saturating_add(T::DbWeight::get().writes(4))
    }
    /// Storage: `Groups::DeviceGroups` (r:1 w:1)
    /// Proof: `Groups::DeviceGroups` (`max_values`: None, `max_size`: Some(1139), added: 3614, mode: `MaxEncodedLen`)
    /// Storage: `Groups::Groups` (r:16 w:16)
    /// Proof: `Groups::Groups` (`max_values`: None, `max_size`: Some(4891), added: 7366, mode: `MaxEncodedLen`)
    /// Storage: `Groups::EpochWraps` (r:16 w:32)
    /// Proof: `Groups::EpochWraps` (`max_values`: None, `max_size`: Some(726), added: 3201, mode: `MaxEncodedLen`)
    /// Storage: `Groups::PendingKeys` (r:16 w:16)
    /// Proof: `Groups::PendingKeys` (`max_values`: None, `max_size`: Some(4834), added: 7309, mode: `MaxEncodedLen`)
    /// Storage: `Groups::Members` (r:0 w:16)
    /// Proof: `Groups::Members` (`max_values`: None, `max_size`: Some(169), added: 2644, mode: `MaxEncodedLen`)
    fn leave_groups(g: u32) -> Weight {
        // Proof size measured: `9983 + g * (253 ±0)`;
        // estimated: `4604 + g * (7366 ±0)`.
        // Minimum execution time: 3_816_000 ps.
        Weight::from_parts(8_100_000, 4604)
            // Standard error: 0.
            .saturating_add(Weight::from_parts(25_498_500, 0).saturating_mul(g.into()))
            .saturating_add(T::DbWeight::get().reads(1))
            .saturating_add(T::DbWeight::get().reads((3_u64).saturating_mul(g.into())))
            .saturating_add(T::DbWeight::get().writes(1))
            .saturating_add(T::DbWeight::get().writes((5_u64).saturating_mul(g.into())))
            .saturating_add(Weight::from_parts(0, 7366).saturating_mul(g.into()))
    }
}

/// The same measurements with ParityDB's database weights, for mocks and tests.
impl WeightInfo for () {
    fn create_group() -> Weight {
        Weight::from_parts(10_926_000, 8356)
            .saturating_add(ParityDbWeight::get().reads(3))
            .saturating_add(ParityDbWeight::get().writes(3))
    }
    fn add_member() -> Weight {
        Weight::from_parts(37_837_000, 8356)
            .saturating_add(ParityDbWeight::get().reads(6))
            .saturating_add(ParityDbWeight::get().writes(3))
    }
    fn remove_member() -> Weight {
        Weight::from_parts(50_346_000, 8356)
            .saturating_add(ParityDbWeight::get().reads(6))
            .saturating_add(ParityDbWeight::get().writes(6))
    }
    fn set_publishing() -> Weight {
        Weight::from_parts(12_539_000, 8356)
            .saturating_add(ParityDbWeight::get().reads(2))
            .saturating_add(ParityDbWeight::get().writes(1))
    }
    fn set_key_manager() -> Weight {
        Weight::from_parts(12_238_000, 3513)
            .saturating_add(ParityDbWeight::get().reads(2))
            .saturating_add(ParityDbWeight::get().writes(2))
    }
    fn set_epoch_key(w: u32, m: u32) -> Weight {
        Weight::from_parts(0, 8356)
            .saturating_add(Weight::from_parts(42_149_280, 0).saturating_mul(w.into()))
            .saturating_add(Weight::from_parts(25_712_543, 0).saturating_mul(m.into()))
            .saturating_add(ParityDbWeight::get().reads(4))
            .saturating_add(ParityDbWeight::get().reads((3_u64).saturating_mul(w.into())))
            .saturating_add(ParityDbWeight::get().reads((3_u64).saturating_mul(m.into())))
            .saturating_add(ParityDbWeight::get().writes(2))
            .saturating_add(ParityDbWeight::get().writes((2_u64).saturating_mul(w.into())))
            .saturating_add(ParityDbWeight::get().writes((1_u64).saturating_mul(m.into())))
            .saturating_add(Weight::from_parts(0, 3232).saturating_mul(m.into()))
            .saturating_add(Weight::from_parts(0, 3232).saturating_mul(w.into()))
    }
    fn start_attempt() -> Weight {
        Weight::from_parts(74_542_000, 8922)
            .saturating_add(ParityDbWeight::get().reads(11))
            .saturating_add(ParityDbWeight::get().writes(4))
    }
    fn leave_groups(g: u32) -> Weight {
        Weight::from_parts(8_100_000, 4604)
            .saturating_add(Weight::from_parts(25_498_500, 0).saturating_mul(g.into()))
            .saturating_add(ParityDbWeight::get().reads(1))
            .saturating_add(ParityDbWeight::get().reads((3_u64).saturating_mul(g.into())))
            .saturating_add(ParityDbWeight::get().writes(1))
            .saturating_add(ParityDbWeight::get().writes((5_u64).saturating_mul(g.into())))
            .saturating_add(Weight::from_parts(0, 7366).saturating_mul(g.into()))
    }
}
