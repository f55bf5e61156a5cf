//! The agent's state, shared by the handle and the session task: keys, the directory view,
//! groups, the replay window and sent messages. Methods here do no I/O on the network; the
//! session publishes what they return.

use std::time::Instant;

use rsa::RsaPrivateKey;

use super::{
    entries::{self, EntryTopic},
    groups::{MemberChange, Memberships},
    keyring::{Keyring, SealingKey},
    open::{open_delivery, Arrival},
    outbox::{Notice, Outbox, Sent, Target, MAX_RESENDS},
    peer_cache::PeerCache,
    replay_window::{ReplayWindow, DEFAULT_WINDOW},
    AgentConfig, AgentError, AgentEvent,
};
use crate::{directory::DirectoryView, envelope, fingerprint, keys, mqtt};

/// A sealed envelope ready to publish.
pub struct Sealed {
    pub message_id: [u8; 16],
    pub bytes: Vec<u8>,
}

/// A refused message waiting for the key that will let it through.
struct Retry {
    sent: Sent,
    since: Instant,
}

/// How long a refused message waits for finalized state to show a newer key.
const RETRY_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

pub struct State {
    pub device: String,
    /// This device's keys, current first; the previous one still opens what was sealed to it.
    own_keys: Vec<RsaPrivateKey>,
    key_file: Option<std::path::PathBuf>,
    trusted: Vec<[u8; 32]>,
    directory: DirectoryView,
    keyring: Keyring,
    groups: Memberships,
    replay: ReplayWindow,
    outbox: Outbox,
    retries: Vec<Retry>,
    /// Publishes the broker has not acknowledged yet.
    pub unacked: usize,
    /// Events of the handle's calls, for the session to report.
    reported: Vec<AgentEvent>,
}

fn state_error(e: impl std::fmt::Display) -> AgentError {
    AgentError::State(e.to_string())
}

impl State {
    pub fn open(config: &AgentConfig) -> Result<State, AgentError> {
        std::fs::create_dir_all(&config.state_dir).map_err(|e| {
            AgentError::State(format!("state dir {}: {e}", config.state_dir.display()))
        })?;
        let cache = PeerCache::open(&config.state_dir.join("peers")).map_err(state_error)?;
        let replay = ReplayWindow::open(&config.state_dir.join("accepted.ids"), DEFAULT_WINDOW)
            .map_err(state_error)?;
        Ok(State {
            device: config.device.clone(),
            own_keys: vec![config.key.clone()],
            key_file: config.key_file.clone(),
            trusted: config.trusted_bridges.clone(),
            directory: DirectoryView::new(config.trusted_bridges.clone()),
            keyring: Keyring::new(cache),
            groups: Memberships::new(config.grace),
            replay,
            outbox: Outbox::new(),
            retries: Vec::new(),
            unacked: 0,
            reported: Vec::new(),
        })
    }

    /// The key connect proofs are signed with.
    pub fn login_key(&self) -> &RsaPrivateKey {
        &self.own_keys[0]
    }

    /// Whether the directory has shown `target` yet.
    pub fn knows(&self, target: &Target) -> bool {
        match target {
            Target::Device(id) => self.keyring.device(id).is_some(),
            Target::Group(id) => self.keyring.group(id).is_some(),
        }
    }

    /// Groups whose messages this device reads (to subscribe to after a new session).
    pub fn reading(&self) -> Vec<String> {
        self.groups.reading().map(str::to_string).collect()
    }

    pub fn use_key(&mut self, key: RsaPrivateKey) {
        let fp = fingerprint(&key.to_public_key());
        self.own_keys
            .retain(|k| fingerprint(&k.to_public_key()) != fp);
        self.own_keys.insert(0, key);
        self.own_keys.truncate(2);
    }

