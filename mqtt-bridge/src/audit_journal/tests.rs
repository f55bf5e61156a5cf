use super::*;
use crate::gate::Target;

fn mismatch(n: u8) -> Record {
    Record::Mismatch {
        sender: "1111".into(),
        target: Target::Device("1113".into()),
        presented: [n; 32],
        expected: [0; 32],
    }
}

fn exchanged(n: u8) -> Record {
    Record::Exchanged {
        sender: "1111".into(),
        target: Target::Group("B".into()),
        fingerprint: [1; 32],
        envelope_hash: [n; 32],
        checked_at: 5,
    }
}

/// `records` as a batch logs them.
fn logged(records: &[Record]) -> Vec<Logged> {
    record::group(records, usize::MAX).1
}

fn open(dir: &Path, now_ms: u64) -> (AuditJournal, Restored) {
    AuditJournal::open(dir, "audit", now_ms).unwrap()
}

#[test]
fn records_and_the_pinned_nonce_survive_a_reopen_until_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, restored) = open(dir.path(), 0);
    assert_eq!(restored.pending, 0);
    assert_eq!(journal.next_batch(10), None);
    for n in 1..=3 {
        journal.append(mismatch(n), [n; 32], None).unwrap();
    }
    let batch = journal.next_batch(2).unwrap();
    assert_eq!(batch.end, 2);
    assert_eq!(batch.logged, logged(&[mismatch(1), mismatch(2)]));
    let pinned = InFlight {
        end: 2,
        nonce: 7,
        signed_at: 40,
    };
    journal.pin(pinned).unwrap();
    drop(journal);

    // Killed here: the same two records come back, pinned to the same nonce.
    let (mut journal, restored) = open(dir.path(), 0);
    assert_eq!(restored.pending, 3);
    let batch = journal.next_batch(10).unwrap();
    assert_eq!(batch.in_flight, Some(pinned));
    assert_eq!(batch.logged, logged(&[mismatch(1), mismatch(2)]));
    journal.commit(2).unwrap();
    assert_eq!(journal.in_flight(), None);
    drop(journal);

    let (mut journal, restored) = open(dir.path(), 0);
    assert_eq!(restored.pending, 1);
    let batch = journal.next_batch(10).unwrap();
    assert_eq!((batch.end, batch.in_flight), (3, None));
    assert_eq!(batch.logged, logged(&[mismatch(3)]));
    journal.commit(3).unwrap();
    // Numbering goes on after the committed records.
    journal.append(mismatch(4), [4; 32], None).unwrap();
    assert_eq!(journal.next_batch(10).unwrap().end, 4);
    // Committed records are still recognised.
    assert!(journal.has_record_of(&[1; 32]));
    assert!(!journal.has_record_of(&[9; 32]));
}

#[test]
fn unpinning_lets_the_batch_take_a_new_nonce() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = open(dir.path(), 0);
    journal.append(mismatch(1), [1; 32], None).unwrap();
    journal
        .pin(InFlight {
            end: 1,
            nonce: 3,
            signed_at: 1,
        })
        .unwrap();
    journal.unpin().unwrap();
    drop(journal);
    let (journal, _) = open(dir.path(), 0);
    assert_eq!(journal.next_batch(10).unwrap().in_flight, None);
}

#[test]
fn forwarded_ids_come_back_while_inside_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = open(dir.path(), 0);
    journal
        .append(exchanged(1), [1; 32], Some(([1; 16], 500)))
        .unwrap();
    journal
        .append(exchanged(2), [2; 32], Some(([2; 16], 2_000)))
        .unwrap();
    journal.append(mismatch(3), [3; 32], None).unwrap();
    journal.commit(1).unwrap();
    drop(journal);
    let (_, restored) = open(dir.path(), 1_000);
    assert_eq!(
        restored.forwarded,
        vec![Seen {
            message_id: [2; 16],
            envelope_hash: [2; 32],
            expiry_ms: 2_000
        }]
    );
    assert_eq!(restored.pending, 2);
}

#[test]
fn a_record_cut_short_by_a_crash_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = open(dir.path(), 0);
    journal.append(mismatch(1), [1; 32], None).unwrap();
    drop(journal);
    let mut file = OpenOptions::new()
        .append(true)
        .open(dir.path().join("audit"))
        .unwrap();
    file.write_all(br#"{"seq":1,"envelope_hash":[2,2"#).unwrap();
    drop(file);
    let (journal, restored) = open(dir.path(), 0);
    assert_eq!(restored.pending, 1);
    assert_eq!(
        journal.next_batch(10).unwrap().logged,
        logged(&[mismatch(1)])
    );
}

#[test]
fn a_damaged_journal_is_a_clear_error_not_a_silent_loss() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("audit"), b"not json\n{}\n").unwrap();
    let Err(e) = AuditJournal::open(dir.path(), "audit", 0) else {
        panic!("opened a damaged journal");
    };
    let text = e.to_string();
    assert!(
        text.contains("audit journal") && text.contains("line 1"),
        "{text}"
    );
    // The file is left as it was, for the operator to look at.
    assert_eq!(
        std::fs::read(dir.path().join("audit")).unwrap(),
        b"not json\n{}\n"
    );
}

#[test]
fn the_file_is_compacted_once_records_are_on_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = open(dir.path(), 0);
    let total = 4 * KEEP_COMMITTED as u64;
    for seq in 0..total {
        journal
            .append(
                mismatch(1),
                (seq as u32).to_le_bytes().repeat(8).try_into().unwrap(),
                None,
            )
            .unwrap();
    }
    journal.commit(total).unwrap();
    drop(journal);
    let lines = std::fs::read_to_string(dir.path().join("audit"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(lines, KEEP_COMMITTED);
    let (journal, restored) = open(dir.path(), 0);
    assert_eq!(restored.pending, 0);
    assert_eq!(journal.next_batch(10), None);
}

#[test]
fn forwards_are_batched_as_counted_roots_and_a_pinned_batch_regroups_the_same_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = open(dir.path(), 0);
    let records = [exchanged(1), exchanged(2), mismatch(3), exchanged(4)];
    for (i, record) in records.iter().enumerate() {
        journal.append(record.clone(), [i as u8; 32], None).unwrap();
    }
    // Two entries hold all four: the forwards share one.
    let batch = journal.next_batch(2).unwrap();
    assert_eq!(batch.end, 4);
    assert_eq!(batch.logged.len(), 2);
    assert_eq!(batch.logged[0].envelopes, [[1; 32], [2; 32], [4; 32]]);
    assert!(matches!(
        batch.logged[0].record,
        record::LogRecord::Exchanges { count: 3, .. }
    ));
    journal
        .pin(InFlight {
            end: batch.end,
            nonce: 7,
            signed_at: 1,
        })
        .unwrap();
    drop(journal);
    let (journal, _) = open(dir.path(), 0);
    // A smaller limit does not cut a batch that may be on chain already.
    assert_eq!(journal.next_batch(1).unwrap().logged, batch.logged);
}
