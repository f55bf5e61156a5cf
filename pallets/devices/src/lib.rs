//! # Devices pallet
//!
//! The registry of device identities and their RSA public keys.
//!
//! - Operators (whoever the runtime's `OperatorOrigin` admits) [`register`](Pallet::register)
//!   devices, [`suspend`](Pallet::suspend) and [`resume`](Pallet::resume) them.
//! - A device's owner (or an operator) [`rotate_key`](Pallet::rotate_key)s and
//!   [`revoke`](Pallet::revoke)s it; revocation is final.
//!
//! Every key is validated here, in the runtime: SubjectPublicKeyInfo DER of an RSA key of
//! 2048 to 4096 bits with e = 65537. A client cannot get anything else on chain. Each key's
//! fingerprint is SHA-256 of its DER; the key epoch counts rotations; a bounded history keeps
//! the latest (epoch, fingerprint, from-block) entries.
#![cfg_attr(not(feature = "std"), no_std)]

pub use pallet::*;
#[cfg(feature = "runtime-benchmarks")]
mod benchmarking;
pub mod weights;
pub use weights::WeightInfo;

#[cfg(any(feature = "try-runtime", test))]
mod invariants;
pub mod migrations;
#[cfg(test)]
mod mock;
#[cfg(test)]
mod tests;

use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use frame_support::{pallet_prelude::ConstU32, BoundedVec};
use scale_info::TypeInfo;

pub use keymesh_primitives::{
    api::{DeviceInfo, KeyCheck},
    DeviceChange, DeviceDirectory, DeviceStatus, Fingerprint, KeyHistoryEntry, OnDeviceChanged,
};

/// A device id as stored: 1 to 64 bytes of `[A-Za-z0-9._-]`.
pub type DeviceId = BoundedVec<u8, ConstU32<{ keymesh_primitives::MAX_ID_LEN as u32 }>>;
/// A public key as stored: SubjectPublicKeyInfo DER, at most `MAX_SPKI_LEN` bytes.
pub type PublicKeyDer = BoundedVec<u8, ConstU32<{ keymesh_primitives::MAX_SPKI_LEN }>>;

/// One device of a directory page: (id, what the directory reports of it).
pub type DeviceEntry<AccountId, BlockNumber> =
    (alloc::vec::Vec<u8>, DeviceInfo<AccountId, BlockNumber>);

/// What the chain knows of a device.
#[derive(
    Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, MaxEncodedLen, Debug,
)]
pub struct DeviceRecord<AccountId, BlockNumber> {
    /// The account that may rotate the key or revoke the device.
    pub owner: AccountId,
    /// Current public key (SPKI DER).
    pub public_key: PublicKeyDer,
    /// SHA-256 of `public_key`.
    pub fingerprint: Fingerprint,
    /// Rotations so far: 0 for the registered key.
    pub epoch: u32,
    /// Active, Suspended or Revoked.
    pub status: DeviceStatus,
    /// Block of registration.
    pub registered_at: BlockNumber,
}

impl<AccountId, BlockNumber> From<DeviceRecord<AccountId, BlockNumber>>
    for DeviceInfo<AccountId, BlockNumber>
{
    fn from(r: DeviceRecord<AccountId, BlockNumber>) -> Self {
        DeviceInfo {
            owner: r.owner,
            public_key: r.public_key.into_inner(),
            fingerprint: r.fingerprint,
            epoch: r.epoch,
            status: r.status,
            registered_at: r.registered_at,
        }
    }
}

#[frame_support::pallet]
pub mod pallet {
    use super::*;
    use frame_support::pallet_prelude::*;
    use frame_system::pallet_prelude::*;
    use keymesh_primitives::{validate_id, validate_rsa_spki};

    /// The layout of this pallet's storage. 1: `OwnedDevices` added.
    pub const STORAGE_VERSION: StorageVersion = StorageVersion::new(1);

    #[pallet::pallet]
    #[pallet::storage_version(STORAGE_VERSION)]
    pub struct Pallet<T>(_);

    #[pallet::hooks]
    impl<T: Config> Hooks<BlockNumberFor<T>> for Pallet<T> {
        #[cfg(feature = "try-runtime")]
        fn try_state(_: BlockNumberFor<T>) -> Result<(), sp_runtime::TryRuntimeError> {
            Self::do_try_state()
        }
    }

