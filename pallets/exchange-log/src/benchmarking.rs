//! FRAME benchmarks (v2) of `pallet-exchange-log`. `record` is measured with batches of `Exchanges`
//! records whose senders and targets all exist (every record is looked up), half of them to
//! devices and half to groups; the bridge registry is one short of full.
//! `scripts/benchmark-weights.sh` runs them against the runtime wasm and writes
//! `src/weights.rs`; `cargo test --features runtime-benchmarks` runs each once against the
//! mock.

use super::*;
use alloc::{format, vec::Vec};
use frame_benchmarking::v2::*;
use frame_support::traits::{EnsureOrigin, Get};
use frame_system::RawOrigin;

/// What the benchmarks need from the runtime beyond this pallet: the devices and groups the
/// records name.
pub trait BenchmarkHelper {
    /// Registers `device` (in the KeyMesh runtime, through `pallet-devices`).
    fn register_device(device: &Id);
    /// Creates `group` (in the KeyMesh runtime, through `pallet-groups`).
    fn create_group(group: &Id);
}

fn id(name: &str) -> Id {
    name.as_bytes()
        .to_vec()
        .try_into()
        .expect("a short id fits")
}

fn operator<T: Config>() -> Result<T::RuntimeOrigin, BenchmarkError> {
    T::OperatorOrigin::try_successful_origin().map_err(|_| BenchmarkError::Weightless)
}

/// Fills the bridge registry up to one short of `MaxBridges`.
fn bridges_but_one<T: Config>() {
    for i in Bridges::<T>::count().saturating_add(1)..T::MaxBridges::get() {
        Bridges::<T>::insert(account::<T::AccountId>("bridges", i, 0), ());
    }
}

#[benchmarks]
mod benchmarks {
    use super::*;

    /// A batch of `n` records: a distinct sender each, every other one to a group.
    #[benchmark]
    fn record(n: Linear<1, { T::MaxBatch::get() }>) -> Result<(), BenchmarkError> {
        let bridge: T::AccountId = whitelisted_caller();
        Pallet::<T>::add_bridge(operator::<T>()?, bridge.clone())?;
        let now = frame_system::Pallet::<T>::block_number();
        let batch: Vec<_> = (0..n)
            .map(|i| {
                let sender = id(&format!("bench-sender-{i}"));
                T::BenchmarkHelper::register_device(&sender);
                let target = if i % 2 == 0 {
                    let device = id(&format!("bench-target-{i}"));
                    T::BenchmarkHelper::register_device(&device);
                    Target::Device(device)
                } else {
                    let group = id(&format!("bench-group-{i}"));
                    T::BenchmarkHelper::create_group(&group);
                    Target::Group(group)
                };
                // What bridges send: one record per sender, target and key, however many
                // envelopes it counts (the count changes nothing the runtime does).
                ExchangeRecord::Exchanges {
                    sender,
                    target,
                    fingerprint: [7; 32],
                    checked_at: now,
                    count: u32::MAX,
                    root: [9; 32],
                }
            })
            .collect();
        let batch: BoundedVec<_, T::MaxBatch> = batch
            .try_into()
            .map_err(|_| BenchmarkError::Stop("batch longer than MaxBatch"))?;

        #[extrinsic_call]
        _(RawOrigin::Signed(bridge), batch);

        Ok(())
    }

    #[benchmark]
    fn add_bridge() -> Result<(), BenchmarkError> {
        bridges_but_one::<T>();
        let origin = operator::<T>()?;
        let who: T::AccountId = account("new-bridge", 0, 0);

        #[extrinsic_call]
        _(origin as T::RuntimeOrigin, who.clone());

        assert!(Bridges::<T>::contains_key(&who));
        Ok(())
    }

    #[benchmark]
    fn remove_bridge() -> Result<(), BenchmarkError> {
        bridges_but_one::<T>();
        let who: T::AccountId = account("new-bridge", 0, 0);
        Pallet::<T>::add_bridge(operator::<T>()?, who.clone())?;
        let origin = operator::<T>()?;

        #[extrinsic_call]
        _(origin as T::RuntimeOrigin, who.clone());

        assert!(!Bridges::<T>::contains_key(&who));
        Ok(())
    }

    impl_benchmark_test_suite!(Pallet, crate::mock::new_test_ext(), crate::mock::Test);
}
