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
//! When a write fails, the envelope is neither forwarded nor acknowledged, `/readyz` says
//! so, and the same envelope is tried again with backoff until the write goes through.

use std::{sync::Arc, time::Duration, time::Instant};

use keymesh_device::{mqtt, Delivery};
use rumqttc::{AsyncClient, Publish};
use subxt::ext::futures::{stream::FuturesOrdered, StreamExt};
use subxt_signer::sr25519::Keypair;
use tokio::sync::{mpsc, watch};

use crate::{
    audit::{lock, SharedJournal},
    backoff::Backoff,
    clock::now_ms,
    gate::{Accepted, Gate, Reason, Refused, Snapshot, Target},
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

/// A journal with this many records more than the window holds is rewritten.
const COMPACT_SLACK: usize = 65_536;

/// First and longest wait before an envelope whose record could not be written is tried
/// again.
const DURABILITY_RETRY: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));

/// Forwards whose closing entry may wait for the broker's acknowledgement; past this many
/// the oldest are closed anyway (a delivery rumqttc lost with a collided packet id would
/// otherwise hold them all).
const MAX_UNCLOSED: usize = 65_536;

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
        }
    }
}

impl ForwardLoop {
    /// Forwards until `shutdown` resolves or ingress closes. Up to [`AHEAD`] envelopes are
    /// worked on ahead ([`crate::prepare`]); they are handled in arrival order.
    pub async fn run(
        mut self,
        mut incoming: mpsc::Receiver<Publish>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut sync = tokio::time::interval(Duration::from_secs(1));
        let mut acked = self.forward.acked.clone();
        let mut ahead = FuturesOrdered::new();
        let mut waiting = std::collections::VecDeque::new();
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
            let Some(publish) = waiting.pop_front() else {
                continue;
            };
            // A task that did not finish leaves all the work to the envelope's turn.
            let mut work = work.unwrap_or_else(|_| Work::none());
            if !self
                .handle_until_durable(&publish, &mut work, &mut shutdown)
                .await
            {
                return;
            }
        }
        self.sync_journals();
    }

    /// Handles one envelope, retrying with backoff while its records cannot be written;
    /// false if `shutdown` came first.
    async fn handle_until_durable(
        &mut self,
        publish: &Publish,
        work: &mut Work,
        shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> bool {
        let mut backoff = DURABILITY_RETRY;
        loop {
            match self.handle(publish, work).await {
                Ok(()) => {
                    self.forward.health.set_journals_writable(true);
                    return true;
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
                            return false;
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

    /// Gates one envelope and, once its records are durable, publishes the outcome and
    /// acknowledges it. An error means nothing was published or acknowledged.
    async fn handle(&mut self, publish: &Publish, work: &mut Work) -> Result<(), JournalError> {
        self.close_unclosed()?;
        let Some(sender) = ingress_sender(&publish.topic) else {
            self.ack(publish).await;
            return Ok(());
        };
        self.wait_for_catch_up().await;
        let f = &mut self.forward;
        let snapshot = f.snapshot.borrow().clone();
        let caught_up = *f.caught_up.borrow();
        let now = now_ms();
        let started = Instant::now();
        // The MQTT `DUP` flag is not consulted: anyone can set it. Redeliveries are known
        // from the bridge's own journals (`Gate::remember_open`).
        let verdict = f
            .gate
            .check_standing(sender, &publish.payload, &snapshot, caught_up, now)
            .and_then(|()| work.genuine(f.gate.limits(), sender, &publish.payload, &snapshot))
            .and_then(|genuine| f.gate.admit(sender, genuine, now, &snapshot));
        f.metrics
            .check_latency
            .observe(started.elapsed().as_secs_f64());
        match verdict {
            Ok(accepted) => self.forward(accepted, &snapshot, publish, work).await?,
            Err(refused) => self.refuse(refused, &snapshot, publish).await?,
        }
        Ok(())
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

    async fn forward(
        &mut self,
        accepted: Accepted,
        snapshot: &Snapshot,
        publish: &Publish,
        work: &mut Work,
    ) -> Result<(), JournalError> {
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
        let number = match f.outbox.publish(topic, false, delivery.to_bytes()).await {
            Ok(number) => number,
            Err(e) => {
                // Only a stopped event loop refuses a request; the shutdown follows.
                tracing::error!("forward: {e}");
                return Ok(());
            }
        };
        if accepted.redelivery {
            tracing::debug!(
                "unfinished forward of {} forwarded again",
                hex::encode(accepted.message_id)
            );
            f.metrics.redelivered.inc();
        } else {
            f.metrics.forwarded.inc();
        }
        self.ack(publish).await;
        // The hand-over is finished once the broker has the delivery: until the id is
        // closed, a restart treats the broker's redelivery as the unfinished forward it is.
        self.unclosed.push_back((number, seen));
        if let Err(e) = self.close_unclosed() {
            // Forwarded and acknowledged already; the next envelope waits for this entry.
            tracing::error!("{e}");
            self.forward.health.set_journals_writable(false);
        }
        Ok(())
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

    async fn refuse(
        &mut self,
        refused: Refused,
        snapshot: &Snapshot,
        publish: &Publish,
    ) -> Result<(), JournalError> {
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
        if notify {
            tracing::info!(
                "refused from {}: {code}: {}",
                refused.reported_to,
                refused.detail
            );
            if let Some((topic, json)) = notice::refusal(&refused, snapshot.block_number) {
                if let Err(e) = f.outbox.publish(topic, false, json).await {
                    tracing::warn!("refusal notice: {e}");
                }
            }
        } else {
            f.metrics.notices_suppressed.inc();
            tracing::debug!(
                "refused from {}: {code}: {}",
                refused.reported_to,
                refused.detail
            );
        }
        self.ack(publish).await;
        Ok(())
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
