//! The gate's rules, one by one, on envelopes sealed with the fixed device test keys.

use super::*;
use keymesh_device::{fingerprint, keys::read_private, seal_direct, seal_topic};
use rsa::RsaPrivateKey;
use std::path::PathBuf;

fn key(name: &str) -> RsaPrivateKey {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../device/testdata")
        .join(format!("{name}.key.pem"));
    read_private(&path).unwrap()
}

struct Fleet {
    keys: HashMap<String, RsaPrivateKey>,
    topic: RsaPrivateKey,
    snapshot: Snapshot,
}

/// Devices 1111..1114 active; group A = {1111 Both, 1112 Subscriber}, B = {1113, 1114}
/// keyed with topic-B and open to publishers.
fn fleet() -> Fleet {
    let mut keys = HashMap::new();
    let mut snapshot = Snapshot {
        block_number: 9,
        block_hash: [9; 32],
        timestamp_ms: now(),
        bridge_listed: true,
        ..Default::default()
    };
    for id in ["1111", "1112", "1113", "1114"] {
        let private = key(id);
        snapshot
            .devices
            .insert(id.into(), DeviceKey::active(private.to_public_key()));
        keys.insert(id.to_string(), private);
    }
    let topic = key("topic-B");
    let topic_public = topic.to_public_key();
    let keyed = Some((topic_public.clone(), fingerprint(&topic_public)));
    snapshot.groups.insert(
        "A".into(),
        GroupKey {
            epoch: 1,
            topic_key: keyed.clone(),
            members: [
                ("1111".into(), Role::Both),
                ("1112".into(), Role::Subscriber),
            ]
            .into(),
            open_to_publishers: false,
            needs_rekey: false,
            removal_pending: false,
            member_keys: None,
        },
    );
    snapshot.groups.insert(
        "B".into(),
        GroupKey {
            epoch: 1,
            topic_key: keyed,
            members: [("1113".into(), Role::Both), ("1114".into(), Role::Both)].into(),
            open_to_publishers: true,
            needs_rekey: false,
            removal_pending: false,
            member_keys: None,
        },
    );
    Fleet {
        keys,
        topic,
        snapshot,
    }
}

impl Fleet {
    /// 1111 seals "to 1113" under 1114's key: the seeds' tampered directory.
    fn tampered(&self) -> Vec<u8> {
        let wrong = self.keys["1114"].to_public_key();
        seal_direct("1111", &self.keys["1111"], "1113", &wrong, 0, b"x")
            .unwrap()
            .to_bytes()
    }

