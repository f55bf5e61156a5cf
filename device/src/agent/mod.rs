//! The device agent: what an application embeds to talk through KeyMesh with only its id,
//! its key and the broker.
//!
//! [`Agent`] is the handle (send, publish, flush); a task it starts drives the MQTT
//! connection (reconnecting with backoff and a fresh connect proof) and turns what arrives
//! into [`AgentEvent`]s. Keys come from the bridge's attested key directory, never from
//! files: device keys from `km/v1/dir/<device>`, group keys from `km/v1/dir/grp/<group>`,
//! and this device's epoch keys from `km/v1/dir/grp/<group>/member/<device>`. Every entry
//! must verify under a trusted bridge and be no older than the last one accepted.

pub mod entries;
pub mod groups;
pub mod keyring;
pub mod open;
pub mod outbox;
pub mod peer_cache;
pub mod replay_window;
mod session;
mod state;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use rsa::RsaPrivateKey;
use rumqttc::{AsyncClient, QoS};
use tokio::sync::{mpsc, watch};

pub use keyring::CheckError;
pub use open::{Message, OpenError};
pub use outbox::Target;

use crate::mqtt::{self, Endpoint};
use state::State;

/// How long a send waits for the directory to show its target.
pub const DIRECTORY_WAIT: Duration = Duration::from_secs(10);
/// Events buffered for the application; past it the agent stops reading the broker.
pub const EVENT_QUEUE: usize = 1024;

/// What the agent needs.
pub struct AgentConfig {
    pub endpoint: Endpoint,
    pub device: String,
    pub key: RsaPrivateKey,
    /// The key file, read again when the directory shows that this device rotated.
    pub key_file: Option<PathBuf>,
    pub audience: String,
    /// sr25519 public keys of the bridges whose attestations count.
    pub trusted_bridges: Vec<[u8; 32]>,
    /// Where the key cache and the replay window live.
    pub state_dir: PathBuf,
    /// Tells this connection from the device's others (the client id is `<device>:<tag>`).
    pub tag: String,
    /// How long a previous epoch's group key still opens messages.
    pub grace: Duration,
}

/// Why an agent operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(transparent)]
    Mqtt(#[from] mqtt::MqttError),
    #[error("{0}")]
    State(String),
    #[error("sealing failed: {0}")]
    Seal(#[from] crate::EnvelopeError),
    #[error("the agent has stopped")]
    Stopped,
    #[error("timed out after {0:?}: {1}")]
    Timeout(Duration, &'static str),
}

/// What the agent reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentEvent {
    /// Subscribed (again) after connecting.
    Connected,
    /// The connection dropped; the agent reconnects by itself.
    Disconnected { reason: String },
    /// A message opened.
    Message(Message),
    /// A delivery that did not open (or was a replay), and why.
    Undeliverable { topic: String, reason: String },
    /// The bridge refused a message for good.
    Refused {
        message_id: [u8; 16],
        reason: String,
        detail: String,
    },
    /// The bridge refused a message because the key changed; it was sealed again to the
    /// new key and resent.
    Resent {
        original: [u8; 16],
        message_id: [u8; 16],
        target: Target,
        attempt: u32,
    },
    /// The local copy of a key was replaced because the recipient rotated.
    KeyRefreshed { device: String, epoch: u32 },
    /// This device reads `group` from `epoch` on (`joined` on its first epoch).
    GroupKey {
        group: String,
        epoch: u32,
        joined: bool,
    },
    /// The chain removed this device from `group`.
    Removed { group: String, block: u32 },
    /// This device's own key changed to the one with this fingerprint.
    OwnKeyRotated { fingerprint: [u8; 32] },
}

/// The handle an application holds.
#[derive(Clone)]
pub struct Agent {
    client: AsyncClient,
    state: Arc<Mutex<State>>,
    updates: watch::Receiver<u64>,
}

impl Agent {
    /// Connects, subscribes, and starts following the directory. Returns once the broker
    /// acknowledged every subscription, with the stream of events.
    pub async fn start(
        config: AgentConfig,
    ) -> Result<(Agent, mpsc::Receiver<AgentEvent>), AgentError> {
        let state = Arc::new(Mutex::new(State::open(&config)?));
        let (updates_tx, updates) = watch::channel(0);
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let (client, ready) = session::spawn(&config, state.clone(), updates_tx, events_tx).await?;
        tokio::time::timeout(DIRECTORY_WAIT, ready)
            .await
            .map_err(|_| AgentError::Timeout(DIRECTORY_WAIT, "subscribing"))?
            .map_err(|_| AgentError::Stopped)?;
        Ok((
            Agent {
                client,
                state,
                updates,
            },
            events,
        ))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `ready` holds for the state, or `within` passes.
    async fn wait_until<T>(
        &self,
        within: Duration,
        what: &'static str,
        mut ready: impl FnMut(&mut State) -> Option<T>,
    ) -> Result<T, AgentError> {
        let mut updates = self.updates.clone();
        let wait = async {
            loop {
                if let Some(value) = ready(&mut self.state()) {
                    return Ok(value);
                }
                updates.changed().await.map_err(|_| AgentError::Stopped)?;
            }
        };
        tokio::time::timeout(within, wait)
            .await
            .map_err(|_| AgentError::Timeout(within, what))?
    }

    /// Seals `payload` to device `to` and publishes it. The recipient's key is checked
    /// against finalized state first; a stale or tampered local copy fails with
    /// [`CheckError::KeyMismatch`] and nothing is sealed. Returns the message id.
    pub async fn send(&self, to: &str, payload: &[u8]) -> Result<[u8; 16], AgentError> {
        self.submit(Target::Device(to.to_string()), payload).await
    }

    /// Seals `payload` to `group`'s current topic key and publishes it.
    pub async fn publish(&self, group: &str, payload: &[u8]) -> Result<[u8; 16], AgentError> {
        self.submit(Target::Group(group.to_string()), payload).await
    }

    async fn submit(&self, target: Target, payload: &[u8]) -> Result<[u8; 16], AgentError> {
        self.wait_until(DIRECTORY_WAIT, "the target's directory entry", |s| {
            s.knows(&target).then_some(())
        })
        .await
        .map_err(|e| match e {
            AgentError::Timeout(..) => AgentError::Check(CheckError::Unknown {
                target: target.to_string(),
            }),
            other => other,
        })?;
        let (topic, sealed) = self.state().seal(&target, payload.to_vec(), 0, None)?;
        let published = self
            .client
            .publish(topic, QoS::AtLeastOnce, false, sealed.bytes)
            .await;
        if let Err(e) = published {
            // Never queued, so no acknowledgement will come: `flush` must not wait for it.
            self.state().acked();
            return Err(mqtt::MqttError::from(e).into());
        }
        Ok(sealed.message_id)
    }

    /// Waits until the broker acknowledged everything published so far.
    pub async fn flush(&self, within: Duration) -> Result<(), AgentError> {
        self.wait_until(within, "the broker's acknowledgements", |s| {
            (s.unacked == 0).then_some(())
        })
        .await
    }

    /// Switches to `key` as this device's key (after its rotation is finalized); the old
    /// one still opens what was sealed to it.
    pub fn use_key(&self, key: RsaPrivateKey) {
        self.state().use_key(key);
    }

    /// Disconnects.
    pub async fn stop(&self) {
        let _ = self.client.disconnect().await;
    }
}
