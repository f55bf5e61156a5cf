//! Weights of `pallet_exchange_log`, generated from its FRAME benchmarks (`src/benchmarking.rs`).
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

/// Weight functions needed by `pallet_exchange_log`: one per benchmark.
pub trait WeightInfo {
    /// Benchmark `record`.
    /// Component `n` was measured over `[1, 1024]`.
    fn record(n: u32) -> Weight;
    /// Benchmark `add_bridge`.
    fn add_bridge() -> Weight;
    /// Benchmark `remove_bridge`.
    fn remove_bridge() -> Weight;
}

/// Weights measured by the benchmarks, for a runtime.
pub struct SubstrateWeight<T>(PhantomData<T>);
impl<T: frame_system::Config> WeightInfo for SubstrateWeight<T> {
    /// Storage: `ExchangeLog::Bridges` (r:1 w:0)
    /// Proof: `ExchangeLog::Bridges` (`max_values`: None, `max_size`: Some(48), added: 2523, mode: `MaxEncodedLen`)
    /// Storage: `Devices::Devices` (r:1536 w:0)
    /// Proof: `Devices::Devices` (`max_values`: None, `max_size`: Some(757), added: 3232, mode: `MaxEncodedLen`)
    /// Storage: `Groups::Groups` (r:512 w:0)
    /// Proof: `Groups::Groups` (`max_values`: None, `max_size`: Some(4891), added: 7366, mode: `MaxEncodedLen`)
    fn record(n: u32) -> Weight {
        // Proof size measured: `800 + n * (140 ±0)`;
        // estimated: `3513 + n * (4848 ±0)`.
        // Minimum execution time: 17_316_000 ps.
        Weight::from_parts(0, 3513)
            // Standard error: 0.
            .saturating_add(Weight::from_parts(8_143_712, 0).saturating_mul(n.into()))
            .saturating_add(T::DbWeight::get().reads(1))
            .saturating_add(T::DbWeight::get().reads((2_u64).saturating_mul(n.into())))
            .saturating_add(Weight::from_parts(0, 4848).saturating_mul(n.into()))
    }
    /// Storage: `ExchangeLog::Bridges` (r:1 w:1)
    /// Proof: `ExchangeLog::Bridges` (`max_values`: None, `max_size`: Some(48), added: 2523, mode: `MaxEncodedLen`)
    /// Storage: `ExchangeLog::CounterForBridges` (r:1 w:1)
    /// Proof: `ExchangeLog::CounterForBridges` (`max_values`: Some(1), `max_size`: Some(4), added: 499, mode: `MaxEncodedLen`)
    fn add_bridge() -> Weight {
        // Proof size measured: `373`;
        // estimated: `3513`.
        // Minimum execution time: 11_528_000 ps.
        Weight::from_parts(12_488_000, 3513)
            .saturating_add(T::DbWeight::get().reads(2))
            .saturating_add(T::DbWeight::get().writes(2))
    }
    /// Storage: `ExchangeLog::Bridges` (r:1 w:1)
    /// Proof: `ExchangeLog::Bridges` (`max_values`: None, `max_size`: Some(48), added: 2523, mode: `MaxEncodedLen`)
    /// Storage: `ExchangeLog::CounterForBridges` (r:1 w:1)
    /// Proof: `ExchangeLog::CounterForBridges` (`max_values`: Some(1), `max_size`: Some(4), added: 499, mode: `MaxEncodedLen`)
    fn remove_bridge() -> Weight {
        // Proof size measured: `410`;
        // estimated: `3513`.
        // Minimum execution time: 11_558_000 ps.
        Weight::from_parts(12_309_000, 3513)
            .saturating_add(T::DbWeight::get().reads(2))
            .saturating_add(T::DbWeight::get().writes(2))
    }
}

/// The same measurements with ParityDB's database weights, for mocks and tests.
impl WeightInfo for () {
    fn record(n: u32) -> Weight {
        Weight::from_parts(0, 3513)
            .saturating_add(Weight::from_parts(8_143_712, 0).saturating_mul(n.into()))
            .saturating_add(ParityDbWeight::get().reads(1))
            .saturating_add(ParityDbWeight::get().reads((2_u64).saturating_mul(n.into())))
            .saturating_add(Weight::from_parts(0, 4848).saturating_mul(n.into()))
    }
    fn add_bridge() -> Weight {
        Weight::from_parts(12_488_000, 3513)
            .saturating_add(ParityDbWeight::get().reads(2))
            .saturating_add(ParityDbWeight::get().writes(2))
    }
    fn remove_bridge() -> Weight {
        Weight::from_parts(12_309_000, 3513)
            .saturating_add(ParityDbWeight::get().reads(2))
            .saturating_add(ParityDbWeight::get().writes(2))
    }
}
