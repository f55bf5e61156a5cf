//! A minimal runtime for the pallet's unit tests and benchmark tests.

use crate as pallet_exchange_log;
use frame_support::derive_impl;
pub use keymesh_pallet_support::mock_operator::{OperatorOrigin, OPERATOR};
use keymesh_pallet_support::CheckedExt;
use sp_runtime::BuildStorage;
use std::{cell::RefCell, collections::BTreeSet};

type Block = frame_system::mocking::MockBlock<Test>;

frame_support::construct_runtime!(
    pub enum Test {
        System: frame_system,
        ExchangeLog: pallet_exchange_log,
    }
);

#[derive_impl(frame_system::config_preludes::TestDefaultConfig)]
impl frame_system::Config for Test {
    type Block = Block;
}

pub const BRIDGE: u64 = 2;
pub const STRANGER: u64 = 3;

frame_support::parameter_types! {
    pub const MaxBatch: u32 = 4;
    pub const MaxBridges: u32 = 2;
}

std::thread_local! {
    /// Devices and groups the benchmarks registered.
    static REGISTERED: RefCell<BTreeSet<Vec<u8>>> = const { RefCell::new(BTreeSet::new()) };
}

fn registered(id: &[u8]) -> bool {
    REGISTERED.with(|r| r.borrow().contains(id))
}

/// Devices 1111 and 1113 are registered; 1112 is revoked but still exists.
pub struct TestDevices;
impl keymesh_primitives::DeviceDirectory for TestDevices {
    fn status(device: &[u8]) -> Option<keymesh_primitives::DeviceStatus> {
        use keymesh_primitives::DeviceStatus::*;
        match device {
            b"1111" | b"1113" => Some(Active),
            b"1112" => Some(Revoked),
            _ if registered(device) => Some(Active),
            _ => None,
        }
    }
    fn fingerprint(device: &[u8]) -> Option<keymesh_primitives::Fingerprint> {
        Self::status(device).map(|_| sp_io::hashing::sha2_256(device))
    }
}

/// Group B exists.
pub struct TestGroups;
impl keymesh_primitives::GroupDirectory for TestGroups {
    fn exists(group: &[u8]) -> bool {
        group == b"B" || registered(group)
    }
}

impl pallet_exchange_log::Config for Test {
    type RuntimeEvent = RuntimeEvent;
    type OperatorOrigin = OperatorOrigin;
    type MaxBatch = MaxBatch;
    type MaxBridges = MaxBridges;
    type Devices = TestDevices;
    type Groups = TestGroups;
    type WeightInfo = ();
    #[cfg(feature = "runtime-benchmarks")]
    type BenchmarkHelper = MockDirectory;
}

/// Registers the benchmarks' devices and groups in the mock directories.
#[cfg(feature = "runtime-benchmarks")]
pub struct MockDirectory;
#[cfg(feature = "runtime-benchmarks")]
impl crate::benchmarking::BenchmarkHelper for MockDirectory {
    fn register_device(device: &crate::Id) {
        REGISTERED.with(|r| r.borrow_mut().insert(device.to_vec()));
    }
    fn create_group(group: &crate::Id) {
        REGISTERED.with(|r| r.borrow_mut().insert(group.to_vec()));
    }
}

/// The pallet's mock state; `execute_with` checks the invariants after each test.
pub fn new_test_ext() -> CheckedExt {
    let storage = frame_system::GenesisConfig::<Test>::default()
        .build_storage()
        .unwrap();
    REGISTERED.with(|r| r.borrow_mut().clear());
    let mut ext = sp_io::TestExternalities::new(storage);
    ext.execute_with(|| System::set_block_number(10));
    CheckedExt::new(ext, ExchangeLog::do_try_state)
}
