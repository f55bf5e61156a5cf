//! Connect-time authentication: a device's `ConnectProof` checked against finalized state.
//! Pure: the caller supplies the CONNECT's fields, the snapshot and the clock.
//!
//! The checks run cheapest first, and nothing is remembered about a client until its
//! signature verifies, so an anonymous flood of CONNECTs grows no state. Each device may
//! hold at most [`NONCES_PER_DEVICE`] live nonces, so a registered device that churns
//! connections fills only its own share of the window, and the whole window is capped too.

use std::collections::{BTreeSet, HashMap, HashSet};

use keymesh_device::ConnectProof;
use keymesh_primitives::DeviceStatus;

use crate::gate::Snapshot;

/// Live nonces one device may hold inside the window.
pub const NONCES_PER_DEVICE: usize = 64;
/// Live nonces all devices together may hold.
pub const MAX_NONCES: usize = 262_144;
/// Separates a device id from a connection tag in a client id (`1111:listen`). Device ids
/// cannot contain it, so no client id of one device can be another device's.
pub const CLIENT_TAG_SEPARATOR: char = ':';

/// Why a CONNECT was refused; each maps to an MQTT 3.1.1 CONNACK code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectRefusal {
    #[error("anonymous: no username and password")]
    Anonymous,
    #[error("client id {client_id:?} is not the device id {device:?} (or {device}:<tag>)")]
    ClientId { client_id: String, device: String },
    #[error("password is not a connect proof: {0}")]
    Proof(String),
    #[error("connect proof names {claimed:?}, not the username {device:?}")]
    DeviceMismatch { claimed: String, device: String },
    #[error("connect proof is for audience {0:?}")]
    Audience(String),
    #[error("connect proof timestamp {timestamp_ms} is more than {max_skew_ms} ms from {now_ms}")]
    Stale {
        timestamp_ms: u64,
        now_ms: u64,
        max_skew_ms: u64,
    },
    #[error("no device {0:?} in finalized state")]
    UnknownDevice(String),
    #[error("device {device} is {status:?}")]
    NotActive {
        device: String,
        status: DeviceStatus,
    },
    #[error("connect proof signature does not verify under {0}'s registered key")]
    BadSignature(String),
    #[error("connect proof nonce already used")]
    Replayed,
    #[error("{0} holds too many fresh connect proofs; wait and retry")]
    TooManyProofs(String),
    #[error("the connect-proof window is full; retry later")]
    WindowFull,
    #[error("a last will is not allowed: devices publish only envelopes on their ingress")]
    LastWill,
}

impl ConnectRefusal {
    /// The CONNACK return code (MQTT 3.1.1 §3.2.2.3).
    pub fn connack_code(&self) -> rumqttc::ConnectReturnCode {
        use rumqttc::ConnectReturnCode as Code;
        match self {
            ConnectRefusal::ClientId { .. } => Code::BadClientId,
            ConnectRefusal::Anonymous
            | ConnectRefusal::Proof(_)
            | ConnectRefusal::DeviceMismatch { .. }
            | ConnectRefusal::Audience(_)
            | ConnectRefusal::Stale { .. }
            | ConnectRefusal::BadSignature(_)
            | ConnectRefusal::Replayed => Code::BadUserNamePassword,
            ConnectRefusal::UnknownDevice(_)
            | ConnectRefusal::NotActive { .. }
            | ConnectRefusal::LastWill => Code::NotAuthorized,
            ConnectRefusal::TooManyProofs(_) | ConnectRefusal::WindowFull => {
                Code::ServiceUnavailable
            }
        }
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ConnectRefusal::Anonymous => "anonymous",
            ConnectRefusal::ClientId { .. } => "client_id",
            ConnectRefusal::Proof(_) => "malformed_proof",
            ConnectRefusal::DeviceMismatch { .. } => "device_mismatch",
            ConnectRefusal::Audience(_) => "audience",
            ConnectRefusal::Stale { .. } => "stale",
            ConnectRefusal::UnknownDevice(_) => "unknown_device",
            ConnectRefusal::NotActive { .. } => "not_active",
            ConnectRefusal::BadSignature(_) => "bad_signature",
            ConnectRefusal::Replayed => "replayed",
            ConnectRefusal::TooManyProofs(_) | ConnectRefusal::WindowFull => "window_full",
            ConnectRefusal::LastWill => "last_will",
        }
    }

    /// Every label, for metrics.
    pub const LABELS: [&'static str; 12] = [
        "anonymous",
        "client_id",
        "malformed_proof",
        "device_mismatch",
        "audience",
        "stale",
        "unknown_device",
        "not_active",
        "bad_signature",
        "replayed",
        "window_full",
        "last_will",
    ];
}

/// The CONNECT fields authentication reads.
pub struct ConnectRequest<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    pub has_last_will: bool,
}

