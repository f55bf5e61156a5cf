//! The writer's task: the bridge's chain writes, in order, from a bounded queue. Audit
//! batches go out after each finalized block and once a second (a chain sealing on demand
//! makes blocks only when there is something to seal), epoch keys when the key manager
//! hands them over. Nothing is signed while the exchange log does not list the bridge: a
//! removed bridge pays no fees for calls the runtime would refuse.

use std::{sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    audit::Flusher,
    gate::Snapshot,
    keyman::{EpochKey, MAX_WRAPS_PER_CALL},
    metrics::Metrics,
    writer::Writer,
};

/// Most writes waiting at once.
pub const QUEUE: usize = 64;

/// What the writer task does, in order.
pub enum Write {
    /// Submit what the audit journal holds; say when done, if asked.
    FlushAudit(Option<oneshot::Sender<()>>),
    /// Submit a group's epoch key and say how it went.
    EpochKey(EpochKey, oneshot::Sender<Result<(), String>>),
}

/// Runs the writer until every sender of `writes` is gone.
pub async fn run(
    writer: Writer,
    mut writes: mpsc::Receiver<Write>,
    mut snapshot: watch::Receiver<Arc<Snapshot>>,
    mut flusher: Flusher,
    metrics: Metrics,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let write = tokio::select! {
            write = writes.recv() => match write {
                Some(write) => write,
                None => return,
            },
            changed = snapshot.changed() => {
                if changed.is_err() {
                    return;
                }
                Write::FlushAudit(None)
            }
            _ = tick.tick() => Write::FlushAudit(None),
        };
        let listed = snapshot.borrow().bridge_listed;
        match write {
            Write::FlushAudit(done) => {
                if listed {
                    flusher.flush(&writer).await;
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Write::EpochKey(key, done) => {
                let outcome = if listed {
                    submit_epoch_key(&writer, &mut flusher, &key).await
                } else {
                    Err("the exchange log does not list this bridge".into())
                };
                if outcome.is_ok() {
                    metrics.rekeys.inc();
                }
                let _ = done.send(outcome);
            }
        }
    }
}

/// Submits every chunk of an epoch key's wraps, after any audit batch holding a nonce.
async fn submit_epoch_key(
    writer: &Writer,
    flusher: &mut Flusher,
    key: &EpochKey,
) -> Result<(), String> {
    flusher.settle(writer).await;
    for wraps in key.wraps.chunks(MAX_WRAPS_PER_CALL) {
        writer
            .set_epoch_key(key, wraps)
            .await
            .map_err(|e| e.to_string())?;
    }
    tracing::info!(
        "group {} epoch {} key submitted with {} wrap(s)",
        key.group,
        key.epoch,
        key.wraps.len()
    );
    Ok(())
}
