use crate::{
    mock::*, DeviceChange, DeviceId, DeviceStatus, Devices as DeviceStore, Error, Event,
    KeyHistory, PublicKeyDer,
};
use codec::{Decode, Encode};
use frame_support::{assert_noop, assert_ok};
use sp_runtime::DispatchError;

const KEY_A: &[u8] = include_bytes!("../testdata/rsa2048-1111.der");
const KEY_B: &[u8] = include_bytes!("../testdata/rsa2048-1113.der");
const KEY_4096: &[u8] = include_bytes!("../testdata/rsa4096.der");
const KEY_1024: &[u8] = include_bytes!("../testdata/rsa1024.der");
const KEY_E3: &[u8] = include_bytes!("../testdata/rsa2048-e3.der");
const KEY_ED25519: &[u8] = include_bytes!("../testdata/ed25519.der");
const KEY_P256: &[u8] = include_bytes!("../testdata/p256.der");

fn id(s: &str) -> DeviceId {
    s.as_bytes().to_vec().try_into().unwrap()
}
fn key(k: &[u8]) -> PublicKeyDer {
    k.to_vec().try_into().unwrap()
}
fn fp(k: &[u8]) -> [u8; 32] {
    sp_io::hashing::sha2_256(k)
}
fn register(device: &str, k: &[u8]) {
    assert_ok!(Devices::register(
        RuntimeOrigin::signed(OPERATOR),
        id(device),
        key(k),
        OWNER
    ));
}

#[test]
fn operator_registers_a_device() {
    new_test_ext().execute_with(|| {
        register("1111", KEY_A);
        let record = DeviceStore::<Test>::get(id("1111")).unwrap();
        assert_eq!(record.owner, OWNER);
        assert_eq!(record.fingerprint, fp(KEY_A));
        assert_eq!(record.epoch, 0);
        assert_eq!(record.status, DeviceStatus::Active);
        assert_eq!(record.registered_at, 1);
        assert_eq!(KeyHistory::<Test>::get(id("1111")).len(), 1);
        System::assert_last_event(
            Event::DeviceRegistered {
                device: id("1111"),
                owner: OWNER,
                fingerprint: fp(KEY_A),
            }
            .into(),
        );
        // Root may register too, and 4096-bit keys are accepted.
        assert_ok!(Devices::register(
            RuntimeOrigin::root(),
            id("1112"),
            key(KEY_4096),
            OWNER
        ));
        assert_eq!(crate::DeviceCount::<Test>::get(), 2);
    });
}

#[test]
fn register_refuses_bad_origin_duplicates_and_bad_ids() {
    new_test_ext().execute_with(|| {
        assert_noop!(
            Devices::register(
                RuntimeOrigin::signed(STRANGER),
                id("1111"),
                key(KEY_A),
                OWNER
            ),
            Error::<Test>::NotOperator
        );
        assert_noop!(
            Devices::register(RuntimeOrigin::none(), id("1111"), key(KEY_A), OWNER),
            DispatchError::BadOrigin
        );
        register("1111", KEY_A);
        assert_noop!(
            Devices::register(
                RuntimeOrigin::signed(OPERATOR),
                id("1111"),
                key(KEY_B),
                OWNER
            ),
            Error::<Test>::AlreadyRegistered
        );
        for bad in ["", "a/b", "+", "dev#1", "é"] {
            assert_noop!(
                Devices::register(RuntimeOrigin::signed(OPERATOR), id(bad), key(KEY_B), OWNER),
                Error::<Test>::InvalidDeviceId
            );
        }
    });
}

#[test]
fn the_runtime_refuses_every_invalid_key() {
    new_test_ext().execute_with(|| {
        let mut trailing = KEY_A.to_vec();
        trailing.push(0);
        let mut flipped = KEY_A.to_vec();
        flipped[0] ^= 0xff;
        let cases: [(&str, &[u8]); 9] = [
            ("1024-bit", KEY_1024),
            ("e = 3", KEY_E3),
            ("ed25519", KEY_ED25519),
            ("P-256", KEY_P256),
            ("garbage", b"None"),
            ("empty", b""),
            ("trailing byte", &trailing),
            ("broken tag", &flipped),
            ("truncated", &KEY_A[..KEY_A.len() - 1]),
        ];
        for (what, bad) in cases {
            assert_noop!(
                Devices::register(RuntimeOrigin::signed(OPERATOR), id("1111"), key(bad), OWNER),
                Error::<Test>::InvalidKey
            );
            let _ = what;
        }
    });
}

