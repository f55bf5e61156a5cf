//! What must hold of this pallet's storage after every block (`try_state`) and after every
//! pallet test: the counters match what they count, and each device's key is the newest
//! entry of its key history.

use alloc::collections::BTreeMap;

use frame_support::ensure;
use sp_runtime::TryRuntimeError;

use super::*;

impl<T: Config> Pallet<T> {
    /// Checks every invariant; the error names the first one broken.
    pub fn do_try_state() -> Result<(), TryRuntimeError> {
        let mut devices = 0u32;
        let mut owned: BTreeMap<T::AccountId, u32> = BTreeMap::new();
        for (id, record) in Devices::<T>::iter() {
            devices = devices.saturating_add(1);
            if record.status != DeviceStatus::Revoked {
                let n = owned.entry(record.owner.clone()).or_default();
                *n = n.saturating_add(1);
            }
            let newest = KeyHistory::<T>::get(&id).last().cloned();
            ensure!(
                newest.is_some_and(|h| h.epoch == record.epoch && h.fingerprint == record.fingerprint),
                "a device's key is not the newest entry of its key history"
            );
            ensure!(
                record.fingerprint == sp_io::hashing::sha2_256(&record.public_key),
                "a device's fingerprint is not the SHA-256 of its key"
            );
        }
        ensure!(
            devices == DeviceCount::<T>::get(),
            "DeviceCount does not match Devices"
        );
        for (owner, count) in OwnedDevices::<T>::iter() {
            ensure!(
                owned.remove(&owner) == Some(count),
                "OwnedDevices does not match the owners of devices that are not revoked"
            );
        }
        ensure!(
            owned.is_empty(),
            "an owner of a device that is not revoked is missing from OwnedDevices"
        );
        ensure!(
            KeyHistory::<T>::iter_keys().all(Devices::<T>::contains_key),
            "a key history without a device"
        );
        Ok(())
    }
}