    /// Checks the target's key against finalized state, then seals: the seeds' "Check"
    /// before any ciphertext exists.
    pub fn seal(
        &mut self,
        target: &Target,
        payload: Vec<u8>,
        attempt: u32,
        original: Option<[u8; 16]>,
    ) -> Result<(String, Sealed), AgentError> {
        let me = self.device.clone();
        let (key, envelope) = match target {
            Target::Device(to) => {
                let key: SealingKey = self.keyring.recipient(to)?;
                if key.refreshed {
                    self.reported.push(AgentEvent::KeyRefreshed {
                        device: to.clone(),
                        epoch: key.epoch,
                    });
                }
                let env = envelope::seal_direct(
                    &me,
                    &self.own_keys[0],
                    to,
                    &key.key,
                    key.epoch,
                    &payload,
                )?;
                (key, env)
            }
            Target::Group(group) => {
                let key = self.keyring.topic(group)?;
                let env = envelope::seal_topic(
                    &me,
                    &self.own_keys[0],
                    group,
                    &key.key,
                    key.epoch,
                    &payload,
                )?;
                (key, env)
            }
        };
        let message_id = envelope.header.message_id;
        let sent = Sent {
            target: target.clone(),
            payload,
            attempt,
            original: original.unwrap_or(message_id),
            sealed_to: fingerprint(&key.key),
        };
        self.outbox.keep(message_id, sent, Instant::now());
        self.unacked += 1;
        Ok((
            mqtt::ingress_topic(&me),
            Sealed {
                message_id,
                bytes: envelope.to_bytes(),
            },
        ))
    }

    /// Takes a directory entry. Returns the events it caused and the group topics to
    /// subscribe to now.
    pub fn on_directory(&mut self, topic: &str, bytes: &[u8]) -> (Vec<AgentEvent>, Vec<String>) {
        let mut events = Vec::new();
        let mut subscribe = Vec::new();
        let entry = match self.directory.accept(topic, bytes) {
            Ok(entry) => entry,
            Err(e) => {
                events.push(undeliverable(topic, e));
                return (events, subscribe);
            }
        };
        let parsed = match EntryTopic::parse(topic) {
            Some(EntryTopic::Device(id)) => entries::device(topic, id, &entry.json)
                .map(|d| self.learn_device(id, d, &mut events)),
            Some(EntryTopic::Group(id)) => {
                entries::group(topic, id, &entry.json).map(|g| self.keyring.learn_group(id, g))
            }
            Some(EntryTopic::Member { group, device }) if device == self.device => {
                entries::member(topic, (group, device), &entry.json).map(|m| {
                    self.learn_membership(group, &m, &mut events, &mut subscribe);
                })
            }
            _ => Ok(()),
        };
        if let Err(e) = parsed {
            events.push(undeliverable(topic, e));
        }
        (events, subscribe)
    }

    fn learn_device(
        &mut self,
        id: &str,
        entry: entries::DeviceEntry,
        events: &mut Vec<AgentEvent>,
    ) {
        if id == self.device && fingerprint(&self.own_keys[0].to_public_key()) != entry.fingerprint
        {
            self.adopt_rotated_key(&entry, events);
        }
        self.keyring.learn_device(id, entry);
    }

