//! Publishes the retained key-directory entries: those each new snapshot changes, and all
//! of them again whenever the broker has lost its state (a new session), since retained
//! messages went with it.

use std::sync::Arc;

use subxt_signer::sr25519::Keypair;
use tokio::sync::watch;

use crate::{directory::changed_entries, gate::Snapshot, outbox::Outbox};

/// Runs until either watch channel closes.
pub async fn run(
    outbox: Arc<Outbox>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    mut sessions: watch::Receiver<u64>,
    signer: Keypair,
) {
    let mut published: Option<Arc<Snapshot>> = None;
    loop {
        let current = snapshots.borrow_and_update().clone();
        for (topic, payload) in changed_entries(published.as_deref(), &current, &signer) {
            if let Err(e) = outbox.publish(topic, true, payload).await {
                tracing::warn!("directory entry: {e}");
            }
        }
        published = Some(current);
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            changed = sessions.changed() => {
                if changed.is_err() {
                    return;
                }
                sessions.borrow_and_update();
                published = None;
            }
        }
    }
}
