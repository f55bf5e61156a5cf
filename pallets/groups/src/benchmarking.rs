//! FRAME benchmarks (v2) of `pallet-groups`. Each sets up the worst case its weight must
//! cover: full member lists and group lists, the longest topic key (RSA-4096), sealed key and
//! wraps, and, where a member leaves, a current key and a pending one that both hold its
//! wraps. `scripts/benchmark-weights.sh` runs them against the runtime wasm and writes
//! `src/weights.rs`; `cargo test --features runtime-benchmarks` runs each once against the
//! mock.

use super::*;
use alloc::{format, vec, vec::Vec};
use frame_benchmarking::v2::*;
use frame_support::traits::{EnsureOrigin, Get};
use frame_system::RawOrigin;
use keymesh_primitives::{DeviceChange, DeviceDirectory, OnDeviceChanged, Role};

/// What the benchmarks need from the runtime beyond this pallet: devices to put in groups.
pub trait BenchmarkHelper {
    /// Registers `device` as an active device (in the KeyMesh runtime, through
    /// `pallet-devices`) and returns the fingerprint of its key.
    fn register_device(device: &Id) -> Fingerprint;
}

/// The topic key of the first epoch a benchmark sets up.
const TOPIC_KEY_FIRST: &[u8] = include_bytes!("../../devices/testdata/rsa2048-1111.der");
/// The topic key of the epoch a benchmark measures: RSA-4096, the costliest to validate.
const TOPIC_KEY_4096: &[u8] = include_bytes!("../../devices/testdata/rsa4096.der");

fn id(name: &str) -> Id {
    name.as_bytes()
        .to_vec()
        .try_into()
        .expect("a short id fits")
}

fn operator<T: Config>() -> Result<T::RuntimeOrigin, BenchmarkError> {
    T::OperatorOrigin::try_successful_origin().map_err(|_| BenchmarkError::Weightless)
}

/// Device `n`, registered through the helper unless it already is.
fn device<T: Config>(n: u32) -> (Id, Fingerprint) {
    let device = id(&format!("bench-device-{n}"));
    match T::Devices::fingerprint(&device) {
        Some(fingerprint) => (device, fingerprint),
        None => {
            let fingerprint = T::BenchmarkHelper::register_device(&device);
            (device, fingerprint)
        }
    }
}

/// Creates `name`, administered by the whitelisted caller, with `members` as members.
fn new_group<T: Config>(name: &str, members: &[(Id, Fingerprint)]) -> Result<Id, BenchmarkError> {
    let group = id(name);
    let admin: T::AccountId = whitelisted_caller();
    Pallet::<T>::create_group(operator::<T>()?, group.clone(), admin)?;
    for (device, _) in members {
        Pallet::<T>::add_member(operator::<T>()?, group.clone(), device.clone(), Role::Both)?;
    }
    Ok(group)
}

/// A registered key manager.
fn key_manager<T: Config>() -> Result<T::AccountId, BenchmarkError> {
    let who: T::AccountId = account("key-manager", 0, 0);
    if !KeyManagers::<T>::contains_key(&who) {
        Pallet::<T>::add_key_manager(operator::<T>()?, who.clone())?;
    }
    Ok(who)
}

fn topic_key(der: &[u8]) -> PublicKeyDer {
    der.to_vec().try_into().expect("a test key fits")
}

/// A sealed topic key of the longest length, filled with `fill` (so attempts differ).
fn sealed<T: Config>(fill: u8) -> SealedKeyOf<T> {
    vec![fill; T::MaxSealedKeyLen::get() as usize]
        .try_into()
        .expect("the longest sealed key fits")
}

/// One call's worth of wraps (the longest, RSA-4096) for `members`.
fn wraps<T: Config>(members: &[(Id, Fingerprint)]) -> WrapsOf<T> {
    let wrap: WrapOf<T> = vec![0x5a; T::MaxWrapLen::get() as usize]
        .try_into()
        .expect("the longest wrap fits");
    members
        .iter()
        .map(|(device, fingerprint)| (device.clone(), *fingerprint, wrap.clone()))
        .collect::<Vec<_>>()
        .try_into()
        .expect("at most MaxWrapsPerCall members")
}

