//! Follow: keeps the key cache on finalized state, across lost connections and node
//! restarts (DESIGN §4b).
//!
//! - The connection to the node is made again, with backoff, whenever it fails.
//! - Every finalized block is applied in order from the last one applied, by number, so a
//!   block finalized while the bridge was away, or between the start-up snapshot and the
//!   subscription, is applied like any other. No block's events are skipped.
//! - A gap that cannot be filled (the node no longer has the state, or the gap is longer
//!   than [`MAX_CATCH_UP`]) is closed with a fresh snapshot.
//! - `caught_up` is true only while connected with every finalized block applied; the gate
//!   refuses everything (`StaleState`) while it is false.
//! - `finalized_seen` is the newest finalized block the follower has heard of, applied or
//!   not. Applying a block takes a moment after the node announces it, and a device that
//!   read the new state over RPC in that moment must not be refused on the old state
//!   (the forward loop holds such an envelope until the block is applied).
//! - A [`Probe`] asks the follower to read the node's finalized head at once and apply it,
//!   then answers. The node answers RPC from a new finalized block before its notification
//!   reaches the bridge, by milliseconds, or by tens of them on a loaded machine; the forward
//!   loop probes before it refuses an envelope that newer state might let pass.

use std::{sync::Arc, time::Duration};

use subxt::utils::AccountId32;
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    backoff::Backoff,
    chain::{self, ChainError, Node},
    gate::Snapshot,
    metrics::Metrics,
    rekey::Rekey,
};

/// Longest gap filled block by block; past it a fresh snapshot is cheaper.
pub const MAX_CATCH_UP: u64 = 128;

/// First and longest wait between reconnection attempts.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));

/// What the follower publishes.
pub struct Outputs {
    pub snapshot: watch::Sender<Arc<Snapshot>>,
    pub caught_up: watch::Sender<bool>,
    /// The newest finalized block number heard of, applied or not.
    pub finalized_seen: watch::Sender<u64>,
    /// `RekeyRequired` requests, for the key manager (when this bridge is one).
    pub rekeys: Option<mpsc::Sender<Rekey>>,
}

/// A request to apply the node's finalized head now; answered once it is applied (or the
/// attempt failed).
pub type Probe = oneshot::Sender<()>;

/// Probes waiting for the follower; more are not needed, as one answers all.
pub const PROBES: usize = 4;

/// The follower's state.
pub struct Follower {
    url: String,
    bridge: AccountId32,
    out: Outputs,
    metrics: Metrics,
    probes: mpsc::Receiver<Probe>,
}

/// Why following stopped; the follower reconnects after each.
#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("the node closed the finalized-block subscription")]
    StreamEnded,
}

impl Follower {
    pub fn new(
        url: &str,
        bridge: AccountId32,
        out: Outputs,
        metrics: Metrics,
        probes: mpsc::Receiver<Probe>,
    ) -> Self {
        Follower {
            url: url.to_string(),
            bridge,
            out,
            metrics,
            probes,
        }
    }

