use crate::{
    mock::*, DeviceGroups, EpochWraps, Error, Event, Groups as GroupStore, Id, KeyCheck, Members,
    PendingKeys, PublicKeyDer, Role, SealedKeyOf, WrapOf, WrapsOf,
};
use codec::{Decode, Encode};
use frame_support::{assert_noop, assert_ok, traits::Contains};
use keymesh_primitives::{DeviceChange, DeviceStatus, OnDeviceChanged};
use sp_runtime::DispatchError;

const TOPIC_KEY_1: &[u8] = include_bytes!("../../devices/testdata/rsa2048-1111.der");
const TOPIC_KEY_2: &[u8] = include_bytes!("../../devices/testdata/rsa2048-1113.der");
const KEY_4096: &[u8] = include_bytes!("../../devices/testdata/rsa4096.der");
const KEY_1024: &[u8] = include_bytes!("../../devices/testdata/rsa1024.der");
const KEY_E3: &[u8] = include_bytes!("../../devices/testdata/rsa2048-e3.der");
const KEY_ED25519: &[u8] = include_bytes!("../../devices/testdata/ed25519.der");
const KEY_P256: &[u8] = include_bytes!("../../devices/testdata/p256.der");

fn id(s: &str) -> Id {
    s.as_bytes().to_vec().try_into().unwrap()
}
fn key(k: &[u8]) -> PublicKeyDer {
    k.to_vec().try_into().unwrap()
}
fn sealed(tag: u8) -> SealedKeyOf<Test> {
    vec![tag; 64].try_into().unwrap()
}
fn wrap(tag: u8) -> WrapOf<Test> {
    vec![tag; 256].try_into().unwrap()
}
fn wraps(devices: &[&str], tag: u8) -> WrapsOf<Test> {
    devices
        .iter()
        .map(|d| (id(d), device_key(d), wrap(tag)))
        .collect::<Vec<_>>()
        .try_into()
        .unwrap()
}
fn fp(k: &[u8]) -> [u8; 32] {
    sp_io::hashing::sha2_256(k)
}

/// The pallet's events since the last call, then clears them.
fn take_events() -> Vec<Event<Test>> {
    let events = System::events()
        .into_iter()
        .filter_map(|r| match r.event {
            RuntimeEvent::Groups(e) => Some(e),
            _ => None,
        })
        .collect();
    System::reset_events();
    events
}

fn next_block() {
    let n = System::block_number() + 1;
    System::set_block_number(n);
}

fn create(group: &str) {
    assert_ok!(Groups::create_group(
        RuntimeOrigin::signed(OPERATOR),
        id(group),
        ADMIN
    ));
}

fn try_add(who: u64, group: &str, device: &str, role: Role) -> sp_runtime::DispatchResult {
    Groups::add_member(RuntimeOrigin::signed(who), id(group), id(device), role)
}

fn add(group: &str, device: &str, role: Role) {
    assert_ok!(try_add(ADMIN, group, device, role));
}

/// The key manager's call with a view of the current block.
fn set_key(group: &str, epoch: u32, topic: &[u8], seal: u8, devices: &[&str], tag: u8) {
    set_key_for(
        group,
        epoch,
        System::block_number(),
        topic,
        seal,
        devices,
        tag,
    );
}

fn set_key_for(
    group: &str,
    epoch: u32,
    members_at: u64,
    topic: &[u8],
    seal: u8,
    devices: &[&str],
    tag: u8,
) {
    assert_ok!(Groups::set_epoch_key(
        RuntimeOrigin::signed(KEY_MANAGER),
        id(group),
        epoch,
        members_at,
        key(topic),
        sealed(seal),
        wraps(devices, tag)
    ));
}

/// A group `G` with `MaxMembers` (4) members, 1111..1114, and no key yet.
fn full_group() {
    create("G");
    for d in ["1111", "1112", "1113", "1114"] {
        add("G", d, Role::Both);
    }
}

/// The wrap `device` holds for `group`'s current epoch.
fn wrapped(group: &str, device: &str) -> Option<Vec<u8>> {
    Groups::member_key(group.as_bytes(), device.as_bytes())
        .unwrap()
        .wrapped_epoch_key
}

/// A group `G` with members 1111 and 1112, keyed at epoch 1 with `TOPIC_KEY_1`.
fn keyed_group() {
    create("G");
    add("G", "1111", Role::Both);
    add("G", "1112", Role::Subscriber);
    set_key("G", 1, TOPIC_KEY_1, 1, &["1111", "1112"], 1);
    next_block();
    take_events();
}

#[test]
fn operator_creates_a_group() {
    new_test_ext().execute_with(|| {
        create("hsu0001");
        assert_ok!(Groups::create_group(RuntimeOrigin::root(), id("B"), ADMIN));
        let record = GroupStore::<Test>::get(id("hsu0001")).unwrap();
        assert_eq!((record.admin, record.epoch, record.members), (ADMIN, 0, 0));
        assert!(record.topic_key.is_none());
        assert_eq!(
            take_events(),
            vec![
                Event::GroupCreated {
                    group: id("hsu0001"),
                    admin: ADMIN
                },
                Event::GroupCreated {
                    group: id("B"),
                    admin: ADMIN
                }
            ]
        );
        assert_eq!(crate::GroupCount::<Test>::get(), 2);
    });
}