#[test]
fn oversize_keys_cannot_even_be_decoded() {
    // The call's key argument is a BoundedVec: a 601-byte key fails at decoding, before
    // dispatch, so it never reaches storage or the validator.
    let too_long = vec![0u8; keymesh_primitives::MAX_SPKI_LEN as usize + 1];
    assert!(PublicKeyDer::try_from(too_long.clone()).is_err());
    let encoded = (id("1111"), too_long, OWNER).encode();
    assert!(<(DeviceId, PublicKeyDer, u64)>::decode(&mut &encoded[..]).is_err());
}

#[test]
fn owner_or_operator_rotates_keys_and_history_is_bounded() {
    new_test_ext().execute_with(|| {
        register("1113", KEY_A);
        System::set_block_number(5);
        assert_ok!(Devices::rotate_key(
            RuntimeOrigin::signed(OWNER),
            id("1113"),
            key(KEY_B)
        ));
        let record = DeviceStore::<Test>::get(id("1113")).unwrap();
        assert_eq!((record.epoch, record.fingerprint), (1, fp(KEY_B)));
        System::assert_last_event(
            Event::KeyRotated {
                device: id("1113"),
                epoch: 1,
                old: fp(KEY_A),
                new: fp(KEY_B),
            }
            .into(),
        );
        let history = KeyHistory::<Test>::get(id("1113"));
        assert_eq!(history.len(), 2);
        assert_eq!(
            (
                history[1].epoch,
                history[1].fingerprint,
                history[1].from_block
            ),
            (1, fp(KEY_B), 5)
        );

        assert_ok!(Devices::rotate_key(
            RuntimeOrigin::signed(OPERATOR),
            id("1113"),
            key(KEY_4096)
        ));
        assert_ok!(Devices::rotate_key(
            RuntimeOrigin::root(),
            id("1113"),
            key(KEY_A)
        ));
        // MaxKeyHistory = 3 in the mock: the oldest entry (epoch 0) went.
        let epochs: Vec<u32> = KeyHistory::<Test>::get(id("1113"))
            .iter()
            .map(|e| e.epoch)
            .collect();
        assert_eq!(epochs, vec![1, 2, 3]);
    });
}

#[test]
fn rotate_key_error_paths() {
    new_test_ext().execute_with(|| {
        assert_noop!(
            Devices::rotate_key(RuntimeOrigin::signed(OWNER), id("9999"), key(KEY_B)),
            Error::<Test>::UnknownDevice
        );
        register("1113", KEY_A);
        assert_noop!(
            Devices::rotate_key(RuntimeOrigin::signed(STRANGER), id("1113"), key(KEY_B)),
            Error::<Test>::NotOwnerOrOperator
        );
        assert_noop!(
            Devices::rotate_key(RuntimeOrigin::signed(OWNER), id("1113"), key(KEY_1024)),
            Error::<Test>::InvalidKey
        );
        assert_noop!(
            Devices::rotate_key(RuntimeOrigin::signed(OWNER), id("1113"), key(KEY_A)),
            Error::<Test>::KeyUnchanged
        );
        assert_ok!(Devices::revoke(RuntimeOrigin::signed(OWNER), id("1113")));
        assert_noop!(
            Devices::rotate_key(RuntimeOrigin::signed(OWNER), id("1113"), key(KEY_B)),
            Error::<Test>::DeviceRevoked
        );
    });
}