    #[pallet::config]
    pub trait Config: frame_system::Config {
        /// The overarching event type.
        #[allow(deprecated)]
        type RuntimeEvent: From<Event<Self>> + IsType<<Self as frame_system::Config>::RuntimeEvent>;
        /// Who may register, suspend and resume devices, and act for any owner. An origin,
        /// not an account set, so a runtime can hand this to root, a membership set or a
        /// collective without the pallet changing.
        type OperatorOrigin: EnsureOrigin<Self::RuntimeOrigin>;
        /// Most key-history entries kept per device; the oldest goes first.
        #[pallet::constant]
        type MaxKeyHistory: Get<u32>;
        /// Told about rotations, suspensions, resumptions and revocations (the groups pallet
        /// rekeys the device's groups, and drops a revoked device from them).
        type OnChanged: OnDeviceChanged;
        /// Weights of the calls.
        type WeightInfo: WeightInfo;
    }

    /// Every registered device, by id. Written by `register`, `rotate_key`, `suspend`,
    /// `resume` and `revoke`; never removed, so a revoked id cannot be reused.
    #[pallet::storage]
    pub type Devices<T: Config> = StorageMap<
        _,
        Blake2_128Concat,
        DeviceId,
        DeviceRecord<T::AccountId, BlockNumberFor<T>>,
        OptionQuery,
    >;

    /// The keys a device has had: (epoch, fingerprint, from-block), oldest first, at most
    /// `MaxKeyHistory`. Written by `register` and `rotate_key`.
    #[pallet::storage]
    pub type KeyHistory<T: Config> = StorageMap<
        _,
        Blake2_128Concat,
        DeviceId,
        BoundedVec<KeyHistoryEntry<BlockNumberFor<T>>, T::MaxKeyHistory>,
        ValueQuery,
    >;

    /// Number of registered devices (of any status). Written by `register`.
    #[pallet::storage]
    pub type DeviceCount<T: Config> = StorageValue<_, u32, ValueQuery>;

    /// How many devices that are not revoked each account owns, so the runtime can tell a
    /// device owner from a stranger without scanning `Devices`. Written by `register` and
    /// `revoke`; an account whose count falls to 0 is removed.
    #[pallet::storage]
    pub type OwnedDevices<T: Config> =
        StorageMap<_, Blake2_128Concat, T::AccountId, u32, ValueQuery>;

    #[pallet::event]
    #[pallet::generate_deposit(pub(super) fn deposit_event)]
    pub enum Event<T: Config> {
        /// A device was registered with its first key (epoch 0).
        DeviceRegistered {
            device: DeviceId,
            owner: T::AccountId,
            fingerprint: Fingerprint,
        },
        /// A device's key was replaced; envelopes sealed to `old` are now refused.
        KeyRotated {
            device: DeviceId,
            epoch: u32,
            old: Fingerprint,
            new: Fingerprint,
        },
        /// A device may no longer send or receive until resumed.
        DeviceSuspended {
            device: DeviceId,
            fingerprint: Fingerprint,
        },
        /// A suspended device is active again.
        DeviceResumed {
            device: DeviceId,
            fingerprint: Fingerprint,
        },
        /// A device was revoked for good.
        DeviceRevoked {
            device: DeviceId,
            fingerprint: Fingerprint,
        },
    }

    #[pallet::error]
    pub enum Error<T> {
        /// The caller is not an operator (nor root).
        NotOperator,
        /// The caller is neither the device's owner nor an operator.
        NotOwnerOrOperator,
        /// The id is not 1..64 bytes of `[A-Za-z0-9._-]`.
        InvalidDeviceId,
        /// The key is not an RSA SubjectPublicKeyInfo of 2048..4096 bits with e = 65537.
        InvalidKey,
        /// A device with this id exists (ids are never reused, even after revocation).
        AlreadyRegistered,
        /// No device has this id.
        UnknownDevice,
        /// The device is revoked; nothing more can change it.
        DeviceRevoked,
        /// The device is not active.
        NotActive,
        /// The device is not suspended.
        NotSuspended,
        /// The new key is the current key.
        KeyUnchanged,
        /// The key epoch would overflow.
        EpochOverflow,
        /// Too many devices.
        TooManyDevices,
    }

