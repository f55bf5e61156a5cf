//! Forward: reads ingress, runs the gate against the latest finalized snapshot, and
//! publishes an attested delivery or a refusal notice.
//!
//! Nothing goes out before it is durable (DESIGN §4b):
//! - A forward's audit record, which also carries its message id (the replay-window entry
//!   a restart reads back), is appended before the delivery is published.
//! - A refused envelope that used up its message id has the id in the replay journal before
//!   the ingress message is acknowledged.
//! - The replay journal's closing entry for a forward is written once the broker has
//!   acknowledged the delivery ([`crate::outbox`]); a restart before that forwards the
//!   broker's redelivery again rather than refusing it as a replay.
//!
//! - Records are written in groups: the envelopes whose checks are done when one is
//!   handled join it, up to [`GROUP`]. The group's records are synced to disk once, and
//!   only then is any of its envelopes published or acknowledged. One sync covers many
//!   envelopes, and a power cut loses no record of an acknowledged one.
//!
//! The node announces a finalized block a moment before the bridge has applied it, and a
//! device may read the new state over RPC in that moment (a rotated key, a group's first
//! key). An envelope that the cache's state would refuse for a reason newer state may
//! change is held until the follower has applied the newest block it has heard of, or, if
//! it has heard of none, until it has read and applied the node's finalized head (a probe),
//! within [`NEWER_STATE_GRACE`], and then checked again. Each block heard of is waited for
//! once and probes are at least [`PROBE_EVERY`] apart, so a flood of such refusals costs
//! little. Nothing passes on older state than before.
//!
//! When a write fails, the envelope is neither forwarded nor acknowledged, `/readyz` says
//! so, and the same envelope is tried again with backoff until the write goes through.

use std::{sync::Arc, time::Duration, time::Instant};

use keymesh_device::{mqtt, Delivery};
use rumqttc::{AsyncClient, Publish};
use subxt::ext::futures::{stream::FuturesOrdered, FutureExt, StreamExt};
use subxt_signer::sr25519::Keypair;
use tokio::sync::{mpsc, watch};

use crate::{
    audit::{lock, SharedJournal},
    backoff::Backoff,
    clock::now_ms,
    gate::{self, Accepted, Gate, Genuine, Reason, Refused, Snapshot, Target},
    health::Health,
    metrics::Metrics,
    notice,
    outbox::Outbox,
    prepare::{ingress_sender, Preparer, Work, AHEAD},
    record::Record,
    replay::{JournalError, ReplayJournal, Seen},
};

/// How long an envelope is held, unacknowledged, when the bridge falls behind, before it
/// is refused as `StaleState`. A restart or a reconnect catches up within moments, and the
/// broker's backlog should be forwarded then rather than refused; a node that stays away
/// costs one such wait, after which refusals are immediate until the bridge has caught up.
const CATCH_UP_GRACE: Duration = Duration::from_secs(5);

/// Longest hold for a finalized block the follower has heard of but not applied. Applying
/// one takes well under a second, even with a thousand changed devices.
const NEWER_STATE_GRACE: Duration = Duration::from_secs(2);

/// Least time between two probes of the node's finalized head: a flood of refusals costs
/// the node ten reads a second at most.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// A journal with this many records more than the window holds is rewritten.
const COMPACT_SLACK: usize = 65_536;

/// First and longest wait before an envelope whose record could not be written is tried
/// again.
const DURABILITY_RETRY: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));

/// Forwards whose closing entry may wait for the broker's acknowledgement; past this many
/// the oldest are closed anyway (a delivery rumqttc lost with a collided packet id would
/// otherwise hold them all).
const MAX_UNCLOSED: usize = 65_536;

/// Most envelopes whose records share one sync.
pub const GROUP: usize = 256;

