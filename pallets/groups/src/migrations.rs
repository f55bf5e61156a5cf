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