    fn direct(&self, from: &str, to: &str) -> Vec<u8> {
        let to_key = self.keys[to].to_public_key();
        seal_direct(from, &self.keys[from], to, &to_key, 0, b"21.5C")
            .unwrap()
            .to_bytes()
    }
    fn topic(&self, from: &str, group: &str) -> Vec<u8> {
        seal_topic(
            from,
            &self.keys[from],
            group,
            &self.topic.to_public_key(),
            1,
            b"on",
        )
        .unwrap()
        .to_bytes()
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn reason(result: Result<Accepted, Refused>) -> Reason {
    result.expect_err("refused").reason
}

#[test]
fn a_direct_envelope_to_the_current_key_passes_once() {
    let fleet = fleet();
    let mut gate = Gate::new(Limits::default());
    let bytes = fleet.direct("1111", "1113");
    let accepted = gate.check("1111", &bytes, now(), &fleet.snapshot).unwrap();
    assert_eq!(accepted.target, Target::Device("1113".into()));
    assert_eq!(
        accepted.fingerprint,
        fleet.snapshot.devices["1113"].fingerprint
    );
    assert_eq!(accepted.envelope_hash, envelope_hash(&bytes));
    // The same envelope again is a replay.
    assert_eq!(
        reason(gate.check("1111", &bytes, now(), &fleet.snapshot)),
        Reason::Replay
    );
}

#[test]
fn an_envelope_sealed_to_another_key_is_a_key_mismatch() {
    let fleet = fleet();
    let mut gate = Gate::new(Limits::default());
    // 1111 seals "to 1113" under 1114's key: the seeds' tampered directory.
    let wrong = fleet.keys["1114"].to_public_key();
    let bytes = fleet.tampered();
    assert_eq!(
        reason(gate.check("1111", &bytes, now(), &fleet.snapshot)),
        Reason::KeyMismatch {
            presented: fingerprint(&wrong),
            expected: fleet.snapshot.devices["1113"].fingerprint,
        }
    );
}

#[test]
fn senders_and_targets_must_be_known_and_active() {
    let mut fleet = fleet();
    let mut gate = Gate::new(Limits::default());
    let to_1113 = fleet.direct("1111", "1113");
    let to_1113_again = fleet.direct("1111", "1113");
    let from_1113 = fleet.direct("1113", "1111");
    fleet.snapshot.devices.get_mut("1113").unwrap().status = DeviceStatus::Revoked;
    let t = now();
    assert_eq!(
        reason(gate.check("1111", &to_1113, t, &fleet.snapshot)),
        Reason::TargetNotActive
    );
    assert_eq!(
        reason(gate.check("1113", &from_1113, t, &fleet.snapshot)),
        Reason::SenderNotActive
    );
    fleet.snapshot.devices.remove("1113");
    // A genuine envelope's id is used once, whatever its outcome: the first copy is a replay.
    assert_eq!(
        reason(gate.check("1111", &to_1113, t, &fleet.snapshot)),
        Reason::Replay
    );
    assert_eq!(
        reason(gate.check("1111", &to_1113_again, t, &fleet.snapshot)),
        Reason::UnknownTarget
    );
    assert_eq!(
        reason(gate.check("1113", &from_1113, t, &fleet.snapshot)),
        Reason::UnknownSender
    );
}

#[test]
fn spoofed_senders_and_wrong_signatures_are_refused() {
    let mut fleet = fleet();
    let mut gate = Gate::new(Limits::default());
    let bytes = fleet.direct("1111", "1113");
    // Published on 1112's ingress topic while claiming 1111.
    assert_eq!(
        reason(gate.check("1112", &bytes, now(), &fleet.snapshot)),
        Reason::WrongIngress
    );
    // 1111's key on chain is not the one that signed (rotation the sender missed, or forgery).
    let other = fleet.keys["1112"].to_public_key();
    fleet.snapshot.devices.get_mut("1111").unwrap().public_key = other;
    assert_eq!(
        reason(gate.check("1111", &bytes, now(), &fleet.snapshot)),
        Reason::BadSignature
    );
}

#[test]
fn topic_envelopes_need_a_key_and_a_right_to_publish() {
    let mut fleet = fleet();
    let mut gate = Gate::new(Limits::default());
    // B is open to publishers: 1111, not a member, may publish.
    let to_b = fleet.topic("1111", "B");
    let accepted = gate.check("1111", &to_b, now(), &fleet.snapshot).unwrap();
    assert_eq!(accepted.target, Target::Group("B".into()));
    // A is closed: its subscriber 1112 and the outsider 1113 may not publish; 1111 (Both) may.
    assert_eq!(
        reason(gate.check("1112", &fleet.topic("1112", "A"), now(), &fleet.snapshot)),
        Reason::NotAllowed
    );
    assert_eq!(
        reason(gate.check("1113", &fleet.topic("1113", "A"), now(), &fleet.snapshot)),
        Reason::NotAllowed
    );
    assert!(gate
        .check("1111", &fleet.topic("1111", "A"), now(), &fleet.snapshot)
        .is_ok());
    // A group whose first key is not set yet, and one that does not exist.
    fleet.snapshot.groups.get_mut("B").unwrap().topic_key = None;
    assert_eq!(
        reason(gate.check("1111", &fleet.topic("1111", "B"), now(), &fleet.snapshot)),
        Reason::NoGroupKey
    );
    assert_eq!(
        reason(gate.check("1111", &fleet.topic("1111", "Z"), now(), &fleet.snapshot)),
        Reason::UnknownTarget
    );
}

#[test]
fn size_format_clock_and_rate_are_bounded() {
    let fleet = fleet();
    let limits = Limits {
        max_envelope: 2_000,
        rate_per_sec: 1,
        rate_burst: 2,
        ..Limits::default()
    };
    let mut gate = Gate::new(limits.clone());
    let t = now();
    assert_eq!(
        reason(gate.check("1111", &vec![0; 2_001], t, &fleet.snapshot)),
        Reason::TooLarge
    );
    assert_eq!(
        reason(gate.check("1111", b"None", t, &fleet.snapshot)),
        Reason::Malformed
    );
    let bytes = fleet.direct("1111", "1113");
    // Ten minutes early: outside the skew, whatever else holds.
    let mut gate = Gate::new(limits);
    assert_eq!(
        reason(gate.check("1111", &bytes, t + 10 * 60 * 1000, &fleet.snapshot)),
        Reason::StaleTimestamp
    );
    // A stale envelope spent no token: the burst of 2 passes, the third is over the rate.
    assert!(gate.check("1111", &bytes, t, &fleet.snapshot).is_ok());
    assert!(gate
        .check("1111", &fleet.direct("1111", "1113"), t, &fleet.snapshot)
        .is_ok());
    let again = fleet.direct("1111", "1113");
    assert_eq!(
        reason(gate.check("1111", &again, t, &fleet.snapshot)),
        Reason::RateLimited
    );
    // A second later a token is back.
    assert!(gate
        .check("1111", &again, t + 1_000, &fleet.snapshot)
        .is_ok());
}

#[test]
fn message_ids_are_forgotten_after_the_replay_window() {
    let fleet = fleet();
    let mut gate = Gate::new(Limits {
        replay_window_ms: 1_000,
        ..Limits::default()
    });
    let bytes = fleet.direct("1111", "1113");
    let t = now();
    assert!(gate.check("1111", &bytes, t, &fleet.snapshot).is_ok());
    assert_eq!(
        reason(gate.check("1111", &bytes, t + 999, &fleet.snapshot)),
        Reason::Replay
    );
    assert!(gate
        .check("1111", &bytes, t + 1_000, &fleet.snapshot)
        .is_ok());
}

#[test]
fn every_reason_has_a_distinct_code() {
    let codes: std::collections::HashSet<_> = Reason::CODES.iter().collect();
    assert_eq!(codes.len(), Reason::CODES.len());
}

#[test]
fn only_a_forward_the_bridge_never_finished_passes_again_whatever_the_dup_flag() {
    let fleet = fleet();
    let mut gate = Gate::new(Limits::default());
    let bytes = fleet.direct("1111", "1113");
    let t = now();
    let first = gate.check("1111", &bytes, t, &fleet.snapshot).unwrap();
    assert!(!first.redelivery);
    // Within a run every copy after the first is a replay: the gate has no DUP input at all.
    assert_eq!(
        reason(gate.check("1111", &bytes, t + 10, &fleet.snapshot)),
        Reason::Replay
    );
    // After a restart, an id the audit journal has and the replay journal lacks is open:
    // its one redelivery passes, flagged, and closes it.
    let seen = Seen {
        message_id: first.message_id,
        envelope_hash: first.envelope_hash,
        expiry_ms: first.expiry_ms,
    };
    let mut restarted = Gate::new(Limits::default());
    restarted.remember_open(seen);
    // Other bytes under the open id (re-signed, same id) are a replay.
    let first_header = Envelope::decode_bounded(&bytes).unwrap().header;
    let (other, _) = keymesh_device::envelope::seal_with(
        &mut rand::rngs::OsRng,
        first_header.message_id,
        first_header.timestamp_ms,
        keymesh_device::envelope::SealRequest {
            kind: Kind::Direct,
            sender: "1111",
            sender_key: &fleet.keys["1111"],
            target: "1113",
            target_key: &fleet.snapshot.devices["1113"].public_key,
            key_epoch: 0,
            payload: b"other",
        },
    )
    .unwrap();
    assert_eq!(
        reason(restarted.check("1111", &other.to_bytes(), t + 20, &fleet.snapshot)),
        Reason::Replay
    );
    let again = restarted
        .check("1111", &bytes, t + 30, &fleet.snapshot)
        .unwrap();
    assert!(again.redelivery);
    assert_eq!(again.expiry_ms, first.expiry_ms);
    assert_eq!(
        reason(restarted.check("1111", &bytes, t + 40, &fleet.snapshot)),
        Reason::Replay
    );
}

#[test]
fn a_replayed_wrong_key_envelope_is_a_replay_and_its_id_is_used_once() {
    let fleet = fleet();
    let mut gate = Gate::new(Limits::default());
    let wrong = fleet.keys["1114"].to_public_key();
    let bytes = fleet.tampered();
    let t = now();
    let first = gate.check("1111", &bytes, t, &fleet.snapshot).unwrap_err();
    assert!(matches!(first.reason, Reason::KeyMismatch { .. }));
    assert_eq!(
        first.consumed.map(|s| s.envelope_hash),
        Some(envelope_hash(&bytes))
    );
    for n in 0..50 {
        let replay = gate
            .check("1111", &bytes, t + n, &fleet.snapshot)
            .unwrap_err();
        assert_eq!(replay.reason, Reason::Replay);
        assert!(replay.consumed.is_none());
    }
    // A stale copy is refused for its time before its key is looked at.
    let stale = seal_direct("1111", &fleet.keys["1111"], "1113", &wrong, 0, b"y")
        .unwrap()
        .to_bytes();
    assert_eq!(
        reason(gate.check("1111", &stale, t + 60 * 60 * 1000, &fleet.snapshot)),
        Reason::StaleTimestamp
    );
}

#[test]
fn junk_and_replays_claiming_a_sender_do_not_spend_its_budget() {
    let fleet = fleet();
    let mut gate = Gate::new(Limits {
        rate_per_sec: 1,
        rate_burst: 2,
        ..Limits::default()
    });
    let t = now();
    let honest = fleet.direct("1111", "1113");
    gate.check("1111", &honest, t, &fleet.snapshot).unwrap();
    // Signed by 1112 while claiming 1111, and replays of 1111's real envelope.
    let junk = seal_direct(
        "1111",
        &fleet.keys["1112"],
        "1113",
        &fleet.keys["1113"].to_public_key(),
        0,
        b"junk",
    )
    .unwrap()
    .to_bytes();
    for _ in 0..100 {
        assert_eq!(
            reason(gate.check("1111", &junk, t, &fleet.snapshot)),
            Reason::BadSignature
        );
        assert_eq!(
            reason(gate.check("1111", &honest, t, &fleet.snapshot)),
            Reason::Replay
        );
    }
    // 1111's second token is still there.
    assert!(gate
        .check("1111", &fleet.direct("1111", "1113"), t, &fleet.snapshot)
        .is_ok());
}

#[test]
fn refusal_notices_are_budgeted_per_registered_sender() {
    let fleet = fleet();
    let mut gate = Gate::new(Limits::default());
    let t = now();
    assert!(!gate.may_notify("9999", t, &fleet.snapshot));
    let sent = (0..100)
        .filter(|_| gate.may_notify("1111", t, &fleet.snapshot))
        .count();
    assert_eq!(sent, NOTICE_BURST as usize);
    assert!(gate.may_notify("1112", t, &fleet.snapshot));
    assert!(gate.may_notify("1111", t + 1_000, &fleet.snapshot));
}

#[test]
fn the_replay_window_is_bounded() {
    let fleet = fleet();
    let mut gate = Gate::new(Limits {
        max_remembered: 3,
        ..Limits::default()
    });
    let t = now();
    for _ in 0..3 {
        gate.check("1111", &fleet.direct("1111", "1113"), t, &fleet.snapshot)
            .unwrap();
    }
    assert_eq!(
        reason(gate.check("1111", &fleet.direct("1111", "1113"), t, &fleet.snapshot)),
        Reason::RateLimited
    );
}

#[test]
fn remembered_ids_carry_over_to_a_new_gate() {
    let fleet = fleet();
    let limits = Limits {
        replay_window_ms: 1_000,
        ..Limits::default()
    };
    let mut before = Gate::new(limits.clone());
    let bytes = fleet.direct("1111", "1113");
    let t = now();
    before.check("1111", &bytes, t, &fleet.snapshot).unwrap();
    let remembered = before.remembered(t);
    assert_eq!(remembered.len(), 1);
    assert_eq!(remembered[0].envelope_hash, envelope_hash(&bytes));
    let mut after = Gate::new(limits);
    for seen in remembered {
        after.remember(seen);
    }
    assert_eq!(
        reason(after.check("1111", &bytes, t + 500, &fleet.snapshot)),
        Reason::Replay
    );
    assert!(after.remembered(t + 1_000).is_empty());
}

#[test]
fn a_stale_or_unlisted_view_refuses_everything_before_reading_it() {
    let mut fleet = fleet();
    let gate = Gate::new(Limits {
        max_staleness_ms: 30_000,
        ..Limits::default()
    });
    let bytes = fleet.direct("1111", "1113");
    let at = fleet.snapshot.timestamp_ms;
    let standing = |gate: &Gate, snapshot: &Snapshot, caught_up, now| {
        gate.check_standing("1111", &bytes, snapshot, caught_up, now)
            .err()
            .map(|r| r.reason)
    };
    assert_eq!(standing(&gate, &fleet.snapshot, true, at + 30_000), None);
    assert_eq!(
        standing(&gate, &fleet.snapshot, true, at + 30_001),
        Some(Reason::StaleState)
    );
    assert_eq!(
        standing(&gate, &fleet.snapshot, false, at),
        Some(Reason::StaleState)
    );
    // Junk is refused the same way, and the notice still names what could be read.
    let refused = gate
        .check_standing("1111", b"junk", &fleet.snapshot, false, at)
        .unwrap_err();
    assert_eq!(
        (refused.reason, refused.message_id),
        (Reason::StaleState, None)
    );
    let refused = gate
        .check_standing("1111", &bytes, &fleet.snapshot, false, at)
        .unwrap_err();
    assert_eq!(refused.target, Some(Target::Device("1113".into())));
    assert!(refused.consumed.is_none());
    fleet.snapshot.bridge_listed = false;
    assert_eq!(
        standing(&gate, &fleet.snapshot, true, at),
        Some(Reason::BridgeNotListed)
    );
}

#[test]
fn after_a_removal_the_old_epoch_is_refused_until_the_next_is_set() {
    let mut fleet = fleet();
    let mut gate = Gate::new(Limits::default());
    if let Some(b) = fleet.snapshot.groups.get_mut("B") {
        b.removal_pending = true;
    }
    let bytes = fleet.topic("1113", "B");
    assert_eq!(
        reason(gate.check("1113", &bytes, now(), &fleet.snapshot)),
        Reason::RekeyPending
    );
    // A group without a pending removal is unaffected.
    let bytes = fleet.topic("1111", "A");
    assert!(gate.check("1111", &bytes, now(), &fleet.snapshot).is_ok());
}

#[test]
fn a_forgotten_id_is_checked_afresh() {
    let fleet = fleet();
    let mut gate = Gate::new(Limits::default());
    let bytes = fleet.direct("1111", "1113");
    let accepted = gate.check("1111", &bytes, now(), &fleet.snapshot).unwrap();
    gate.forget(&accepted.message_id);
    assert!(gate.check("1111", &bytes, now(), &fleet.snapshot).is_ok());
}

#[test]
fn a_target_refusal_probed_on_old_state_uses_nothing_up_and_passes_on_newer_state() {
    let fleet = fleet();
    let mut gate = Gate::new(Limits::default());
    // Sealed to 1114's key "for 1113": a mismatch now, and the right key once 1113 rotates
    // to that key in a block the cache has not applied yet.
    let bytes = fleet.tampered();
    let genuine = authenticate(gate.limits(), "1111", &bytes, &fleet.snapshot).unwrap();
    let probed = target_refusal(&genuine, &fleet.snapshot).expect("a mismatch on old state");
    assert!(probed.may_pass_on_newer_state(), "{probed:?}");

    let mut newer = fleet.snapshot.clone();
    newer.block_number += 1;
    newer.devices.insert(
        "1113".into(),
        DeviceKey::active(fleet.keys["1114"].to_public_key()),
    );
    let genuine = authenticate(gate.limits(), "1111", &bytes, &newer).unwrap();
    assert_eq!(target_refusal(&genuine, &newer), None);
    // The probe kept no state: the message id is still unused.
    let accepted = gate.admit("1111", genuine, now(), &newer).unwrap();
    assert_eq!(accepted.target, Target::Device("1113".into()));
}

#[test]
fn only_refusals_newer_chain_state_can_change_are_worth_waiting_for() {
    let mismatch = Reason::KeyMismatch {
        presented: [1; 32],
        expected: [2; 32],
    };
    for reason in [
        mismatch,
        Reason::NoGroupKey,
        Reason::UnknownTarget,
        Reason::UnknownSender,
        Reason::BadSignature,
    ] {
        assert!(reason.may_pass_on_newer_state(), "{reason:?}");
    }
    for reason in [
        Reason::Replay,
        Reason::TooLarge,
        Reason::Malformed,
        Reason::RateLimited,
        Reason::StaleTimestamp,
        Reason::StaleState,
        Reason::WrongIngress,
    ] {
        assert!(!reason.may_pass_on_newer_state(), "{reason:?}");
    }
}
