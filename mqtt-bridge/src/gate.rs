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
    /// Rotations so far: 0 for the registered key. Devices refresh a cached key whose epoch
    /// is behind this one.
    pub epoch: u32,
}

impl DeviceKey {
    /// An active device holding `public_key`, its fingerprint computed the way the chain does.
    pub fn active(public_key: RsaPublicKey) -> Self {
        Self {
            fingerprint: keymesh_device::fingerprint(&public_key),
            public_key,
            status: DeviceStatus::Active,
            epoch: 0,
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
    /// A reader left (a member removed or revoked, a member's key rotated out, a member
    /// suspended) after the view the current key was made for: it may hold that key, so
    /// nothing is sent under it until the next epoch. The runtime's `departed_at` rule.
    pub removal_pending: bool,
    /// What members need to read the current epoch; shared, since snapshots are copied per
    /// block and this changes only with the epoch or the members.
    pub member_keys: Option<std::sync::Arc<MemberKeys>>,
}

/// The current epoch's keys as members fetch them from the directory.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MemberKeys {
    /// The topic private key under the epoch key (SCALE `SealedTopicKey`).
    pub sealed_private_key: Vec<u8>,
    /// Each member's RSA-OAEP wrap of the epoch key; a member that joined after the epoch
    /// was set has none.
    pub wraps: HashMap<String, Vec<u8>>,
}

/// The keys of one finalized block.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub block_number: u32,
    pub block_hash: [u8; 32],
    /// The block's timestamp (`Timestamp.Now`), in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Whether the exchange log lists this bridge's account as a bridge in this block.
    pub bridge_listed: bool,
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
    /// Most message ids remembered at once; past it, new envelopes wait (`RateLimited`).
    pub max_remembered: usize,
    /// Oldest finalized head, by its timestamp against the bridge's clock, that the gate
    /// still forwards on (`StaleState` past it).
    pub max_staleness_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_envelope: keymesh_device::MAX_ENVELOPE_LEN,
            replay_window_ms: 10 * 60 * 1000,
            max_skew_ms: 5 * 60 * 1000,
            rate_per_sec: 50,
            rate_burst: 200,
            max_remembered: 2_000_000,
            max_staleness_ms: 30_000,
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
    /// The bridge's view of finalized state is not current: it is not connected and caught
    /// up, or its finalized head is older than `max_staleness`.
    StaleState,
    /// A member left the group and the epoch that shuts it out is not set yet.
    RekeyPending,
    /// The exchange log no longer lists this bridge.
    BridgeNotListed,
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
            Reason::StaleState => "StaleState",
            Reason::RekeyPending => "RekeyPending",
            Reason::BridgeNotListed => "BridgeNotListed",
        }
    }

    /// Whether finalized state newer than the snapshot checked against may let the envelope
    /// pass: a key rotated, a device registered or reinstated, a group's key or members set,
    /// the bridge listed again. Form, freshness and rate refusals do not depend on it, and
    /// a stale view is `StaleState`'s own wait.
    pub fn may_pass_on_newer_state(&self) -> bool {
        matches!(
            self,
            Reason::UnknownSender
                | Reason::SenderNotActive
                | Reason::BadSignature
                | Reason::UnknownTarget
                | Reason::TargetNotActive
                | Reason::NoGroupKey
                | Reason::KeyMismatch { .. }
                | Reason::NotAllowed
                | Reason::RekeyPending
                | Reason::BridgeNotListed
        )
    }

    /// Every code, for metrics.
    pub const CODES: [&'static str; 17] = [
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
        "StaleState",
        "RekeyPending",
        "BridgeNotListed",
    ];
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
    /// The bridge forwarded this very envelope before a restart and never finished it
    /// (its own journals say so, not the MQTT `DUP` flag): forward it again, but it is not a
    /// new exchange.
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
    /// The message id this refusal used up (the envelope was genuine and fresh), which the
    /// caller journals so that a restart still refuses its replays.
    pub consumed: Option<Seen>,
}

/// Token buckets by key: `burst` deep, refilled at `per_sec`. Keys are registered device
/// ids only, so the map is as bounded as the chain's device set.
pub struct TokenBuckets {
    per_ms: f64,
    burst: f64,
    buckets: HashMap<String, (f64, u64)>,
}

impl TokenBuckets {
    pub fn new(per_sec: u32, burst: u32) -> Self {
        TokenBuckets {
            per_ms: f64::from(per_sec) / 1000.0,
            burst: f64::from(burst),
            buckets: HashMap::new(),
        }
    }

