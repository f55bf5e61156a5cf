//! The gate: pure rules deciding whether an envelope may pass, against one snapshot of
//! finalized state. No I/O; the caller supplies the clock.

use std::collections::{HashMap, VecDeque};

use keymesh_device::{envelope_hash, Envelope, Kind};
use keymesh_primitives::{DeviceStatus, Fingerprint, Role};
use rsa::RsaPublicKey;

use crate::replay::Seen;

/// A device as the bridge's cache holds it.
#[derive(Clone, Debug)]
pub struct DeviceKey {
    pub public_key: RsaPublicKey,
    pub fingerprint: Fingerprint,
    pub status: DeviceStatus,
}

impl DeviceKey {
    /// An active device holding `public_key`, its fingerprint computed the way the chain does.
    pub fn active(public_key: RsaPublicKey) -> Self {
        Self {
            fingerprint: keymesh_device::fingerprint(&public_key),
            public_key,
            status: DeviceStatus::Active,
        }
    }
}

/// A group as the bridge's cache holds it.
#[derive(Clone, Debug, Default)]
pub struct GroupKey {
    pub epoch: u32,
    /// The topic key of the current epoch, once there is one.
    pub topic_key: Option<(RsaPublicKey, Fingerprint)>,
    pub members: HashMap<String, Role>,
    pub open_to_publishers: bool,
    /// A membership change since the current key asked for a new epoch that is not set yet.
    pub needs_rekey: bool,
}

/// The keys of one finalized block.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub block_number: u32,
    pub block_hash: [u8; 32],
    pub devices: HashMap<String, DeviceKey>,
    pub groups: HashMap<String, GroupKey>,
}

/// Bounds the gate enforces.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest envelope accepted, in bytes.
    pub max_envelope: usize,
    /// How long a message id is remembered.
    pub replay_window_ms: u64,
    /// How far an envelope's timestamp may be from the bridge's clock.
    pub max_skew_ms: u64,
    /// Sustained envelopes per second per sender.
    pub rate_per_sec: u32,
    /// Envelopes a sender may send in a burst.
    pub rate_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_envelope: keymesh_device::MAX_ENVELOPE_LEN,
            replay_window_ms: 10 * 60 * 1000,
            max_skew_ms: 5 * 60 * 1000,
            rate_per_sec: 50,
            rate_burst: 200,
        }
    }
}

/// Whom an envelope is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Target {
    Device(String),
    Group(String),
}

/// Why an envelope is refused. Each has its own code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    TooLarge,
    Malformed,
    WrongIngress,
    RateLimited,
    UnknownSender,
    SenderNotActive,
    BadSignature,
    UnknownTarget,
    TargetNotActive,
    NoGroupKey,
    KeyMismatch {
        presented: Fingerprint,
        expected: Fingerprint,
    },
    NotAllowed,
    StaleTimestamp,
    Replay,
}

impl Reason {
    /// The stable code published on the status topic and used as the metrics label.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::TooLarge => "TooLarge",
            Reason::Malformed => "Malformed",
            Reason::WrongIngress => "WrongIngress",
            Reason::RateLimited => "RateLimited",
            Reason::UnknownSender => "UnknownSender",
            Reason::SenderNotActive => "SenderNotActive",
            Reason::BadSignature => "BadSignature",
            Reason::UnknownTarget => "UnknownTarget",
            Reason::TargetNotActive => "TargetNotActive",
            Reason::NoGroupKey => "NoGroupKey",
            Reason::KeyMismatch { .. } => "KeyMismatch",
            Reason::NotAllowed => "NotAllowed",
            Reason::StaleTimestamp => "StaleTimestamp",
            Reason::Replay => "Replay",
        }
    }

    /// Every code, for metrics.
    pub const CODES: [&'static str; 14] = [
        "TooLarge",
        "Malformed",
        "WrongIngress",
        "RateLimited",
        "UnknownSender",
        "SenderNotActive",
        "BadSignature",
        "UnknownTarget",
        "TargetNotActive",
        "NoGroupKey",
        "KeyMismatch",
        "NotAllowed",
        "StaleTimestamp",
        "Replay",
    ];
}

/// How the broker handed an envelope to the bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handover {
    /// The first time (MQTT `DUP` clear).
    First,
    /// Again, after a hand-over that was not acknowledged (MQTT `DUP` set).
    Redelivery,
}

