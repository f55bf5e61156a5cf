//! # Groups pallet
//!
//! Groups are MQTT topics with a member list and a key per epoch.
//!
//! - Operators (whoever the runtime's `OperatorOrigin` admits) [`create`](Pallet::create_group)
//!   groups and name each group's admin, and keep the registry of key managers
//!   ([`add_key_manager`](Pallet::add_key_manager), [`remove_key_manager`](Pallet::remove_key_manager)):
//!   the accounts (bridges) that set group keys.
//! - The admin (or an operator) [`add`](Pallet::add_member)s and
//!   [`remove`](Pallet::remove_member)s members and sets whether non-members may publish.
//! - A change of a group's readers asks for a new epoch with one `RekeyRequired` event, at
//!   most once per group per block. The readers change when a member is added or removed,
//!   and when a member's device is rotated, suspended, resumed or revoked (this pallet
//!   implements [`OnDeviceChanged`]). A registered key manager (a bridge) answers with
//!   [`set_epoch_key`](Pallet::set_epoch_key): the new topic public key, the topic private
//!   key sealed under a fresh epoch key, and that epoch key RSA-OAEP-wrapped to each member's
//!   current device key, as the members stood at a finalized block (`members_at`).
//! - Rekeys finish. A large group's wraps span several calls; the epoch switches when every
//!   member that counts for the key (in the group at `members_at`, unchanged since, active)
//!   has its wrap in. Changes meanwhile never discard the key: a member that leaves simply
//!   stops counting, one that joins or changes waits, and the switch asks for the next epoch
//!   at once. So with one key manager call per block, an epoch switches within
//!   `ceil(members / MaxWrapsPerCall)` blocks of its first call, however many changes land.
//! - A member that leaves (or whose key is rotated out, or who is suspended) may hold the
//!   current key, and the key being assembled. `departed_at` records it; bridges refuse
//!   topic envelopes while it is after the current key's `members_at`. The runtime refuses
//!   the current key, and any attempt a key manager dropped, for a later epoch.
//! - `member_key` serves a member only a wrap made to its device's current key; a suspended
//!   member gets none until it is resumed and a new epoch is set.
//!
//! Storage keeps at most two wraps per member: the current epoch's and the one being
//! assembled. Older wraps are deleted when an epoch switches or a member leaves.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub use pallet::*;
#[cfg(feature = "runtime-benchmarks")]
pub mod benchmarking;
pub mod weights;
pub use weights::WeightInfo;

#[cfg(any(feature = "try-runtime", test))]
mod invariants;
pub mod migrations;
#[cfg(test)]
mod mock;
#[cfg(test)]
mod tests;

use codec::{Decode, Encode, MaxEncodedLen};
use frame_support::{
    pallet_prelude::ConstU32, traits::Get, BoundedVec, CloneNoBound, DebugNoBound, EqNoBound,
    PartialEqNoBound,
};
use frame_system::pallet_prelude::BlockNumberFor;
use scale_info::TypeInfo;

pub use keymesh_primitives::{
    api::{GroupInfo, KeyCheck, MemberKey, TopicKeyInfo},
    DeviceChange, DeviceDirectory, DeviceStatus, Fingerprint, GroupDirectory, OnDeviceChanged,
    Role,
};

/// A group or device id as stored: 1 to 64 bytes of `[A-Za-z0-9._-]`.
pub type Id = BoundedVec<u8, ConstU32<{ keymesh_primitives::MAX_ID_LEN as u32 }>>;
/// A topic public key as stored: SubjectPublicKeyInfo DER.
pub type PublicKeyDer = BoundedVec<u8, ConstU32<{ keymesh_primitives::MAX_SPKI_LEN }>>;
/// The topic private key sealed under the epoch key.
pub type SealedKeyOf<T> = BoundedVec<u8, <T as Config>::MaxSealedKeyLen>;
/// One member's RSA-OAEP wrap of the epoch key.
pub type WrapOf<T> = BoundedVec<u8, <T as Config>::MaxWrapLen>;
/// The wraps one `set_epoch_key` call carries: (device, fingerprint of the device key the
/// wrap was made to, wrap).
pub type WrapsOf<T> = BoundedVec<(Id, Fingerprint, WrapOf<T>), <T as Config>::MaxWrapsPerCall>;

/// Retired keys remembered per group (see `RetiredKeys`). A key manager would have to
/// start over this many times after a removal before an old attempt's key could return.
pub const MAX_RETIRED_KEYS: u32 = 8;

/// The smallest sealed topic key: SCALE of a 12-byte nonce, a length and a 16-byte GCM tag
/// around a non-empty ciphertext.
pub const MIN_SEALED_KEY_LEN: u32 = 12 + 1 + 16 + 1;
/// The smallest wrap: RSA-OAEP output is as long as the modulus, at least 2048 bits.
pub const MIN_WRAP_LEN: u32 = keymesh_primitives::MIN_RSA_BITS / 8;

/// A group's topic key for one epoch.
#[derive(
    CloneNoBound, PartialEqNoBound, EqNoBound, Encode, Decode, TypeInfo, MaxEncodedLen, DebugNoBound,
)]
#[scale_info(skip_type_params(T))]
#[codec(mel_bound())]
pub struct TopicKey<T: Config> {
    pub epoch: u32,
    pub public_key: PublicKeyDer,
    /// SHA-256 of `public_key`: what a topic envelope's header names.
    pub fingerprint: Fingerprint,
    pub sealed_private_key: SealedKeyOf<T>,
    /// Block from which the key is (or, while pending, was staged to be) current.
    pub from_block: BlockNumberFor<T>,
    /// The finalized block whose member list the key manager wrapped the key for. Members
    /// added, or whose device changed, after it are left to the next epoch.
    pub members_at: BlockNumberFor<T>,
}

