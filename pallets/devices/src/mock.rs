//! A minimal runtime for the pallet's unit tests.

use crate as pallet_devices;
use frame_support::{derive_impl, weights::Weight};
pub use keymesh_pallet_support::mock_operator::{OperatorOrigin, OPERATOR};
use keymesh_pallet_support::CheckedExt;
use keymesh_primitives::DeviceChange;
use sp_runtime::BuildStorage;

type Block = frame_system::mocking::MockBlock<Test>;

frame_support::construct_runtime!(
    pub enum Test {
        System: frame_system,
        Devices: pallet_devices,
    }
);

#[derive_impl(frame_system::config_preludes::TestDefaultConfig)]
impl frame_system::Config for Test {
    type Block = Block;
}

pub const OWNER: u64 = 2;
pub const STRANGER: u64 = 3;

std::thread_local! {
    pub static CHANGED: std::cell::RefCell<Vec<(Vec<u8>, DeviceChange)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Records device changes so tests can check the groups pallet would be told.
pub struct RecordChanges;
impl crate::OnDeviceChanged for RecordChanges {
    fn on_device_changed(device: &[u8], change: DeviceChange) -> Weight {
        CHANGED.with(|r| r.borrow_mut().push((device.to_vec(), change)));
        Weight::from_parts(1_000, 0)
    }
    fn max_weight() -> Weight {
        Weight::from_parts(1_000, 0)
    }
}

frame_support::parameter_types! {
    pub const MaxKeyHistory: u32 = 3;
}

impl pallet_devices::Config for Test {
    type RuntimeEvent = RuntimeEvent;
    type OperatorOrigin = OperatorOrigin;
    type MaxKeyHistory = MaxKeyHistory;
    type OnChanged = RecordChanges;
    type WeightInfo = ();
}

/// The pallet's mock state; `execute_with` checks the invariants after each test.
pub fn new_test_ext() -> CheckedExt {
    let storage = frame_system::GenesisConfig::<Test>::default()
        .build_storage()
        .unwrap();
    let mut ext = sp_io::TestExternalities::new(storage);
    ext.execute_with(|| System::set_block_number(1));
    CheckedExt::new(ext, Devices::do_try_state)
}