#[test]
fn create_group_errors() {
    new_test_ext().execute_with(|| {
        assert_noop!(
            Groups::create_group(RuntimeOrigin::signed(ADMIN), id("A"), ADMIN),
            Error::<Test>::NotOperator
        );
        assert_noop!(
            Groups::create_group(RuntimeOrigin::none(), id("A"), ADMIN),
            DispatchError::BadOrigin
        );
        for bad in ["a/b", "#", "+", "a b"] {
            assert_noop!(
                Groups::create_group(RuntimeOrigin::signed(OPERATOR), id(bad), ADMIN),
                Error::<Test>::InvalidGroupId
            );
        }
        create("A");
        assert_noop!(
            Groups::create_group(RuntimeOrigin::signed(OPERATOR), id("A"), STRANGER),
            Error::<Test>::GroupExists
        );
    });
}

#[test]
fn admin_or_operator_adds_members_and_one_rekey_is_asked_per_block() {
    new_test_ext().execute_with(|| {
        create("A");
        take_events();
        add("A", "1111", Role::Publisher);
        assert_ok!(try_add(OPERATOR, "A", "1112", Role::Subscriber));
        assert_eq!(
            take_events(),
            vec![
                Event::MemberAdded {
                    group: id("A"),
                    device: id("1111"),
                    role: Role::Publisher
                },
                Event::RekeyRequired {
                    group: id("A"),
                    next_epoch: 1
                },
                Event::MemberAdded {
                    group: id("A"),
                    device: id("1112"),
                    role: Role::Subscriber
                },
            ]
        );
        assert_eq!(GroupStore::<Test>::get(id("A")).unwrap().members, 2);
        assert_eq!(
            Members::<Test>::get(id("A"), id("1111")).unwrap().role,
            Role::Publisher
        );
        assert_eq!(
            DeviceGroups::<Test>::get(id("1112")).to_vec(),
            vec![id("A")]
        );

        next_block();
        add("A", "1113", Role::Both);
        assert_eq!(
            take_events(),
            vec![
                Event::MemberAdded {
                    group: id("A"),
                    device: id("1113"),
                    role: Role::Both
                },
                Event::RekeyRequired {
                    group: id("A"),
                    next_epoch: 1
                },
            ]
        );
    });
}

#[test]
fn add_member_errors() {
    new_test_ext().execute_with(|| {
        create("A");
        assert_noop!(
            try_add(STRANGER, "A", "1111", Role::Both),
            Error::<Test>::NotAdminOrOperator
        );
        assert_noop!(
            Groups::add_member(RuntimeOrigin::none(), id("A"), id("1111"), Role::Both),
            DispatchError::BadOrigin
        );
        assert_noop!(
            try_add(ADMIN, "Z", "1111", Role::Both),
            Error::<Test>::UnknownGroup
        );
        assert_noop!(
            try_add(ADMIN, "A", "9999", Role::Both),
            Error::<Test>::UnknownDevice
        );
        set_device("1115", DeviceStatus::Revoked);
        assert_noop!(
            try_add(ADMIN, "A", "1115", Role::Both),
            Error::<Test>::DeviceRevoked
        );
        set_device("1116", DeviceStatus::Suspended);
        assert_noop!(
            try_add(ADMIN, "A", "1116", Role::Both),
            Error::<Test>::DeviceNotActive
        );
        add("A", "1111", Role::Both);
        assert_noop!(
            try_add(ADMIN, "A", "1111", Role::Publisher),
            Error::<Test>::AlreadyMember
        );
    });
}

#[test]
fn group_full_and_device_in_too_many_groups() {
    new_test_ext().execute_with(|| {
        full_group();
        set_device("1115", DeviceStatus::Active);
        assert_noop!(
            try_add(ADMIN, "G", "1115", Role::Both),
            Error::<Test>::GroupFull
        );
        // 1111 is in G; MaxGroupsPerDevice is 3.
        for g in ["B", "C", "D"] {
            create(g);
        }
        add("B", "1111", Role::Both);
        add("C", "1111", Role::Both);
        assert_noop!(
            try_add(ADMIN, "D", "1111", Role::Both),
            Error::<Test>::TooManyGroups
        );
    });
}

#[test]
fn remove_member_deletes_wraps_and_asks_for_a_rekey() {
    new_test_ext().execute_with(|| {
        keyed_group();
        assert!(EpochWraps::<Test>::contains_key((id("G"), 1, id("1112"))));
        assert_ok!(Groups::remove_member(
            RuntimeOrigin::signed(ADMIN),
            id("G"),
            id("1112")
        ));
        assert_eq!(
            take_events(),
            vec![
                Event::MemberRemoved {
                    group: id("G"),
                    device: id("1112")
                },
                Event::RekeyRequired {
                    group: id("G"),
                    next_epoch: 2
                },
            ]
        );
        assert!(!Members::<Test>::contains_key(id("G"), id("1112")));
        assert!(!EpochWraps::<Test>::contains_key((id("G"), 1, id("1112"))));
        assert!(DeviceGroups::<Test>::get(id("1112")).is_empty());
        assert!(!DeviceGroups::<Test>::contains_key(id("1112")));
        assert_eq!(GroupStore::<Test>::get(id("G")).unwrap().members, 1);
        assert!(Groups::member_key(b"G", b"1112").is_none());
    });
}

