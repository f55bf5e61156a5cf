//! Weights of `pallet_devices`, generated from its FRAME benchmarks (`src/benchmarking.rs`).
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

/// Weight functions needed by `pallet_devices`: one per benchmark.
pub trait WeightInfo {
    /// Benchmark `register`.
    fn register() -> Weight;
    /// Benchmark `rotate_key`.
    fn rotate_key() -> Weight;
    /// Benchmark `set_status`.
    fn set_status() -> Weight;
    /// Benchmark `revoke`.
    fn revoke() -> Weight;
}

/// Weights measured by the benchmarks, for a runtime.
pub struct SubstrateWeight<T>(PhantomData<T>);
impl<T: frame_system::Config> WeightInfo for SubstrateWeight<T> {
    /// Storage: `Devices::Devices` (r:1 w:1)
    /// Proof: `Devices::Devices` (`max_values`: None, `max_size`: Some(757), added: 3232, mode: `MaxEncodedLen`)
    /// Storage: `Devices::DeviceCount` (r:1 w:1)
    /// Proof: `Devices::DeviceCount` (`max_values`: Some(1), `max_size`: Some(4), added: 499, mode: `MaxEncodedLen`)
    /// Storage: `Devices::KeyHistory` (r:1 w:1)
    /// Proof: `Devices::KeyHistory` (`max_values`: None, `max_size`: Some(1363), added: 3838, mode: `MaxEncodedLen`)
    /// Storage: `Devices::OwnedDevices` (r:1 w:1)
    /// Proof: `Devices::OwnedDevices` (`max_values`: None, `max_size`: Some(52), added: 2527, mode: `MaxEncodedLen`)
    fn register() -> Weight {
        // Proof size measured: `522`;
        // estimated: `4828`.
        // Minimum execution time: 16_705_000 ps.
        Weight::from_parts(17_567_000, 4828)
            .saturating_add(T::DbWeight::get().reads(4))
            .saturating_add(T::DbWeight::get().writes(4))
    }
    /// Storage: `Devices::Devices` (r:1 w:1)
    /// Proof: `Devices::Devices` (`max_values`: None, `max_size`: Some(757), added: 3232, mode: `MaxEncodedLen`)
    /// Storage: `Operators::Members` (r:1 w:0)
    /// Proof: `Operators::Members` (`max_values`: Some(1), `max_size`: Some(1025), added: 1520, mode: `MaxEncodedLen`)
    /// Storage: `Devices::KeyHistory` (r:1 w:1)
    /// Proof: `Devices::KeyHistory` (`max_values`: None, `max_size`: Some(1363), added: 3838, mode: `MaxEncodedLen`)
    /// Storage: `Groups::DeviceGroups` (r:1 w:0)
    /// Proof: `Groups::DeviceGroups` (`max_values`: None, `max_size`: Some(1139), added: 3614, mode: `MaxEncodedLen`)
    fn rotate_key() -> Weight {
        // Proof size measured: `2232`;
        // estimated: `4828`.
        // Minimum execution time: 21_061_000 ps.
        Weight::from_parts(22_123_000, 4828)
            .saturating_add(T::DbWeight::get().reads(4))
            .saturating_add(T::DbWeight::get().writes(2))
    }
    /// Storage: `Devices::Devices` (r:1 w:1)
    /// Proof: `Devices::Devices` (`max_values`: None, `max_size`: Some(757), added: 3232, mode: `MaxEncodedLen`)
    /// Storage: `Groups::DeviceGroups` (r:1 w:0)
    /// Proof: `Groups::DeviceGroups` (`max_values`: None, `max_size`: Some(1139), added: 3614, mode: `MaxEncodedLen`)
    fn set_status() -> Weight {
        // Proof size measured: `692`;
        // estimated: `4604`.
        // Minimum execution time: 11_617_000 ps.
        Weight::from_parts(12_309_000, 4604)
            .saturating_add(T::DbWeight::get().reads(2))
            .saturating_add(T::DbWeight::get().writes(1))
    }
    /// Storage: `Devices::Devices` (r:1 w:1)
    /// Proof: `Devices::Devices` (`max_values`: None, `max_size`: Some(757), added: 3232, mode: `MaxEncodedLen`)
    /// Storage: `Operators::Members` (r:1 w:0)
    /// Proof: `Operators::Members` (`max_values`: Some(1), `max_size`: Some(1025), added: 1520, mode: `MaxEncodedLen`)
    /// Storage: `Devices::OwnedDevices` (r:1 w:1)
    /// Proof: `Devices::OwnedDevices` (`max_values`: None, `max_size`: Some(52), added: 2527, mode: `MaxEncodedLen`)
    /// Storage: `Groups::DeviceGroups` (r:1 w:0)
    /// Proof: `Groups::DeviceGroups` (`max_values`: None, `max_size`: Some(1139), added: 3614, mode: `MaxEncodedLen`)
    fn revoke() -> Weight {
        // Proof size measured: `974`;
        // estimated: `4604`.
        // Minimum execution time: 19_219_000 ps.
        Weight::from_parts(20_441_000, 4604)
            .saturating_add(T::DbWeight::get().reads(4))
            .saturating_add(T::DbWeight::get().writes(2))
    }
}

/// The same measurements with ParityDB's database weights, for mocks and tests.
impl WeightInfo for () {
    fn register() -> Weight {
        Weight::from_parts(17_567_000, 4828)
            .saturating_add(ParityDbWeight::get().reads(4))
            .saturating_add(ParityDbWeight::get().writes(4))
    }
    fn rotate_key() -> Weight {
        Weight::from_parts(22_123_000, 4828)
            .saturating_add(ParityDbWeight::get().reads(4))
            .saturating_add(ParityDbWeight::get().writes(2))
    }
    fn set_status() -> Weight {
        Weight::from_parts(12_309_000, 4604)
            .saturating_add(ParityDbWeight::get().reads(2))
            .saturating_add(ParityDbWeight::get().writes(1))
    }
    fn revoke() -> Weight {
        Weight::from_parts(20_441_000, 4604)
            .saturating_add(ParityDbWeight::get().reads(4))
            .saturating_add(ParityDbWeight::get().writes(2))
    }
}