/// An envelope the gate let through.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub sender: String,
    pub target: Target,
    pub fingerprint: Fingerprint,
    pub envelope_hash: [u8; 32],
    pub message_id: [u8; 16],
    /// When the message id leaves the replay window.
    pub expiry_ms: u64,
    /// The broker handed the bridge this very envelope again (its first hand-over was not
    /// acknowledged before a crash or a dropped connection): forward it again, but it is
    /// not a new exchange.
    pub redelivery: bool,
}

/// An envelope the gate refused, with what could be read of it.
#[derive(Clone, Debug)]
pub struct Refused {
    pub reason: Reason,
    /// The ingress topic's sender: where the refusal is reported.
    pub reported_to: String,
    pub target: Option<Target>,
    pub message_id: Option<[u8; 16]>,
    pub detail: String,
}

/// The gate's memory: message ids seen, and each sender's rate bucket.
pub struct Gate {
    limits: Limits,
    seen: HashMap<[u8; 16], Seen>,
    seen_order: VecDeque<([u8; 16], u64)>,
    buckets: HashMap<String, (f64, u64)>,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Gate {
    pub fn new(limits: Limits) -> Self {
        Gate {
            limits,
            seen: HashMap::new(),
            seen_order: VecDeque::new(),
            buckets: HashMap::new(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Remembers a message id forwarded before a restart (from the replay journal).
    pub fn remember(&mut self, seen: Seen) {
        self.seen.insert(seen.message_id, seen);
        self.seen_order.push_back((seen.message_id, seen.expiry_ms));
    }

    /// The message ids still remembered at `now_ms`, oldest first.
    pub fn remembered(&mut self, now_ms: u64) -> Vec<Seen> {
        self.forget_expired(now_ms);
        self.seen_order
            .iter()
            .filter_map(|(id, expiry)| self.seen.get(id).filter(|s| s.expiry_ms == *expiry))
            .copied()
            .collect()
    }

    /// Checks `bytes`, published on the ingress topic of `ingress_sender`, against
    /// `snapshot` at time `now_ms`.
    pub fn check(
        &mut self,
        ingress_sender: &str,
        bytes: &[u8],
        now_ms: u64,
        snapshot: &Snapshot,
    ) -> Result<Accepted, Refused> {
        self.check_handover(Handover::First, ingress_sender, bytes, now_ms, snapshot)
    }

    /// Like [`Gate::check`], saying how the broker handed the envelope over. For a
    /// [`Handover::Redelivery`], the very envelope already forwarded passes again, flagged as
    /// a redelivery, as long as every other rule still holds against `snapshot`; any other
    /// copy of a seen id is a replay. Recipients drop the duplicate by message id.
    pub fn check_handover(
        &mut self,
        handover: Handover,
        ingress_sender: &str,
        bytes: &[u8],
        now_ms: u64,
        snapshot: &Snapshot,
    ) -> Result<Accepted, Refused> {
        let refuse = |reason: Reason, target: Option<Target>, id, detail: String| Refused {
            reason,
            reported_to: ingress_sender.to_string(),
            target,
            message_id: id,
            detail,
        };
        if bytes.len() > self.limits.max_envelope {
            let detail = format!("{} bytes, limit {}", bytes.len(), self.limits.max_envelope);
            return Err(refuse(Reason::TooLarge, None, None, detail));
        }
        let envelope = Envelope::decode_bounded(bytes)
            .map_err(|e| refuse(Reason::Malformed, None, None, e.to_string()))?;
        let header = &envelope.header;
        let id = Some(header.message_id);
        let sender = text(&header.sender);
        let target_id = text(&header.target);
        let target = match header.kind {
            Kind::Direct => Target::Device(target_id.clone()),
            Kind::Topic => Target::Group(target_id.clone()),
        };
        let refuse =
            |reason: Reason, detail: String| refuse(reason, Some(target.clone()), id, detail);
        if sender != ingress_sender {
            return Err(refuse(
                Reason::WrongIngress,
                format!("claims sender {sender:?} on the ingress topic of {ingress_sender:?}"),
            ));
        }
        if !self.take_token(&sender, now_ms) {
            return Err(refuse(
                Reason::RateLimited,
                format!("{sender} is over its rate"),
            ));
        }
        let sender_key = match snapshot.devices.get(&sender) {
            None => {
                return Err(refuse(
                    Reason::UnknownSender,
                    format!("no device {sender:?}"),
                ))
            }
            Some(d) if d.status != DeviceStatus::Active => {
                return Err(refuse(
                    Reason::SenderNotActive,
                    format!("{sender} is {:?}", d.status),
                ))
            }
            Some(d) => d,
        };
        if keymesh_device::envelope::verify_decoded(&envelope, &sender_key.public_key).is_err() {
            return Err(refuse(
                Reason::BadSignature,
                format!("signature does not verify under {sender}'s current key"),
            ));
        }
        let expected = match &target {
            Target::Device(device) => match snapshot.devices.get(device) {
                None => {
                    return Err(refuse(
                        Reason::UnknownTarget,
                        format!("no device {device:?}"),
                    ))
                }
                Some(d) if d.status != DeviceStatus::Active => {
                    return Err(refuse(
                        Reason::TargetNotActive,
                        format!("{device} is {:?}", d.status),
                    ))
                }
                Some(d) => d.fingerprint,
            },
            Target::Group(group) => match snapshot.groups.get(group) {
                None => return Err(refuse(Reason::UnknownTarget, format!("no group {group:?}"))),
                Some(g) => match &g.topic_key {
                    None => {
                        return Err(refuse(
                            Reason::NoGroupKey,
                            format!("group {group} has no key yet"),
                        ))
                    }
                    Some((_, fingerprint)) => {
                        let may_publish = g.open_to_publishers
                            || g.members.get(&sender).is_some_and(|r| r.may_publish());
                        if !may_publish {
                            return Err(refuse(
                                Reason::NotAllowed,
                                format!("{sender} may not publish to group {group}"),
                            ));
                        }
                        *fingerprint
                    }
                },
            },
        };
        if header.fingerprint != expected {
            return Err(refuse(
                Reason::KeyMismatch {
                    presented: header.fingerprint,
                    expected,
                },
                format!(
                    "sealed to {} but {target_id}'s current key is {}",
                    hex::encode(header.fingerprint),
                    hex::encode(expected)
                ),
            ));
        }
        if header.timestamp_ms.abs_diff(now_ms) > self.limits.max_skew_ms {
            return Err(refuse(
                Reason::StaleTimestamp,
                format!(
                    "timestamp {} is more than {} ms from {now_ms}",
                    header.timestamp_ms, self.limits.max_skew_ms
                ),
            ));
        }
        self.forget_expired(now_ms);
        let hash = envelope_hash(bytes);
        let accepted = |expiry_ms, redelivery| Accepted {
            sender: sender.clone(),
            target: target.clone(),
            fingerprint: expected,
            envelope_hash: hash,
            message_id: header.message_id,
            expiry_ms,
            redelivery,
        };
        if let Some(first) = self.seen.get(&header.message_id) {
            if handover == Handover::Redelivery && first.envelope_hash == hash {
                return Ok(accepted(first.expiry_ms, true));
            }
            return Err(refuse(
                Reason::Replay,
                format!("message {} seen before", hex::encode(header.message_id)),
            ));
        }
        let expiry_ms = now_ms.saturating_add(self.limits.replay_window_ms);
        self.remember(Seen {
            message_id: header.message_id,
            envelope_hash: hash,
            expiry_ms,
        });
        Ok(accepted(expiry_ms, false))
    }

    /// Token bucket per sender: `rate_burst` deep, refilled at `rate_per_sec`.
    fn take_token(&mut self, sender: &str, now_ms: u64) -> bool {
        let burst = f64::from(self.limits.rate_burst);
        let rate = f64::from(self.limits.rate_per_sec) / 1000.0;
        let (tokens, last) = self
            .buckets
            .entry(sender.to_string())
            .or_insert((burst, now_ms));
        *tokens = (*tokens + now_ms.saturating_sub(*last) as f64 * rate).min(burst);
        *last = now_ms;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn forget_expired(&mut self, now_ms: u64) {
        while let Some((id, expiry)) = self.seen_order.front().copied() {
            if expiry > now_ms {
                break;
            }
            self.seen_order.pop_front();
            if self.seen.get(&id).is_some_and(|s| s.expiry_ms == expiry) {
                self.seen.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests;
