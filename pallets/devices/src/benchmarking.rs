//! FRAME benchmarks (v2) of `pallet-devices`. Each sets up the worst case its weight must
//! cover: an RSA-4096 key (the longest the runtime accepts, so the costliest to parse and
//! hash) and, for a rotation, a full key history. `scripts/benchmark-weights.sh` runs them
//! against the runtime wasm and writes `src/weights.rs`; `cargo test --features
//! runtime-benchmarks` runs each once against the mock.

use super::*;
use alloc::format;
use frame_benchmarking::v2::*;
use frame_support::traits::{EnsureOrigin, Get};
use frame_system::{pallet_prelude::BlockNumberFor, RawOrigin};
use keymesh_primitives::KeyHistoryEntry;

/// RSA-4096, the longest key a device may have.
const KEY_4096: &[u8] = include_bytes!("../testdata/rsa4096.der");
/// RSA-2048: the key a device holds before the benchmarked rotation.
const KEY_2048: &[u8] = include_bytes!("../testdata/rsa2048-1111.der");

fn device_id(n: u32) -> DeviceId {
    format!("bench-device-{n}")
        .into_bytes()
        .try_into()
        .expect("a short id fits")
}

fn public_key(der: &[u8]) -> PublicKeyDer {
    der.to_vec().try_into().expect("a test key fits")
}

fn operator<T: Config>() -> Result<T::RuntimeOrigin, BenchmarkError> {
    T::OperatorOrigin::try_successful_origin().map_err(|_| BenchmarkError::Weightless)
}

/// Registers device `n` with an RSA-2048 key, owned by `owner`.
fn registered<T: Config>(n: u32, owner: &T::AccountId) -> Result<DeviceId, BenchmarkError> {
    let device = device_id(n);
    Pallet::<T>::register(
        operator::<T>()?,
        device.clone(),
        public_key(KEY_2048),
        owner.clone(),
    )?;
    Ok(device)
}

/// Fills `device`'s key history, so the next entry pushes the oldest out.
fn fill_history<T: Config>(device: &DeviceId) {
    KeyHistory::<T>::mutate(device, |history| {
        let Some(newest) = history.last().cloned() else {
            return;
        };
        while (history.len() as u32) < T::MaxKeyHistory::get() {
            let older = KeyHistoryEntry::<BlockNumberFor<T>> {
                epoch: newest.epoch,
                fingerprint: [0xaa; 32],
                from_block: newest.from_block,
            };
            if history.try_insert(0, older).is_err() {
                break;
            }
        }
    });
}

#[benchmarks]
mod benchmarks {
    use super::*;

    #[benchmark]
    fn register() -> Result<(), BenchmarkError> {
        let origin = operator::<T>()?;
        let device = device_id(0);
        let owner: T::AccountId = whitelisted_caller();

        #[extrinsic_call]
        _(
            origin as T::RuntimeOrigin,
            device.clone(),
            public_key(KEY_4096),
            owner,
        );

        assert!(Devices::<T>::contains_key(&device));
        Ok(())
    }

    #[benchmark]
    fn rotate_key() -> Result<(), BenchmarkError> {
        let owner: T::AccountId = whitelisted_caller();
        let device = registered::<T>(0, &owner)?;
        fill_history::<T>(&device);

        #[extrinsic_call]
        _(
            RawOrigin::Signed(owner),
            device.clone(),
            public_key(KEY_4096),
        );

        assert_eq!(Devices::<T>::get(&device).map(|d| d.epoch), Some(1));
        Ok(())
    }

    /// `suspend` and `resume` do the same work: one status transition.
    #[benchmark]
    fn set_status() -> Result<(), BenchmarkError> {
        let owner: T::AccountId = whitelisted_caller();
        let device = registered::<T>(0, &owner)?;
        let origin = operator::<T>()?;

        #[extrinsic_call]
        suspend(origin as T::RuntimeOrigin, device.clone());

        assert_eq!(
            Devices::<T>::get(&device).map(|d| d.status),
            Some(DeviceStatus::Suspended)
        );
        Ok(())
    }

    #[benchmark]
    fn revoke() -> Result<(), BenchmarkError> {
        let owner: T::AccountId = whitelisted_caller();
        let device = registered::<T>(0, &owner)?;

        #[extrinsic_call]
        _(RawOrigin::Signed(owner), device.clone());

        assert_eq!(
            Devices::<T>::get(&device).map(|d| d.status),
            Some(DeviceStatus::Revoked)
        );
        Ok(())
    }

    impl_benchmark_test_suite!(Pallet, crate::mock::new_test_ext(), crate::mock::Test);
}
