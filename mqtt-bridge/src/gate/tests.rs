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
        },
    );
    Fleet {
        keys,
        topic,
        snapshot,
    }
}

impl Fleet {
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
    let bytes = seal_direct("1111", &fleet.keys["1111"], "1113", &wrong, 0, b"x")
        .unwrap()
        .to_bytes();
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
    assert_eq!(
        reason(gate.check("1111", &to_1113, t, &fleet.snapshot)),
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
    // The burst of 2 is spent (one above); the next passes, the one after is over the rate.
    assert!(gate.check("1111", &bytes, t, &fleet.snapshot).is_ok());
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
fn a_broker_redelivery_of_the_same_envelope_passes_but_any_other_copy_is_a_replay() {
    let fleet = fleet();
    let mut gate = Gate::new(Limits::default());
    let bytes = fleet.direct("1111", "1113");
    let t = now();
    let first = gate.check("1111", &bytes, t, &fleet.snapshot).unwrap();
    assert!(!first.redelivery);
    // Marked DUP by the broker: the same bytes pass again, as a redelivery.
    let again = gate
        .check_handover(
            Handover::Redelivery,
            "1111",
            &bytes,
            t + 10,
            &fleet.snapshot,
        )
        .unwrap();
    assert!(again.redelivery);
    assert_eq!(again.expiry_ms, first.expiry_ms);
    // Without DUP it is a replay.
    assert_eq!(
        reason(gate.check("1111", &bytes, t + 20, &fleet.snapshot)),
        Reason::Replay
    );
    // DUP with other bytes under a seen id (re-signed, same id) is a replay too.
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
        reason(gate.check_handover(
            Handover::Redelivery,
            "1111",
            &other.to_bytes(),
            t + 30,
            &fleet.snapshot
        )),
        Reason::Replay
    );
    // A DUP of an envelope never seen is checked like any other.
    let fresh = fleet.direct("1111", "1113");
    assert!(
        !gate
            .check_handover(
                Handover::Redelivery,
                "1111",
                &fresh,
                t + 40,
                &fleet.snapshot
            )
            .unwrap()
            .redelivery
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