/// What an envelope whose records are written is owed once they are synced: its outcome
/// published, and its ingress message acknowledged.
enum Release {
    /// Only the acknowledgement (not an ingress topic).
    Ack,
    /// The attested delivery, then the acknowledgement.
    Forward {
        topic: String,
        delivery: Vec<u8>,
        seen: Seen,
        redelivery: bool,
    },
    /// The refusal notice, if the sender is within its notice budget, then the
    /// acknowledgement.
    Refuse { notice: Option<(String, Vec<u8>)> },
}

/// What the forward loop works with.
pub struct Forward {
    /// Acknowledges ingress.
    pub client: AsyncClient,
    /// Publishes deliveries and notices.
    pub outbox: Arc<Outbox>,
    /// Every outbox publish numbered below this has been acknowledged by the broker.
    pub acked: watch::Receiver<u64>,
    pub gate: Gate,
    pub journal: ReplayJournal,
    pub signer: Keypair,
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub caught_up: watch::Receiver<bool>,
    /// The newest finalized block the follower has heard of, applied or not.
    pub finalized_seen: watch::Receiver<u64>,
    /// Asks the follower to apply the node's finalized head now.
    pub probes: mpsc::Sender<crate::follow::Probe>,
    pub audit: Arc<SharedJournal>,
    pub health: Arc<Health>,
    pub metrics: Metrics,
}

/// The forward loop's state.
pub struct ForwardLoop {
    forward: Forward,
    /// Journal size at which it is next compacted.
    compact_at: usize,
    /// Forwards whose closing replay-journal entry is not written yet, with their
    /// delivery's outbox number, oldest first.
    unclosed: std::collections::VecDeque<(u64, Seen)>,
    /// Since when the follower has been behind, if it is.
    behind_since: Option<Instant>,
    /// The newest finalized block an envelope was held for.
    held_for: u64,
    /// When the follower was last asked to read the node's finalized head.
    last_probe: Option<Instant>,
    /// Starts the work done on envelopes ahead of their turn.
    preparer: Preparer,
}

impl Forward {
    pub fn start(self) -> ForwardLoop {
        ForwardLoop {
            preparer: Preparer::new(self.gate.limits().clone(), self.signer.clone()),
            compact_at: self.journal.records().saturating_add(COMPACT_SLACK),
            forward: self,
            unclosed: std::collections::VecDeque::new(),
            behind_since: None,
            held_for: 0,
            last_probe: None,
        }
    }
}

impl ForwardLoop {
    /// Forwards until `shutdown` resolves or ingress closes. Up to [`AHEAD`] envelopes are
    /// worked on ahead ([`crate::prepare`]); they are handled in arrival order, in groups
    /// that share one sync.
    pub async fn run(
        mut self,
        mut incoming: mpsc::Receiver<Publish>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        // Fused: a group may still be released after the shutdown came, and polling a
        // finished future again must not panic.
        let shutdown = shutdown.fuse();
        tokio::pin!(shutdown);
        let mut sync = tokio::time::interval(Duration::from_secs(1));
        let mut acked = self.forward.acked.clone();
        let mut ahead = FuturesOrdered::new();
        let mut waiting = std::collections::VecDeque::new();
        let mut group = Vec::with_capacity(GROUP);
        let mut ingress_open = true;
        while ingress_open || !waiting.is_empty() {
            let work = tokio::select! {
                _ = &mut shutdown => break,
                _ = sync.tick() => {
                    self.sync_journals();
                    continue;
                }
                Ok(()) = acked.changed(), if !self.unclosed.is_empty() => {
                    if let Err(e) = self.close_unclosed() {
                        tracing::error!("{e}");
                        self.forward.health.set_journals_writable(false);
                    }
                    continue;
                }
                publish = incoming.recv(), if ingress_open && waiting.len() < AHEAD => {
                    match publish {
                        Some(publish) => {
                            let snapshot = self.forward.snapshot.borrow().clone();
                            ahead.push_back(self.preparer.spawn(&publish, snapshot));
                            waiting.push_back(publish);
                        }
                        None => ingress_open = false,
                    }
                    continue;
                }
                Some(work) = ahead.next() => work,
            };
            let mut next = Some(work);
            // This envelope, and those whose work is done already, make one group.
            while let Some(work) = next.take() {
                let Some(publish) = waiting.pop_front() else {
                    break;
                };
                // A task that did not finish leaves all the work to the envelope's turn.
                let mut work = work.unwrap_or_else(|_| Work::none());
                let Some(release) = self
                    .handle_until_durable(&publish, &mut work, &mut shutdown)
                    .await
                else {
                    self.release_group(&mut group, &mut shutdown).await;
                    return;
                };
                group.push((publish, release));
                if group.len() < GROUP {
                    next = ahead.next().now_or_never().flatten();
                }
            }
            if !self.release_group(&mut group, &mut shutdown).await {
                return;
            }
        }
        self.release_group(&mut group, &mut shutdown).await;
        self.sync_journals();
    }

