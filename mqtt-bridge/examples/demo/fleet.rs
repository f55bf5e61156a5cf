//! The demo's devices as agents: one per device, each with a state dir of its own, and
//! their events merged into one stream that the scenarios wait on and narrate.

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use keymesh_device::{
    agent::{Agent, AgentConfig, AgentEvent, Message},
    config::Broker,
    mqtt::Endpoint,
};
use tokio::sync::mpsc;

use crate::{devices, say};

/// Long enough for anything that waits on finality.
pub const WAIT: Duration = Duration::from_secs(60);

pub struct Fleet {
    /// Holds every device's state dir; removed when the demo ends.
    root: tempfile::TempDir,
    agents: HashMap<String, Agent>,
    events: mpsc::UnboundedReceiver<(String, AgentEvent)>,
    sender: mpsc::UnboundedSender<(String, AgentEvent)>,
    /// Events received while waiting for another one, in arrival order.
    backlog: Vec<(String, AgentEvent)>,
}

impl Fleet {
    pub fn new() -> Result<Fleet, String> {
        let (sender, events) = mpsc::unbounded_channel();
        Ok(Fleet {
            root: tempfile::tempdir().map_err(|e| format!("state dir: {e}"))?,
            agents: HashMap::new(),
            events,
            sender,
            backlog: Vec::new(),
        })
    }

    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.root.path().join(id)
    }

    /// Starts `id`'s agent on its dev key, through the front on `port`.
    pub async fn start(&mut self, port: u16, id: &str) -> Result<(), String> {
        let config = AgentConfig {
            endpoint: Endpoint::plain(Broker {
                host: "127.0.0.1".into(),
                port,
                tls: false,
            }),
            device: id.into(),
            key: devices::device_key(id),
            key_file: None,
            audience: devices::AUDIENCE.into(),
            trusted_bridges: vec![devices::bridge_key()],
            state_dir: self.state_dir(id),
            tag: "demo".into(),
            grace: Duration::from_secs(30),
        };
        let (agent, mut events) = Agent::start(config)
            .await
            .map_err(|e| format!("{id}'s agent: {e}"))?;
        let sender = self.sender.clone();
        let device = id.to_string();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if sender.send((device.clone(), event)).is_err() {
                    break;
                }
            }
        });
        self.agents.insert(id.into(), agent);
        Ok(())
    }

    pub fn agent(&self, id: &str) -> &Agent {
        &self.agents[id]
    }

    pub async fn stop(&mut self, id: &str) {
        if let Some(agent) = self.agents.remove(id) {
            agent.stop().await;
        }
    }

    pub async fn stop_all(&mut self) {
        for (_, agent) in self.agents.drain() {
            agent.stop().await;
        }
    }

    /// The first event of `id` (held back or new) that `pick` accepts, within `within`;
    /// other events are kept for later waits.
    async fn next<T>(
        &mut self,
        id: &str,
        within: Duration,
        mut pick: impl FnMut(&AgentEvent) -> Option<T>,
    ) -> Option<T> {
        let held = self
            .backlog
            .iter()
            .position(|(d, e)| d == id && pick(e).is_some());
        if let Some(i) = held {
            let (_, event) = self.backlog.remove(i);
            return pick(&event);
        }
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let (device, event) = tokio::time::timeout(left, self.events.recv())
                .await
                .ok()
                .flatten()?;
            if device == id {
                if let Some(value) = pick(&event) {
                    return Some(value);
                }
            }
            self.backlog.push((device, event));
        }
        None
    }

    /// The next message opened by `id`'s agent, within `within`.
    async fn next_message(&mut self, id: &str, within: Duration) -> Option<Message> {
        self.next(id, within, |e| match e {
            AgentEvent::Message(m) => Some(m.clone()),
            _ => None,
        })
        .await
    }

    /// Waits for a message to `id` and says who sent it, who checked it, and what it said.
    pub async fn expect_message(&mut self, id: &str, within: Duration) {
        match self.next_message(id, within).await {
            Some(m) => say(format!(
                "{id}: opened {:?} from {}{} (bridge {} checked it at finalized block #{})",
                String::from_utf8_lossy(&m.payload),
                m.sender,
                m.group
                    .map(|g| format!(" on group {g}"))
                    .unwrap_or_default(),
                &hex::encode(m.bridge)[..8],
                m.block
            )),
            None => say(format!("{id}: UNEXPECTED: nothing arrived")),
        }
    }

    /// Watches `id` for `within` and says whether anything opened.
    pub async fn expect_nothing(&mut self, id: &str, within: Duration) {
        match self.next_message(id, within).await {
            None => say(format!("{id}: nothing delivered")),
            Some(m) => say(format!("{id}: UNEXPECTED delivery from {}", m.sender)),
        }
    }

    /// Waits until `id`'s agent reads `group` at `min_epoch` or later; returns the epoch.
    pub async fn expect_group_key(
        &mut self,
        id: &str,
        group: &str,
        min_epoch: u32,
    ) -> Result<u32, String> {
        let found = self
            .next(id, WAIT, |e| match e {
                AgentEvent::GroupKey {
                    group: g, epoch, ..
                } if g == group && *epoch >= min_epoch => Some(*epoch),
                _ => None,
            })
            .await
            .ok_or_else(|| format!("{id} never read {group} at epoch {min_epoch} or later"))?;
        say(format!(
            "{id}: unwrapped {group}'s epoch {found} key from its attested member entry"
        ));
        Ok(found)
    }

    /// Waits until `id`'s agent reports its removal from `group`.
    pub async fn expect_removed(&mut self, id: &str, group: &str) {
        let block = self
            .next(id, WAIT, |e| match e {
                AgentEvent::Removed { group: g, block } if g == group => Some(*block),
                _ => None,
            })
            .await;
        match block {
            Some(block) => say(format!(
                "{id}'s agent: removed from {group} at finalized block #{block}"
            )),
            None => say(format!("{id}'s agent: UNEXPECTED: no removal reported")),
        }
    }
}
