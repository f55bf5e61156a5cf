//! The key manager's task: answers each `RekeyRequired` with an epoch key made against the
//! latest finalized snapshot, and retries a key the chain did not take, with backoff, for as
//! long as the group still needs that epoch.

use std::{sync::Arc, time::Duration};

use rsa::RsaPublicKey;
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    backoff::Backoff,
    gate::Snapshot,
    keyman::{self, EpochKey},
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
    while let Some(rekey) = requests.recv().await {
        tokio::spawn(rekey_until_set(rekey, snapshot.clone(), writes.clone()));
    }
}

/// The members of `rekey.group` with their current keys, if the group still needs
/// `rekey.epoch`.
fn still_needed(rekey: &Rekey, snapshot: &Snapshot) -> Option<Vec<(String, RsaPublicKey)>> {
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
                Some((id.clone(), device.public_key.clone()))
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
        let Some(members) = still_needed(&rekey, &current) else {
            return;
        };
        let (group, epoch) = (rekey.group.clone(), rekey.epoch);
        let made =
            tokio::task::spawn_blocking(move || keyman::make_epoch_key(&group, epoch, &members))
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
        assert!(still_needed(&rekey(2), &snapshot).is_none());
        assert!(still_needed(&rekey(4), &snapshot).is_none());
        if let Some(group) = snapshot.groups.get_mut("B") {
            group.needs_rekey = false;
        }
        assert!(still_needed(&rekey(3), &snapshot).is_none());
    }
}
