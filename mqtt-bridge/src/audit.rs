//! Audit: moves the journaled exchange records (see [`crate::audit_journal`]) to the
//! exchange log, one `exchange_log.record` batch at a time, each pinned to one nonce so that
//! however many copies a crash or a lost connection makes, at most one lands.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    audit_journal::{AuditJournal, Batch, InFlight},
    backoff::Backoff,
    chain::ChainError,
    record::MAX_BATCH,
    replay::JournalError,
    writer::{WriteError, Writer, MORTALITY},
};

/// The audit journal, shared by the forward loop (which appends) and the writer (which
/// commits).
pub type SharedJournal = std::sync::Mutex<AuditJournal>;

/// Locks the journal. A panic elsewhere cannot leave it half-updated (every change is one
/// file write or one rename), so a poisoned lock is still used.
pub fn lock(journal: &SharedJournal) -> std::sync::MutexGuard<'_, AuditJournal> {
    journal
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Finalized blocks after which every copy of a pinned batch is certainly dead: its
/// mortality, with room for the finalized block moving between reading it and signing.
const DEAD_AFTER: u64 = 4 * MORTALITY;

/// Why a flush stopped; the records stay journaled for the next one.
#[derive(Debug, thiserror::Error)]
enum FlushError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("batch pinned to nonce {nonce} waits for its copies to expire after block {after}")]
    CopiesAlive { nonce: u64, after: u64 },
}

/// First and longest wait after a batch did not go through.
const RETRY: Backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(60));

/// Moves pending records to the exchange log.
///
/// Every copy of a batch is signed with the nonce pinned to it first, so however many
/// copies a crash or a lost connection makes, at most one can land; the bridge's finalized
/// nonce moving past the pinned one says it did. A batch gets a fresh nonce only when no
/// copy can land any more.
///
/// A batch that does not go through is retried with backoff, not at every flush; one the
/// runtime refused is retried as halves, down to single records, so one bad record cannot
/// hold back the rest and a batch too large for a block still lands.
pub struct Flusher {
    journal: Arc<SharedJournal>,
    /// Records per batch: [`MAX_BATCH`], halved after each refusal, doubled after each
    /// batch that lands.
    limit: usize,
    backoff: Backoff,
    retry_at: Option<Instant>,
}

impl Flusher {
    pub fn new(journal: Arc<SharedJournal>) -> Self {
        Flusher {
            journal,
            limit: MAX_BATCH,
            backoff: RETRY,
            retry_at: None,
        }
    }

    /// Records not yet on chain.
    pub fn pending(&self) -> usize {
        lock(&self.journal).pending()
    }

    /// Writes batches until none is left, or one does not go through (the rest then waits
    /// out the backoff). Returns at once while a failed batch waits.
    pub async fn flush(&mut self, writer: &Writer) {
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        loop {
            // The lock is released before any await.
            let next = lock(&self.journal).next_batch(self.limit);
            let Some(batch) = next else { return };
            match write_batch(writer, &self.journal, &batch).await {
                Ok(()) => {
                    tracing::debug!("{} exchange record(s) written", batch.records.len());
                    self.backoff.reset();
                    self.retry_at = None;
                    self.limit = self.limit.saturating_mul(2).min(MAX_BATCH);
                }
                Err(e) => {
                    if matches!(e, FlushError::Write(WriteError::Failed(_))) {
                        self.limit = (batch.records.len() / 2).max(1);
                    }
                    let wait = self.backoff.next_wait();
                    self.retry_at = Some(Instant::now() + wait);
                    tracing::warn!(
                        "exchange log write of {} record(s): {e}; retrying in {wait:?}, at \
                         most {} record(s) a batch",
                        batch.records.len(),
                        self.limit
                    );
                    return;
                }
            }
        }
    }

    /// Flushes until no batch holds a pinned nonce, so that the caller may sign something
    /// else without taking that nonce.
    pub async fn settle(&mut self, writer: &Writer) {
        loop {
            self.flush(writer).await;
            if lock(&self.journal).in_flight().is_none() {
                return;
            }
            // Nothing else may be signed meanwhile; a pinned batch settles within its
            // mortality.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn write_batch(
    writer: &Writer,
    journal: &SharedJournal,
    batch: &Batch,
) -> Result<(), FlushError> {
    let now = writer.finalized().await?;
    let nonce = match batch.in_flight {
        Some(pinned) if now.nonce > pinned.nonce => {
            // A copy sent before (perhaps before a restart) is in.
            return Ok(lock(journal).commit(batch.end)?);
        }
        Some(pinned) if now.block <= pinned.signed_at.saturating_add(DEAD_AFTER) => {
            if writer.next_nonce().await? < pinned.nonce {
                // A transaction below ours left the pool: our copies cannot land until they
                // expire, and a fresh nonce now could let both land.
                return Err(FlushError::CopiesAlive {
                    nonce: pinned.nonce,
                    after: pinned.signed_at.saturating_add(DEAD_AFTER),
                });
            }
            pinned.nonce
        }
        // A new batch, or one whose copies have all expired.
        _ => writer.next_nonce().await?,
    };
    lock(journal).pin(InFlight {
        end: batch.end,
        nonce,
        signed_at: now.block,
    })?;
    match writer.record(&batch.records, nonce).await {
        Ok(()) => Ok(lock(journal).commit(batch.end)?),
        Err(e @ WriteError::Failed(_)) => {
            // The nonce is spent on a call the runtime refused: the next try gets a new one.
            lock(journal).unpin()?;
            Err(e.into())
        }
        // The pin stays: even a copy the node seemed to refuse might be in a pool.
        Err(e) => Err(e.into()),
    }
}
