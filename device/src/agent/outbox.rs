//! Messages the agent sent and may still have to send again: the bridge refuses with
//! `KeyMismatch` when the recipient's key rotated between the agent's check and the gate
//! (or `RekeyPending` while a group's new epoch is being set). The agent then waits until
//! finalized state shows the new key, seals again and resends, a bounded number of times.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use serde::Deserialize;

/// Resends of one message at most.
pub const MAX_RESENDS: u32 = 3;
/// How long a sent message is kept for a possible resend.
pub const KEEP_FOR: Duration = Duration::from_secs(30);
/// Sent messages kept at most; the oldest go first.
pub const MAX_KEPT: usize = 1024;

/// Whom a message is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Device(String),
    Group(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Device(id) => write!(f, "device {id}"),
            Target::Group(id) => write!(f, "group {id}"),
        }
    }
}

/// A message as it was handed to the agent.
#[derive(Clone, Debug)]
pub struct Sent {
    pub target: Target,
    pub payload: Vec<u8>,
    /// 0 for the first send.
    pub attempt: u32,
    /// The message id of the first send.
    pub original: [u8; 16],
    /// The fingerprint it was sealed to.
    pub sealed_to: [u8; 32],
}

/// A refusal notice from the bridge (`km/v1/dev/<device>/status`).
#[derive(Clone, Debug, Deserialize)]
pub struct Notice {
    pub reason: String,
    pub message_id: Option<String>,
    #[serde(default)]
    pub detail: String,
    pub expected: Option<String>,
    #[serde(default)]
    pub block: u32,
}

impl Notice {
    /// Parses a notice; anything else on the status topic is not one.
    pub fn parse(bytes: &[u8]) -> Option<Notice> {
        serde_json::from_slice(bytes).ok()
    }

    /// The refused message's id.
    pub fn message_id(&self) -> Option<[u8; 16]> {
        let mut id = [0u8; 16];
        hex::decode_to_slice(self.message_id.as_deref()?, &mut id).ok()?;
        Some(id)
    }

    /// Whether sealing again to a newer key can get the message through.
    pub fn retryable(&self) -> bool {
        matches!(self.reason.as_str(), "KeyMismatch" | "RekeyPending")
    }
}

/// Sent messages by message id, bounded in number and age.
pub struct Outbox {
    sent: HashMap<[u8; 16], (Sent, Instant)>,
    order: VecDeque<[u8; 16]>,
}

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Outbox {
    pub fn new() -> Self {
        Outbox {
            sent: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Keeps `sent`, published as `id`, for a possible resend.
    pub fn keep(&mut self, id: [u8; 16], sent: Sent, now: Instant) {
        self.expire(now);
        while self.order.len() >= MAX_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.sent.remove(&old);
            }
        }
        self.order.push_back(id);
        self.sent.insert(id, (sent, now));
    }

    /// Takes the message a notice refers to, if it is still kept.
    pub fn take(&mut self, id: &[u8; 16]) -> Option<Sent> {
        self.sent.remove(id).map(|(sent, _)| sent)
    }

    fn expire(&mut self, now: Instant) {
        while let Some(id) = self.order.front() {
            match self.sent.get(id) {
                Some((_, at)) if now.duration_since(*at) < KEEP_FOR => break,
                _ => {
                    self.sent.remove(id);
                    self.order.pop_front();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(n: u8) -> Sent {
        Sent {
            target: Target::Device("1113".into()),
            payload: vec![n],
            attempt: 0,
            original: [n; 16],
            sealed_to: [0; 32],
        }
    }

    #[test]
    fn kept_messages_are_bounded_in_number_and_age() {
        let mut outbox = Outbox::new();
        let t0 = Instant::now();
        for n in 0..=255u8 {
            for m in 0..5u8 {
                let mut id = [n; 16];
                id[0] = m;
                outbox.keep(id, sent(n), t0);
            }
        }
        assert_eq!(outbox.sent.len(), MAX_KEPT);
        outbox.keep([9; 16], sent(9), t0 + KEEP_FOR + Duration::from_secs(1));
        assert_eq!(outbox.sent.len(), 1);
        assert_eq!(outbox.take(&[9; 16]).unwrap().payload, vec![9]);
        assert!(outbox.take(&[9; 16]).is_none());
    }

    #[test]
    fn notices_parse_and_only_key_changes_are_retried() {
        let id = hex::encode([7u8; 16]);
        let text = format!(
            r#"{{"reason":"KeyMismatch","message_id":"{id}","target":"1113","detail":"x","presented":"aa","expected":"bb","block":4}}"#
        );
        let notice = Notice::parse(text.as_bytes()).unwrap();
        assert!(notice.retryable());
        assert_eq!(notice.message_id(), Some([7; 16]));
        let replay = Notice::parse(
            br#"{"reason":"Replay","message_id":null,"target":null,"detail":"","block":1}"#,
        )
        .unwrap();
        assert!(!replay.retryable());
        assert_eq!(replay.message_id(), None);
        assert!(Notice::parse(b"garbage").is_none());
    }
}