#[test]
fn remove_member_errors() {
    new_test_ext().execute_with(|| {
        keyed_group();
        assert_noop!(
            Groups::remove_member(RuntimeOrigin::signed(STRANGER), id("G"), id("1111")),
            Error::<Test>::NotAdminOrOperator
        );
        assert_noop!(
            Groups::remove_member(RuntimeOrigin::signed(ADMIN), id("Z"), id("1111")),
            Error::<Test>::UnknownGroup
        );
        assert_noop!(
            Groups::remove_member(RuntimeOrigin::signed(ADMIN), id("G"), id("1113")),
            Error::<Test>::NotMember
        );
        assert_ok!(Groups::remove_member(
            RuntimeOrigin::signed(OPERATOR),
            id("G"),
            id("1111")
        ));
    });
}

#[test]
fn admin_sets_the_publishing_policy() {
    new_test_ext().execute_with(|| {
        create("B");
        take_events();
        assert_noop!(
            Groups::set_publishing(RuntimeOrigin::signed(STRANGER), id("B"), true),
            Error::<Test>::NotAdminOrOperator
        );
        assert_noop!(
            Groups::set_publishing(RuntimeOrigin::signed(ADMIN), id("Z"), true),
            Error::<Test>::UnknownGroup
        );
        assert_ok!(Groups::set_publishing(
            RuntimeOrigin::signed(ADMIN),
            id("B"),
            true
        ));
        assert!(GroupStore::<Test>::get(id("B")).unwrap().open_to_publishers);
        assert_eq!(
            take_events(),
            vec![Event::PublishingPolicySet {
                group: id("B"),
                open_to_publishers: true
            }]
        );
        assert!(Groups::group_info(b"B").unwrap().open_to_publishers);
    });
}

#[test]
fn a_complete_wrap_set_switches_the_epoch() {
    new_test_ext().execute_with(|| {
        create("G");
        add("G", "1111", Role::Both);
        add("G", "1112", Role::Subscriber);
        take_events();
        assert_eq!(Groups::check_key(b"G", &fp(TOPIC_KEY_1)), KeyCheck::Unknown);
        set_key("G", 1, TOPIC_KEY_1, 1, &["1111", "1112"], 7);
        let mut events = take_events();
        assert_eq!(
            events.remove(0),
            Event::GroupKeyRotated {
                group: id("G"),
                epoch: 1,
                fingerprint: fp(TOPIC_KEY_1)
            }
        );
        // Deliveries come in storage order, which is the hashed key's.
        let mut delivered: Vec<_> = events
            .into_iter()
            .map(|e| match e {
                Event::GroupKeyDelivered {
                    group,
                    device,
                    epoch: 1,
                } if group == id("G") => device,
                other => panic!("unexpected event {other:?}"),
            })
            .collect();
        delivered.sort();
        assert_eq!(delivered, vec![id("1111"), id("1112")]);
        let record = GroupStore::<Test>::get(id("G")).unwrap();
        assert_eq!(record.epoch, 1);
        assert!(PendingKeys::<Test>::get(id("G")).is_none());
        assert_eq!(Groups::check_key(b"G", &fp(TOPIC_KEY_1)), KeyCheck::Check);
        assert_eq!(
            Groups::check_key(b"G", &fp(TOPIC_KEY_2)),
            KeyCheck::Mismatch {
                expected: fp(TOPIC_KEY_1)
            }
        );
        assert_eq!(
            Groups::check_key(b"nope", &fp(TOPIC_KEY_1)),
            KeyCheck::Unknown
        );
        let member = Groups::member_key(b"G", b"1112").unwrap();
        assert_eq!(member.role, Role::Subscriber);
        assert_eq!(member.wrapped_epoch_key, Some(vec![7; 256]));
        let topic = member.topic_key.unwrap();
        assert_eq!((topic.epoch, topic.fingerprint), (1, fp(TOPIC_KEY_1)));
        assert_eq!(topic.sealed_private_key, vec![1; 64]);
        assert!(Groups::member_key(b"G", b"1113").is_none());

        // The next epoch replaces the wraps: at most one epoch's wraps per member remain.
        next_block();
        add("G", "1113", Role::Subscriber);
        // The newcomer has no wrap of the current epoch: it cannot read the past.
        assert_eq!(wrapped("G", "1113"), None);
        set_key("G", 2, TOPIC_KEY_2, 2, &["1111", "1112", "1113"], 8);
        assert_eq!(EpochWraps::<Test>::iter().count(), 3);
        assert!(EpochWraps::<Test>::iter_keys().all(|(_, epoch, _)| epoch == 2));
        assert_eq!(wrapped("G", "1113"), Some(vec![8; 256]));
    });
}

#[test]
fn a_large_group_rekeys_over_several_calls() {
    new_test_ext().execute_with(|| {
        full_group();
        take_events();
        // MaxWrapsPerCall is 3: the first call leaves the set incomplete.
        set_key("G", 1, TOPIC_KEY_1, 1, &["1111", "1112", "1113"], 1);
        assert_eq!(
            take_events(),
            vec![Event::EpochKeyStaged {
                group: id("G"),
                epoch: 1,
                fingerprint: fp(TOPIC_KEY_1),
                delivered: 3,
                members: 4
            }]
        );
        assert_eq!(GroupStore::<Test>::get(id("G")).unwrap().epoch, 0);
        assert_eq!(Groups::check_key(b"G", &fp(TOPIC_KEY_1)), KeyCheck::Unknown);
        assert_eq!(Groups::group_info(b"G").unwrap().pending_epoch, Some(1));

        next_block();
        set_key_for("G", 1, 1, TOPIC_KEY_1, 1, &["1114"], 1);
        let events = take_events();
        assert_eq!(
            events[0],
            Event::GroupKeyRotated {
                group: id("G"),
                epoch: 1,
                fingerprint: fp(TOPIC_KEY_1)
            }
        );
        assert_eq!(events.len(), 5, "one delivery per member: {events:?}");
        assert_eq!(Groups::check_key(b"G", &fp(TOPIC_KEY_1)), KeyCheck::Check);
    });
}

