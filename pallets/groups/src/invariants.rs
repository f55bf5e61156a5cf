//! What must hold of this pallet's storage after every block (`try_state`) and after every
//! pallet test:
//! - each group's member count matches its `Members` entries;
//! - `Members` and `DeviceGroups` agree in both directions;
//! - wraps exist only for a member, only for the current and the pending epoch, and only
//!   made to the member's current device key;
//! - a pending key is for the next epoch, and its count of wraps is right;
//! - `GroupCount` and `AdministeredGroups` match `Groups`;
//! - the `KeyManagers` counter matches its entries, within `MaxKeyManagers`.

use alloc::collections::BTreeMap;

use frame_support::ensure;
use sp_runtime::TryRuntimeError;

use super::*;

impl<T: Config> Pallet<T> {
    /// Checks every invariant; the error names the first one broken.
    pub fn do_try_state() -> Result<(), TryRuntimeError> {
        let mut groups = 0u32;
        let mut admins: BTreeMap<T::AccountId, u32> = BTreeMap::new();
        for (id, record) in Groups::<T>::iter() {
            groups = groups.saturating_add(1);
            let n = admins.entry(record.admin.clone()).or_default();
            *n = n.saturating_add(1);
            Self::check_group(&id, &record)?;
        }
        ensure!(
            groups == GroupCount::<T>::get(),
            "GroupCount does not match Groups"
        );
        for (admin, count) in AdministeredGroups::<T>::iter() {
            ensure!(
                admins.remove(&admin) == Some(count),
                "AdministeredGroups does not match the groups' admins"
            );
        }
        ensure!(
            admins.is_empty(),
            "a group's admin is missing from AdministeredGroups"
        );
        Self::check_device_groups()?;
        let key_managers = KeyManagers::<T>::iter_keys().count() as u32;
        ensure!(
            key_managers == KeyManagers::<T>::count() && key_managers <= T::MaxKeyManagers::get(),
            "the KeyManagers counter does not match its entries, or exceeds MaxKeyManagers"
        );
        ensure!(
            PendingKeys::<T>::iter_keys().all(Groups::<T>::contains_key),
            "a pending key of an unknown group"
        );
        Ok(())
    }

    fn check_group(id: &Id, record: &GroupRecord<T>) -> Result<(), TryRuntimeError> {
        let mut members = 0u32;
        for device in Members::<T>::iter_key_prefix(id) {
            members = members.saturating_add(1);
            ensure!(
                DeviceGroups::<T>::get(&device).contains(id),
                "a member whose DeviceGroups does not name the group"
            );
        }
        ensure!(
            members == record.members,
            "a group's member count does not match its Members entries"
        );
        ensure!(
            members <= T::MaxMembers::get(),
            "a group has more than MaxMembers members"
        );
        ensure!(
            record.topic_key.as_ref().map(|k| k.epoch).unwrap_or(0) == record.epoch,
            "a group's topic key is not of its epoch"
        );
        ensure!(
            record
                .topic_key
                .as_ref()
                .is_none_or(|k| k.members_at <= k.from_block),
            "a topic key made for a view after its own block"
        );
        let next = record.epoch.saturating_add(1);
        let pending = PendingKeys::<T>::get(id);
        let mut pending_wraps = 0u32;
        for ((epoch, device), wrap) in EpochWraps::<T>::iter_prefix((id.clone(),)) {
            ensure!(
                epoch == record.epoch || epoch == next,
                "a wrap for an epoch that is neither the current nor the pending one"
            );
            ensure!(
                Members::<T>::contains_key(id, &device),
                "a wrap for a device that is not a member"
            );
            ensure!(
                T::Devices::fingerprint(&device) == Some(wrap.device_key),
                "a wrap made to a key that is not the member's current one"
            );
            if epoch == next && pending.as_ref().is_some_and(|p| p.round == wrap.round) {
                pending_wraps = pending_wraps.saturating_add(1);
            }
        }
        if let Some(pending) = pending {
            ensure!(
                pending.key.epoch == next,
                "a pending key that is not for the next epoch"
            );
            ensure!(
                pending.delivered == pending_wraps,
                "a pending key whose count of wraps does not match its wraps"
            );
        }
        Ok(())
    }

    fn check_device_groups() -> Result<(), TryRuntimeError> {
        for (device, groups) in DeviceGroups::<T>::iter() {
            ensure!(!groups.is_empty(), "an empty DeviceGroups entry");
            for (i, group) in groups.iter().enumerate() {
                ensure!(
                    !groups[..i].contains(group),
                    "a group named twice in DeviceGroups"
                );
                ensure!(
                    Members::<T>::contains_key(group, &device),
                    "DeviceGroups names a group the device is not a member of"
                );
            }
        }
        Ok(())
    }
}