    #[pallet::call]
    impl<T: Config> Pallet<T> {
        /// Registers `device` with `public_key` (SPKI DER), owned by `owner`.
        ///
        /// Origin: root or an operator. Writes `Devices`, `KeyHistory`, `DeviceCount`,
        /// `OwnedDevices`; emits `DeviceRegistered`.
        #[pallet::call_index(0)]
        #[pallet::weight(T::WeightInfo::register())]
        pub fn register(
            origin: OriginFor<T>,
            device: DeviceId,
            public_key: PublicKeyDer,
            owner: T::AccountId,
        ) -> DispatchResult {
            Self::ensure_operator(origin)?;
            validate_id(&device).map_err(|_| Error::<T>::InvalidDeviceId)?;
            ensure!(
                !Devices::<T>::contains_key(&device),
                Error::<T>::AlreadyRegistered
            );
            let fingerprint = Self::checked_fingerprint(&public_key)?;
            let count = DeviceCount::<T>::get()
                .checked_add(1)
                .ok_or(Error::<T>::TooManyDevices)?;
            let now = frame_system::Pallet::<T>::block_number();
            Devices::<T>::insert(
                &device,
                DeviceRecord {
                    owner: owner.clone(),
                    public_key,
                    fingerprint,
                    epoch: 0,
                    status: DeviceStatus::Active,
                    registered_at: now,
                },
            );
            Self::push_history(
                &device,
                KeyHistoryEntry {
                    epoch: 0,
                    fingerprint,
                    from_block: now,
                },
            );
            DeviceCount::<T>::put(count);
            OwnedDevices::<T>::mutate(&owner, |n| *n = n.saturating_add(1));
            Self::deposit_event(Event::DeviceRegistered {
                device,
                owner,
                fingerprint,
            });
            Ok(())
        }

        /// Replaces `device`'s key with `public_key` and moves it to the next key epoch.
        ///
        /// Origin: the device's owner or an operator (or root). The device must not be
        /// revoked. Writes `Devices`, `KeyHistory`; emits `KeyRotated`, then whatever
        /// `OnChanged` emits (the groups pallet: per group, `MemberChanged` and
        /// `RekeyRequired`).
        #[pallet::call_index(1)]
        #[pallet::weight(T::WeightInfo::rotate_key().saturating_add(T::OnChanged::max_weight()))]
        pub fn rotate_key(
            origin: OriginFor<T>,
            device: DeviceId,
            public_key: PublicKeyDer,
        ) -> DispatchResultWithPostInfo {
            let mut record = Devices::<T>::get(&device).ok_or(Error::<T>::UnknownDevice)?;
            Self::ensure_owner_or_operator(origin, &record.owner)?;
            ensure!(
                record.status != DeviceStatus::Revoked,
                Error::<T>::DeviceRevoked
            );
            let fingerprint = Self::checked_fingerprint(&public_key)?;
            ensure!(fingerprint != record.fingerprint, Error::<T>::KeyUnchanged);
            let epoch = record
                .epoch
                .checked_add(1)
                .ok_or(Error::<T>::EpochOverflow)?;
            let old = record.fingerprint;
            record.public_key = public_key;
            record.fingerprint = fingerprint;
            record.epoch = epoch;
            Devices::<T>::insert(&device, record);
            let now = frame_system::Pallet::<T>::block_number();
            Self::push_history(
                &device,
                KeyHistoryEntry {
                    epoch,
                    fingerprint,
                    from_block: now,
                },
            );
            Self::deposit_event(Event::KeyRotated {
                device: device.clone(),
                epoch,
                old,
                new: fingerprint,
            });
            let extra = T::OnChanged::on_device_changed(&device, DeviceChange::Rotated);
            Ok(Some(T::WeightInfo::rotate_key().saturating_add(extra)).into())
        }

        /// Suspends an active device: bridges stop forwarding to and from it.
        ///
        /// Origin: root or an operator. Writes `Devices`; emits `DeviceSuspended`, then
        /// whatever `OnChanged` emits (as for `rotate_key`).
        #[pallet::call_index(2)]
        #[pallet::weight(T::WeightInfo::set_status().saturating_add(T::OnChanged::max_weight()))]
        pub fn suspend(origin: OriginFor<T>, device: DeviceId) -> DispatchResultWithPostInfo {
            Self::ensure_operator(origin)?;
            let fingerprint = Self::transition(
                &device,
                DeviceStatus::Active,
                DeviceStatus::Suspended,
                Error::<T>::NotActive,
            )?;
            Self::deposit_event(Event::DeviceSuspended {
                device: device.clone(),
                fingerprint,
            });
            Ok(Self::tell_groups(&device, DeviceChange::Suspended))
        }