#[test]
fn a_removal_mid_rekey_waits_for_the_next_epoch_and_its_keys_are_not_reused() {
    new_test_ext().execute_with(|| {
        full_group();
        set_key("G", 1, TOPIC_KEY_1, 1, &["1111", "1112", "1113"], 1);
        next_block();
        take_events();
        assert_ok!(Groups::remove_member(
            RuntimeOrigin::signed(ADMIN),
            id("G"),
            id("1113")
        ));
        // The attempt goes on: no discard, and the request waits for the switch.
        assert_eq!(
            take_events(),
            vec![Event::MemberRemoved {
                group: id("G"),
                device: id("1113")
            }]
        );
        assert!(!EpochWraps::<Test>::contains_key((id("G"), 1, id("1113"))));
        assert_eq!(PendingKeys::<Test>::get(id("G")).unwrap().delivered, 2);
        // The removed member's wrap, from a view that still had it, is skipped.
        set_key_for("G", 1, 1, TOPIC_KEY_1, 1, &["1113", "1114"], 1);
        let events = take_events();
        assert_eq!(
            events.len(),
            5,
            "rotated, three deliveries, rekey: {events:?}"
        );
        assert_eq!(
            events.last(),
            Some(&Event::RekeyRequired {
                group: id("G"),
                next_epoch: 2
            })
        );
        let record = GroupStore::<Test>::get(id("G")).unwrap();
        assert_eq!(record.epoch, 1);
        // 1113 may hold epoch 1's key: it left after the view the key was made for.
        assert!(Groups::departed_may_read(&record));
        assert!(!EpochWraps::<Test>::contains_key((id("G"), 1, id("1113"))));

        // Neither the topic key nor the sealed key of epoch 1 may serve epoch 2.
        let next = |topic: &[u8], seal: u8| {
            Groups::set_epoch_key(
                RuntimeOrigin::signed(KEY_MANAGER),
                id("G"),
                2,
                2,
                key(topic),
                sealed(seal),
                wraps(&["1111"], 3),
            )
        };
        assert_noop!(next(TOPIC_KEY_1, 4), Error::<Test>::KeyNotFresh);
        assert_noop!(next(KEY_4096, 1), Error::<Test>::KeyNotFresh);
        set_key("G", 2, TOPIC_KEY_2, 2, &["1111", "1112", "1114"], 2);
        let record = GroupStore::<Test>::get(id("G")).unwrap();
        assert_eq!(record.epoch, 2);
        assert!(!Groups::departed_may_read(&record));
    });
}

#[test]
fn another_key_for_the_pending_epoch_starts_over() {
    new_test_ext().execute_with(|| {
        full_group();
        set_key("G", 1, TOPIC_KEY_1, 1, &["1111", "1112", "1113"], 1);
        take_events();
        set_key("G", 1, TOPIC_KEY_2, 2, &["1114"], 2);
        assert_eq!(
            take_events(),
            vec![
                Event::PendingKeyDiscarded {
                    group: id("G"),
                    epoch: 1
                },
                Event::EpochKeyStaged {
                    group: id("G"),
                    epoch: 1,
                    fingerprint: fp(TOPIC_KEY_2),
                    delivered: 1,
                    members: 4
                },
            ]
        );
        // The dropped attempt's keys may be out (its wraps were): they are retired.
        let back = Groups::set_epoch_key(
            RuntimeOrigin::signed(KEY_MANAGER),
            id("G"),
            1,
            1,
            key(TOPIC_KEY_1),
            sealed(1),
            wraps(&["1111"], 1),
        );
        assert_noop!(back, Error::<Test>::KeyNotFresh);
        set_key("G", 1, TOPIC_KEY_2, 2, &["1111", "1112", "1113"], 2);
        assert_eq!(Groups::check_key(b"G", &fp(TOPIC_KEY_2)), KeyCheck::Check);
    });
}

#[test]
fn set_epoch_key_origin_group_and_epoch_errors() {
    new_test_ext().execute_with(|| {
        keyed_group();
        let call = |origin, group: &str, epoch| {
            Groups::set_epoch_key(
                origin,
                id(group),
                epoch,
                1,
                key(TOPIC_KEY_2),
                sealed(2),
                wraps(&["1111", "1112"], 2),
            )
        };
        assert_noop!(
            call(RuntimeOrigin::signed(STRANGER), "G", 2),
            Error::<Test>::NotKeyManager
        );
        assert_noop!(
            call(RuntimeOrigin::signed(OPERATOR), "G", 2),
            Error::<Test>::NotKeyManager
        );
        assert_noop!(
            call(RuntimeOrigin::root(), "G", 2),
            DispatchError::BadOrigin
        );
        assert_noop!(
            call(RuntimeOrigin::signed(KEY_MANAGER), "Z", 2),
            Error::<Test>::UnknownGroup
        );
        for wrong in [0, 1, 3, u32::MAX] {
            assert_noop!(
                call(RuntimeOrigin::signed(KEY_MANAGER), "G", wrong),
                Error::<Test>::WrongEpoch
            );
        }
        assert_ok!(call(RuntimeOrigin::signed(KEY_MANAGER), "G", 2));
    });
}

