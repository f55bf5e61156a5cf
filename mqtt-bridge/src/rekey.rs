//! The key manager's task: answers each `RekeyRequired` with an epoch key made against the
//! latest finalized snapshot, and retries a key the chain did not take, with backoff, for as
//! long as the group still needs that epoch.
//!
//! One key per group is under way at a time. A second request while one is (a change in the
//! blocks before the first call landed) is dropped: the runtime finishes the key under way
//! for the members it was made for and asks again when it switches. Starting over instead
//! would let a stream of changes hold the epoch off.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use keymesh_primitives::DeviceStatus;
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    backoff::Backoff,
    gate::Snapshot,
    keyman::{self, EpochKey, Reader},
    write_queue::Write,
};

/// A group's request for its next epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rekey {
    pub group: String,
    pub epoch: u32,
}

/// Most rekey requests waiting at once.
pub const QUEUE: usize = 1024;

const RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(120));

/// Takes rekey requests until the queue closes; each runs (and retries) on its own task.
pub async fn run(
    mut requests: mpsc::Receiver<Rekey>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    writes: mpsc::Sender<Write>,
) {
    let under_way = Arc::new(Mutex::new(HashSet::new()));
    while let Some(rekey) = requests.recv().await {
        let Some(claim) = Claim::take(&under_way, &rekey.group) else {
            tracing::debug!("group {}: a key is already under way", rekey.group);
            continue;
        };
        let (snapshot, writes) = (snapshot.clone(), writes.clone());
        tokio::spawn(async move {
            rekey_until_set(rekey, snapshot, writes).await;
            drop(claim);
        });
    }
}

/// A group's key under way; released when dropped, however the task ends.
struct Claim {
    groups: Arc<Mutex<HashSet<String>>>,
    group: String,
}

impl Claim {
    fn take(groups: &Arc<Mutex<HashSet<String>>>, group: &str) -> Option<Claim> {
        let mut set = groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        set.insert(group.to_string()).then(|| Claim {
            groups: groups.clone(),
            group: group.to_string(),
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut set = self
            .groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        set.remove(&self.group);
    }
}

/// The readers of `rekey.group` (active members, with their current keys), if the group
/// still needs `rekey.epoch`. A suspended member gets no wrap.
fn still_needed(rekey: &Rekey, snapshot: &Snapshot) -> Option<Vec<Reader>> {
    let record = snapshot.groups.get(&rekey.group)?;
    if record.epoch.saturating_add(1) != rekey.epoch || !record.needs_rekey {
        return None;
    }
    Some(
        record
            .members
            .keys()
            .filter_map(|id| {
                let device = snapshot.devices.get(id)?;
                (device.status == DeviceStatus::Active).then(|| Reader {
                    device: id.clone(),
                    key: device.public_key.clone(),
                    fingerprint: device.fingerprint,
                })
            })
            .collect(),
    )
}

async fn rekey_until_set(
    rekey: Rekey,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    writes: mpsc::Sender<Write>,
) {
    let mut backoff = RETRY;
    loop {
        let current = snapshot.borrow().clone();
        let Some(readers) = still_needed(&rekey, &current) else {
            return;
        };
        let (group, epoch, members_at) = (rekey.group.clone(), rekey.epoch, current.block_number);
        let made = tokio::task::spawn_blocking(move || {
            keyman::make_epoch_key(&group, epoch, members_at, &readers)
        })
        .await;
        let error = match made {
            Ok(Ok(key)) => match submit(key, &writes).await {
                Ok(()) => return,
                Err(e) => e,
            },
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        let wait = backoff.next_wait();
        tracing::warn!(
            "epoch {} of group {}: {error}; retrying in {wait:?}",
            rekey.epoch,
            rekey.group
        );
        tokio::time::sleep(wait).await;
    }
}

/// Hands the key to the writer and waits for the outcome.
async fn submit(key: EpochKey, writes: &mpsc::Sender<Write>) -> Result<(), String> {
    let (done, outcome) = oneshot::channel();
    writes
        .send(Write::EpochKey(key, done))
        .await
        .map_err(|_| "the writer has stopped".to_string())?;
    outcome
        .await
        .map_err(|_| "the writer has stopped".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{DeviceKey, GroupKey};
    use keymesh_primitives::Role;

    #[test]
    fn a_rekey_is_needed_only_for_the_next_epoch_of_a_group_that_asks() {
        let key = keymesh_device::keys::read_private(
            &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../device/testdata/1111.key.pem"),
        )
        .unwrap();
        let mut snapshot = Snapshot::default();
        snapshot
            .devices
            .insert("1111".into(), DeviceKey::active(key.to_public_key()));
        snapshot.groups.insert(
            "B".into(),
            GroupKey {
                epoch: 2,
                members: [("1111".to_string(), Role::Both)].into(),
                needs_rekey: true,
                ..Default::default()
            },
        );
        let rekey = |epoch| Rekey {
            group: "B".into(),
            epoch,
        };
        let members = still_needed(&rekey(3), &snapshot).unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(
            members[0].fingerprint,
            keymesh_device::fingerprint(&key.to_public_key())
        );
        // A suspended member gets no wrap.
        if let Some(device) = snapshot.devices.get_mut("1111") {
            device.status = DeviceStatus::Suspended;
        }
        assert!(still_needed(&rekey(3), &snapshot).unwrap().is_empty());
        assert!(still_needed(&rekey(2), &snapshot).is_none());
        assert!(still_needed(&rekey(4), &snapshot).is_none());
        if let Some(group) = snapshot.groups.get_mut("B") {
            group.needs_rekey = false;
        }
        assert!(still_needed(&rekey(3), &snapshot).is_none());
    }

    #[test]
    fn one_key_per_group_is_under_way_at_a_time() {
        let under_way = Arc::new(Mutex::new(HashSet::new()));
        let first = Claim::take(&under_way, "B");
        assert!(first.is_some());
        assert!(Claim::take(&under_way, "B").is_none(), "a second key for B");
        assert!(
            Claim::take(&under_way, "C").is_some(),
            "another group is not held up"
        );
        drop(first);
        assert!(
            Claim::take(&under_way, "B").is_some(),
            "released when the task ends"
        );
    }
}
