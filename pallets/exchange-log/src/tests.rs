use crate::{mock::*, Bridges, Error, Event, ExchangeRecord, Id, Target};
use frame_support::{assert_noop, assert_ok, BoundedVec};
use sp_runtime::DispatchError;

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
    use crate::WeightInfo;
    assert!(<() as WeightInfo>::record(1).all_lt(<() as WeightInfo>::record(100)));
}

fn exchanges(count: u32, checked_at: u64) -> ExchangeRecord<u64> {
    exchanges_from("1111", count, checked_at)
}

fn exchanges_from(sender: &str, count: u32, checked_at: u64) -> ExchangeRecord<u64> {
    ExchangeRecord::Exchanges {
        sender: id(sender),
        target: Target::Group(id("B")),
        fingerprint: [1; 32],
        checked_at,
        count,
        root: [3; 32],
    }
}

#[test]
fn a_record_of_many_exchanges_is_one_event_with_their_count_and_root() {
    new_test_ext().execute_with(|| {
        assert_ok!(ExchangeLog::add_bridge(RuntimeOrigin::root(), BRIDGE));
        assert_ok!(ExchangeLog::record(
            RuntimeOrigin::signed(BRIDGE),
            batch(vec![exchanges(5_000, 9)])
        ));
        System::assert_last_event(
            Event::KeysExchanged {
                reporter: BRIDGE,
                sender: id("1111"),
                target: Target::Group(id("B")),
                fingerprint: [1; 32],
                checked_at: 9,
                count: 5_000,
                root: [3; 32],
            }
            .into(),
        );
    });
}

#[test]
fn a_record_of_exchanges_must_count_some_and_be_checked_in_the_past() {
    new_test_ext().execute_with(|| {
        assert_ok!(ExchangeLog::add_bridge(RuntimeOrigin::root(), BRIDGE));
        assert_noop!(
            ExchangeLog::record(RuntimeOrigin::signed(BRIDGE), batch(vec![exchanges(0, 1)])),
            Error::<Test>::NoExchanges
        );
        assert_noop!(
            ExchangeLog::record(
                RuntimeOrigin::signed(BRIDGE),
                batch(vec![exchanges(1, 1), exchanges(2, 11)])
            ),
            Error::<Test>::CheckedInFuture
        );
        assert_noop!(
            ExchangeLog::record(
                RuntimeOrigin::signed(BRIDGE),
                batch(vec![exchanges_from("9999", 1, 1)])
            ),
            Error::<Test>::UnknownSender
        );
    });
}
