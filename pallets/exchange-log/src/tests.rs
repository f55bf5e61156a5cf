use crate::{self as pallet_exchange_log, Bridges, Error, Event, ExchangeRecord, Id, Target};
use frame_support::{
    assert_noop, assert_ok, derive_impl,
    traits::{EitherOfDiverse, IsInVec},
    BoundedVec,
};
use frame_system::{EnsureRoot, EnsureSignedBy};
use keymesh_pallet_support::CheckedExt;
use sp_runtime::{BuildStorage, DispatchError};

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

const OPERATOR: u64 = 1;
const BRIDGE: u64 = 2;
const STRANGER: u64 = 3;

frame_support::parameter_types! {
    /// The one operator account of the tests.
    pub Operator: Vec<u64> = vec![OPERATOR];
}

frame_support::parameter_types! {
    pub const MaxBatch: u32 = 4;
    pub const MaxBridges: u32 = 2;
}

/// Devices 1111 and 1113 are registered; 1112 is revoked but still exists.
pub struct TestDevices;
impl keymesh_primitives::DeviceDirectory for TestDevices {
    fn status(device: &[u8]) -> Option<keymesh_primitives::DeviceStatus> {
        use keymesh_primitives::DeviceStatus::*;
        match device {
            b"1111" | b"1113" => Some(Active),
            b"1112" => Some(Revoked),
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
        group == b"B"
    }
}

impl pallet_exchange_log::Config for Test {
    type RuntimeEvent = RuntimeEvent;
    type OperatorOrigin = EitherOfDiverse<EnsureRoot<u64>, EnsureSignedBy<IsInVec<Operator>, u64>>;
    type MaxBatch = MaxBatch;
    type MaxBridges = MaxBridges;
    type Devices = TestDevices;
    type Groups = TestGroups;
}

/// The pallet's mock state; `execute_with` checks the invariants after each test.
fn new_test_ext() -> CheckedExt {
    let storage = frame_system::GenesisConfig::<Test>::default()
        .build_storage()
        .unwrap();
    let mut ext = sp_io::TestExternalities::new(storage);
    ext.execute_with(|| System::set_block_number(10));
    CheckedExt::new(ext, ExchangeLog::do_try_state)
}

fn id(s: &str) -> Id {
    s.as_bytes().to_vec().try_into().unwrap()
}

fn exchanged(sender: &str, target: Target, checked_at: u64) -> ExchangeRecord<u64> {
    ExchangeRecord::Exchanged {
        sender: id(sender),
        target,
        fingerprint: [1; 32],
        envelope_hash: [2; 32],
        checked_at,
    }
}

fn batch(records: Vec<ExchangeRecord<u64>>) -> BoundedVec<ExchangeRecord<u64>, MaxBatch> {
    records.try_into().unwrap()
}

#[test]
fn operators_manage_bridges() {
    new_test_ext().execute_with(|| {
        assert_noop!(
            ExchangeLog::add_bridge(RuntimeOrigin::signed(STRANGER), BRIDGE),
            Error::<Test>::NotOperator
        );
        assert_ok!(ExchangeLog::add_bridge(
            RuntimeOrigin::signed(OPERATOR),
            BRIDGE
        ));
        System::assert_last_event(Event::BridgeAdded { who: BRIDGE }.into());
        assert!(Bridges::<Test>::contains_key(BRIDGE));
        assert_noop!(
            ExchangeLog::add_bridge(RuntimeOrigin::root(), BRIDGE),
            Error::<Test>::AlreadyRegistered
        );
        assert_ok!(ExchangeLog::add_bridge(RuntimeOrigin::root(), 7));
        assert_noop!(
            ExchangeLog::add_bridge(RuntimeOrigin::root(), 8),
            Error::<Test>::TooMany
        );
        assert_ok!(ExchangeLog::remove_bridge(RuntimeOrigin::root(), 7));
        System::assert_last_event(Event::BridgeRemoved { who: 7 }.into());
        assert_noop!(
            ExchangeLog::remove_bridge(RuntimeOrigin::root(), 7),
            Error::<Test>::NotRegistered
        );
    });
}

#[test]
fn a_bridge_logs_one_event_per_record() {
    new_test_ext().execute_with(|| {
        assert_ok!(ExchangeLog::add_bridge(RuntimeOrigin::root(), BRIDGE));
        let mismatch = ExchangeRecord::Mismatch {
            sender: id("1111"),
            target: Target::Device(id("1113")),
            presented: [0; 32],
            expected: [9; 32],
        };
        assert_ok!(ExchangeLog::record(
            RuntimeOrigin::signed(BRIDGE),
            batch(vec![
                exchanged("1111", Target::Device(id("1113")), 9),
                exchanged("1111", Target::Group(id("B")), 10),
                mismatch,
            ])
        ));
        let events: Vec<RuntimeEvent> = System::events().into_iter().map(|r| r.event).collect();
        assert_eq!(events.len(), 4); // BridgeAdded + 3 records
        assert_eq!(
            events[1],
            Event::KeyExchanged {
                reporter: BRIDGE,
                sender: id("1111"),
                target: Target::Device(id("1113")),
                fingerprint: [1; 32],
                envelope_hash: [2; 32],
                checked_at: 9,
            }
            .into()
        );
        assert_eq!(
            events[3],
            Event::KeyMismatch {
                reporter: BRIDGE,
                sender: id("1111"),
                target: Target::Device(id("1113")),
                presented: [0; 32],
                expected: [9; 32],
            }
            .into()
        );
    });
}

#[test]
fn record_error_paths_leave_no_trail() {
    new_test_ext().execute_with(|| {
        let one = || batch(vec![exchanged("1111", Target::Device(id("1113")), 1)]);
        assert_noop!(
            ExchangeLog::record(RuntimeOrigin::signed(STRANGER), one()),
            Error::<Test>::NotBridge
        );
        assert_noop!(
            ExchangeLog::record(RuntimeOrigin::root(), one()),
            DispatchError::BadOrigin
        );
        assert_ok!(ExchangeLog::add_bridge(RuntimeOrigin::root(), BRIDGE));
        assert_noop!(
            ExchangeLog::record(RuntimeOrigin::signed(BRIDGE), batch(vec![])),
            Error::<Test>::EmptyBatch
        );
        // A later bad record rejects the whole batch.
        assert_noop!(
            ExchangeLog::record(
                RuntimeOrigin::signed(BRIDGE),
                batch(vec![
                    exchanged("1111", Target::Device(id("1113")), 1),
                    exchanged("1111", Target::Device(id("1113")), 11),
                ])
            ),
            Error::<Test>::CheckedInFuture
        );
        assert_noop!(
            ExchangeLog::record(
                RuntimeOrigin::signed(BRIDGE),
                batch(vec![exchanged("a/b", Target::Device(id("1113")), 1)])
            ),
            Error::<Test>::InvalidId
        );
        assert_noop!(
            ExchangeLog::record(
                RuntimeOrigin::signed(BRIDGE),
                batch(vec![exchanged("1111", Target::Group(id("#")), 1)])
            ),
            Error::<Test>::InvalidId
        );
        // Senders and targets must exist; a revoked device still does.
        for (sender, target, error) in [
            (
                "9999",
                Target::Device(id("1113")),
                Error::<Test>::UnknownSender,
            ),
            (
                "1111",
                Target::Device(id("9999")),
                Error::<Test>::UnknownTarget,
            ),
            ("1111", Target::Group(id("Z")), Error::<Test>::UnknownTarget),
        ] {
            assert_noop!(
                ExchangeLog::record(
                    RuntimeOrigin::signed(BRIDGE),
                    batch(vec![exchanged(sender, target, 1)])
                ),
                error
            );
        }
        assert_ok!(ExchangeLog::record(
            RuntimeOrigin::signed(BRIDGE),
            batch(vec![exchanged("1112", Target::Device(id("1111")), 1)])
        ));
        let same = ExchangeRecord::Mismatch {
            sender: id("1111"),
            target: Target::Device(id("1113")),
            presented: [4; 32],
            expected: [4; 32],
        };
        assert_noop!(
            ExchangeLog::record(RuntimeOrigin::signed(BRIDGE), batch(vec![same])),
            Error::<Test>::NotAMismatch
        );
        // More than MaxBatch records cannot even be built (and so not decoded).
        let five: Vec<_> = (0..5)
            .map(|_| exchanged("1111", Target::Device(id("1113")), 1))
            .collect();
        assert!(BoundedVec::<_, MaxBatch>::try_from(five).is_err());
    });
}

#[test]
fn record_weight_grows_with_the_batch() {
    assert!(
        crate::record_weight::<Test>(100).ref_time() > crate::record_weight::<Test>(1).ref_time()
    );
}