/// Checks connect proofs and remembers their nonces for as long as they could be replayed.
pub struct Authenticator {
    audience: String,
    max_skew_ms: u64,
    seen: HashSet<(String, [u8; 16])>,
    /// (expiry, device, nonce), soonest first.
    order: BTreeSet<(u64, String, [u8; 16])>,
    per_device: HashMap<String, usize>,
}

impl Authenticator {
    /// Accepts proofs for `audience` whose timestamps are within `max_skew_ms` of the clock.
    pub fn new(audience: String, max_skew_ms: u64) -> Self {
        Authenticator {
            audience,
            max_skew_ms,
            seen: HashSet::new(),
            order: BTreeSet::new(),
            per_device: HashMap::new(),
        }
    }

    /// Authenticates a CONNECT against `snapshot` at `now_ms`, returning the device id.
    pub fn authenticate(
        &mut self,
        request: &ConnectRequest<'_>,
        snapshot: &Snapshot,
        now_ms: u64,
    ) -> Result<String, ConnectRefusal> {
        let (Some(device), Some(password)) = (request.username, request.password) else {
            return Err(ConnectRefusal::Anonymous);
        };
        let client_device = request.client_id.split_once(CLIENT_TAG_SEPARATOR).map_or(
            request.client_id,
            |(device, tag)| {
                if keymesh_primitives::validate_id(tag.as_bytes()).is_ok() {
                    device
                } else {
                    ""
                }
            },
        );
        if client_device != device || keymesh_primitives::validate_id(device.as_bytes()).is_err() {
            return Err(ConnectRefusal::ClientId {
                client_id: request.client_id.to_string(),
                device: device.to_string(),
            });
        }
        if request.has_last_will {
            return Err(ConnectRefusal::LastWill);
        }
        let proof = ConnectProof::from_password(password)
            .map_err(|e| ConnectRefusal::Proof(e.to_string()))?;
        self.check_claim(&proof, device, now_ms)?;
        let key = match snapshot.devices.get(device) {
            None => return Err(ConnectRefusal::UnknownDevice(device.to_string())),
            Some(d) if d.status != DeviceStatus::Active => {
                return Err(ConnectRefusal::NotActive {
                    device: device.to_string(),
                    status: d.status,
                })
            }
            Some(d) => d,
        };
        proof
            .verify(&key.public_key)
            .map_err(|_| ConnectRefusal::BadSignature(device.to_string()))?;
        self.use_nonce(device, proof.claim.nonce, proof.claim.timestamp_ms, now_ms)?;
        Ok(device.to_string())
    }

    fn check_claim(
        &self,
        proof: &ConnectProof,
        device: &str,
        now_ms: u64,
    ) -> Result<(), ConnectRefusal> {
        if proof.device() != device {
            return Err(ConnectRefusal::DeviceMismatch {
                claimed: proof.device(),
                device: device.to_string(),
            });
        }
        if proof.audience() != self.audience {
            return Err(ConnectRefusal::Audience(proof.audience()));
        }
        if proof.claim.timestamp_ms.abs_diff(now_ms) > self.max_skew_ms {
            return Err(ConnectRefusal::Stale {
                timestamp_ms: proof.claim.timestamp_ms,
                now_ms,
                max_skew_ms: self.max_skew_ms,
            });
        }
        Ok(())
    }

    /// Takes the proof's nonce, which stays taken until the proof's timestamp leaves the
    /// skew window (after that the proof is stale anyway).
    fn use_nonce(
        &mut self,
        device: &str,
        nonce: [u8; 16],
        timestamp_ms: u64,
        now_ms: u64,
    ) -> Result<(), ConnectRefusal> {
        self.forget_expired(now_ms);
        let key = (device.to_string(), nonce);
        if self.seen.contains(&key) {
            return Err(ConnectRefusal::Replayed);
        }
        if self.per_device.get(device).copied().unwrap_or(0) >= NONCES_PER_DEVICE {
            return Err(ConnectRefusal::TooManyProofs(device.to_string()));
        }
        if self.seen.len() >= MAX_NONCES {
            return Err(ConnectRefusal::WindowFull);
        }
        // One past the last instant the proof is fresh.
        let expiry = timestamp_ms
            .saturating_add(self.max_skew_ms)
            .saturating_add(1);
        self.seen.insert(key);
        self.order.insert((expiry, device.to_string(), nonce));
        *self.per_device.entry(device.to_string()).or_insert(0) += 1;
        Ok(())
    }

    /// Nonces still remembered.
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }

    fn forget_expired(&mut self, now_ms: u64) {
        while self
            .order
            .first()
            .is_some_and(|(expiry, _, _)| *expiry <= now_ms)
        {
            let Some((_, device, nonce)) = self.order.pop_first() else {
                break;
            };
            self.seen.remove(&(device.clone(), nonce));
            if let Some(count) = self.per_device.get_mut(&device) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.per_device.remove(&device);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
