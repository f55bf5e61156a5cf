//! A minimal runtime for the pallet's unit tests, with a device registry held in a map.

use crate as pallet_groups;
use frame_support::derive_impl;
pub use keymesh_pallet_support::mock_operator::{OperatorOrigin, OPERATOR};
use keymesh_pallet_support::CheckedExt;
use keymesh_primitives::{DeviceDirectory, DeviceStatus, Fingerprint};
use sp_runtime::BuildStorage;
use std::{cell::RefCell, collections::BTreeMap};

type Block = frame_system::mocking::MockBlock<Test>;

frame_support::construct_runtime!(
    pub enum Test {
        System: frame_system,
        Groups: pallet_groups,
    }
);

#[derive_impl(frame_system::config_preludes::TestDefaultConfig)]
impl frame_system::Config for Test {
    type Block = Block;
}

pub const ADMIN: u64 = 2;
pub const STRANGER: u64 = 3;
pub const KEY_MANAGER: u64 = 4;

/// A mock device: its status and the fingerprint of its current key.
#[derive(Clone, Copy)]
struct MockDevice {
    status: DeviceStatus,
    fingerprint: Fingerprint,
}

std::thread_local! {
    static DEVICES: RefCell<BTreeMap<Vec<u8>, MockDevice>> = const { RefCell::new(BTreeMap::new()) };
}

/// Registers (or re-statuses) a device in the mock registry, keeping its key.
pub fn set_device(id: &str, status: DeviceStatus) {
    DEVICES.with(|d| {
        let mut devices = d.borrow_mut();
        let fingerprint = devices
            .get(id.as_bytes())
            .map(|m| m.fingerprint)
            .unwrap_or_else(|| sp_io::hashing::sha2_256(id.as_bytes()));
        devices.insert(
            id.as_bytes().to_vec(),
            MockDevice {
                status,
                fingerprint,
            },
        );
    });
}

/// Gives a registered device a new key in the mock registry.
pub fn rotate_device(id: &str) {
    DEVICES.with(|d| {
        if let Some(m) = d.borrow_mut().get_mut(id.as_bytes()) {
            m.fingerprint = sp_io::hashing::sha2_256(&m.fingerprint);
        }
    });
}

/// The fingerprint of a device's current key in the mock registry.
pub fn device_key(id: &str) -> Fingerprint {
    TestDevices::fingerprint(id.as_bytes()).unwrap_or_default()
}

pub struct TestDevices;
impl DeviceDirectory for TestDevices {
    fn status(device: &[u8]) -> Option<DeviceStatus> {
        DEVICES.with(|d| d.borrow().get(device).map(|m| m.status))
    }
    fn fingerprint(device: &[u8]) -> Option<Fingerprint> {
        DEVICES.with(|d| d.borrow().get(device).map(|m| m.fingerprint))
    }
}

frame_support::parameter_types! {
    /// Small, so tests reach the limit; a test may raise it.
    pub static MaxMembers: u32 = 4;
    pub const MaxGroupsPerDevice: u32 = 3;
    pub const MaxKeyManagers: u32 = 2;
    pub const MaxSealedKeyLen: u32 = 4096;
    pub const MaxWrapLen: u32 = 512;
    pub static MaxWrapsPerCall: u32 = 3;
}

impl pallet_groups::Config for Test {
    type RuntimeEvent = RuntimeEvent;
    type OperatorOrigin = OperatorOrigin;
    type MaxKeyManagers = MaxKeyManagers;
    type Devices = TestDevices;
    type MaxMembers = MaxMembers;
    type MaxGroupsPerDevice = MaxGroupsPerDevice;
    type MaxSealedKeyLen = MaxSealedKeyLen;
    type MaxWrapLen = MaxWrapLen;
    type MaxWrapsPerCall = MaxWrapsPerCall;
    type WeightInfo = ();
    #[cfg(feature = "runtime-benchmarks")]
    type BenchmarkHelper = MockRegistry;
}

/// Registers the benchmarks' devices in the mock registry.
#[cfg(feature = "runtime-benchmarks")]
pub struct MockRegistry;
#[cfg(feature = "runtime-benchmarks")]
impl crate::benchmarking::BenchmarkHelper for MockRegistry {
    fn register_device(device: &crate::Id) -> Fingerprint {
        let fingerprint = sp_io::hashing::sha2_256(device);
        DEVICES.with(|d| {
            d.borrow_mut().insert(
                device.to_vec(),
                MockDevice {
                    status: DeviceStatus::Active,
                    fingerprint,
                },
            )
        });
        fingerprint
    }
}

/// A fresh chain at block 1 whose registry holds active devices 1111..1116.
/// The pallet's mock state; `execute_with` checks the invariants after each test.
pub fn new_test_ext() -> CheckedExt {
    let mut storage = frame_system::GenesisConfig::<Test>::default()
        .build_storage()
        .unwrap();
    pallet_groups::GenesisConfig::<Test> {
        key_managers: vec![KEY_MANAGER],
    }
    .assimilate_storage(&mut storage)
    .unwrap();
    let mut ext = sp_io::TestExternalities::new(storage);
    DEVICES.with(|d| d.borrow_mut().clear());
    MaxMembers::set(4);
    MaxWrapsPerCall::set(3);
    for id in ["1111", "1112", "1113", "1114", "1115", "1116"] {
        set_device(id, DeviceStatus::Active);
    }
    ext.execute_with(|| System::set_block_number(1));
    CheckedExt::new(ext, Groups::do_try_state)
}