/// Submits `group`'s key for `epoch` with wraps for `members`, in as many calls as it takes.
fn submit<T: Config>(
    who: &T::AccountId,
    group: &Id,
    epoch: u32,
    topic: &[u8],
    members: &[(Id, Fingerprint)],
) -> Result<(), BenchmarkError> {
    let members_at = frame_system::Pallet::<T>::block_number();
    let per_call = T::MaxWrapsPerCall::get().max(1) as usize;
    for chunk in members.chunks(per_call) {
        Pallet::<T>::set_epoch_key(
            RawOrigin::Signed(who.clone()).into(),
            group.clone(),
            epoch,
            members_at,
            topic_key(topic),
            sealed::<T>(epoch as u8),
            wraps::<T>(chunk),
        )
        .map_err(|e| e.error)?;
    }
    Ok(())
}

/// Creates `name` with `member` and `other`, keys epoch 1 for both, and leaves epoch 2
/// pending with `member`'s wrap in: a member leaving it has two wraps to delete.
fn keyed_group_with_pending<T: Config>(
    name: &str,
    member: &(Id, Fingerprint),
    other: &(Id, Fingerprint),
) -> Result<Id, BenchmarkError> {
    let both = [member.clone(), other.clone()];
    let group = new_group::<T>(name, &both)?;
    let who = key_manager::<T>()?;
    submit::<T>(&who, &group, 1, TOPIC_KEY_FIRST, &both)?;
    submit::<T>(
        &who,
        &group,
        2,
        TOPIC_KEY_4096,
        core::slice::from_ref(member),
    )?;
    Ok(group)
}

#[benchmarks]
mod benchmarks {
    use super::*;

    #[benchmark]
    fn create_group() -> Result<(), BenchmarkError> {
        let origin = operator::<T>()?;
        let group = id("bench-group");
        let admin: T::AccountId = whitelisted_caller();

        #[extrinsic_call]
        _(origin as T::RuntimeOrigin, group.clone(), admin);

        assert!(Groups::<T>::contains_key(&group));
        Ok(())
    }

    /// The device is already in all but one of the groups it may join.
    #[benchmark]
    fn add_member() -> Result<(), BenchmarkError> {
        let member = device::<T>(0);
        for g in 1..T::MaxGroupsPerDevice::get() {
            new_group::<T>(&format!("bench-group-{g}"), core::slice::from_ref(&member))?;
        }
        let group = new_group::<T>("bench-group-0", &[device::<T>(1)])?;
        let admin: T::AccountId = whitelisted_caller();

        #[extrinsic_call]
        _(
            RawOrigin::Signed(admin),
            group.clone(),
            member.0.clone(),
            Role::Both,
        );

        assert!(Members::<T>::contains_key(&group, &member.0));
        Ok(())
    }

    /// The device is in as many groups as it may be, and holds a wrap of the group's current
    /// key and of its pending one.
    #[benchmark]
    fn remove_member() -> Result<(), BenchmarkError> {
        let member = device::<T>(0);
        let group = keyed_group_with_pending::<T>("bench-group-0", &member, &device::<T>(1))?;
        for g in 1..T::MaxGroupsPerDevice::get() {
            new_group::<T>(&format!("bench-group-{g}"), core::slice::from_ref(&member))?;
        }
        let admin: T::AccountId = whitelisted_caller();

        #[extrinsic_call]
        _(RawOrigin::Signed(admin), group.clone(), member.0.clone());

        assert!(!Members::<T>::contains_key(&group, &member.0));
        Ok(())
    }

    #[benchmark]
    fn set_publishing() -> Result<(), BenchmarkError> {
        let group = new_group::<T>("bench-group", &[])?;
        let admin: T::AccountId = whitelisted_caller();

        #[extrinsic_call]
        _(RawOrigin::Signed(admin), group.clone(), true);

        assert!(Groups::<T>::get(&group).is_some_and(|g| g.open_to_publishers));
        Ok(())
    }