    /// The directory shows a new key for this device (rotated by another process, which
    /// wrote it to the key file once it was finalized): read the key file again.
    ///
    /// `rotate` writes the new key to `<key>.next` before it submits it, and moves it to
    /// `<key>` only after finality, so both are looked at: whichever holds the key the
    /// directory shows is adopted.
    fn adopt_rotated_key(&mut self, entry: &entries::DeviceEntry, events: &mut Vec<AgentEvent>) {
        let Some(path) = &self.key_file else { return };
        let mut next = path.as_os_str().to_owned();
        next.push(".next");
        for candidate in [path.clone(), std::path::PathBuf::from(next)] {
            match keys::read_private(&candidate) {
                Ok(key) if fingerprint(&key.to_public_key()) == entry.fingerprint => {
                    self.use_key(key);
                    events.push(AgentEvent::OwnKeyRotated {
                        fingerprint: entry.fingerprint,
                    });
                    return;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("{}: {e}", candidate.display()),
            }
        }
        tracing::warn!("the directory shows a new key for this device that no key file holds");
    }

    fn learn_membership(
        &mut self,
        group: &str,
        entry: &entries::MemberEntry,
        events: &mut Vec<AgentEvent>,
        subscribe: &mut Vec<String>,
    ) {
        match self
            .groups
            .apply(group, entry, &self.own_keys, Instant::now())
        {
            Ok(MemberChange::Reading { epoch, joined }) => {
                subscribe.push(mqtt::group_topic(group));
                events.push(AgentEvent::GroupKey {
                    group: group.to_string(),
                    epoch,
                    joined,
                });
            }
            Ok(MemberChange::Removed { block }) => events.push(AgentEvent::Removed {
                group: group.to_string(),
                block,
            }),
            Ok(MemberChange::AwaitingKey { .. } | MemberChange::Unchanged) => {}
            Err(e) => events.push(undeliverable(&mqtt::group_topic(group), e)),
        }
    }

    /// Opens a delivery on this device's inbox or a group's topic.
    pub fn on_delivery(&mut self, topic: &str, bytes: &[u8]) -> AgentEvent {
        let group = topic
            .strip_prefix("km/v1/grp/")
            .and_then(|rest| rest.strip_suffix("/msgs"));
        let device = self.device.clone();
        let arrival = match group {
            Some(group) => Arrival::Group { group },
            None => Arrival::Inbox { device: &device },
        };
        let opened = open_delivery(
            bytes,
            &arrival,
            &self.trusted,
            &self.keyring,
            (&self.own_keys, &self.groups),
            Instant::now(),
        );
        let message = match opened {
            Ok(message) => message,
            Err(e) => return undeliverable(topic, e),
        };
        match self.replay.accept(message.message_id) {
            Ok(true) => AgentEvent::Message(message),
            Ok(false) => undeliverable(
                topic,
                format!("replay of message {}", hex::encode(message.message_id)),
            ),
            Err(e) => undeliverable(topic, e),
        }
    }

    /// Takes a refusal notice: a key change queues the message to be sealed again.
    pub fn on_notice(&mut self, bytes: &[u8]) -> Option<AgentEvent> {
        let notice = Notice::parse(bytes)?;
        let id = notice.message_id()?;
        let sent = self.outbox.take(&id);
        match sent {
            Some(sent) if notice.retryable() && sent.attempt < MAX_RESENDS => {
                self.retries.push(Retry {
                    sent,
                    since: Instant::now(),
                });
                None
            }
            _ => Some(AgentEvent::Refused {
                message_id: id,
                reason: notice.reason,
                detail: notice.detail,
            }),
        }
    }

    /// Seals again the refused messages whose target's key has changed since they were
    /// sealed, and gives up on those that waited too long.
    pub fn due_retries(&mut self) -> (Vec<(String, Sealed, AgentEvent)>, Vec<AgentEvent>) {
        let mut resend = Vec::new();
        let mut failed = Vec::new();
        let now = Instant::now();
        for retry in std::mem::take(&mut self.retries) {
            let sent = &retry.sent;
            let current = match &sent.target {
                Target::Device(id) => self.keyring.device(id).map(|d| d.fingerprint),
                Target::Group(id) => self
                    .keyring
                    .group(id)
                    .and_then(|g| g.topic_key.as_ref().map(|(_, f)| *f)),
            };
            if current.is_some_and(|f| f != sent.sealed_to) {
                match self.seal(
                    &sent.target,
                    sent.payload.clone(),
                    sent.attempt + 1,
                    Some(sent.original),
                ) {
                    Ok((topic, sealed)) => {
                        let event = AgentEvent::Resent {
                            original: sent.original,
                            message_id: sealed.message_id,
                            target: sent.target.clone(),
                            attempt: sent.attempt + 1,
                        };
                        resend.push((topic, sealed, event));
                    }
                    Err(e) => failed.push(AgentEvent::Refused {
                        message_id: sent.original,
                        reason: "NotResent".into(),
                        detail: e.to_string(),
                    }),
                }
            } else if now.duration_since(retry.since) > RETRY_WAIT {
                failed.push(AgentEvent::Refused {
                    message_id: sent.original,
                    reason: "KeyMismatch".into(),
                    detail: format!(
                        "finalized state showed no newer key of {} in {RETRY_WAIT:?}",
                        sent.target
                    ),
                });
            } else {
                self.retries.push(retry);
            }
        }
        (resend, failed)
    }

    /// Events the handle's calls caused since the last call.
    pub fn take_reported(&mut self) -> Vec<AgentEvent> {
        std::mem::take(&mut self.reported)
    }

    /// The broker acknowledged a publish.
    pub fn acked(&mut self) {
        self.unacked = self.unacked.saturating_sub(1);
    }
}

fn undeliverable(topic: &str, reason: impl std::fmt::Display) -> AgentEvent {
    AgentEvent::Undeliverable {
        topic: topic.to_string(),
        reason: reason.to_string(),
    }
}