    /// Takes a token from `key`'s bucket at `now_ms`, if it has one.
    pub fn take(&mut self, key: &str, now_ms: u64) -> bool {
        if !self.buckets.contains_key(key) {
            self.buckets.insert(key.to_string(), (self.burst, now_ms));
        }
        let Some((tokens, last)) = self.buckets.get_mut(key) else {
            return false;
        };
        *tokens = (*tokens + now_ms.saturating_sub(*last) as f64 * self.per_ms).min(self.burst);
        *last = now_ms;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A remembered message id. `open` marks one forwarded before a restart whose hand-over was
/// never finished: the broker will hand it over again, and that one copy may pass.
#[derive(Clone, Copy, Debug)]
struct Remembered {
    seen: Seen,
    open: bool,
}

/// Refusal notices a sender may trigger: enough to tell a device what is wrong, too few for
/// a flood to turn the bridge into an amplifier.
const NOTICES_PER_SEC: u32 = 5;
const NOTICE_BURST: u32 = 20;

/// The gate's memory: message ids used, each sender's rate bucket and notice budget.
pub struct Gate {
    limits: Limits,
    seen: HashMap<[u8; 16], Remembered>,
    seen_order: VecDeque<([u8; 16], u64)>,
    rates: TokenBuckets,
    notices: TokenBuckets,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What the first checks ([`authenticate`]) learn of an envelope that is genuine (signed
/// by its sender); [`Gate::admit`] takes it from there.
pub struct Genuine {
    envelope: Envelope,
    sender: String,
    target: Target,
    hash: [u8; 32],
}

impl Gate {
    pub fn new(limits: Limits) -> Self {
        Gate {
            rates: TokenBuckets::new(limits.rate_per_sec, limits.rate_burst),
            notices: TokenBuckets::new(NOTICES_PER_SEC, NOTICE_BURST),
            limits,
            seen: HashMap::new(),
            seen_order: VecDeque::new(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Remembers a message id used before a restart (from the replay journal).
    pub fn remember(&mut self, seen: Seen) {
        self.insert(seen, false);
    }

    /// Remembers a message id forwarded before a restart whose hand-over was not finished
    /// (in the audit journal, not in the replay journal): the broker's one redelivery of that
    /// very envelope is forwarded again.
    pub fn remember_open(&mut self, seen: Seen) {
        self.insert(seen, true);
    }

    fn insert(&mut self, seen: Seen, open: bool) {
        self.seen.insert(seen.message_id, Remembered { seen, open });
        self.seen_order.push_back((seen.message_id, seen.expiry_ms));
    }

    /// The message ids still remembered at `now_ms`, oldest first.
    pub fn remembered(&mut self, now_ms: u64) -> Vec<Seen> {
        self.forget_expired(now_ms);
        self.seen_order
            .iter()
            .filter_map(|(id, expiry)| {
                self.seen
                    .get(id)
                    .filter(|r| r.seen.expiry_ms == *expiry)
                    .map(|r| r.seen)
            })
            .collect()
    }

    /// May the bridge publish a refusal notice to `sender` now? Only registered devices get
    /// notices (no one else can read a status topic), each within its own budget.
    pub fn may_notify(&mut self, sender: &str, now_ms: u64, snapshot: &Snapshot) -> bool {
        snapshot.devices.contains_key(sender) && self.notices.take(sender, now_ms)
    }

    /// Whether the bridge may forward at all, before anything of `bytes` is trusted: its
    /// view must be caught up with the node (`caught_up`) and its finalized head no older
    /// than `max_staleness`, and the chain must still list it as a bridge. Keeps no state.
    pub fn check_standing(
        &self,
        ingress_sender: &str,
        bytes: &[u8],
        snapshot: &Snapshot,
        caught_up: bool,
        now_ms: u64,
    ) -> Result<(), Refused> {
        let age_ms = now_ms.saturating_sub(snapshot.timestamp_ms);
        let (reason, detail) = if !caught_up {
            let detail = format!(
                "not caught up with finalized state (last applied #{})",
                snapshot.block_number
            );
            (Reason::StaleState, detail)
        } else if age_ms > self.limits.max_staleness_ms {
            let detail = format!(
                "finalized head #{} is {age_ms} ms old, limit {} ms",
                snapshot.block_number, self.limits.max_staleness_ms
            );
            (Reason::StaleState, detail)
        } else if !snapshot.bridge_listed {
            let detail = format!(
                "the exchange log does not list this bridge at #{}",
                snapshot.block_number
            );
            (Reason::BridgeNotListed, detail)
        } else {
            return Ok(());
        };
        // Unverified, but only the sender itself can publish on its ingress topic (the
        // front's policy), and it is told only what it sent.
        let header = Envelope::decode_bounded(bytes).ok().map(|e| e.header);
        Err(Refused {
            reason,
            reported_to: ingress_sender.to_string(),
            target: header.as_ref().map(|h| match h.kind {
                Kind::Direct => Target::Device(text(&h.target)),
                Kind::Topic => Target::Group(text(&h.target)),
            }),
            message_id: header.map(|h| h.message_id),
            detail,
            consumed: None,
        })
    }

    /// Forgets a message id the caller could not make durable, so that the envelope's
    /// retry is checked afresh rather than refused as its own replay.
    pub fn forget(&mut self, message_id: &[u8; 16]) {
        self.seen.remove(message_id);
    }

    /// Checks `bytes`, published on the ingress topic of `ingress_sender`, against
    /// `snapshot` at time `now_ms`.
    ///
    /// The order is what keeps outsiders from spending anyone's budget: the sender's
    /// signature first; then freshness (timestamp, then message id), so a replay is refused
    /// as `Replay` before its key is looked at and logs nothing on chain again; only then is
    /// the sender's rate charged, and the id used up; the target and its key come last.
    pub fn check(
        &mut self,
        ingress_sender: &str,
        bytes: &[u8],
        now_ms: u64,
        snapshot: &Snapshot,
    ) -> Result<Accepted, Refused> {
        let genuine = authenticate(&self.limits, ingress_sender, bytes, snapshot)?;
        self.admit(ingress_sender, genuine, now_ms, snapshot)
    }

    /// The checks of [`Gate::check`] that keep state, on an envelope [`authenticate`]
    /// passed against the same `snapshot`: freshness, the replay window, the sender's rate,
    /// then the target and its key.
    pub fn admit(
        &mut self,
        ingress_sender: &str,
        genuine: Genuine,
        now_ms: u64,
        snapshot: &Snapshot,
    ) -> Result<Accepted, Refused> {
        let refuse = |reason: Reason, detail: String, consumed: Option<Seen>| Refused {
            reason,
            reported_to: ingress_sender.to_string(),
            target: Some(genuine.target.clone()),
            message_id: Some(genuine.envelope.header.message_id),
            detail,
            consumed,
        };
        let header = &genuine.envelope.header;
        if header.timestamp_ms.abs_diff(now_ms) > self.limits.max_skew_ms {
            let detail = format!(
                "timestamp {} is more than {} ms from {now_ms}",
                header.timestamp_ms, self.limits.max_skew_ms
            );
            return Err(refuse(Reason::StaleTimestamp, detail, None));
        }
        self.forget_expired(now_ms);
        let redelivery = match self.seen.get(&header.message_id) {
            Some(r) if r.open && r.seen.envelope_hash == genuine.hash => Some(r.seen),
            Some(_) => {
                let detail = format!("message {} seen before", hex::encode(header.message_id));
                return Err(refuse(Reason::Replay, detail, None));
            }
            None => None,
        };
        if !self.rates.take(&genuine.sender, now_ms) {
            let detail = format!("{} is over its rate", genuine.sender);
            return Err(refuse(Reason::RateLimited, detail, None));
        }
        let (seen, consumed) = match redelivery {
            Some(seen) => {
                self.insert(seen, false);
                (seen, None)
            }
            None => {
                if self.seen.len() >= self.limits.max_remembered {
                    let detail = "the replay window is full; retry later".to_string();
                    return Err(refuse(Reason::RateLimited, detail, None));
                }
                let seen = Seen {
                    message_id: header.message_id,
                    envelope_hash: genuine.hash,
                    expiry_ms: now_ms.saturating_add(self.limits.replay_window_ms),
                };
                self.insert(seen, false);
                (seen, Some(seen))
            }
        };
        let fingerprint = target_key(&genuine, snapshot)
            .map_err(|(reason, detail)| refuse(reason, detail, consumed))?;
        Ok(Accepted {
            sender: genuine.sender,
            target: genuine.target,
            fingerprint,
            envelope_hash: genuine.hash,
            message_id: seen.message_id,
            expiry_ms: seen.expiry_ms,
            redelivery: redelivery.is_some(),
        })
    }

    fn forget_expired(&mut self, now_ms: u64) {
        while let Some((id, expiry)) = self.seen_order.front().copied() {
            if expiry > now_ms {
                break;
            }
            self.seen_order.pop_front();
            if self
                .seen
                .get(&id)
                .is_some_and(|r| r.seen.expiry_ms == expiry)
            {
                self.seen.remove(&id);
            }
        }
    }
}

/// Size, form, ingress, sender and signature: what anyone can get wrong, checked without
/// keeping any state, so the forward loop runs it on any core ahead of the envelope's turn.
pub fn authenticate(
    limits: &Limits,
    ingress_sender: &str,
    bytes: &[u8],
    snapshot: &Snapshot,
) -> Result<Genuine, Refused> {
    let refuse = |reason: Reason, target: Option<Target>, id, detail: String| Refused {
        reason,
        reported_to: ingress_sender.to_string(),
        target,
        message_id: id,
        detail,
        consumed: None,
    };
    if bytes.len() > limits.max_envelope {
        let detail = format!("{} bytes, limit {}", bytes.len(), limits.max_envelope);
        return Err(refuse(Reason::TooLarge, None, None, detail));
    }
    let envelope = Envelope::decode_bounded(bytes)
        .map_err(|e| refuse(Reason::Malformed, None, None, e.to_string()))?;
    let header = &envelope.header;
    let id = Some(header.message_id);
    let sender = text(&header.sender);
    let target_id = text(&header.target);
    let target = match header.kind {
        Kind::Direct => Target::Device(target_id),
        Kind::Topic => Target::Group(target_id),
    };
    let refuse = |reason, detail| refuse(reason, Some(target.clone()), id, detail);
    if sender != ingress_sender {
        return Err(refuse(
            Reason::WrongIngress,
            format!("claims sender {sender:?} on the ingress topic of {ingress_sender:?}"),
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
    Ok(Genuine {
        hash: envelope_hash(bytes),
        envelope,
        sender,
        target,
    })
}

/// Why `genuine` would be refused for its target and key at `snapshot`, if it would. Keeps
/// no state: the caller decides whether to wait for newer state before [`Gate::admit`].
pub fn target_refusal(genuine: &Genuine, snapshot: &Snapshot) -> Option<Reason> {
    target_key(genuine, snapshot)
        .err()
        .map(|(reason, _)| reason)
}

/// The fingerprint the envelope must be sealed to: the target device's current key, or the
/// group's current topic key if the sender may publish there.
fn target_key(genuine: &Genuine, snapshot: &Snapshot) -> Result<Fingerprint, (Reason, String)> {
    let expected = match &genuine.target {
        Target::Device(device) => match snapshot.devices.get(device) {
            None => return Err((Reason::UnknownTarget, format!("no device {device:?}"))),
            Some(d) if d.status != DeviceStatus::Active => {
                return Err((
                    Reason::TargetNotActive,
                    format!("{device} is {:?}", d.status),
                ))
            }
            Some(d) => d.fingerprint,
        },
        Target::Group(group) => {
            let Some(g) = snapshot.groups.get(group) else {
                return Err((Reason::UnknownTarget, format!("no group {group:?}")));
            };
            let Some((_, fingerprint)) = &g.topic_key else {
                return Err((Reason::NoGroupKey, format!("group {group} has no key yet")));
            };
            let sender = &genuine.sender;
            let may_publish =
                g.open_to_publishers || g.members.get(sender).is_some_and(|r| r.may_publish());
            if !may_publish {
                return Err((
                    Reason::NotAllowed,
                    format!("{sender} may not publish to group {group}"),
                ));
            }
            if g.removal_pending {
                return Err((
                    Reason::RekeyPending,
                    format!(
                        "a reader left group {group} (removed, revoked, rotated or \
                         suspended); epoch {} is readable by it until the next epoch is set",
                        g.epoch
                    ),
                ));
            }
            *fingerprint
        }
    };
    let presented = genuine.envelope.header.fingerprint;
    if presented != expected {
        let target = match &genuine.target {
            Target::Device(id) | Target::Group(id) => id,
        };
        return Err((
            Reason::KeyMismatch {
                presented,
                expected,
            },
            format!(
                "sealed to {} but {target}'s current key is {}",
                hex::encode(presented),
                hex::encode(expected)
            ),
        ));
    }
    Ok(expected)
}

#[cfg(test)]
mod tests;