#[test]
fn operators_suspend_and_resume() {
    new_test_ext().execute_with(|| {
        register("1112", KEY_A);
        assert_noop!(
            Devices::suspend(RuntimeOrigin::signed(OWNER), id("1112")),
            Error::<Test>::NotOperator
        );
        assert_noop!(
            Devices::resume(RuntimeOrigin::signed(OPERATOR), id("1112")),
            Error::<Test>::NotSuspended
        );
        assert_ok!(Devices::suspend(
            RuntimeOrigin::signed(OPERATOR),
            id("1112")
        ));
        System::assert_last_event(
            Event::DeviceSuspended {
                device: id("1112"),
                fingerprint: fp(KEY_A),
            }
            .into(),
        );
        assert_eq!(
            DeviceStore::<Test>::get(id("1112")).unwrap().status,
            DeviceStatus::Suspended
        );
        assert_noop!(
            Devices::suspend(RuntimeOrigin::signed(OPERATOR), id("1112")),
            Error::<Test>::NotActive
        );
        assert_ok!(Devices::resume(RuntimeOrigin::root(), id("1112")));
        System::assert_last_event(
            Event::DeviceResumed {
                device: id("1112"),
                fingerprint: fp(KEY_A),
            }
            .into(),
        );
        assert_noop!(
            Devices::suspend(RuntimeOrigin::signed(OPERATOR), id("0000")),
            Error::<Test>::UnknownDevice
        );
    });
}

#[test]
fn revocation_is_final_and_tells_the_groups() {
    new_test_ext().execute_with(|| {
        register("1114", KEY_A);
        assert_noop!(
            Devices::revoke(RuntimeOrigin::signed(STRANGER), id("1114")),
            Error::<Test>::NotOwnerOrOperator
        );
        assert_noop!(
            Devices::revoke(RuntimeOrigin::signed(OWNER), id("0000")),
            Error::<Test>::UnknownDevice
        );
        assert_ok!(Devices::revoke(RuntimeOrigin::signed(OWNER), id("1114")));
        System::assert_last_event(
            Event::DeviceRevoked {
                device: id("1114"),
                fingerprint: fp(KEY_A),
            }
            .into(),
        );
        assert_eq!(
            CHANGED.with(|r| r.borrow().clone()),
            vec![(b"1114".to_vec(), DeviceChange::Revoked)]
        );
        assert_noop!(
            Devices::revoke(RuntimeOrigin::signed(OPERATOR), id("1114")),
            Error::<Test>::DeviceRevoked
        );
        assert_noop!(
            Devices::resume(RuntimeOrigin::signed(OPERATOR), id("1114")),
            Error::<Test>::DeviceRevoked
        );
        assert_noop!(
            Devices::suspend(RuntimeOrigin::signed(OPERATOR), id("1114")),
            Error::<Test>::DeviceRevoked
        );
        // The id stays taken.
        assert_noop!(
            Devices::register(
                RuntimeOrigin::signed(OPERATOR),
                id("1114"),
                key(KEY_B),
                OWNER
            ),
            Error::<Test>::AlreadyRegistered
        );
    });
}

#[test]
fn weights_cover_the_storage_each_call_writes() {
    use crate::WeightInfo;
    use frame_support::weights::constants::ParityDbWeight;
    let db = ParityDbWeight::get();
    // register writes Devices, KeyHistory, DeviceCount and OwnedDevices; rotate_key writes
    // Devices and KeyHistory; a status change writes Devices.
    assert!(<() as WeightInfo>::register().all_gte(db.reads_writes(4, 4)));
    assert!(<() as WeightInfo>::rotate_key().all_gte(db.reads_writes(2, 2)));
    assert!(<() as WeightInfo>::set_status().all_gte(db.reads_writes(1, 1)));
    assert!(<() as WeightInfo>::revoke().all_gte(db.reads_writes(2, 2)));
    assert!(<() as WeightInfo>::register().proof_size() > 0);
}

