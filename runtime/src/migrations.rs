//! Migrations that span pallets; a pallet's own steps live in its `migrations` module.

use frame_support::{
    migrations::VersionedMigration,
    traits::{StorageVersion, UncheckedOnRuntimeUpgrade},
    weights::Weight,
};

use crate::{AccountId, Runtime};

/// The exchange log's key-manager registry as it was stored before it moved to the groups
/// pallet (pallet prefix `ExchangeLog`, a counted map).
mod old {
    use super::AccountId;
    use frame_support::Blake2_128Concat;

    #[frame_support::storage_alias(verbatim)]
    pub type KeyManagers = StorageMap<ExchangeLog, Blake2_128Concat, AccountId, ()>;

    #[frame_support::storage_alias(verbatim)]
    pub type CounterForKeyManagers = StorageValue<ExchangeLog, u32>;
}

/// Moves every key manager from the exchange log to the groups pallet, whose concern they
/// are, and moves both pallets' storage versions on. Run it only through [`MoveKeyManagers`].
pub struct MoveKeyManagersUnversioned;

impl UncheckedOnRuntimeUpgrade for MoveKeyManagersUnversioned {
    fn on_runtime_upgrade() -> Weight {
        let managers: alloc::vec::Vec<AccountId> = old::KeyManagers::iter_keys().collect();
        let _ = old::KeyManagers::clear(u32::MAX, None);
        old::CounterForKeyManagers::kill();
        for who in &managers {
            pallet_groups::KeyManagers::<Runtime>::insert(who, ());
        }
        StorageVersion::new(2).put::<pallet_exchange_log::Pallet<Runtime>>();
        let moved = managers.len() as u64;
        <Runtime as frame_system::Config>::DbWeight::get().reads_writes(
            moved.saturating_add(1),
            moved.saturating_mul(3).saturating_add(2),
        )
    }
}

/// Groups v2 → v3 (and the exchange log v1 → v2): the key-manager registry moves.
pub type MoveKeyManagers = VersionedMigration<
    2,
    3,
    MoveKeyManagersUnversioned,
    pallet_groups::Pallet<Runtime>,
    <Runtime as frame_system::Config>::DbWeight,
>;

#[cfg(test)]
mod tests {
    use super::*;
    use frame_support::traits::{GetStorageVersion, OnRuntimeUpgrade, PalletInfoAccess};
    use sp_keyring::Sr25519Keyring;

    #[test]
    fn key_managers_move_from_the_exchange_log_to_the_groups_once() {
        crate::genesis_config_presets::dev_ext().execute_with(|| {
            let eve: AccountId = Sr25519Keyring::Eve.to_account_id();
            // The alias addresses what the exchange log stored: its pallet prefix, then the
            // map's name.
            let pallet = <pallet_exchange_log::Pallet<Runtime> as PalletInfoAccess>::name();
            assert_eq!(pallet, "ExchangeLog");
            let prefix = [
                sp_io::hashing::twox_128(pallet.as_bytes()),
                sp_io::hashing::twox_128(b"KeyManagers"),
            ]
            .concat();
            assert!(old::KeyManagers::hashed_key_for(&eve).starts_with(&prefix));
            // A chain from before the move: Eve is a key manager in the exchange log.
            old::KeyManagers::insert(&eve, ());
            old::CounterForKeyManagers::put(1);
            StorageVersion::new(2).put::<pallet_groups::Pallet<Runtime>>();
            StorageVersion::new(1).put::<pallet_exchange_log::Pallet<Runtime>>();
            assert!(!pallet_groups::KeyManagers::<Runtime>::contains_key(&eve));

            MoveKeyManagers::on_runtime_upgrade();
            assert!(pallet_groups::KeyManagers::<Runtime>::contains_key(&eve));
            assert_eq!(old::KeyManagers::iter_keys().count(), 0);
            assert!(!old::CounterForKeyManagers::exists());
            assert_eq!(
                pallet_groups::Pallet::<Runtime>::on_chain_storage_version(),
                StorageVersion::new(3)
            );
            assert_eq!(
                pallet_exchange_log::Pallet::<Runtime>::on_chain_storage_version(),
                StorageVersion::new(2)
            );
            // The dev bridge, a key manager from genesis, stays one; a second run moves
            // nothing.
            let ferdie: AccountId = Sr25519Keyring::Ferdie.to_account_id();
            assert!(pallet_groups::KeyManagers::<Runtime>::contains_key(&ferdie));
            old::KeyManagers::insert(&ferdie, ());
            MoveKeyManagers::on_runtime_upgrade();
            assert!(old::KeyManagers::contains_key(&ferdie));
            old::KeyManagers::remove(&ferdie);
        });
    }
}
