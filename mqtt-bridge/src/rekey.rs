//! The key manager's tasks: one per group that needs a key, answering `RekeyRequired` with
//! an epoch key made against the latest finalized snapshot. A key the chain did not take is
//! made again, with backoff, for as long as the group still needs it; once an epoch is set
//! the task goes on to the next one the group needs, if any.
//!
//! One key per group is under way at a time. A request while one is (a change in the blocks
//! before the first call landed) only marks the group to be looked at again when that key
//! is done: the runtime finishes the key under way for the members it was made for and asks
//! for the next epoch when it switches. Starting over instead would let a stream of changes
//! hold the epoch off.

use std::{
    collections::HashMap,
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

/// A group's request for its next epoch. The group's task keys whatever epoch the newest
/// snapshot says the group needs; `epoch` names the request in logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rekey {
    pub group: String,
    pub epoch: u32,
}

/// The requests of every group in `snapshot` whose rekey is unanswered: at start, and after
/// a gap in which the `RekeyRequired` events themselves were not seen.
pub fn unanswered(snapshot: &Snapshot) -> Vec<Rekey> {
    snapshot
        .groups
        .iter()
        .filter(|(_, g)| g.needs_rekey)
        .map(|(id, g)| Rekey {
            group: id.clone(),
            epoch: g.epoch.saturating_add(1),
        })
        .collect()
}

/// Most rekey requests waiting at once.
pub const QUEUE: usize = 1024;

const RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(120));

/// How long a submitted key may take to show in the finalized snapshot before the group is
/// looked at again.
const SETTLE: Duration = Duration::from_secs(60);

/// Groups with a task, each with whether it was asked for again meanwhile.
type UnderWay = Arc<Mutex<HashMap<String, bool>>>;

/// Takes rekey requests until the queue closes; each group's keys are made on its own task.
pub async fn run(
    mut requests: mpsc::Receiver<Rekey>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    writes: mpsc::Sender<Write>,
) {
    let under_way: UnderWay = Arc::new(Mutex::new(HashMap::new()));
    while let Some(rekey) = requests.recv().await {
        let Some(claim) = Claim::take(&under_way, &rekey.group) else {
            tracing::debug!(
                "group {}: a key is already under way; epoch {} is looked at when it is done",
                rekey.group,
                rekey.epoch
            );
            continue;
        };
        tokio::spawn(rekey_group(claim, snapshot.clone(), writes.clone()));
    }
}

/// A group's task; the group is released when this drops, however the task ends.
struct Claim {
    groups: UnderWay,
    group: String,
}

impl Claim {
    /// The group's claim, or `None` (marking it to be looked at again) if it has a task.
    fn take(groups: &UnderWay, group: &str) -> Option<Claim> {
        let mut map = groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(asked_again) = map.get_mut(group) {
            *asked_again = true;
            return None;
        }
        map.insert(group.to_string(), false);
        Some(Claim {
            groups: groups.clone(),
            group: group.to_string(),
        })
    }

    /// Whether the group was asked for again since the last call; clears the mark.
    fn asked_again(&self) -> bool {
        let mut map = self
            .groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get_mut(&self.group)
            .map(std::mem::take)
            .unwrap_or(false)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut map = self
            .groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.remove(&self.group);
    }
}

/// The epoch `group` needs next and its readers (active members, with their current keys),
/// if it needs one. A suspended member gets no wrap.
fn needed(group: &str, snapshot: &Snapshot) -> Option<(u32, Vec<Reader>)> {
    let record = snapshot.groups.get(group)?;
    if !record.needs_rekey {
        return None;
    }
    let readers = record
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
        .collect();
    Some((record.epoch.saturating_add(1), readers))
}

/// Keys `claim`'s group until it needs no key, and no request came in meanwhile.
async fn rekey_group(
    claim: Claim,
    mut snapshot: watch::Receiver<Arc<Snapshot>>,
    writes: mpsc::Sender<Write>,
) {
    let group = claim.group.clone();
    let mut backoff = RETRY;
    loop {
        let current = snapshot.borrow().clone();
        let Some((epoch, readers)) = needed(&group, &current) else {
            if claim.asked_again() {
                continue;
            }
            return;
        };
        let (name, members_at) = (group.clone(), current.block_number);
        let made = tokio::task::spawn_blocking(move || {
            keyman::make_epoch_key(&name, epoch, members_at, &readers)
        })
        .await;
        let error = match made {
            Ok(Ok(key)) => match submit(key, &writes).await {
                Ok(()) => {
                    backoff = RETRY;
                    until_epoch(&mut snapshot, &group, epoch).await;
                    continue;
                }
                Err(e) => e,
            },
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        let wait = backoff.next_wait();
        tracing::warn!("epoch {epoch} of group {group}: {error}; retrying in {wait:?}");
        tokio::time::sleep(wait).await;
    }
}

/// Waits until the finalized snapshot shows `group` at `epoch` or later (or gone), for at
/// most [`SETTLE`].
async fn until_epoch(snapshot: &mut watch::Receiver<Arc<Snapshot>>, group: &str, epoch: u32) {
    let reached = |s: &Snapshot| s.groups.get(group).is_none_or(|g| g.epoch >= epoch);
    let _ = tokio::time::timeout(SETTLE, snapshot.wait_for(|s| reached(s))).await;
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
    fn a_group_that_asks_needs_its_next_epoch_for_its_active_members() {
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
        let (epoch, readers) = needed("B", &snapshot).unwrap();
        assert_eq!((epoch, readers.len()), (3, 1));
        assert_eq!(
            readers[0].fingerprint,
            keymesh_device::fingerprint(&key.to_public_key())
        );
        assert!(needed("C", &snapshot).is_none());
        // A suspended member gets no wrap.
        if let Some(device) = snapshot.devices.get_mut("1111") {
            device.status = DeviceStatus::Suspended;
        }
        assert!(needed("B", &snapshot).unwrap().1.is_empty());
        if let Some(group) = snapshot.groups.get_mut("B") {
            group.needs_rekey = false;
        }
        assert!(needed("B", &snapshot).is_none());
    }

    #[test]
    fn one_task_per_group_and_a_request_meanwhile_is_kept() {
        let under_way: UnderWay = Arc::new(Mutex::new(HashMap::new()));
        let first = Claim::take(&under_way, "B").unwrap();
        assert!(!first.asked_again());
        assert!(
            Claim::take(&under_way, "B").is_none(),
            "a second task for B"
        );
        assert!(
            Claim::take(&under_way, "C").is_some(),
            "another group is not held up"
        );
        // The request that found B busy is not lost: B's task looks again.
        assert!(first.asked_again());
        assert!(!first.asked_again(), "the mark is cleared");
        drop(first);
        assert!(
            Claim::take(&under_way, "B").is_some(),
            "released when the task ends"
        );
    }
}
