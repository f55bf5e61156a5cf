//! Audit: moves the journaled exchange records (see [`crate::audit_journal`]) to the
//! exchange log, one `exchange_log.record` batch at a time, each pinned to one nonce so that
//! however many copies a crash or a lost connection makes, at most one lands. A batch logs
//! forwarded envelopes as counted Merkle roots ([`crate::record::group`]); their leaves go to
//! the proof archive ([`crate::proof_archive`]) before the batch is committed.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    audit_journal::{AuditJournal, Batch, InFlight},
    backoff::Backoff,
    chain::ChainError,
    proof_archive::{ArchivedGroup, ProofArchive},
    record::{LogRecord, MAX_BATCH},
    replay::JournalError,
    writer::{Finalized, WriteError, Writer, MORTALITY},
};

/// What a flush needs of the chain. [`Writer`] is the real one; the unit tests script one.
pub trait AuditChain {
    /// The finalized block and the bridge account's nonce in it.
    fn finalized(&self) -> impl std::future::Future<Output = Result<Finalized, ChainError>> + Send;
    /// The nonce the node's pool expects next from the bridge.
    fn next_nonce(&self) -> impl std::future::Future<Output = Result<u64, ChainError>> + Send;
    /// Writes `records` in one `exchange_log.record` call under `nonce`; returns the hash of
    /// the finalized block it landed in.
    fn record(
        &self,
        records: &[LogRecord],
        nonce: u64,
    ) -> impl std::future::Future<Output = Result<[u8; 32], WriteError>> + Send;
}

impl AuditChain for Writer {
    async fn finalized(&self) -> Result<Finalized, ChainError> {
        Writer::finalized(self).await
    }

    async fn next_nonce(&self) -> Result<u64, ChainError> {
        Writer::next_nonce(self).await
    }

    async fn record(&self, records: &[LogRecord], nonce: u64) -> Result<[u8; 32], WriteError> {
        Writer::record(self, records, nonce).await
    }
}

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
pub const DEAD_AFTER: u64 = 4 * MORTALITY;

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
/// runtime refused is retried as halves, down to single records, so a batch too large for a
/// block still lands. The smaller size holds until the backlog is worked off.
pub struct Flusher {
    journal: Arc<SharedJournal>,
    archive: ProofArchive,
    /// Records per batch: [`MAX_BATCH`], halved after each refusal, back to [`MAX_BATCH`]
    /// once nothing is pending.
    limit: usize,
    backoff: Backoff,
    retry_at: Option<Instant>,
}