impl<T: Config> From<TopicKey<T>> for TopicKeyInfo<BlockNumberFor<T>> {
    fn from(key: TopicKey<T>) -> Self {
        TopicKeyInfo {
            epoch: key.epoch,
            public_key: key.public_key.into_inner(),
            fingerprint: key.fingerprint,
            sealed_private_key: key.sealed_private_key.into_inner(),
            from_block: key.from_block,
        }
    }
}

/// What the chain knows of a group.
#[derive(
    CloneNoBound, PartialEqNoBound, EqNoBound, Encode, Decode, TypeInfo, MaxEncodedLen, DebugNoBound,
)]
#[scale_info(skip_type_params(T))]
#[codec(mel_bound())]
pub struct GroupRecord<T: Config> {
    /// The account that adds and removes members.
    pub admin: T::AccountId,
    /// The current epoch: 0 until the first key is set.
    pub epoch: u32,
    /// The current epoch's key.
    pub topic_key: Option<TopicKey<T>>,
    /// Number of members.
    pub members: u32,
    /// Whether any active device may publish to the group, member or not.
    pub open_to_publishers: bool,
    pub created_at: BlockNumberFor<T>,
    /// The last block that emitted `RekeyRequired` for this group.
    pub rekey_requested_at: Option<BlockNumberFor<T>>,
    /// Tags the next pending key's wraps, so wraps of a discarded attempt never count.
    pub next_round: u32,
    /// The last block in which a member was added or removed, or a member's device key or
    /// status changed. An epoch whose `members_at` is older asks for the next one.
    pub members_changed_at: Option<BlockNumberFor<T>>,
    /// The last block in which a reader left: a member removed or revoked, a member's key
    /// rotated out, or a member suspended. While it is after the current key's
    /// `members_at`, that key may be held by a device that is no longer a reader.
    pub departed_at: Option<BlockNumberFor<T>>,
}

/// One membership.
#[derive(Clone, PartialEq, Eq, Encode, Decode, TypeInfo, MaxEncodedLen, Debug)]
pub struct MemberRecord<BlockNumber> {
    pub role: Role,
    /// The block the member was added, or its device's key or status last changed. A key
    /// wrapped for a view older than this does not count for the member.
    pub since: BlockNumber,
}

/// A next-epoch key whose wraps are still coming in.
#[derive(
    CloneNoBound, PartialEqNoBound, EqNoBound, Encode, Decode, TypeInfo, MaxEncodedLen, DebugNoBound,
)]
#[scale_info(skip_type_params(T))]
#[codec(mel_bound())]
pub struct PendingKey<T: Config> {
    pub key: TopicKey<T>,
    /// The group's `next_round` when this attempt started.
    pub round: u32,
    /// Members whose wrap for this attempt is in.
    pub delivered: u32,
}

/// One member's wrap of one epoch key.
#[derive(
    CloneNoBound, PartialEqNoBound, EqNoBound, Encode, Decode, TypeInfo, MaxEncodedLen, DebugNoBound,
)]
#[scale_info(skip_type_params(T))]
#[codec(mel_bound())]
pub struct EpochWrap<T: Config> {
    /// The attempt (see [`PendingKey::round`]) this wrap belongs to.
    pub round: u32,
    /// Fingerprint of the device key the wrap was made to.
    pub device_key: Fingerprint,
    /// The epoch key, RSA-OAEP-SHA256 wrapped to the member's device key.
    pub wrap: WrapOf<T>,
}

#[frame_support::pallet]
pub mod pallet {
    use super::*;
    use frame_support::{pallet_prelude::*, traits::Contains};
    use frame_system::pallet_prelude::*;
    use keymesh_primitives::{validate_id, validate_rsa_spki};