#[test]
fn set_epoch_key_refuses_invalid_keys() {
    new_test_ext().execute_with(|| {
        keyed_group();
        let mut trailing = TOPIC_KEY_2.to_vec();
        trailing.push(0);
        let cases: [&[u8]; 8] = [
            KEY_1024,
            KEY_E3,
            KEY_ED25519,
            KEY_P256,
            b"None",
            b"",
            &trailing,
            &TOPIC_KEY_2[..TOPIC_KEY_2.len() - 1],
        ];
        for bad in cases {
            assert_noop!(
                Groups::set_epoch_key(
                    RuntimeOrigin::signed(KEY_MANAGER),
                    id("G"),
                    2,
                    1,
                    key(bad),
                    sealed(2),
                    wraps(&["1111", "1112"], 2)
                ),
                Error::<Test>::InvalidKey
            );
        }
        // A 4096-bit topic key is fine.
        set_key("G", 2, KEY_4096, 2, &["1111", "1112"], 2);
    });
}

#[test]
fn set_epoch_key_refuses_bad_wrap_sets() {
    new_test_ext().execute_with(|| {
        keyed_group();
        let call = |devices: &[&str], wrap_len: usize, sealed_len: usize| {
            let wraps: WrapsOf<Test> = devices
                .iter()
                .map(|d| {
                    (
                        id(d),
                        device_key(d),
                        vec![3u8; wrap_len].try_into().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
                .try_into()
                .unwrap();
            Groups::set_epoch_key(
                RuntimeOrigin::signed(KEY_MANAGER),
                id("G"),
                2,
                1,
                key(TOPIC_KEY_2),
                vec![7u8; sealed_len].try_into().unwrap(),
                wraps,
            )
        };
        // A wrap made to a key the member does not have.
        let stale: WrapsOf<Test> = vec![(id("1111"), [9; 32], wrap(3))].try_into().unwrap();
        assert_noop!(
            Groups::set_epoch_key(
                RuntimeOrigin::signed(KEY_MANAGER),
                id("G"),
                2,
                1,
                key(TOPIC_KEY_2),
                sealed(7),
                stale
            ),
            Error::<Test>::WrapForOtherKey
        );
        assert_noop!(
            call(&["1111", "1111"], 256, 64),
            Error::<Test>::DuplicateWrap
        );
        assert_noop!(call(&["1111", "1112"], 255, 64), Error::<Test>::InvalidWrap);
        assert_noop!(
            call(&["1111", "1112"], 256, 29),
            Error::<Test>::InvalidSealedKey
        );
        assert_noop!(call(&[], 256, 64), Error::<Test>::NoWraps);
        // A view from a block not yet made.
        assert_noop!(
            Groups::set_epoch_key(
                RuntimeOrigin::signed(KEY_MANAGER),
                id("G"),
                2,
                System::block_number() + 1,
                key(TOPIC_KEY_2),
                sealed(7),
                wraps(&["1111"], 3)
            ),
            Error::<Test>::ViewFromTheFuture
        );
        // Incomplete: one wrap stages, a second copy of it is refused, the epoch stays.
        assert_ok!(call(&["1111"], 256, 64));
        assert_noop!(call(&["1111"], 256, 64), Error::<Test>::DuplicateWrap);
        assert_eq!(GroupStore::<Test>::get(id("G")).unwrap().epoch, 1);
        assert_eq!(Groups::check_key(b"G", &fp(TOPIC_KEY_1)), KeyCheck::Check);
        // A surplus wrap for a non-member is skipped, not stored.
        assert_ok!(call(&["1112", "1113"], 256, 64));
        assert_eq!(Groups::check_key(b"G", &fp(TOPIC_KEY_2)), KeyCheck::Check);
        assert!(!EpochWraps::<Test>::contains_key((id("G"), 2, id("1113"))));
    });
}

#[test]
fn oversize_arguments_cannot_even_be_decoded() {
    // Bounded arguments fail at decoding, before dispatch: keys over MAX_SPKI_LEN, wraps over
    // MaxWrapLen, sealed keys over MaxSealedKeyLen, more wraps than MaxWrapsPerCall.
    let encode = |key_len: usize, sealed_len: usize, wrap_len: usize, wraps: usize| {
        let wraps: Vec<(Id, [u8; 32], Vec<u8>)> = (0..wraps)
            .map(|_| (id("1111"), [0; 32], vec![0; wrap_len]))
            .collect();
        let mut bytes = vec![1u8, 4u8]; // Groups pallet index in the mock, set_epoch_key.
        (
            id("G"),
            1u32,
            1u64,
            vec![0u8; key_len],
            vec![0u8; sealed_len],
            wraps,
        )
            .encode_to(&mut bytes);
        RuntimeCall::decode(&mut &bytes[..])
    };
    assert!(encode(600, 4096, 512, 3).is_ok());
    assert!(encode(601, 64, 256, 1).is_err());
    assert!(encode(294, 4097, 256, 1).is_err());
    assert!(encode(294, 64, 513, 1).is_err());
    assert!(encode(294, 64, 256, 4).is_err());
}

#[test]
fn a_revoked_device_leaves_every_group() {
    new_test_ext().execute_with(|| {
        keyed_group();
        create("H");
        add("H", "1112", Role::Publisher);
        add("H", "1113", Role::Both);
        set_key("H", 1, TOPIC_KEY_2, 1, &["1112", "1113"], 1);
        next_block();
        take_events();
        set_device("1112", DeviceStatus::Revoked);
        let used = <Groups as OnDeviceChanged>::on_device_changed(b"1112", DeviceChange::Revoked);
        assert!(used.all_lte(<Groups as OnDeviceChanged>::max_weight()));
        assert!(used.ref_time() > 0);
        assert_eq!(
            take_events(),
            vec![
                Event::MemberRemoved {
                    group: id("G"),
                    device: id("1112")
                },
                Event::RekeyRequired {
                    group: id("G"),
                    next_epoch: 2
                },
                Event::MemberRemoved {
                    group: id("H"),
                    device: id("1112")
                },
                Event::RekeyRequired {
                    group: id("H"),
                    next_epoch: 2
                },
            ]
        );
        assert!(!DeviceGroups::<Test>::contains_key(id("1112")));
        assert!(EpochWraps::<Test>::iter_keys().all(|(_, _, d)| d != id("1112")));
        assert_eq!(GroupStore::<Test>::get(id("G")).unwrap().members, 1);
        assert_eq!(GroupStore::<Test>::get(id("H")).unwrap().members, 1);
        // It cannot come back.
        assert_noop!(
            try_add(ADMIN, "G", "1112", Role::Both),
            Error::<Test>::DeviceRevoked
        );
        // Revoking a device in no group, or an id that cannot exist, changes nothing.
        assert!(take_events().is_empty());
        <Groups as OnDeviceChanged>::on_device_changed(b"1114", DeviceChange::Revoked);
        <Groups as OnDeviceChanged>::on_device_changed(&[b'x'; 65], DeviceChange::Rotated);
        assert!(take_events().is_empty());
    });
}

#[test]
fn weights_grow_with_inputs() {
    use crate::WeightInfo;
    let w = |wraps, others| <() as WeightInfo>::set_epoch_key(wraps, others);
    assert!(w(1, 0).all_lt(w(100, 0)));
    assert!(w(100, 0).all_lt(w(100, 100)));
    assert!(<() as WeightInfo>::leave_groups(1).all_lt(<() as WeightInfo>::leave_groups(2)));
    assert!(<() as WeightInfo>::create_group().ref_time() > 0);
}

#[test]
fn admins_are_indexed_and_the_v1_migration_fills_the_index_once() {
    use frame_support::traits::{GetStorageVersion, OnRuntimeUpgrade, StorageVersion};
    new_test_ext().execute_with(|| {
        create("A");
        create("B");
        assert_eq!(crate::AdministeredGroups::<Test>::get(ADMIN), 2);
        assert!(Groups::administers_a_group(&ADMIN));
        assert!(!Groups::administers_a_group(&OPERATOR));
        // A chain from before the index: version 0, no index.
        let _ = crate::AdministeredGroups::<Test>::clear(u32::MAX, None);
        StorageVersion::new(0).put::<Groups>();
        crate::migrations::v1::IndexAdmins::<Test>::on_runtime_upgrade();
        assert_eq!(crate::AdministeredGroups::<Test>::get(ADMIN), 2);
        assert_eq!(Groups::on_chain_storage_version(), StorageVersion::new(1));
        crate::AdministeredGroups::<Test>::insert(ADMIN, 9);
        crate::migrations::v1::IndexAdmins::<Test>::on_runtime_upgrade();
        assert_eq!(crate::AdministeredGroups::<Test>::get(ADMIN), 9);
        crate::AdministeredGroups::<Test>::insert(ADMIN, 2);
    });
}

#[test]
fn the_invariants_catch_a_member_count_that_drifted() {
    let mut ext = new_test_ext();
    let broken = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ext.execute_with(|| {
            create("A");
            add("A", "1111", Role::Both);
            crate::Groups::<Test>::mutate(id("A"), |g| {
                if let Some(g) = g {
                    g.members = 5;
                }
            });
        })
    }));
    assert!(broken.is_err(), "a drifted member count went unnoticed");
}