impl Flusher {
    pub fn new(journal: Arc<SharedJournal>, archive: ProofArchive) -> Self {
        Flusher {
            journal,
            archive,
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
    pub async fn flush(&mut self, writer: &impl AuditChain) {
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        loop {
            // The lock is released before any await.
            let next = lock(&self.journal).next_batch(self.limit);
            let Some(batch) = next else {
                self.limit = MAX_BATCH;
                return;
            };
            match write_batch(writer, &self.journal, &mut self.archive, &batch).await {
                Ok(()) => {
                    tracing::debug!(
                        "{} exchange record(s) written, logging {} forwarded envelope(s)",
                        batch.logged.len(),
                        batch
                            .logged
                            .iter()
                            .map(|l| l.envelopes.len())
                            .sum::<usize>()
                    );
                    self.backoff.reset();
                    self.retry_at = None;
                }
                Err(e) => {
                    if matches!(e, FlushError::Write(WriteError::Failed(_))) {
                        self.limit = (batch.logged.len() / 2).max(1);
                    }
                    let wait = self.backoff.next_wait();
                    self.retry_at = Some(Instant::now() + wait);
                    tracing::warn!(
                        "exchange log write of {} record(s): {e}; retrying in {wait:?}, at \
                         most {} record(s) a batch",
                        batch.logged.len(),
                        self.limit
                    );
                    return;
                }
            }
        }
    }

    /// Flushes until no batch holds a pinned nonce, so that the caller may sign something
    /// else without taking that nonce.
    pub async fn settle(&mut self, writer: &impl AuditChain) {
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

/// Archives the leaves of a batch that is on chain, then commits it. If the archive cannot
/// be written, the batch stays pinned: the next flush finds it landed and comes here again.
fn commit(
    journal: &SharedJournal,
    archive: &mut ProofArchive,
    batch: &Batch,
    landed_in: Option<[u8; 32]>,
    signed_at: u64,
) -> Result<(), FlushError> {
    archive.append(&ArchivedGroup::from_batch(
        &batch.logged,
        landed_in,
        signed_at,
    ))?;
    Ok(lock(journal).commit(batch.end)?)
}

async fn write_batch(
    writer: &impl AuditChain,
    journal: &SharedJournal,
    archive: &mut ProofArchive,
    batch: &Batch,
) -> Result<(), FlushError> {
    let now = writer.finalized().await?;
    let nonce = match batch.in_flight {
        Some(pinned) if now.nonce > pinned.nonce => {
            // A copy sent before (perhaps before a restart) is in; in which block, the proof
            // tool finds within the copies' lifetime.
            return commit(journal, archive, batch, None, pinned.signed_at);
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
    let records: Vec<LogRecord> = batch.logged.iter().map(|l| l.record.clone()).collect();
    match writer.record(&records, nonce).await {
        Ok(landed_in) => commit(journal, archive, batch, Some(landed_in), now.block),
        Err(e @ WriteError::Failed(_)) => {
            // The nonce is spent on a call the runtime refused: the next try gets a new one.
            lock(journal).unpin()?;
            Err(e.into())
        }
        // The pin stays: even a copy the node seemed to refuse might be in a pool.
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::VecDeque, sync::Mutex};

    use super::*;
    use crate::{gate::Target, record::Record};

    /// A chain that answers `record` calls from a script and counts what they carried.
    struct ScriptedChain {
        answers: Mutex<VecDeque<bool>>,
        /// Records per `record` call, in order.
        calls: Mutex<Vec<usize>>,
        /// Transactions in finalized blocks: a refused call spends its nonce too.
        landed: Mutex<u64>,
        /// Calls with more records than this are refused.
        most: usize,
    }

    impl ScriptedChain {
        fn new(answers: &[bool]) -> Self {
            ScriptedChain {
                answers: Mutex::new(answers.iter().copied().collect()),
                calls: Mutex::default(),
                landed: Mutex::new(0),
                most: usize::MAX,
            }
        }

        fn refusing_more_than(mut self, most: usize) -> Self {
            self.most = most;
            self
        }

        fn calls(&self) -> Vec<usize> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl AuditChain for ScriptedChain {
        async fn finalized(&self) -> Result<Finalized, ChainError> {
            let nonce = *self.landed.lock().unwrap();
            Ok(Finalized { block: 1, nonce })
        }

        async fn next_nonce(&self) -> Result<u64, ChainError> {
            Ok(*self.landed.lock().unwrap())
        }

        async fn record(&self, records: &[LogRecord], _nonce: u64) -> Result<[u8; 32], WriteError> {
            self.calls.lock().unwrap().push(records.len());
            *self.landed.lock().unwrap() += 1;
            let answer = self.answers.lock().unwrap().pop_front();
            match answer.unwrap_or(true) && records.len() <= self.most {
                false => Err(WriteError::Failed(ChainError::Query(
                    "ExchangeLog.record: refused".into(),
                ))),
                true => Ok([5; 32]),
            }
        }
    }

    fn flusher(dir: &tempfile::TempDir, journal: Arc<SharedJournal>) -> Flusher {
        Flusher::new(
            journal,
            ProofArchive::open(&dir.path().join("proofs")).unwrap(),
        )
    }

    fn journal_with(records: usize) -> (tempfile::TempDir, Arc<SharedJournal>) {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = AuditJournal::open(dir.path(), "audit.log", 0).unwrap();
        for i in 0..records {
            let record = Record::Mismatch {
                sender: "1111".into(),
                target: Target::Device("1113".into()),
                presented: [1; 32],
                expected: [2; 32],
            };
            journal.append(record, [i as u8; 32], None).unwrap();
        }
        (dir, Arc::new(std::sync::Mutex::new(journal)))
    }

    #[tokio::test]
    async fn a_refused_batch_waits_out_its_backoff_and_is_retried_as_halves() {
        let (dir, journal) = journal_with(8);
        let chain = ScriptedChain::new(&[false]);
        let mut flusher = flusher(&dir, journal.clone());
        flusher.flush(&chain).await;
        assert_eq!(chain.calls(), [8]);
        assert_eq!(flusher.pending(), 8, "a refused batch stays journaled");
        // Not resent at the next block or tick: it waits out its backoff.
        flusher.flush(&chain).await;
        flusher.flush(&chain).await;
        assert_eq!(chain.calls(), [8]);
        flusher.retry_at = None;
        flusher.flush(&chain).await;
        assert_eq!(chain.calls(), [8, 4, 4]);
        assert_eq!(flusher.pending(), 0);
        assert_eq!(
            flusher.limit, MAX_BATCH,
            "back to full batches once drained"
        );
    }

    #[tokio::test]
    async fn a_batch_too_large_for_the_runtime_is_split_until_it_fits() {
        let (dir, journal) = journal_with(8);
        // The runtime takes at most 2 records a call here.
        let chain = ScriptedChain::new(&[]).refusing_more_than(2);
        let mut flusher = flusher(&dir, journal);
        let mut backoffs = 0;
        for _ in 0..4 {
            flusher.flush(&chain).await;
            if flusher.retry_at.take().is_some() {
                backoffs += 1;
            }
        }
        assert_eq!(chain.calls(), [8, 4, 2, 2, 2, 2]);
        assert_eq!(backoffs, 2, "each refusal set a backoff");
        assert_eq!(flusher.pending(), 0);
        assert_eq!(flusher.limit, MAX_BATCH);
    }

    #[tokio::test]
    async fn forwards_land_as_counted_roots_and_their_leaves_are_archived_before_the_commit() {
        let hash_of = |n: u16| {
            let mut hash = [0; 32];
            hash[..2].copy_from_slice(&n.to_le_bytes());
            hash
        };
        let (dir, journal) = journal_with(0);
        for n in 0..300u16 {
            let record = Record::Exchanged {
                sender: format!("{}", 1111 + n % 3),
                target: Target::Group("B".into()),
                fingerprint: [1; 32],
                envelope_hash: hash_of(n),
                checked_at: 5,
            };
            lock(&journal).append(record, hash_of(n), None).unwrap();
        }
        let chain = ScriptedChain::new(&[]);
        let mut flusher = flusher(&dir, journal);
        flusher.flush(&chain).await;
        // 300 envelopes from three senders: one call of three records.
        assert_eq!(chain.calls(), [3]);
        assert_eq!(flusher.pending(), 0);
        let wanted: std::collections::HashSet<[u8; 32]> = (0..300u16).map(hash_of).collect();
        let found = crate::proof_archive::find(&dir.path().join("proofs"), &wanted).unwrap();
        assert_eq!(found.len(), 300, "every forwarded envelope has a proof");
        for (hash, hit) in &found {
            assert_eq!(hit.proof.leaves, 100);
            assert!(keymesh_device::exchange_proof::verify(
                &hit.group.root,
                hash,
                &hit.proof
            ));
        }
    }
}
