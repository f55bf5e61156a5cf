//! # Exchange-log pallet
//!
//! The audit trail. Bridges batch what they did into one [`record`](Pallet::record) call a
//! block. The envelopes they forwarded from one sender to one target under one key, checked
//! at one finalized block, become one `KeysExchanged` event: their count and the Merkle root
//! of their envelope hashes, from which the bridge proves any one of them was logged
//! (`docs/exchange-proof.md`). A single forwarded envelope may also be logged on its own as a
//! `KeyExchanged` event. Every envelope refused because it was sealed to a key that is not the
//! target's current key becomes a `KeyMismatch` event. Storage holds only who may write: the registered bridge accounts,
//! managed by root or an operator. (Key managers are the groups pallet's concern.)
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub use pallet::*;

#[cfg(feature = "runtime-benchmarks")]
pub mod benchmarking;
#[cfg(any(feature = "try-runtime", test))]
mod invariants;
#[cfg(test)]
mod mock;
#[cfg(test)]
mod tests;
pub mod weights;
pub use weights::WeightInfo;

use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use frame_support::{pallet_prelude::ConstU32, BoundedVec};
use keymesh_primitives::{DeviceDirectory, Fingerprint, GroupDirectory};
use scale_info::TypeInfo;

/// A device or group id: 1 to 64 bytes of `[A-Za-z0-9._-]`.
pub type Id = BoundedVec<u8, ConstU32<{ keymesh_primitives::MAX_ID_LEN as u32 }>>;

/// Whom an envelope was sealed to.
#[derive(
    Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, MaxEncodedLen, Debug,
)]
pub enum Target {
    /// A device (direct message).
    Device(Id),
    /// A group (topic message).
    Group(Id),
}

impl Target {
    fn id(&self) -> &Id {
        match self {
            Target::Device(id) | Target::Group(id) => id,
        }
    }
}

/// One outcome a bridge reports.
#[derive(
    Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, MaxEncodedLen, Debug,
)]
pub enum ExchangeRecord<BlockNumber> {
    /// The bridge forwarded an envelope sealed to the target's current key.
    Exchanged {
        sender: Id,
        target: Target,
        fingerprint: Fingerprint,
        envelope_hash: [u8; 32],
        /// The finalized block whose state the bridge checked against.
        checked_at: BlockNumber,
    },
    /// The bridge refused an envelope sealed to `presented` when the target's key is
    /// `expected`.
    Mismatch {
        sender: Id,
        target: Target,
        presented: Fingerprint,
        expected: Fingerprint,
    },
    /// The bridge forwarded `count` envelopes from `sender` to `target`, each sealed to the
    /// target's current key `fingerprint` as of finalized block `checked_at`; `root` is the
    /// Merkle root of their envelope hashes in the order forwarded.
    Exchanges {
        sender: Id,
        target: Target,
        fingerprint: Fingerprint,
        checked_at: BlockNumber,
        count: u32,
        root: [u8; 32],
    },
}

#[frame_support::pallet]
pub mod pallet {
    use super::*;
    use frame_support::{pallet_prelude::*, traits::Contains};
    use frame_system::pallet_prelude::*;