/// Tells the pallet what the devices pallet would after changing `device` in the registry.
fn change_device(device: &str, change: DeviceChange) {
    match change {
        DeviceChange::Rotated => rotate_device(device),
        DeviceChange::Suspended => set_device(device, DeviceStatus::Suspended),
        DeviceChange::Resumed => set_device(device, DeviceStatus::Active),
        DeviceChange::Revoked => set_device(device, DeviceStatus::Revoked),
    }
    let used = <Groups as OnDeviceChanged>::on_device_changed(device.as_bytes(), change);
    assert!(used.all_lte(<Groups as OnDeviceChanged>::max_weight()));
}

#[test]
fn group_keys_follow_device_keys() {
    new_test_ext().execute_with(|| {
        keyed_group();
        let old_key = device_key("1112");
        change_device("1112", DeviceChange::Rotated);
        assert_eq!(
            take_events(),
            vec![
                Event::MemberChanged {
                    group: id("G"),
                    device: id("1112"),
                    change: DeviceChange::Rotated
                },
                Event::RekeyRequired {
                    group: id("G"),
                    next_epoch: 2
                },
            ]
        );
        // The wrap made to the old key is gone, and the old key may still read epoch 1.
        assert_eq!(wrapped("G", "1112"), None);
        let record = GroupStore::<Test>::get(id("G")).unwrap();
        assert!(Groups::departed_may_read(&record));
        // A wrap made to the old key is refused; one to the new key is taken.
        let to_old: WrapsOf<Test> = vec![(id("1112"), old_key, wrap(2))].try_into().unwrap();
        assert_noop!(
            Groups::set_epoch_key(
                RuntimeOrigin::signed(KEY_MANAGER),
                id("G"),
                2,
                System::block_number(),
                key(TOPIC_KEY_2),
                sealed(2),
                to_old
            ),
            Error::<Test>::WrapForOtherKey
        );
        set_key("G", 2, TOPIC_KEY_2, 2, &["1111", "1112"], 2);
        assert_eq!(GroupStore::<Test>::get(id("G")).unwrap().epoch, 2);
        assert_eq!(wrapped("G", "1112"), Some(vec![2; 256]));
        let wrap = EpochWraps::<Test>::get((id("G"), 2, id("1112"))).unwrap();
        assert_eq!(wrap.device_key, device_key("1112"));

        // A suspended member loses its wrap and gets none of the next epoch.
        next_block();
        take_events();
        change_device("1111", DeviceChange::Suspended);
        assert_eq!(wrapped("G", "1111"), None);
        set_key("G", 3, TOPIC_KEY_1, 3, &["1111", "1112"], 3);
        assert_eq!(GroupStore::<Test>::get(id("G")).unwrap().epoch, 3);
        assert!(!EpochWraps::<Test>::contains_key((id("G"), 3, id("1111"))));
        // Resumed, it reads again from the epoch after.
        next_block();
        take_events();
        change_device("1111", DeviceChange::Resumed);
        assert_eq!(
            take_events(),
            vec![
                Event::MemberChanged {
                    group: id("G"),
                    device: id("1111"),
                    change: DeviceChange::Resumed
                },
                Event::RekeyRequired {
                    group: id("G"),
                    next_epoch: 4
                },
            ]
        );
        set_key("G", 4, KEY_4096, 4, &["1111", "1112"], 4);
        assert_eq!(wrapped("G", "1111"), Some(vec![4; 256]));
    });
}