    /// The layout of this pallet's storage. 1: `AdministeredGroups` added. 2: keys record
    /// their view (`members_at`), groups `members_changed_at` and `departed_at`, wraps
    /// their `device_key`. 3: `KeyManagers` moved here from the exchange log.
    pub const STORAGE_VERSION: StorageVersion = StorageVersion::new(3);

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
        /// Who may create groups and manage any group. An origin, so the runtime decides
        /// (root, a membership set, a collective) without this pallet changing.
        type OperatorOrigin: EnsureOrigin<Self::RuntimeOrigin>;
        /// The device registry: members must be registered, active devices.
        type Devices: DeviceDirectory;
        /// Most members in one group.
        #[pallet::constant]
        type MaxMembers: Get<u32>;
        /// Most key-manager accounts.
        #[pallet::constant]
        type MaxKeyManagers: Get<u32>;
        /// Most groups one device may be in (bounds the work of revoking it).
        #[pallet::constant]
        type MaxGroupsPerDevice: Get<u32>;
        /// Longest sealed topic private key, in bytes.
        #[pallet::constant]
        type MaxSealedKeyLen: Get<u32>;
        /// Longest epoch-key wrap, in bytes (512 for RSA-4096 device keys).
        #[pallet::constant]
        type MaxWrapLen: Get<u32>;
        /// Most wraps in one `set_epoch_key` call.
        #[pallet::constant]
        type MaxWrapsPerCall: Get<u32>;
        /// Weights of the calls.
        type WeightInfo: WeightInfo;
        /// Registers the devices the benchmarks put in groups.
        #[cfg(feature = "runtime-benchmarks")]
        type BenchmarkHelper: crate::benchmarking::BenchmarkHelper;
    }

    /// Every group, by id. Written by every call; never removed, so ids are not reused.
    #[pallet::storage]
    pub type Groups<T: Config> = StorageMap<_, Blake2_128Concat, Id, GroupRecord<T>, OptionQuery>;

    /// Members of each group and their roles. Written by `add_member`, `remove_member` and
    /// device revocation.
    #[pallet::storage]
    pub type Members<T: Config> = StorageDoubleMap<
        _,
        Blake2_128Concat,
        Id,
        Blake2_128Concat,
        Id,
        MemberRecord<BlockNumberFor<T>>,
        OptionQuery,
    >;

    /// Epoch-key wraps by (group, epoch, device): the current epoch's and the pending one's.
    /// Written by `set_epoch_key`; deleted when an epoch switches or a member leaves.
    #[pallet::storage]
    pub type EpochWraps<T: Config> = StorageNMap<
        _,
        (
            NMapKey<Blake2_128Concat, Id>,
            NMapKey<Twox64Concat, u32>,
            NMapKey<Blake2_128Concat, Id>,
        ),
        EpochWrap<T>,
        OptionQuery,
    >;

    /// The next epoch's key while its wraps are coming in. Written by `set_epoch_key`;
    /// removed when the epoch switches or a membership change makes the set stale.
    #[pallet::storage]
    pub type PendingKeys<T: Config> =
        StorageMap<_, Blake2_128Concat, Id, PendingKey<T>, OptionQuery>;

    /// The groups each device is in, so a revocation can leave them all. Written with
    /// `Members`.
    #[pallet::storage]
    pub type DeviceGroups<T: Config> =
        StorageMap<_, Blake2_128Concat, Id, BoundedVec<Id, T::MaxGroupsPerDevice>, ValueQuery>;

    /// Number of groups. Written by `create_group`.
    #[pallet::storage]
    pub type GroupCount<T: Config> = StorageValue<_, u32, ValueQuery>;

    /// Keys of attempts a key manager dropped: (topic key fingerprint, SHA-256 of the
    /// sealed topic key). A member that has left since may hold a wrap of such an attempt
    /// (it is in earlier state), so neither may be used for a later epoch. The newest
    /// `MAX_RETIRED_KEYS` are kept. Written by `set_epoch_key` when it starts over.
    #[pallet::storage]
    pub type RetiredKeys<T: Config> = StorageMap<
        _,
        Blake2_128Concat,
        Id,
        BoundedVec<(Fingerprint, [u8; 32]), ConstU32<MAX_RETIRED_KEYS>>,
        ValueQuery,
    >;

    /// Accounts that may call `set_epoch_key`: key managers (bridges that rekey). Written by
    /// `add_key_manager` and `remove_key_manager`.
    #[pallet::storage]
    pub type KeyManagers<T: Config> =
        CountedStorageMap<_, Blake2_128Concat, T::AccountId, (), OptionQuery>;

    #[pallet::genesis_config]
    #[derive(frame_support::DefaultNoBound)]
    pub struct GenesisConfig<T: Config> {
        /// Key-manager accounts from genesis (dev chains).
        pub key_managers: alloc::vec::Vec<T::AccountId>,
    }

    #[pallet::genesis_build]
    impl<T: Config> BuildGenesisConfig for GenesisConfig<T> {
        fn build(&self) {
            assert!(
                self.key_managers.len() as u32 <= T::MaxKeyManagers::get(),
                "genesis names at most MaxKeyManagers key managers"
            );
            for who in &self.key_managers {
                KeyManagers::<T>::insert(who, ());
            }
        }
    }

    /// How many groups each account administers, so the runtime can tell a group admin
    /// from a stranger without scanning `Groups`. Written by `create_group`.
    #[pallet::storage]
    pub type AdministeredGroups<T: Config> =
        StorageMap<_, Blake2_128Concat, T::AccountId, u32, ValueQuery>;

    #[pallet::event]
    #[pallet::generate_deposit(pub(crate) fn deposit_event)]
    pub enum Event<T: Config> {
        /// A group was created, without members or key (epoch 0).
        GroupCreated { group: Id, admin: T::AccountId },
        /// A device joined a group; it reads from the next epoch on.
        MemberAdded { group: Id, device: Id, role: Role },
        /// A device left a group (removed, or revoked); it cannot read the next epoch.
        MemberRemoved { group: Id, device: Id },
        /// A member's device was rotated, suspended or resumed: its wrap of the current
        /// epoch is gone (rotated, suspended), and it reads again from the next epoch
        /// (rotated, resumed).
        MemberChanged {
            group: Id,
            device: Id,
            change: DeviceChange,
        },
        /// The group's readers changed: a key manager must set `next_epoch`. Emitted by
        /// the change when no key is pending, else by the epoch switch that the change came
        /// too late for.
        RekeyRequired { group: Id, next_epoch: u32 },
        /// Whether non-members may publish to the group changed.
        PublishingPolicySet { group: Id, open_to_publishers: bool },
        /// Part of a next-epoch key is in: `delivered` of `members` wraps.
        EpochKeyStaged {
            group: Id,
            epoch: u32,
            fingerprint: Fingerprint,
            delivered: u32,
            members: u32,
        },
        /// A half-assembled next-epoch key was dropped: a key manager started over with
        /// another key.
        PendingKeyDiscarded { group: Id, epoch: u32 },
        /// The group switched to `epoch`; topic envelopes must now be sealed to `fingerprint`.
        GroupKeyRotated {
            group: Id,
            epoch: u32,
            fingerprint: Fingerprint,
        },
        /// `device` holds the epoch key of `epoch`: a key exchange.
        GroupKeyDelivered { group: Id, device: Id, epoch: u32 },
        /// `who` may now set group keys.
        KeyManagerAdded { who: T::AccountId },
        /// `who` may no longer set group keys.
        KeyManagerRemoved { who: T::AccountId },
    }

    #[pallet::error]
    pub enum Error<T> {
        /// The caller is not an operator (nor root).
        NotOperator,
        /// The caller is neither the group's admin nor an operator.
        NotAdminOrOperator,
        /// The caller is not a registered key manager.
        NotKeyManager,
        /// The account is a key manager already.
        AlreadyKeyManager,
        /// The account is not a key manager.
        UnknownKeyManager,
        /// There are `MaxKeyManagers` key managers.
        TooManyKeyManagers,
        /// The id is not 1..64 bytes of `[A-Za-z0-9._-]`.
        InvalidGroupId,
        /// A group with this id exists.
        GroupExists,
        /// No group has this id.
        UnknownGroup,
        /// No device has this id.
        UnknownDevice,
        /// The device is revoked.
        DeviceRevoked,
        /// The device is suspended.
        DeviceNotActive,
        /// The device is already a member.
        AlreadyMember,
        /// The device is not a member.
        NotMember,
        /// The group has `MaxMembers` members.
        GroupFull,
        /// The device is in `MaxGroupsPerDevice` groups.
        TooManyGroups,
        /// Too many groups.
        TooManyGroupsOverall,
        /// The epoch is not the group's next one.
        WrongEpoch,
        /// The epoch counter would overflow.
        EpochOverflow,
        /// The topic key is not an RSA SubjectPublicKeyInfo of 2048..4096 bits, e = 65537.
        InvalidKey,
        /// The sealed topic private key is too short to be one.
        InvalidSealedKey,
        /// A wrap is shorter than an RSA-2048 ciphertext.
        InvalidWrap,
        /// A wrap names a device key that is not the member's current one.
        WrapForOtherKey,
        /// `members_at` is after the current block.
        ViewFromTheFuture,
        /// This member's wrap for the pending key is already in.
        DuplicateWrap,
        /// The call carries no wraps, and members still need one.
        NoWraps,
        /// The topic key or the sealed key is the current epoch's, or one that was pending
        /// when a member left: a member that left may hold it.
        KeyNotFresh,
    }

    #[pallet::call]
    impl<T: Config> Pallet<T> {
        /// Creates `group` with `admin` as its admin, no members and no key.
        ///
        /// Origin: root or an operator. Writes `Groups`, `GroupCount`, `AdministeredGroups`;
        /// emits `GroupCreated`.
        #[pallet::call_index(0)]
        #[pallet::weight(T::WeightInfo::create_group())]
        pub fn create_group(
            origin: OriginFor<T>,
            group: Id,
            admin: T::AccountId,
        ) -> DispatchResult {
            Self::ensure_operator(origin)?;
            validate_id(&group).map_err(|_| Error::<T>::InvalidGroupId)?;
            ensure!(!Groups::<T>::contains_key(&group), Error::<T>::GroupExists);
            let count = GroupCount::<T>::get()
                .checked_add(1)
                .ok_or(Error::<T>::TooManyGroupsOverall)?;
            Groups::<T>::insert(
                &group,
                GroupRecord {
                    admin: admin.clone(),
                    epoch: 0,
                    topic_key: None,
                    members: 0,
                    open_to_publishers: false,
                    created_at: frame_system::Pallet::<T>::block_number(),
                    rekey_requested_at: None,
                    next_round: 0,
                    members_changed_at: None,
                    departed_at: None,
                },
            );
            GroupCount::<T>::put(count);
            AdministeredGroups::<T>::mutate(&admin, |n| *n = n.saturating_add(1));
            Self::deposit_event(Event::GroupCreated { group, admin });
            Ok(())
        }

        /// Adds the active device `device` to `group` with `role`.
        ///
        /// Origin: the group's admin, an operator or root. Writes `Members`, `DeviceGroups`,
        /// `Groups`; emits `MemberAdded`, then `RekeyRequired` unless a key is pending (the
        /// member is then left to the epoch after it) or the group asked in this block.
        #[pallet::call_index(1)]
        #[pallet::weight(T::WeightInfo::add_member())]
        pub fn add_member(
            origin: OriginFor<T>,
            group: Id,
            device: Id,
            role: Role,
        ) -> DispatchResult {
            let mut record = Groups::<T>::get(&group).ok_or(Error::<T>::UnknownGroup)?;
            Self::ensure_admin_or_operator(origin, &record.admin)?;
            match T::Devices::status(&device) {
                None => return Err(Error::<T>::UnknownDevice.into()),
                Some(DeviceStatus::Revoked) => return Err(Error::<T>::DeviceRevoked.into()),
                Some(DeviceStatus::Suspended) => return Err(Error::<T>::DeviceNotActive.into()),
                Some(DeviceStatus::Active) => {}
            }
            ensure!(
                !Members::<T>::contains_key(&group, &device),
                Error::<T>::AlreadyMember
            );
            ensure!(record.members < T::MaxMembers::get(), Error::<T>::GroupFull);
            DeviceGroups::<T>::try_mutate(&device, |groups| {
                groups
                    .try_push(group.clone())
                    .map_err(|_| Error::<T>::TooManyGroups)
            })?;
            Members::<T>::insert(
                &group,
                &device,
                MemberRecord {
                    role,
                    since: frame_system::Pallet::<T>::block_number(),
                },
            );
            record.members = record.members.saturating_add(1);
            Self::deposit_event(Event::MemberAdded {
                group: group.clone(),
                device,
                role,
            });
            Self::membership_changed(&group, &mut record);
            Groups::<T>::insert(&group, record);
            Ok(())
        }

        /// Removes `device` from `group`, deleting its wraps.
        ///
        /// Origin: the group's admin, an operator or root. Writes `Members`, `EpochWraps`,
        /// `DeviceGroups`, `Groups` and the pending key's count; emits `MemberRemoved`, then
        /// `RekeyRequired` as for `add_member`. A pending key still switches (the member may
        /// hold it, so the switch asks for the next epoch at once).
        #[pallet::call_index(2)]
        #[pallet::weight(T::WeightInfo::remove_member())]
        pub fn remove_member(origin: OriginFor<T>, group: Id, device: Id) -> DispatchResult {
            let mut record = Groups::<T>::get(&group).ok_or(Error::<T>::UnknownGroup)?;
            Self::ensure_admin_or_operator(origin, &record.admin)?;
            ensure!(
                Members::<T>::contains_key(&group, &device),
                Error::<T>::NotMember
            );
            DeviceGroups::<T>::mutate_exists(&device, |groups| {
                if let Some(list) = groups {
                    list.retain(|g| g != &group);
                    if list.is_empty() {
                        *groups = None;
                    }
                }
            });
            Self::leave(&group, &mut record, device);
            Groups::<T>::insert(&group, record);
            Ok(())
        }

        /// Sets whether any active device may publish to `group` (`true`), or only members
        /// with the Publisher or Both role (`false`, the default).
        ///
        /// Origin: the group's admin, an operator or root. Writes `Groups`; emits
        /// `PublishingPolicySet`.
        #[pallet::call_index(3)]
        #[pallet::weight(T::WeightInfo::set_publishing())]
        pub fn set_publishing(
            origin: OriginFor<T>,
            group: Id,
            open_to_publishers: bool,
        ) -> DispatchResult {
            let mut record = Groups::<T>::get(&group).ok_or(Error::<T>::UnknownGroup)?;
            Self::ensure_admin_or_operator(origin, &record.admin)?;
            record.open_to_publishers = open_to_publishers;
            Groups::<T>::insert(&group, record);
            Self::deposit_event(Event::PublishingPolicySet {
                group,
                open_to_publishers,
            });
            Ok(())
        }

        /// Submits (part of) the key of `group`'s next epoch: the topic public key, the topic
        /// private key sealed under a fresh epoch key, and that epoch key wrapped to members.
        ///
        /// `epoch` must be the group's current epoch + 1. `members_at` is the finalized block
        /// whose member list and device keys the key manager wrapped for. Every call of one
        /// attempt carries the same topic key, sealed key and `members_at`; anything else
        /// starts the attempt over (and retires the dropped key). Each wrap names a member
        /// and the fingerprint of the device key it was made to, which must be the device's
        /// current key. Wraps for devices that have left, or changed after `members_at`,
        /// are skipped: the key manager's view is allowed to be that old.
        ///
        /// The epoch switches when every member that counts for the attempt (in the group at
        /// `members_at`, unchanged since, and active) has its wrap in. Membership changes
        /// meanwhile do not stop the attempt; they are left to the next epoch, which the
        /// switch asks for with `RekeyRequired`.
        ///
        /// Origin: a registered key manager. Writes `EpochWraps`, `PendingKeys`, `Groups`;
        /// emits `PendingKeyDiscarded` when it starts over, then `EpochKeyStaged` while wraps
        /// are missing, or `GroupKeyRotated`, one `GroupKeyDelivered` per member holding a
        /// wrap, and `RekeyRequired` if a change came too late for this epoch.
        ///
        /// Operational class: it draws on the block room that normal transactions cannot
        /// take, so no stream of other calls holds a rekey off.
        #[pallet::call_index(4)]
        #[pallet::weight((
            T::WeightInfo::set_epoch_key(
                wraps.len() as u32,
                // The group's other members, each looked at to tell the key is complete and
                // again to switch.
                T::MaxMembers::get().saturating_sub(wraps.len() as u32),
            )
            .saturating_add(T::WeightInfo::start_attempt()),
            DispatchClass::Operational
        ))]
        pub fn set_epoch_key(
            origin: OriginFor<T>,
            group: Id,
            epoch: u32,
            members_at: BlockNumberFor<T>,
            topic_public_key: PublicKeyDer,
            sealed_private_key: SealedKeyOf<T>,
            wraps: WrapsOf<T>,
        ) -> DispatchResultWithPostInfo {
            let who = ensure_signed(origin)?;
            ensure!(
                KeyManagers::<T>::contains_key(&who),
                Error::<T>::NotKeyManager
            );
            let mut record = Groups::<T>::get(&group).ok_or(Error::<T>::UnknownGroup)?;
            let next = record
                .epoch
                .checked_add(1)
                .ok_or(Error::<T>::EpochOverflow)?;
            ensure!(epoch == next, Error::<T>::WrongEpoch);
            let now = frame_system::Pallet::<T>::block_number();
            ensure!(members_at <= now, Error::<T>::ViewFromTheFuture);
            validate_rsa_spki(&topic_public_key).map_err(|_| Error::<T>::InvalidKey)?;
            ensure!(
                sealed_private_key.len() as u32 >= MIN_SEALED_KEY_LEN,
                Error::<T>::InvalidSealedKey
            );
            let key = TopicKey {
                epoch,
                fingerprint: sp_io::hashing::sha2_256(&topic_public_key),
                public_key: topic_public_key,
                sealed_private_key,
                from_block: now,
                members_at,
            };
            let wrap_count = wraps.len() as u32;
            let (mut pending, started) = Self::attempt(&group, &mut record, key)?;
            for (device, device_key, wrap) in wraps {
                ensure!(wrap.len() as u32 >= MIN_WRAP_LEN, Error::<T>::InvalidWrap);
                let counts = Members::<T>::get(&group, &device)
                    .is_some_and(|member| Self::counts_for(&device, &member, members_at));
                if !counts {
                    continue;
                }
                ensure!(
                    T::Devices::fingerprint(&device) == Some(device_key),
                    Error::<T>::WrapForOtherKey
                );
                let at = (group.clone(), epoch, device);
                if let Some(existing) = EpochWraps::<T>::get(&at) {
                    ensure!(existing.round != pending.round, Error::<T>::DuplicateWrap);
                }
                let round = pending.round;
                EpochWraps::<T>::insert(
                    at,
                    EpochWrap {
                        round,
                        device_key,
                        wrap,
                    },
                );
                pending.delivered = pending.delivered.saturating_add(1);
            }

            let (complete, visited) = Self::attempt_complete(&group, &pending);
            // An empty call may only switch an epoch no member needs a wrap for.
            ensure!(complete || wrap_count > 0, Error::<T>::NoWraps);
            if !complete {
                Self::deposit_event(Event::EpochKeyStaged {
                    group: group.clone(),
                    epoch,
                    fingerprint: pending.key.fingerprint,
                    delivered: pending.delivered,
                    members: record.members,
                });
                PendingKeys::<T>::insert(&group, pending);
                Groups::<T>::insert(&group, record);
                let others = visited.saturating_sub(wrap_count);
                return Ok(Some(Self::epoch_key_weight(wrap_count, others, started)).into());
            }
            let switched = Self::switch_epoch(&group, &mut record, pending);
            Groups::<T>::insert(&group, record);
            let others = visited.max(switched).saturating_sub(wrap_count);
            Ok(Some(Self::epoch_key_weight(wrap_count, others, started)).into())
        }

        /// Registers `who` as a key manager: it may call `set_epoch_key`.
        ///
        /// Origin: root or an operator. Writes `KeyManagers`; emits `KeyManagerAdded`.
        #[pallet::call_index(5)]
        #[pallet::weight(T::WeightInfo::set_key_manager())]
        pub fn add_key_manager(origin: OriginFor<T>, who: T::AccountId) -> DispatchResult {
            Self::ensure_operator(origin)?;
            ensure!(
                !KeyManagers::<T>::contains_key(&who),
                Error::<T>::AlreadyKeyManager
            );
            ensure!(
                KeyManagers::<T>::count() < T::MaxKeyManagers::get(),
                Error::<T>::TooManyKeyManagers
            );
            KeyManagers::<T>::insert(&who, ());
            Self::deposit_event(Event::KeyManagerAdded { who });
            Ok(())
        }

        /// Unregisters the key manager `who`. A key it has pending stays, for another key
        /// manager to finish or replace.
        ///
        /// Origin: root or an operator. Writes `KeyManagers`; emits `KeyManagerRemoved`.
        #[pallet::call_index(6)]
        #[pallet::weight(T::WeightInfo::set_key_manager())]
        pub fn remove_key_manager(origin: OriginFor<T>, who: T::AccountId) -> DispatchResult {
            Self::ensure_operator(origin)?;
            ensure!(
                KeyManagers::<T>::contains_key(&who),
                Error::<T>::UnknownKeyManager
            );
            KeyManagers::<T>::remove(&who);
            Self::deposit_event(Event::KeyManagerRemoved { who });
            Ok(())
        }
    }

    impl<T: Config> Pallet<T> {
        /// What a `set_epoch_key` call with `wraps` wraps that looked at `others` other
        /// members used; a call that started an attempt also paid for the freshness check
        /// and for retiring the attempt it replaced.
        fn epoch_key_weight(wraps: u32, others: u32, started: bool) -> Weight {
            let weight = T::WeightInfo::set_epoch_key(wraps, others);
            if started {
                weight.saturating_add(T::WeightInfo::start_attempt())
            } else {
                weight
            }
        }

        fn ensure_operator(origin: OriginFor<T>) -> DispatchResult {
            keymesh_pallet_support::ensure_operator::<T, T::OperatorOrigin>(
                origin,
                Error::<T>::NotOperator,
            )
        }

        fn ensure_admin_or_operator(origin: OriginFor<T>, admin: &T::AccountId) -> DispatchResult {
            keymesh_pallet_support::ensure_operator_or::<T, T::OperatorOrigin>(
                origin,
                Some(admin),
                Error::<T>::NotAdminOrOperator,
            )
        }

        /// Whether a new attempt's keys are neither the current epoch's nor retired.
        fn is_fresh(
            group: &Id,
            record: &GroupRecord<T>,
            fingerprint: &Fingerprint,
            sealed: &SealedKeyOf<T>,
        ) -> bool {
            let sealed_hash = sp_io::hashing::sha2_256(sealed);
            let current = record.topic_key.as_ref().is_some_and(|k| {
                &k.fingerprint == fingerprint
                    || sp_io::hashing::sha2_256(&k.sealed_private_key) == sealed_hash
            });
            !current
                && !RetiredKeys::<T>::get(group)
                    .iter()
                    .any(|(f, s)| f == fingerprint || *s == sealed_hash)
        }

        /// Remembers `pending` as a key a member leaving `group` may hold.
        fn retire(group: &Id, pending: &PendingKey<T>) {
            let retired = (
                pending.key.fingerprint,
                sp_io::hashing::sha2_256(&pending.key.sealed_private_key),
            );
            RetiredKeys::<T>::mutate(group, |keys| {
                if keys.contains(&retired) {
                    return;
                }
                if keys.is_full() {
                    keys.remove(0);
                }
                // Cannot fail: there is room now.
                let _ = keys.try_push(retired);
            });
        }

        /// The pending attempt `key` continues, or a new one it starts (then `true`). A new
        /// attempt's keys must be fresh; the attempt it replaces is retired, since its wraps
        /// may be out.
        fn attempt(
            group: &Id,
            record: &mut GroupRecord<T>,
            key: TopicKey<T>,
        ) -> Result<(PendingKey<T>, bool), DispatchError> {
            let previous = PendingKeys::<T>::get(group);
            if let Some(p) = previous.as_ref().filter(|p| {
                p.key.epoch == key.epoch
                    && p.key.fingerprint == key.fingerprint
                    && p.key.sealed_private_key == key.sealed_private_key
                    && p.key.members_at == key.members_at
            }) {
                return Ok((p.clone(), false));
            }
            ensure!(
                Self::is_fresh(group, record, &key.fingerprint, &key.sealed_private_key),
                Error::<T>::KeyNotFresh
            );
            if let Some(p) = previous {
                Self::retire(group, &p);
                Self::deposit_event(Event::PendingKeyDiscarded {
                    group: group.clone(),
                    epoch: p.key.epoch,
                });
            }
            let round = record.next_round;
            record.next_round = round.wrapping_add(1);
            Ok((
                PendingKey {
                    key,
                    round,
                    delivered: 0,
                },
                true,
            ))
        }

        /// Whether `member` must hold a wrap of a key made for the view at `members_at`: it
        /// was in the group then, its device has not changed since, and it is active.
        fn counts_for(
            device: &Id,
            member: &MemberRecord<BlockNumberFor<T>>,
            members_at: BlockNumberFor<T>,
        ) -> bool {
            member.since <= members_at && T::Devices::status(device) == Some(DeviceStatus::Active)
        }

        /// Whether every member that counts for `pending` has its wrap in, and how many
        /// members were looked at to tell (it stops at the first one missing).
        fn attempt_complete(group: &Id, pending: &PendingKey<T>) -> (bool, u32) {
            let mut visited = 0u32;
            for (device, member) in Members::<T>::iter_prefix(group) {
                visited = visited.saturating_add(1);
                if !Self::counts_for(&device, &member, pending.key.members_at) {
                    continue;
                }
                let wrapped = EpochWraps::<T>::get((group.clone(), pending.key.epoch, device))
                    .is_some_and(|w| w.round == pending.round);
                if !wrapped {
                    return (false, visited);
                }
            }
            (true, visited)
        }

        /// Makes `pending` the current key: deletes the old epoch's wraps and any the
        /// attempt did not make, and asks for the next epoch if a change came too late for
        /// this one. Returns the number of members; the caller stores `record`.
        fn switch_epoch(group: &Id, record: &mut GroupRecord<T>, pending: PendingKey<T>) -> u32 {
            let now = frame_system::Pallet::<T>::block_number();
            let old_epoch = record.epoch;
            let epoch = pending.key.epoch;
            let members_at = pending.key.members_at;
            let mut key = pending.key;
            key.from_block = now;
            Self::deposit_event(Event::GroupKeyRotated {
                group: group.clone(),
                epoch,
                fingerprint: key.fingerprint,
            });
            record.epoch = epoch;
            record.topic_key = Some(key);
            PendingKeys::<T>::remove(group);
            let mut members = 0u32;
            for device in Members::<T>::iter_key_prefix(group) {
                members = members.saturating_add(1);
                EpochWraps::<T>::remove((group.clone(), old_epoch, device.clone()));
                let at = (group.clone(), epoch, device.clone());
                match EpochWraps::<T>::get(&at) {
                    Some(w) if w.round == pending.round => {
                        Self::deposit_event(Event::GroupKeyDelivered {
                            group: group.clone(),
                            device,
                            epoch,
                        });
                    }
                    Some(_) => EpochWraps::<T>::remove(at),
                    None => {}
                }
            }
            if record.members_changed_at.is_some_and(|at| at > members_at) {
                record.rekey_requested_at = Some(now);
                Self::deposit_event(Event::RekeyRequired {
                    group: group.clone(),
                    next_epoch: epoch.saturating_add(1),
                });
            }
            members
        }

        /// Deletes `device`'s wrap of the pending attempt, if it is in.
        fn drop_pending_wrap(group: &Id, record: &GroupRecord<T>, device: &Id) {
            let at = (
                group.clone(),
                record.epoch.saturating_add(1),
                device.clone(),
            );
            if EpochWraps::<T>::take(&at).is_none() {
                return;
            }
            PendingKeys::<T>::mutate(group, |pending| {
                if let Some(p) = pending {
                    p.delivered = p.delivered.saturating_sub(1);
                }
            });
        }

        /// Drops `device`'s membership and wraps; the caller updates `DeviceGroups` and
        /// stores `record`.
        fn leave(group: &Id, record: &mut GroupRecord<T>, device: Id) {
            Members::<T>::remove(group, &device);
            EpochWraps::<T>::remove((group.clone(), record.epoch, device.clone()));
            Self::drop_pending_wrap(group, record, &device);
            record.members = record.members.saturating_sub(1);
            record.departed_at = Some(frame_system::Pallet::<T>::block_number());
            Self::deposit_event(Event::MemberRemoved {
                group: group.clone(),
                device,
            });
            Self::membership_changed(group, record);
        }

        /// Follows a rotation, suspension or resumption of a member's device: its wraps
        /// go (they were made to a key it no longer uses, or it may no longer read), and it
        /// counts again only for a key made after this block.
        fn member_changed(group: &Id, device: &Id, change: DeviceChange) {
            let Some(mut record) = Groups::<T>::get(group) else {
                return;
            };
            let now = frame_system::Pallet::<T>::block_number();
            Members::<T>::mutate(group, device, |member| {
                if let Some(m) = member {
                    m.since = now;
                }
            });
            EpochWraps::<T>::remove((group.clone(), record.epoch, device.clone()));
            Self::drop_pending_wrap(group, &record, device);
            if change != DeviceChange::Resumed {
                record.departed_at = Some(now);
            }
            Self::deposit_event(Event::MemberChanged {
                group: group.clone(),
                device: device.clone(),
                change,
            });
            Self::membership_changed(group, &mut record);
            Groups::<T>::insert(group, record);
        }

        /// Notes a change of the group's readers and asks for a new epoch, once per block.
        /// While a key is pending the request waits: that key switches for the readers it
        /// was made for, and its switch asks for the next epoch.
        fn membership_changed(group: &Id, record: &mut GroupRecord<T>) {
            let now = frame_system::Pallet::<T>::block_number();
            record.members_changed_at = Some(now);
            if PendingKeys::<T>::contains_key(group) || record.rekey_requested_at == Some(now) {
                return;
            }
            record.rekey_requested_at = Some(now);
            Self::deposit_event(Event::RekeyRequired {
                group: group.clone(),
                next_epoch: record.epoch.saturating_add(1),
            });
        }

        /// Whether a device that is no longer a reader may hold `record`'s current key: one
        /// left after the view the key was made for. Bridges refuse topic envelopes then.
        pub fn departed_may_read(record: &GroupRecord<T>) -> bool {
            match (&record.topic_key, record.departed_at) {
                (Some(key), Some(departed)) => departed > key.members_at,
                _ => false,
            }
        }

        /// Whether `who` administers a group.
        pub fn administers_a_group(who: &T::AccountId) -> bool {
            AdministeredGroups::<T>::contains_key(who)
        }

        /// The group as the key-directory API reports it.
        pub fn group_info(id: &[u8]) -> Option<GroupInfo<T::AccountId, BlockNumberFor<T>>> {
            let id: Id = id.to_vec().try_into().ok()?;
            let record = Groups::<T>::get(&id)?;
            let members = Members::<T>::iter_prefix(&id)
                .map(|(device, member)| (device.into_inner(), member.role))
                .collect();
            Some(GroupInfo {
                admin: record.admin,
                epoch: record.epoch,
                topic_key: record.topic_key.map(Into::into),
                open_to_publishers: record.open_to_publishers,
                members,
                pending_epoch: PendingKeys::<T>::get(&id).map(|p| p.key.epoch),
                created_at: record.created_at,
            })
        }

        /// What `device` needs to read `group`'s current epoch, if it is a member.
        pub fn member_key(group: &[u8], device: &[u8]) -> Option<MemberKey<BlockNumberFor<T>>> {
            let group: Id = group.to_vec().try_into().ok()?;
            let device: Id = device.to_vec().try_into().ok()?;
            let member = Members::<T>::get(&group, &device)?;
            let record = Groups::<T>::get(&group)?;
            // A wrap made to a key the device no longer has is not served.
            let current = T::Devices::fingerprint(&device);
            let wrapped_epoch_key = EpochWraps::<T>::get((group, record.epoch, device))
                .filter(|w| Some(w.device_key) == current)
                .map(|w| w.wrap.into_inner());
            Some(MemberKey {
                role: member.role,
                topic_key: record.topic_key.map(Into::into),
                wrapped_epoch_key,
            })
        }

        /// Whether `fingerprint` is `group`'s topic key for its current epoch.
        pub fn check_key(group: &[u8], fingerprint: &Fingerprint) -> KeyCheck {
            let Some(record) = Id::try_from(group.to_vec()).ok().and_then(Groups::<T>::get) else {
                return KeyCheck::Unknown;
            };
            match record.topic_key {
                None => KeyCheck::Unknown,
                Some(key) if &key.fingerprint == fingerprint => KeyCheck::Check,
                Some(key) => KeyCheck::Mismatch {
                    expected: key.fingerprint,
                },
            }
        }
    }

    /// `Contains` view of the key managers, for the runtime's signer check.
    pub struct IsKeyManager<T>(core::marker::PhantomData<T>);
    impl<T: Config> Contains<T::AccountId> for IsKeyManager<T> {
        fn contains(who: &T::AccountId) -> bool {
            KeyManagers::<T>::contains_key(who)
        }
    }

    impl<T: Config> GroupDirectory for Pallet<T> {
        fn exists(group: &[u8]) -> bool {
            Id::try_from(group.to_vec()).is_ok_and(Groups::<T>::contains_key)
        }
    }

    impl<T: Config> OnDeviceChanged for Pallet<T> {
        fn on_device_changed(device: &[u8], change: DeviceChange) -> Weight {
            let Ok(device) = Id::try_from(device.to_vec()) else {
                return Weight::zero();
            };
            if change != DeviceChange::Revoked {
                let groups = DeviceGroups::<T>::get(&device);
                for group in &groups {
                    Self::member_changed(group, &device, change);
                }
                return T::WeightInfo::leave_groups(groups.len() as u32);
            }
            let groups = DeviceGroups::<T>::take(&device);
            let left = groups.len() as u32;
            for group in groups {
                if let Some(mut record) = Groups::<T>::get(&group) {
                    Self::leave(&group, &mut record, device.clone());
                    Groups::<T>::insert(&group, record);
                }
            }
            T::WeightInfo::leave_groups(left)
        }

        fn max_weight() -> Weight {
            T::WeightInfo::leave_groups(T::MaxGroupsPerDevice::get())
        }
    }
}