    /// The layout of this pallet's storage. 1: the first versioned layout (bridges and key
    /// managers), unchanged from before versions were kept. 2: key managers moved to
    /// `pallet-groups` (the runtime's migration moves them).
    pub const STORAGE_VERSION: StorageVersion = StorageVersion::new(2);

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
        /// Who may add and remove bridges. An origin, so the runtime
        /// decides (root, a membership set, a collective) without this pallet changing.
        type OperatorOrigin: EnsureOrigin<Self::RuntimeOrigin>;
        /// Most records in one `record` call.
        #[pallet::constant]
        type MaxBatch: Get<u32>;
        /// Most bridge accounts.
        #[pallet::constant]
        type MaxBridges: Get<u32>;
        /// The device registry: a record's sender, and a device target, must exist.
        type Devices: DeviceDirectory;
        /// The group registry: a group target must exist.
        type Groups: GroupDirectory;
        /// Weights of the calls.
        type WeightInfo: WeightInfo;
        /// Registers the devices and groups the benchmarks' records name.
        #[cfg(feature = "runtime-benchmarks")]
        type BenchmarkHelper: crate::benchmarking::BenchmarkHelper;
    }

    /// Bridge accounts allowed to call `record`. Written by `add_bridge`/`remove_bridge`.
    #[pallet::storage]
    pub type Bridges<T: Config> =
        CountedStorageMap<_, Blake2_128Concat, T::AccountId, (), OptionQuery>;

    #[pallet::genesis_config]
    #[derive(frame_support::DefaultNoBound)]
    pub struct GenesisConfig<T: Config> {
        /// Bridge accounts from genesis (dev chains).
        pub bridges: alloc::vec::Vec<T::AccountId>,
    }

    #[pallet::genesis_build]
    impl<T: Config> BuildGenesisConfig for GenesisConfig<T> {
        fn build(&self) {
            assert!(
                self.bridges.len() as u32 <= T::MaxBridges::get(),
                "genesis names at most MaxBridges bridges"
            );
            for who in &self.bridges {
                Bridges::<T>::insert(who, ());
            }
        }
    }

    #[pallet::event]
    #[pallet::generate_deposit(pub(super) fn deposit_event)]
    pub enum Event<T: Config> {
        /// A bridge forwarded `envelope_hash` from `sender` to `target`, sealed to the
        /// target's current key `fingerprint` as of finalized block `checked_at`.
        KeyExchanged {
            reporter: T::AccountId,
            sender: Id,
            target: Target,
            fingerprint: Fingerprint,
            envelope_hash: [u8; 32],
            checked_at: BlockNumberFor<T>,
        },
        /// A bridge refused an envelope from `sender` sealed to `presented` while `target`'s
        /// current key is `expected`.
        KeyMismatch {
            reporter: T::AccountId,
            sender: Id,
            target: Target,
            presented: Fingerprint,
            expected: Fingerprint,
        },
        /// A bridge forwarded `count` envelopes from `sender` to `target`, each sealed to the
        /// target's current key `fingerprint` as of finalized block `checked_at`. `root` is
        /// the Merkle root of their envelope hashes (`docs/exchange-proof.md`).
        KeysExchanged {
            reporter: T::AccountId,
            sender: Id,
            target: Target,
            fingerprint: Fingerprint,
            checked_at: BlockNumberFor<T>,
            count: u32,
            root: [u8; 32],
        },
        /// `who` may now write the log.
        BridgeAdded { who: T::AccountId },
        /// `who` may no longer write the log.
        BridgeRemoved { who: T::AccountId },
    }

    #[pallet::error]
    pub enum Error<T> {
        /// Only root or an operator may do this.
        NotOperator,
        /// Only a registered bridge may write the log.
        NotBridge,
        /// The account is registered already.
        AlreadyRegistered,
        /// The account is not registered.
        NotRegistered,
        /// No room for another account.
        TooMany,
        /// An id in a record is not 1..64 bytes of `[A-Za-z0-9._-]`.
        InvalidId,
        /// A record claims a check against a block that does not exist yet.
        CheckedInFuture,
        /// A mismatch record whose two fingerprints are equal is no mismatch.
        NotAMismatch,
        /// An empty batch.
        EmptyBatch,
        /// A record's sender is not a registered device.
        UnknownSender,
        /// A record's target is not a registered device or an existing group.
        UnknownTarget,
        /// A record of forwarded envelopes that counts none.
        NoExchanges,
    }

    #[pallet::call]
    impl<T: Config> Pallet<T> {
        /// Logs a batch of outcomes, one event per record, all or nothing. Every sender must be
        /// a registered device, and every target a registered device or an existing group.
        ///
        /// Origin: a registered bridge account. Changes no storage; emits `KeyExchanged`
        /// and `KeyMismatch`.
        ///
        /// Operational class: it draws on the block room that normal transactions cannot
        /// take, so no stream of other calls delays the audit trail.
        #[pallet::call_index(0)]
        #[pallet::weight((T::WeightInfo::record(batch.len() as u32), DispatchClass::Operational))]
        pub fn record(
            origin: OriginFor<T>,
            batch: BoundedVec<ExchangeRecord<BlockNumberFor<T>>, T::MaxBatch>,
        ) -> DispatchResult {
            let reporter = ensure_signed(origin)?;
            ensure!(Bridges::<T>::contains_key(&reporter), Error::<T>::NotBridge);
            ensure!(!batch.is_empty(), Error::<T>::EmptyBatch);
            let now = frame_system::Pallet::<T>::block_number();
            // Validate everything first so a bad record leaves no partial trail.
            for record in batch.iter() {
                let (sender, target) = match record {
                    ExchangeRecord::Exchanged {
                        sender,
                        target,
                        checked_at,
                        ..
                    } => {
                        ensure!(*checked_at <= now, Error::<T>::CheckedInFuture);
                        (sender, target)
                    }
                    ExchangeRecord::Mismatch {
                        sender,
                        target,
                        presented,
                        expected,
                    } => {
                        ensure!(presented != expected, Error::<T>::NotAMismatch);
                        (sender, target)
                    }
                    ExchangeRecord::Exchanges {
                        sender,
                        target,
                        checked_at,
                        count,
                        ..
                    } => {
                        ensure!(*checked_at <= now, Error::<T>::CheckedInFuture);
                        ensure!(*count > 0, Error::<T>::NoExchanges);
                        (sender, target)
                    }
                };
                keymesh_primitives::validate_id(sender).map_err(|_| Error::<T>::InvalidId)?;
                keymesh_primitives::validate_id(target.id()).map_err(|_| Error::<T>::InvalidId)?;
                ensure!(
                    T::Devices::status(sender).is_some(),
                    Error::<T>::UnknownSender
                );
                let target_exists = match target {
                    Target::Device(id) => T::Devices::status(id).is_some(),
                    Target::Group(id) => T::Groups::exists(id),
                };
                ensure!(target_exists, Error::<T>::UnknownTarget);
            }
            for record in batch {
                let reporter = reporter.clone();
                Self::deposit_event(match record {
                    ExchangeRecord::Exchanged {
                        sender,
                        target,
                        fingerprint,
                        envelope_hash,
                        checked_at,
                    } => Event::KeyExchanged {
                        reporter,
                        sender,
                        target,
                        fingerprint,
                        envelope_hash,
                        checked_at,
                    },
                    ExchangeRecord::Mismatch {
                        sender,
                        target,
                        presented,
                        expected,
                    } => Event::KeyMismatch {
                        reporter,
                        sender,
                        target,
                        presented,
                        expected,
                    },
                    ExchangeRecord::Exchanges {
                        sender,
                        target,
                        fingerprint,
                        checked_at,
                        count,
                        root,
                    } => Event::KeysExchanged {
                        reporter,
                        sender,
                        target,
                        fingerprint,
                        checked_at,
                        count,
                        root,
                    },
                });
            }
            Ok(())
        }

        /// Registers a bridge account. Origin: root or an operator. Writes `Bridges`.
        #[pallet::call_index(1)]
        #[pallet::weight(T::WeightInfo::add_bridge())]
        pub fn add_bridge(origin: OriginFor<T>, who: T::AccountId) -> DispatchResult {
            Self::ensure_operator(origin)?;
            ensure!(
                !Bridges::<T>::contains_key(&who),
                Error::<T>::AlreadyRegistered
            );
            ensure!(
                Bridges::<T>::count() < T::MaxBridges::get(),
                Error::<T>::TooMany
            );
            Bridges::<T>::insert(&who, ());
            Self::deposit_event(Event::BridgeAdded { who });
            Ok(())
        }

        /// Unregisters a bridge account. Origin: root or an operator. Writes `Bridges`.
        #[pallet::call_index(2)]
        #[pallet::weight(T::WeightInfo::remove_bridge())]
        pub fn remove_bridge(origin: OriginFor<T>, who: T::AccountId) -> DispatchResult {
            Self::ensure_operator(origin)?;
            ensure!(Bridges::<T>::contains_key(&who), Error::<T>::NotRegistered);
            Bridges::<T>::remove(&who);
            Self::deposit_event(Event::BridgeRemoved { who });
            Ok(())
        }
    }

    impl<T: Config> Pallet<T> {
        fn ensure_operator(origin: OriginFor<T>) -> DispatchResult {
            keymesh_pallet_support::ensure_operator::<T, T::OperatorOrigin>(
                origin,
                Error::<T>::NotOperator,
            )
        }
    }

    /// `Contains` view of the bridges.
    pub struct IsBridge<T>(core::marker::PhantomData<T>);
    impl<T: Config> Contains<T::AccountId> for IsBridge<T> {
        fn contains(who: &T::AccountId) -> bool {
            Bridges::<T>::contains_key(who)
        }
    }
}