        /// Resumes a suspended device.
        ///
        /// Origin: root or an operator. Writes `Devices`; emits `DeviceResumed`, then
        /// whatever `OnChanged` emits (as for `rotate_key`).
        #[pallet::call_index(3)]
        #[pallet::weight(T::WeightInfo::set_status().saturating_add(T::OnChanged::max_weight()))]
        pub fn resume(origin: OriginFor<T>, device: DeviceId) -> DispatchResultWithPostInfo {
            Self::ensure_operator(origin)?;
            let fingerprint = Self::transition(
                &device,
                DeviceStatus::Suspended,
                DeviceStatus::Active,
                Error::<T>::NotSuspended,
            )?;
            Self::deposit_event(Event::DeviceResumed {
                device: device.clone(),
                fingerprint,
            });
            Ok(Self::tell_groups(&device, DeviceChange::Resumed))
        }

        /// Revokes a device for good; it leaves every group (see `OnChanged`).
        ///
        /// Origin: the device's owner or an operator (or root). Writes `Devices`,
        /// `OwnedDevices`; emits `DeviceRevoked`, then whatever `OnChanged` emits (the groups
        /// pallet: per group, `MemberRemoved` and `RekeyRequired`).
        #[pallet::call_index(4)]
        #[pallet::weight(T::WeightInfo::revoke().saturating_add(T::OnChanged::max_weight()))]
        pub fn revoke(origin: OriginFor<T>, device: DeviceId) -> DispatchResultWithPostInfo {
            let mut record = Devices::<T>::get(&device).ok_or(Error::<T>::UnknownDevice)?;
            Self::ensure_owner_or_operator(origin, &record.owner)?;
            ensure!(
                record.status != DeviceStatus::Revoked,
                Error::<T>::DeviceRevoked
            );
            record.status = DeviceStatus::Revoked;
            OwnedDevices::<T>::mutate_exists(&record.owner, |n| {
                let left = n.unwrap_or(0).saturating_sub(1);
                *n = (left > 0).then_some(left);
            });
            let fingerprint = record.fingerprint;
            Devices::<T>::insert(&device, record);
            Self::deposit_event(Event::DeviceRevoked {
                device: device.clone(),
                fingerprint,
            });
            let extra = T::OnChanged::on_device_changed(&device, DeviceChange::Revoked);
            Ok(Some(T::WeightInfo::revoke().saturating_add(extra)).into())
        }
    }

    impl<T: Config> Pallet<T> {
        /// Tells `OnChanged` of a status change; the call's weight with what that used.
        fn tell_groups(
            device: &DeviceId,
            change: DeviceChange,
        ) -> frame_support::dispatch::PostDispatchInfo {
            let extra = T::OnChanged::on_device_changed(device, change);
            Some(T::WeightInfo::set_status().saturating_add(extra)).into()
        }

        fn ensure_operator(origin: OriginFor<T>) -> DispatchResult {
            keymesh_pallet_support::ensure_operator::<T, T::OperatorOrigin>(
                origin,
                Error::<T>::NotOperator,
            )
        }

        fn ensure_owner_or_operator(origin: OriginFor<T>, owner: &T::AccountId) -> DispatchResult {
            keymesh_pallet_support::ensure_operator_or::<T, T::OperatorOrigin>(
                origin,
                Some(owner),
                Error::<T>::NotOwnerOrOperator,
            )
        }

        fn checked_fingerprint(public_key: &[u8]) -> Result<Fingerprint, Error<T>> {
            validate_rsa_spki(public_key).map_err(|_| Error::<T>::InvalidKey)?;
            Ok(sp_io::hashing::sha2_256(public_key))
        }

        fn push_history(device: &DeviceId, entry: KeyHistoryEntry<BlockNumberFor<T>>) {
            KeyHistory::<T>::mutate(device, |history| {
                if history.is_full() && !history.is_empty() {
                    history.remove(0);
                }
                // Cannot fail: there is room after the removal above (MaxKeyHistory >= 1).
                let _ = history.try_push(entry);
            });
        }

        fn transition(
            device: &DeviceId,
            from: DeviceStatus,
            to: DeviceStatus,
            wrong_state: Error<T>,
        ) -> Result<Fingerprint, DispatchError> {
            Devices::<T>::try_mutate(device, |maybe| {
                let record = maybe.as_mut().ok_or(Error::<T>::UnknownDevice)?;
                ensure!(
                    record.status != DeviceStatus::Revoked,
                    Error::<T>::DeviceRevoked
                );
                ensure!(record.status == from, wrong_state);
                record.status = to;
                Ok(record.fingerprint)
            })
        }