    /// `add_key_manager` into a registry one short of full (`remove_key_manager` does less).
    #[benchmark]
    fn set_key_manager() -> Result<(), BenchmarkError> {
        let existing = KeyManagers::<T>::count();
        for i in existing.saturating_add(1)..T::MaxKeyManagers::get() {
            KeyManagers::<T>::insert(account::<T::AccountId>("key-managers", i, 0), ());
        }
        let origin = operator::<T>()?;
        let who: T::AccountId = account("new-key-manager", 0, 0);

        #[extrinsic_call]
        add_key_manager(origin as T::RuntimeOrigin, who.clone());

        assert!(KeyManagers::<T>::contains_key(&who));
        Ok(())
    }

    /// The call that completes a key: `w` wraps in this call for a group whose other `m`
    /// members have their wraps in already (at least one, so every sample continues an
    /// attempt; starting one is `start_attempt`). The switch deletes every member's wrap of the
    /// previous epoch. Members are looked at twice: to tell the key is complete, and to
    /// switch.
    #[benchmark]
    fn set_epoch_key(
        w: Linear<1, { T::MaxWrapsPerCall::get() }>,
        m: Linear<1, { T::MaxMembers::get().saturating_sub(T::MaxWrapsPerCall::get()) }>,
    ) -> Result<(), BenchmarkError> {
        let members: Vec<_> = (0..w + m).map(device::<T>).collect();
        let group = new_group::<T>("bench-group", &members)?;
        let who = key_manager::<T>()?;
        submit::<T>(&who, &group, 1, TOPIC_KEY_FIRST, &members)?;
        let (staged, last) = members.split_at(m as usize);
        submit::<T>(&who, &group, 2, TOPIC_KEY_4096, staged)?;
        let members_at = frame_system::Pallet::<T>::block_number();

        #[extrinsic_call]
        _(
            RawOrigin::Signed(who),
            group.clone(),
            2,
            members_at,
            topic_key(TOPIC_KEY_4096),
            sealed::<T>(2),
            wraps::<T>(last),
        );

        assert_eq!(Groups::<T>::get(&group).map(|g| g.epoch), Some(2));
        Ok(())
    }

    /// What starting an attempt adds to a call: the freshness check against the current
    /// key and a full list of retired keys, and retiring the attempt it replaces. Measured
    /// as a whole call (one wrap, a group of two), so its base is charged twice: an
    /// overcharge of one call's base.
    #[benchmark]
    fn start_attempt() -> Result<(), BenchmarkError> {
        let member = device::<T>(0);
        let group = keyed_group_with_pending::<T>("bench-group", &member, &device::<T>(1))?;
        RetiredKeys::<T>::mutate(&group, |keys| {
            for i in 0..MAX_RETIRED_KEYS as u8 {
                if keys.try_push(([i; 32], [i; 32])).is_err() {
                    break;
                }
            }
        });
        let who = key_manager::<T>()?;
        let members_at = frame_system::Pallet::<T>::block_number();

        #[extrinsic_call]
        set_epoch_key(
            RawOrigin::Signed(who),
            group.clone(),
            2,
            members_at,
            topic_key(TOPIC_KEY_4096),
            sealed::<T>(3),
            wraps::<T>(core::slice::from_ref(&member)),
        );

        assert_eq!(PendingKeys::<T>::get(&group).map(|p| p.delivered), Some(1));
        Ok(())
    }

    /// A revoked device leaving `g` groups, each with a current key and a pending one that
    /// hold its wraps. A rotation, suspension or resumption does less per group.
    #[benchmark]
    fn leave_groups(g: Linear<0, { T::MaxGroupsPerDevice::get() }>) -> Result<(), BenchmarkError> {
        let member = device::<T>(0);
        let other = device::<T>(1);
        for i in 0..g {
            keyed_group_with_pending::<T>(&format!("bench-group-{i}"), &member, &other)?;
        }

        #[block]
        {
            <Pallet<T> as OnDeviceChanged>::on_device_changed(&member.0, DeviceChange::Revoked);
        }

        assert!(DeviceGroups::<T>::get(&member.0).is_empty());
        Ok(())
    }

    impl_benchmark_test_suite!(Pallet, crate::mock::new_test_ext(), crate::mock::Test);
}