    /// Syncs the group's records to disk, retrying with backoff while that fails, then
    /// publishes each envelope's outcome and acknowledges it, in order. False if `shutdown`
    /// came first; the group is then neither published nor acknowledged.
    async fn release_group(
        &mut self,
        group: &mut Vec<(Publish, Release)>,
        shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> bool {
        if group.is_empty() {
            return true;
        }
        let mut backoff = DURABILITY_RETRY;
        while let Err(e) = self.sync_durably() {
            self.forward.health.set_journals_writable(false);
            let wait = backoff.next_wait();
            tracing::error!(
                "{e}: {} envelope(s) neither forwarded nor acknowledged; retrying in {wait:?}",
                group.len()
            );
            tokio::select! {
                _ = shutdown.as_mut() => return false,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.forward
            .metrics
            .write_groups
            .observe(group.len() as f64);
        for (publish, release) in group.drain(..) {
            self.release(&publish, release).await;
        }
        true
    }

    /// Both journals on disk.
    fn sync_durably(&mut self) -> Result<(), JournalError> {
        self.forward.journal.sync()?;
        lock(&self.forward.audit).sync()
    }

    /// Handles one envelope, retrying with backoff while its records cannot be written;
    /// what it is owed once they are synced, or `None` if `shutdown` came first.
    async fn handle_until_durable(
        &mut self,
        publish: &Publish,
        work: &mut Work,
        shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Option<Release> {
        let mut backoff = DURABILITY_RETRY;
        loop {
            match self.handle(publish, work).await {
                Ok(release) => {
                    self.forward.health.set_journals_writable(true);
                    return Some(release);
                }
                Err(e) => {
                    self.forward.health.set_journals_writable(false);
                    let wait = backoff.next_wait();
                    tracing::error!(
                        "{e}: envelope on {} neither forwarded nor acknowledged; retrying in \
                         {wait:?}",
                        publish.topic
                    );
                    tokio::select! {
                        _ = shutdown.as_mut() => {
                            self.sync_journals();
                            return None;
                        }
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    fn sync_journals(&mut self) {
        let replay = self.forward.journal.sync();
        let audit = lock(&self.forward.audit).sync();
        for result in [replay, audit] {
            if let Err(e) = result {
                tracing::error!("{e}");
                self.forward.health.set_journals_writable(false);
            }
        }
    }

    /// Gates one envelope and writes its records; returns what it is owed once they are
    /// synced. An error means nothing was written that needs it.
    async fn handle(
        &mut self,
        publish: &Publish,
        work: &mut Work,
    ) -> Result<Release, JournalError> {
        self.close_unclosed()?;
        let Some(sender) = ingress_sender(&publish.topic) else {
            return Ok(Release::Ack);
        };
        self.wait_for_catch_up().await;
        let mut snapshot = self.forward.snapshot.borrow().clone();
        let mut started = Instant::now();
        let mut genuine = self.authenticate(sender, publish, work, &snapshot);
        if self.newer_state_may_pass(&genuine, &snapshot) {
            if let Some(newer) = self.newer_state(&snapshot).await {
                snapshot = newer;
                started = Instant::now();
                genuine = self.authenticate(sender, publish, work, &snapshot);
            }
        }
        // The MQTT `DUP` flag is not consulted: anyone can set it. Redeliveries are known
        // from the bridge's own journals (`Gate::remember_open`).
        let f = &mut self.forward;
        let verdict =
            genuine.and_then(|genuine| f.gate.admit(sender, genuine, now_ms(), &snapshot));
        f.metrics
            .check_latency
            .observe(started.elapsed().as_secs_f64());
        match verdict {
            Ok(accepted) => self.forward(accepted, &snapshot, publish, work),
            Err(refused) => self.refuse(refused, &snapshot, publish),
        }
    }

    /// The checks that keep no state: the bridge's standing, then the envelope's form,
    /// sender and signature.
    fn authenticate(
        &mut self,
        sender: &str,
        publish: &Publish,
        work: &mut Work,
        snapshot: &Snapshot,
    ) -> Result<Genuine, Refused> {
        let f = &mut self.forward;
        let caught_up = *f.caught_up.borrow();
        f.gate
            .check_standing(sender, &publish.payload, snapshot, caught_up, now_ms())
            .and_then(|()| work.genuine(f.gate.limits(), sender, &publish.payload, snapshot))
    }

    /// Whether the envelope would be refused at `snapshot` for a reason newer finalized
    /// state may change.
    fn newer_state_may_pass(
        &self,
        genuine: &Result<Genuine, Refused>,
        snapshot: &Snapshot,
    ) -> bool {
        let reason = match genuine {
            Err(refused) => Some(refused.reason.clone()),
            Ok(genuine) => gate::target_refusal(genuine, snapshot),
        };
        reason.is_some_and(|reason| reason.may_pass_on_newer_state())
    }

    /// Waits, within [`NEWER_STATE_GRACE`], for finalized state newer than `snapshot`: the
    /// newest block the follower has heard of, if it has not applied it and no envelope was
    /// held for it before; else, at most every [`PROBE_EVERY`], whatever the node has
    /// finalized by now ([`crate::follow::Probe`]). Returns the newer snapshot, if there is
    /// one.
    async fn newer_state(&mut self, snapshot: &Snapshot) -> Option<Arc<Snapshot>> {
        let heard_of = *self.forward.finalized_seen.borrow();
        if let Some(block) = unapplied_block(heard_of, snapshot.block_number, self.held_for) {
            self.held_for = block;
            self.wait_for_block(block).await;
        } else if *self.forward.caught_up.borrow()
            && self.last_probe.is_none_or(|at| at.elapsed() >= PROBE_EVERY)
        {
            // Only a follower that is caught up is following, and so answers probes.
            self.last_probe = Some(Instant::now());
            let (probe, answered) = tokio::sync::oneshot::channel();
            if self.forward.probes.try_send(probe).is_err() {
                return None;
            }
            let _ = tokio::time::timeout(NEWER_STATE_GRACE, answered).await;
        } else {
            return None;
        }
        let current = self.forward.snapshot.borrow().clone();
        (current.block_number > snapshot.block_number).then(|| {
            self.forward.metrics.held_for_newer_state.inc();
            current
        })
    }

    /// Waits, within [`NEWER_STATE_GRACE`], for the follower to apply finalized `block`.
    async fn wait_for_block(&mut self, block: u64) {
        let mut snapshot = self.forward.snapshot.clone();
        let applied = snapshot.wait_for(|s| u64::from(s.block_number) >= block);
        if tokio::time::timeout(NEWER_STATE_GRACE, applied)
            .await
            .is_err()
        {
            tracing::warn!("finalized #{block} not applied within {NEWER_STATE_GRACE:?}");
        }
    }

    /// Holds the envelope while the follower catches up, within [`CATCH_UP_GRACE`] of
    /// falling behind.
    async fn wait_for_catch_up(&mut self) {
        let mut caught_up = self.forward.caught_up.clone();
        if *caught_up.borrow_and_update() {
            self.behind_since = None;
            return;
        }
        let since = *self.behind_since.get_or_insert_with(Instant::now);
        let left = CATCH_UP_GRACE.saturating_sub(since.elapsed());
        let _ = tokio::time::timeout(left, caught_up.wait_for(|c| *c)).await;
    }

    async fn ack(&self, publish: &Publish) {
        if let Err(e) = self.forward.client.ack(publish).await {
            tracing::warn!("ack: {e}");
        }
    }

    /// Journals a forward's audit record (unless it is a redelivery, already journaled) and
    /// makes its attested delivery.
    fn forward(
        &mut self,
        accepted: Accepted,
        snapshot: &Snapshot,
        publish: &Publish,
        work: &mut Work,
    ) -> Result<Release, JournalError> {
        let f = &mut self.forward;
        let seen = Seen {
            message_id: accepted.message_id,
            envelope_hash: accepted.envelope_hash,
            expiry_ms: accepted.expiry_ms,
        };
        if !accepted.redelivery {
            let record = Record::Exchanged {
                sender: accepted.sender.clone(),
                target: accepted.target.clone(),
                fingerprint: accepted.fingerprint,
                envelope_hash: accepted.envelope_hash,
                checked_at: snapshot.block_number,
            };
            let appended = lock(&f.audit).append(
                record,
                accepted.envelope_hash,
                Some((accepted.message_id, accepted.expiry_ms)),
            );
            if let Err(e) = appended {
                f.gate.forget(&accepted.message_id);
                return Err(e);
            }
        }
        let delivery = Delivery {
            attestation: work.attestation(&f.signer, &publish.payload, snapshot),
            envelope: publish.payload.to_vec(),
        };
        let topic = match &accepted.target {
            Target::Device(id) => mqtt::inbox_topic(id),
            Target::Group(id) => mqtt::group_topic(id),
        };
        Ok(Release::Forward {
            topic,
            delivery: delivery.to_bytes(),
            seen,
            redelivery: accepted.redelivery,
        })
    }

    /// Publishes what `release` owes and acknowledges the ingress message.
    async fn release(&mut self, publish: &Publish, release: Release) {
        match release {
            Release::Ack => {}
            Release::Forward {
                topic,
                delivery,
                seen,
                redelivery,
            } => {
                let f = &mut self.forward;
                let number = match f.outbox.publish(topic, false, delivery).await {
                    Ok(number) => number,
                    Err(e) => {
                        // Only a stopped event loop refuses a request; the shutdown follows.
                        tracing::error!("forward: {e}");
                        return;
                    }
                };
                if redelivery {
                    tracing::debug!(
                        "unfinished forward of {} forwarded again",
                        hex::encode(seen.message_id)
                    );
                    f.metrics.redelivered.inc();
                } else {
                    f.metrics.forwarded.inc();
                }
                // The hand-over is finished once the broker has the delivery: until the id
                // is closed, a restart treats the broker's redelivery as the unfinished
                // forward it is.
                self.unclosed.push_back((number, seen));
                if let Err(e) = self.close_unclosed() {
                    // Forwarded already; the next envelope waits for this entry.
                    tracing::error!("{e}");
                    self.forward.health.set_journals_writable(false);
                }
            }
            Release::Refuse { notice } => {
                if let Some((topic, json)) = notice {
                    if let Err(e) = self.forward.outbox.publish(topic, false, json).await {
                        tracing::warn!("refusal notice: {e}");
                    }
                }
            }
        }
        self.ack(publish).await;
    }

    /// Writes the closing entries owed to the replay journal for deliveries the broker has
    /// acknowledged.
    fn close_unclosed(&mut self) -> Result<(), JournalError> {
        let acked = *self.forward.acked.borrow();
        while let Some(&(number, seen)) = self.unclosed.front() {
            if number >= acked && self.unclosed.len() <= MAX_UNCLOSED {
                break;
            }
            self.append_seen(seen)?;
            self.unclosed.pop_front();
        }
        Ok(())
    }

    /// Journals a message id, compacting the journal when it has grown well past the
    /// window.
    fn append_seen(&mut self, seen: Seen) -> Result<(), JournalError> {
        let f = &mut self.forward;
        f.journal.append(seen)?;
        if f.journal.records() >= self.compact_at {
            let live = f.gate.remembered(now_ms());
            match f.journal.compact(&live) {
                Ok(()) => tracing::debug!("replay journal compacted to {} id(s)", live.len()),
                Err(e) => tracing::error!("{e}"),
            }
            self.compact_at = f.journal.records().saturating_add(COMPACT_SLACK);
        }
        Ok(())
    }

    /// Journals what a refusal used up and decides its notice.
    fn refuse(
        &mut self,
        refused: Refused,
        snapshot: &Snapshot,
        publish: &Publish,
    ) -> Result<Release, JournalError> {
        if let Err(e) = self.make_refusal_durable(&refused, publish) {
            if let Some(seen) = refused.consumed {
                self.forward.gate.forget(&seen.message_id);
            }
            return Err(e);
        }
        let f = &mut self.forward;
        let code = refused.reason.code();
        f.metrics.refused.with_label_values(&[code]).inc();
        let notify = f.gate.may_notify(&refused.reported_to, now_ms(), snapshot);
        // Logged at info within the sender's notice budget; past it a flood would fill the
        // disk with lines the metrics already count.
        if !notify {
            f.metrics.notices_suppressed.inc();
            tracing::debug!(
                "refused from {}: {code}: {}",
                refused.reported_to,
                refused.detail
            );
            return Ok(Release::Refuse { notice: None });
        }
        tracing::info!(
            "refused from {}: {code}: {}",
            refused.reported_to,
            refused.detail
        );
        Ok(Release::Refuse {
            notice: notice::refusal(&refused, snapshot.block_number),
        })
    }

    /// The used-up message id and, for a key mismatch, the audit record, before the
    /// refusal is acknowledged.
    fn make_refusal_durable(
        &mut self,
        refused: &Refused,
        publish: &Publish,
    ) -> Result<(), JournalError> {
        if let Some(seen) = refused.consumed {
            self.append_seen(seen)?;
        }
        let (
            Reason::KeyMismatch {
                presented,
                expected,
            },
            Some(target),
        ) = (&refused.reason, &refused.target)
        else {
            return Ok(());
        };
        let envelope_hash = keymesh_device::envelope_hash(&publish.payload);
        let mut audit = lock(&self.forward.audit);
        // A crash between the audit append and the acknowledgement leaves the broker to
        // redeliver it; the redelivery is the same refusal, already in the audit journal.
        if audit.has_record_of(&envelope_hash) {
            return Ok(());
        }
        let record = Record::Mismatch {
            sender: refused.reported_to.clone(),
            target: target.clone(),
            presented: *presented,
            expected: *expected,
        };
        audit.append(record, envelope_hash, None)
    }
}

/// The finalized block heard of that an envelope may be held for: one newer than the
/// snapshot's (`applied`) and than the last one held for.
fn unapplied_block(heard_of: u64, applied: u32, held_for: u64) -> Option<u64> {
    (heard_of > u64::from(applied) && heard_of > held_for).then_some(heard_of)
}

#[cfg(test)]
mod tests {
    use super::unapplied_block;

    #[test]
    fn each_unapplied_block_is_held_for_once() {
        // Heard of #8 with #7 applied: hold for #8, once.
        assert_eq!(unapplied_block(8, 7, 0), Some(8));
        assert_eq!(unapplied_block(8, 7, 8), None);
        // Nothing newer than the snapshot: no hold.
        assert_eq!(unapplied_block(7, 7, 0), None);
        // A newer block after an earlier hold is held for again.
        assert_eq!(unapplied_block(9, 7, 8), Some(9));
    }
}