        /// The device's record, if registered.
        pub fn device(id: &[u8]) -> Option<DeviceRecord<T::AccountId, BlockNumberFor<T>>> {
            let id: DeviceId = id.to_vec().try_into().ok()?;
            Devices::<T>::get(id)
        }

        /// The device as the key-directory API reports it.
        pub fn device_info(id: &[u8]) -> Option<DeviceInfo<T::AccountId, BlockNumberFor<T>>> {
            Self::device(id).map(Into::into)
        }

        /// Up to `count` (capped) devices in storage order, after `start` if given.
        pub fn devices_page(
            start: Option<&[u8]>,
            count: u32,
        ) -> alloc::vec::Vec<DeviceEntry<T::AccountId, BlockNumberFor<T>>> {
            let count = count.min(keymesh_primitives::api::MAX_DEVICES_PER_PAGE) as usize;
            let start_key = start
                .and_then(|id| DeviceId::try_from(id.to_vec()).ok())
                .map(Devices::<T>::hashed_key_for);
            let iter = match start_key {
                Some(key) => Devices::<T>::iter_from(key),
                None => Devices::<T>::iter(),
            };
            iter.take(count)
                .map(|(id, record)| (id.into_inner(), record.into()))
                .collect()
        }

        /// The device's key history, oldest first.
        pub fn history(id: &[u8]) -> Option<alloc::vec::Vec<KeyHistoryEntry<BlockNumberFor<T>>>> {
            let id: DeviceId = id.to_vec().try_into().ok()?;
            Devices::<T>::contains_key(&id).then(|| KeyHistory::<T>::get(&id).into_inner())
        }

        /// Whether `fingerprint` is the device's current key.
        pub fn check_key(id: &[u8], fingerprint: &Fingerprint) -> KeyCheck {
            match Self::device(id) {
                None => KeyCheck::Unknown,
                Some(r) if r.status == DeviceStatus::Revoked => KeyCheck::Revoked,
                Some(r) if r.status == DeviceStatus::Suspended => KeyCheck::Suspended,
                Some(r) if &r.fingerprint == fingerprint => KeyCheck::Check,
                Some(r) => KeyCheck::Mismatch {
                    expected: r.fingerprint,
                },
            }
        }
    }

    impl<T: Config> Pallet<T> {
        /// Whether `who` owns a device that is not revoked.
        pub fn owns_a_device(who: &T::AccountId) -> bool {
            OwnedDevices::<T>::contains_key(who)
        }
    }

    impl<T: Config> DeviceDirectory for Pallet<T> {
        fn status(device: &[u8]) -> Option<DeviceStatus> {
            Self::device(device).map(|record| record.status)
        }

        fn fingerprint(device: &[u8]) -> Option<Fingerprint> {
            Self::device(device).map(|record| record.fingerprint)
        }
    }

    #[pallet::genesis_config]
    #[derive(frame_support::DefaultNoBound)]
    pub struct GenesisConfig<T: Config> {
        /// Devices present from genesis: (id, SPKI DER, owner). Dev chains only.
        pub devices: alloc::vec::Vec<(alloc::vec::Vec<u8>, alloc::vec::Vec<u8>, T::AccountId)>,
    }

    #[pallet::genesis_build]
    impl<T: Config> BuildGenesisConfig for GenesisConfig<T> {
        fn build(&self) {
            for (id, key, owner) in &self.devices {
                let device: DeviceId = id.clone().try_into().expect("genesis device id fits; qed");
                assert!(validate_id(&device).is_ok(), "genesis device id is valid");
                let public_key: PublicKeyDer =
                    key.clone().try_into().expect("genesis key fits; qed");
                let fingerprint = Pallet::<T>::checked_fingerprint(&public_key)
                    .expect("genesis key is valid RSA");
                Devices::<T>::insert(
                    &device,
                    DeviceRecord {
                        owner: owner.clone(),
                        public_key,
                        fingerprint,
                        epoch: 0,
                        status: DeviceStatus::Active,
                        registered_at: Zero::zero(),
                    },
                );
                Pallet::<T>::push_history(
                    &device,
                    KeyHistoryEntry {
                        epoch: 0,
                        fingerprint,
                        from_block: Zero::zero(),
                    },
                );
                DeviceCount::<T>::mutate(|c| *c = c.saturating_add(1));
                OwnedDevices::<T>::mutate(owner, |n| *n = n.saturating_add(1));
            }
        }
    }
}

extern crate alloc;