#[test]
fn directory_queries_answer_from_state() {
    use crate::{KeyCheck, Pallet};
    new_test_ext().execute_with(|| {
        register("1111", KEY_A);
        register("1113", KEY_B);
        register("1114", KEY_A);
        assert_eq!(
            Pallet::<Test>::check_key(b"1113", &fp(KEY_B)),
            KeyCheck::Check
        );
        assert_eq!(
            Pallet::<Test>::check_key(b"1113", &[0; 32]),
            KeyCheck::Mismatch {
                expected: fp(KEY_B)
            }
        );
        assert_eq!(
            Pallet::<Test>::check_key(b"9999", &fp(KEY_B)),
            KeyCheck::Unknown
        );
        assert_eq!(
            Pallet::<Test>::check_key(&[b'x'; 65], &fp(KEY_B)),
            KeyCheck::Unknown
        );
        assert_ok!(Devices::suspend(
            RuntimeOrigin::signed(OPERATOR),
            id("1114")
        ));
        assert_eq!(
            Pallet::<Test>::check_key(b"1114", &fp(KEY_A)),
            KeyCheck::Suspended
        );
        assert_ok!(Devices::revoke(RuntimeOrigin::signed(OPERATOR), id("1111")));
        assert_eq!(
            Pallet::<Test>::check_key(b"1111", &fp(KEY_A)),
            KeyCheck::Revoked
        );

        let info = Pallet::<Test>::device_info(b"1113").unwrap();
        assert_eq!(
            (info.public_key.as_slice(), info.fingerprint),
            (KEY_B, fp(KEY_B))
        );
        assert_eq!(Pallet::<Test>::history(b"1113").unwrap().len(), 1);
        assert!(Pallet::<Test>::history(b"9999").is_none());

        // Paging visits every device once.
        let first = Pallet::<Test>::devices_page(None, 2);
        assert_eq!(first.len(), 2);
        let rest = Pallet::<Test>::devices_page(Some(&first[1].0), 100);
        assert_eq!(rest.len(), 1);
        let mut all: Vec<Vec<u8>> = first
            .iter()
            .chain(rest.iter())
            .map(|(id, _)| id.clone())
            .collect();
        all.sort();
        assert_eq!(
            all,
            vec![b"1111".to_vec(), b"1113".to_vec(), b"1114".to_vec()]
        );
    });
}

#[test]
fn owners_are_indexed_and_an_owner_leaves_the_index_with_its_last_device() {
    new_test_ext().execute_with(|| {
        register("1111", KEY_A);
        register("1113", KEY_B);
        assert_eq!(crate::OwnedDevices::<Test>::get(OWNER), 2);
        assert!(Devices::owns_a_device(&OWNER));
        assert_ok!(Devices::revoke(RuntimeOrigin::signed(OWNER), id("1111")));
        assert!(Devices::owns_a_device(&OWNER));
        assert_ok!(Devices::revoke(RuntimeOrigin::signed(OWNER), id("1113")));
        assert!(!Devices::owns_a_device(&OWNER));
        assert!(!crate::OwnedDevices::<Test>::contains_key(OWNER));
    });
}

#[test]
fn the_v1_migration_indexes_owners_once() {
    use frame_support::traits::{GetStorageVersion, OnRuntimeUpgrade, StorageVersion};
    new_test_ext().execute_with(|| {
        register("1111", KEY_A);
        register("1113", KEY_B);
        assert_ok!(Devices::revoke(RuntimeOrigin::signed(OWNER), id("1113")));
        // A chain from before the index: version 0, no index.
        let _ = crate::OwnedDevices::<Test>::clear(u32::MAX, None);
        StorageVersion::new(0).put::<Devices>();
        crate::migrations::v1::IndexOwners::<Test>::on_runtime_upgrade();
        assert_eq!(crate::OwnedDevices::<Test>::get(OWNER), 1);
        assert_eq!(Devices::on_chain_storage_version(), StorageVersion::new(1));
        // At v1 it does nothing: a count it would rewrite stays as it is.
        crate::OwnedDevices::<Test>::insert(OWNER, 5);
        crate::migrations::v1::IndexOwners::<Test>::on_runtime_upgrade();
        assert_eq!(crate::OwnedDevices::<Test>::get(OWNER), 5);
        crate::OwnedDevices::<Test>::insert(OWNER, 1);
    });
}

#[test]
fn rotation_suspension_and_resumption_tell_the_groups() {
    new_test_ext().execute_with(|| {
        register("1111", KEY_A);
        assert_ok!(Devices::rotate_key(
            RuntimeOrigin::signed(OWNER),
            id("1111"),
            key(KEY_B)
        ));
        assert_ok!(Devices::suspend(
            RuntimeOrigin::signed(OPERATOR),
            id("1111")
        ));
        assert_ok!(Devices::resume(RuntimeOrigin::signed(OPERATOR), id("1111")));
        // A refused call tells nobody.
        assert_noop!(
            Devices::resume(RuntimeOrigin::signed(OPERATOR), id("1111")),
            Error::<Test>::NotSuspended
        );
        let told: Vec<_> = CHANGED.with(|r| r.borrow().iter().map(|(_, c)| *c).collect());
        assert_eq!(
            told,
            vec![
                DeviceChange::Rotated,
                DeviceChange::Suspended,
                DeviceChange::Resumed
            ]
        );
    });
}
