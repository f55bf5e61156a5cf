//! Storage migrations, one module per storage version. A runtime lists them in its
//! `Executive` migrations; each runs once, when the on-chain version is the one it starts
//! from, and then sets the next.

pub mod v1 {
    //! v0 → v1: fills `AdministeredGroups` from `Groups`, so admins of groups created
    //! before the index existed may still transact. Chains started at v1 skip it.
    use frame_support::{
        migrations::VersionedMigration,
        traits::{Get, UncheckedOnRuntimeUpgrade},
        weights::Weight,
    };

    use crate::{AdministeredGroups, Config, Groups, Pallet};

    /// The step itself; run it only through [`IndexAdmins`].
    pub struct IndexAdminsUnversioned<T>(core::marker::PhantomData<T>);

    impl<T: Config> UncheckedOnRuntimeUpgrade for IndexAdminsUnversioned<T> {
        fn on_runtime_upgrade() -> Weight {
            let _ = AdministeredGroups::<T>::clear(u32::MAX, None);
            let mut read = 0u64;
            for (_, record) in Groups::<T>::iter() {
                read = read.saturating_add(1);
                AdministeredGroups::<T>::mutate(&record.admin, |n| *n = n.saturating_add(1));
            }
            T::DbWeight::get().reads_writes(read.saturating_mul(2), read.saturating_add(1))
        }
    }

    /// v0 → v1, guarded by the storage version.
    pub type IndexAdmins<T> = VersionedMigration<
        0,
        1,
        IndexAdminsUnversioned<T>,
        Pallet<T>,
        <T as frame_system::Config>::DbWeight,
    >;
}

pub mod v2 {
    //! v1 → v2: a topic key records the view it was made for (`members_at`), a group when
    //! its readers last changed and when one last left, a wrap the device key it was made to.
    //!
    //! A v1 wrap may have been made to a key its device has since rotated out (v1 did not
    //! follow device keys), and which one cannot be told. So the step fails closed: it drops
    //! every wrap and pending key, marks every keyed group as read by a departed device, and
    //! asks every group with members for a new epoch. Bridges refuse topic envelopes until
    //! that epoch is set, which their key manager does at once.
    use codec::{Decode, Encode};
    use frame_support::{
        migrations::VersionedMigration,
        traits::{Get, UncheckedOnRuntimeUpgrade},
        weights::Weight,
    };
    use frame_system::pallet_prelude::BlockNumberFor;

    use crate::{
        Config, EpochWraps, Event, GroupRecord, Groups, Pallet, PendingKeys, PublicKeyDer,
        SealedKeyOf, TopicKey,
    };

    /// A v1 topic key.
    #[derive(Encode, Decode)]
    pub struct OldTopicKey<T: Config> {
        pub epoch: u32,
        pub public_key: PublicKeyDer,
        pub fingerprint: keymesh_primitives::Fingerprint,
        pub sealed_private_key: SealedKeyOf<T>,
        pub from_block: BlockNumberFor<T>,
    }

    /// A v1 group record.
    #[derive(Encode, Decode)]
    pub struct OldGroupRecord<T: Config> {
        pub admin: T::AccountId,
        pub epoch: u32,
        pub topic_key: Option<OldTopicKey<T>>,
        pub members: u32,
        pub open_to_publishers: bool,
        pub created_at: BlockNumberFor<T>,
        pub rekey_requested_at: Option<BlockNumberFor<T>>,
        pub next_round: u32,
    }

    /// The step itself; run it only through [`RecordKeyViews`].
    pub struct RecordKeyViewsUnversioned<T>(core::marker::PhantomData<T>);

    impl<T: Config> UncheckedOnRuntimeUpgrade for RecordKeyViewsUnversioned<T> {
        fn on_runtime_upgrade() -> Weight {
            let now = frame_system::Pallet::<T>::block_number();
            let wraps = EpochWraps::<T>::clear(u32::MAX, None).unique as u64;
            let pending = PendingKeys::<T>::clear(u32::MAX, None).unique as u64;
            let mut groups = 0u64;
            let mut asked = alloc::vec::Vec::new();
            Groups::<T>::translate::<OldGroupRecord<T>, _>(|id, old| {
                groups = groups.saturating_add(1);
                let keyed = old.topic_key.is_some();
                if old.members > 0 {
                    asked.push((id, old.epoch.saturating_add(1)));
                }
                Some(GroupRecord {
                    admin: old.admin,
                    epoch: old.epoch,
                    topic_key: old.topic_key.map(|k| TopicKey {
                        epoch: k.epoch,
                        public_key: k.public_key,
                        fingerprint: k.fingerprint,
                        sealed_private_key: k.sealed_private_key,
                        from_block: k.from_block,
                        members_at: k.from_block,
                    }),
                    members: old.members,
                    open_to_publishers: old.open_to_publishers,
                    created_at: old.created_at,
                    rekey_requested_at: (old.members > 0).then_some(now).or(old.rekey_requested_at),
                    next_round: old.next_round,
                    members_changed_at: Some(now),
                    departed_at: keyed.then_some(now),
                })
            });
            for (group, next_epoch) in asked {
                Pallet::<T>::deposit_event(Event::RekeyRequired { group, next_epoch });
            }
            T::DbWeight::get().reads_writes(groups, groups.saturating_add(wraps + pending))
        }
    }

    /// v1 → v2, guarded by the storage version.
    pub type RecordKeyViews<T> = VersionedMigration<
        1,
        2,
        RecordKeyViewsUnversioned<T>,
        Pallet<T>,
        <T as frame_system::Config>::DbWeight,
    >;
}
