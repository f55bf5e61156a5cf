use super::*;
use crate::record::{group, Record};
use keymesh_device::exchange_proof::verify;

fn forwarded(sender: &str, hashes: &[u8]) -> Vec<Record> {
    hashes
        .iter()
        .map(|&n| Record::Exchanged {
            sender: sender.into(),
            target: Target::Group("B".into()),
            fingerprint: [1; 32],
            envelope_hash: [n; 32],
            checked_at: 5,
        })
        .collect()
}

fn archived(sender: &str, hashes: &[u8]) -> Vec<ArchivedGroup> {
    let (_, logged) = group(&forwarded(sender, hashes), usize::MAX);
    ArchivedGroup::from_batch(&logged, Some([9; 32]), 3)
}

fn wanted(hashes: &[u8]) -> HashSet<[u8; 32]> {
    hashes.iter().map(|&n| [n; 32]).collect()
}

#[test]
fn every_archived_envelope_is_found_with_a_proof_against_its_group_root() {
    let dir = tempfile::tempdir().unwrap();
    let mut archive = ProofArchive::open(dir.path()).unwrap();
    archive.append(&archived("1111", &[1, 2, 3])).unwrap();
    archive.append(&archived("1112", &[4, 5])).unwrap();
    // A crash between the archive and the journal's commit appends a batch twice.
    archive.append(&archived("1112", &[4, 5])).unwrap();
    let found = find(dir.path(), &wanted(&[2, 5, 7])).unwrap();
    assert_eq!(found.len(), 2, "7 was never archived");
    for (n, sender) in [(2, "1111"), (5, "1112")] {
        let hit = &found[&[n; 32]];
        assert_eq!(hit.group.sender, sender);
        assert_eq!(hit.group.landed_in.as_deref(), Some(&*hex::encode([9; 32])));
        assert!(verify(&hit.group.root, &[n; 32], &hit.proof));
    }
}

#[test]
fn a_line_cut_short_by_a_crash_is_skipped_and_appending_goes_on_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut archive = ProofArchive::open(dir.path()).unwrap();
    archive.append(&archived("1111", &[1])).unwrap();
    drop(archive);
    let mut file = OpenOptions::new()
        .append(true)
        .open(segment_path(dir.path(), 0))
        .unwrap();
    file.write_all(br#"{"landedIn":null,"signedAt":3,"send"#)
        .unwrap();
    drop(file);
    let mut archive = ProofArchive::open(dir.path()).unwrap();
    archive.append(&archived("1111", &[2])).unwrap();
    let found = find(dir.path(), &wanted(&[1, 2])).unwrap();
    assert_eq!(found.len(), 2);
}

#[test]
fn old_segments_are_removed_past_the_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut archive = ProofArchive::open(dir.path()).unwrap();
    archive.segment_bytes = 1;
    for n in 0..(KEEP_SEGMENTS as u8 + 3) {
        archive.append(&archived("1111", &[n])).unwrap();
    }
    let kept = segments(dir.path()).unwrap();
    assert_eq!(kept.len(), KEEP_SEGMENTS);
    // Segment k holds envelope k; the newest, segment 19, is still empty. Segments 0..=3
    // are gone.
    let last = KEEP_SEGMENTS as u8 + 2;
    let found = find(dir.path(), &wanted(&[0, 1, 2, 3, 4, last])).unwrap();
    let mut hits: Vec<u8> = found.keys().map(|h| h[0]).collect();
    hits.sort();
    assert_eq!(hits, [4, last]);
}

#[test]
fn refusals_are_not_archived() {
    let records = [Record::Mismatch {
        sender: "1111".into(),
        target: Target::Device("1113".into()),
        presented: [1; 32],
        expected: [2; 32],
    }];
    let (_, logged) = group(&records, usize::MAX);
    assert!(ArchivedGroup::from_batch(&logged, None, 1).is_empty());
}