#[test]
fn a_stale_wrap_is_never_served() {
    new_test_ext().execute_with(|| {
        keyed_group();
        // Whatever put it there, a wrap to a key the device no longer has is not served.
        rotate_device("1111");
        assert_eq!(wrapped("G", "1111"), None);
        assert_eq!(wrapped("G", "1112"), Some(vec![1; 256]));
        // Restore the registry so the invariants (wraps match current keys) hold.
        EpochWraps::<Test>::mutate((id("G"), 1, id("1111")), |w| {
            if let Some(w) = w {
                w.device_key = device_key("1111");
            }
        });
    });
}

/// The bound: with one key manager call per block, a rekey of a 1,000-member group switches
/// in the block of its fourth call, while a member is added or removed in every block.
#[test]
fn a_rekey_finishes_under_churn_within_ceil_members_over_wraps_per_call_blocks() {
    new_test_ext().execute_with(|| {
        MaxMembers::set(1_024);
        MaxWrapsPerCall::set(256);
        let device = |n: u32| format!("d{n:04}");
        for n in 0..1_200 {
            set_device(&device(n), DeviceStatus::Active);
        }
        create("G");
        let mut members: Vec<u32> = (0..1_000).collect();
        for n in &members {
            add("G", &device(*n), Role::Subscriber);
        }
        let mut joiner = 1_000u32;
        let mut topics = [TOPIC_KEY_1, TOPIC_KEY_2, KEY_4096].into_iter().cycle();
        for epoch in 1..=3u32 {
            next_block();
            take_events();
            // The key manager wraps for the members it sees now (its finalized view).
            let members_at = System::block_number();
            let view: Vec<String> = members.iter().map(|n| device(*n)).collect();
            let first_call = members_at;
            let topic = topics.next().unwrap();
            let chunks: Vec<_> = view.chunks(256).collect();
            for (i, chunk) in chunks.iter().enumerate() {
                // One membership change per block, in turns: an addition, or a removal of a
                // member whose wrap is already in (chunks 0, 1) or still to come (2, 3).
                if System::block_number().is_multiple_of(2) {
                    let gone = members.remove((i * 256 + 700) % members.len());
                    assert_ok!(Groups::remove_member(
                        RuntimeOrigin::signed(ADMIN),
                        id("G"),
                        id(&device(gone))
                    ));
                } else {
                    add("G", &device(joiner), Role::Subscriber);
                    members.push(joiner);
                    joiner += 1;
                }
                let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                set_key_for(
                    "G",
                    epoch,
                    members_at,
                    topic,
                    epoch as u8,
                    &refs,
                    epoch as u8,
                );
                if i + 1 < chunks.len() {
                    assert_eq!(GroupStore::<Test>::get(id("G")).unwrap().epoch, epoch - 1);
                    next_block();
                }
            }
            let record = GroupStore::<Test>::get(id("G")).unwrap();
            assert_eq!(record.epoch, epoch, "epoch {epoch} switched");
            let took = System::block_number() - first_call + 1;
            assert_eq!(took, 4, "ceil(1000 / 256) = 4 calls, one block each");
            // The changes during the round wait for the next epoch, which is asked at once.
            assert!(take_events().contains(&Event::RekeyRequired {
                group: id("G"),
                next_epoch: epoch + 1
            }));
            // Whoever joined during the round has no wrap of this epoch.
            let newest = device(joiner - 1);
            assert!(!EpochWraps::<Test>::contains_key((
                id("G"),
                epoch,
                id(&newest)
            )));
        }
    });
}

