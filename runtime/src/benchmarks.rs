//! What `frame-omni-bencher` can measure in this runtime, and what the pallets' benchmarks
//! need from the rest of it. Built only with `--features runtime-benchmarks`
//! (`scripts/benchmark-weights.sh`).

use crate::{AccountId, Devices, Groups, Runtime, RuntimeOrigin};
use keymesh_primitives::Fingerprint;

/// `pallet-node-authorization` ships no benchmarks; its wrapper crate has them.
pub type NodeAuthorizationBench = pallet_node_authorization_benchmarking::Pallet<Runtime>;

frame_benchmarking::define_benchmarks!(
    [pallet_devices, crate::Devices]
    [pallet_groups, crate::Groups]
    [pallet_exchange_log, crate::ExchangeLog]
    [pallet_node_authorization, crate::benchmarks::NodeAuthorizationBench]
);

impl pallet_node_authorization_benchmarking::Config for Runtime {}

/// A development key (RSA-2048) every benchmark device is registered with.
const DEVICE_KEY: &[u8] = include_bytes!("../dev-keys/1111.der");

/// Registers and creates what the groups' and exchange log's benchmarks name, through the
/// real pallets, as root.
pub struct Directory;

impl Directory {
    fn owner() -> AccountId {
        AccountId::from([0xbe; 32])
    }

    fn register(device: &pallet_devices::DeviceId) -> Option<Fingerprint> {
        let key = DEVICE_KEY.to_vec().try_into().ok()?;
        // Already registered is fine: the benchmarks share devices between groups.
        let _ = Devices::register(RuntimeOrigin::root(), device.clone(), key, Self::owner());
        pallet_devices::Devices::<Runtime>::get(device).map(|d| d.fingerprint)
    }
}

impl pallet_groups::benchmarking::BenchmarkHelper for Directory {
    fn register_device(device: &pallet_groups::Id) -> Fingerprint {
        Self::register(device).unwrap_or_default()
    }
}

impl pallet_exchange_log::benchmarking::BenchmarkHelper for Directory {
    fn register_device(device: &pallet_exchange_log::Id) {
        let _ = Self::register(device);
    }
    fn create_group(group: &pallet_exchange_log::Id) {
        let _ = Groups::create_group(RuntimeOrigin::root(), group.clone(), Self::owner());
    }
}