    /// Follows finalized blocks for ever, starting with the connection `node`.
    pub async fn run(mut self, node: Node) {
        let mut backoff = RECONNECT;
        let mut node = Some(node);
        loop {
            let connected = match node.take() {
                Some(node) => Ok(node),
                None => chain::connect(&self.url).await,
            };
            let error = match connected {
                Ok(node) => self.follow(&node, &mut backoff).await,
                Err(e) => FollowError::Chain(e),
            };
            self.set_caught_up(false);
            // The first failure is news; the retries that follow are not.
            let first = backoff.is_fresh();
            let wait = backoff.next_wait();
            if first {
                tracing::warn!("following finalized blocks: {error}; reconnecting");
            } else {
                tracing::debug!("following finalized blocks: {error}; retrying in {wait:?}");
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Records that block `number` is finalized, before it is applied.
    fn heard_of(&self, number: u64) {
        tracing::debug!("finalized #{number} heard of");
        self.out.finalized_seen.send_if_modified(|seen| {
            let newer = number > *seen;
            *seen = (*seen).max(number);
            newer
        });
    }

    fn set_caught_up(&self, caught_up: bool) {
        self.out.caught_up.send_if_modified(|current| {
            let changed = *current != caught_up;
            *current = caught_up;
            changed
        });
    }

    /// Follows on one connection until it fails.
    async fn follow(&mut self, node: &Node, backoff: &mut Backoff) -> FollowError {
        // Subscribe first, then catch up to the head: nothing finalized in between is lost.
        let mut blocks = match node.api.stream_blocks().await {
            Ok(blocks) => blocks,
            Err(e) => return chain::query(e).into(),
        };
        let head = match node.api.at_current_block().await {
            Ok(at) => at.block_number(),
            Err(e) => return chain::query(e).into(),
        };
        self.heard_of(head);
        if let Err(e) = self.catch_up(node, head).await {
            return e.into();
        }
        if !backoff.is_fresh() {
            tracing::info!(
                "following finalized blocks again, caught up at #{}",
                self.out.snapshot.borrow().block_number
            );
        }
        backoff.reset();
        loop {
            let (number, probe) = tokio::select! {
                block = blocks.next() => match block {
                    Some(Ok(block)) => (block.number(), None),
                    Some(Err(e)) => return chain::query(e).into(),
                    None => return FollowError::StreamEnded,
                },
                Some(probe) = self.probes.recv() => match node.api.at_current_block().await {
                    Ok(at) => (at.block_number(), Some(probe)),
                    Err(e) => return chain::query(e).into(),
                },
            };
            self.heard_of(number);
            let applied = self.catch_up(node, number).await;
            // Every probe waiting is answered by this one reading.
            drop(probe);
            while let Ok(waiting) = self.probes.try_recv() {
                drop(waiting);
            }
            if let Err(e) = applied {
                return e.into();
            }
        }
    }

    /// Applies every finalized block after the last one applied, up to `head`.
    async fn catch_up(&mut self, node: &Node, head: u64) -> Result<(), ChainError> {
        let applied = u64::from(self.out.snapshot.borrow().block_number);
        if head <= applied {
            self.set_caught_up(true);
            return Ok(());
        }
        if head > applied + 1 {
            // More than the block at hand is missing: not caught up until it is applied.
            self.set_caught_up(false);
        }
        if head - applied > MAX_CATCH_UP {
            return self.fresh_snapshot(node, head).await;
        }
        for number in applied + 1..=head {
            if let Err(e) = self.apply_block(node, number).await {
                // Perhaps the node pruned that block's state; a fresh snapshot settles it
                // (and if the node is gone, it fails too and we reconnect).
                tracing::warn!("cannot apply finalized #{number}: {e}; taking a fresh snapshot");
                return self.fresh_snapshot(node, head).await;
            }
        }
        self.set_caught_up(true);
        Ok(())
    }

    async fn apply_block(&mut self, node: &Node, number: u64) -> Result<(), ChainError> {
        let at = node.api.at_block(number).await.map_err(chain::query)?;
        let changes = chain::changes(&at).await?;
        let current = self.out.snapshot.borrow().clone();
        let next = chain::apply(&current, &at, &node.rpc, &changes, &self.bridge).await?;
        tracing::debug!("cache at #{}: {changes:?}", next.block_number);
        self.announce_standing(&current, &next);
        self.publish(next);
        for (group, epoch) in changes.rekeys {
            self.request_rekey(Rekey { group, epoch });
        }
        Ok(())
    }

    /// Replaces the cache with all of finalized state at `head`.
    async fn fresh_snapshot(&mut self, node: &Node, head: u64) -> Result<(), ChainError> {
        let at = node.api.at_block(head).await.map_err(chain::query)?;
        let next = chain::snapshot(&at, &self.bridge).await?;
        tracing::info!(
            "fresh key cache at finalized #{}: {} devices, {} groups",
            next.block_number,
            next.devices.len(),
            next.groups.len()
        );
        let current = self.out.snapshot.borrow().clone();
        self.announce_standing(&current, &next);
        // Requests in the skipped blocks are known only from the groups' state.
        let rekeys = crate::rekey::unanswered(&next);
        self.publish(next);
        for rekey in rekeys {
            self.request_rekey(rekey);
        }
        self.set_caught_up(true);
        Ok(())
    }

    fn publish(&self, next: Snapshot) {
        self.metrics.cache_block.set(u64::from(next.block_number));
        self.out.snapshot.send_replace(Arc::new(next));
    }

    fn request_rekey(&self, rekey: Rekey) {
        if let Some(rekeys) = &self.out.rekeys {
            if let Err(e) = rekeys.try_send(rekey) {
                // The queue holds far more than there are groups to rekey at once.
                tracing::warn!("rekey request dropped: {e}");
            }
        }
    }

    /// Logs the bridge's own standing on chain when it changes.
    fn announce_standing(&self, before: &Snapshot, after: &Snapshot) {
        match (before.bridge_listed, after.bridge_listed) {
            (true, false) => tracing::error!(
                "the exchange log no longer lists this bridge (#{}): forwarding stops and no \
                 audit batch is sent until it is listed again",
                after.block_number
            ),
            (false, true) => tracing::info!(
                "the exchange log lists this bridge at #{}: forwarding resumes",
                after.block_number
            ),
            _ => {}
        }
    }
}