#[test]
fn the_v2_migration_fails_closed_and_asks_every_group_for_a_new_epoch() {
    use crate::migrations::v2::{OldGroupRecord, OldTopicKey, RecordKeyViews};
    use frame_support::traits::{GetStorageVersion, OnRuntimeUpgrade, StorageVersion};
    new_test_ext().execute_with(|| {
        keyed_group();
        create("E");
        // Rewrite G as v1 stored it, and go back to v1.
        let record = GroupStore::<Test>::get(id("G")).unwrap();
        let key = record.topic_key.clone().unwrap();
        let old = OldGroupRecord::<Test> {
            admin: record.admin,
            epoch: record.epoch,
            topic_key: Some(OldTopicKey {
                epoch: key.epoch,
                public_key: key.public_key,
                fingerprint: key.fingerprint,
                sealed_private_key: key.sealed_private_key,
                from_block: key.from_block,
            }),
            members: record.members,
            open_to_publishers: record.open_to_publishers,
            created_at: record.created_at,
            rekey_requested_at: record.rekey_requested_at,
            next_round: record.next_round,
        };
        frame_support::storage::unhashed::put(&GroupStore::<Test>::hashed_key_for(id("G")), &old);
        let empty = GroupStore::<Test>::get(id("E")).unwrap();
        let old_empty = OldGroupRecord::<Test> {
            admin: empty.admin,
            epoch: 0,
            topic_key: None,
            members: 0,
            open_to_publishers: false,
            created_at: empty.created_at,
            rekey_requested_at: None,
            next_round: 0,
        };
        frame_support::storage::unhashed::put(
            &GroupStore::<Test>::hashed_key_for(id("E")),
            &old_empty,
        );
        StorageVersion::new(1).put::<Groups>();
        next_block();
        take_events();

        RecordKeyViews::<Test>::on_runtime_upgrade();
        assert_eq!(Groups::on_chain_storage_version(), StorageVersion::new(2));
        let record = GroupStore::<Test>::get(id("G")).unwrap();
        assert_eq!(record.epoch, 1);
        assert_eq!(
            record.topic_key.as_ref().unwrap().fingerprint,
            fp(TOPIC_KEY_1)
        );
        assert!(Groups::departed_may_read(&record));
        assert_eq!(EpochWraps::<Test>::iter().count(), 0);
        assert_eq!(
            take_events(),
            vec![Event::RekeyRequired {
                group: id("G"),
                next_epoch: 2
            }]
        );
        let empty = GroupStore::<Test>::get(id("E")).unwrap();
        assert!(!Groups::departed_may_read(&empty));
        // It runs once.
        RecordKeyViews::<Test>::on_runtime_upgrade();
        assert!(take_events().is_empty());
        // The new epoch is set as usual, and nobody departed from it.
        set_key("G", 2, TOPIC_KEY_2, 2, &["1111", "1112"], 2);
        assert!(!Groups::departed_may_read(
            &GroupStore::<Test>::get(id("G")).unwrap()
        ));
    });
}

#[test]
fn operators_manage_key_managers() {
    new_test_ext().execute_with(|| {
        assert_noop!(
            Groups::add_key_manager(RuntimeOrigin::signed(STRANGER), STRANGER),
            Error::<Test>::NotOperator
        );
        assert_noop!(
            Groups::add_key_manager(RuntimeOrigin::signed(OPERATOR), KEY_MANAGER),
            Error::<Test>::AlreadyKeyManager
        );
        assert_ok!(Groups::add_key_manager(
            RuntimeOrigin::signed(OPERATOR),
            ADMIN
        ));
        System::assert_last_event(crate::Event::KeyManagerAdded { who: ADMIN }.into());
        assert!(crate::IsKeyManager::<Test>::contains(&ADMIN));
        // MaxKeyManagers is 2.
        assert_noop!(
            Groups::add_key_manager(RuntimeOrigin::root(), STRANGER),
            Error::<Test>::TooManyKeyManagers
        );
        // A removed key manager may no longer set keys.
        create("G");
        add("G", "1111", Role::Both);
        assert_ok!(Groups::remove_key_manager(
            RuntimeOrigin::root(),
            KEY_MANAGER
        ));
        System::assert_last_event(crate::Event::KeyManagerRemoved { who: KEY_MANAGER }.into());
        assert_noop!(
            Groups::set_epoch_key(
                RuntimeOrigin::signed(KEY_MANAGER),
                id("G"),
                1,
                1,
                key(TOPIC_KEY_1),
                sealed(1),
                wraps(&["1111"], 1)
            ),
            Error::<Test>::NotKeyManager
        );
        assert_noop!(
            Groups::remove_key_manager(RuntimeOrigin::root(), KEY_MANAGER),
            Error::<Test>::UnknownKeyManager
        );
        assert_noop!(
            Groups::remove_key_manager(RuntimeOrigin::signed(ADMIN), ADMIN),
            Error::<Test>::NotOperator
        );
    });
}
