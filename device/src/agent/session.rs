//! The agent's connection: one task polls the MQTT event loop, subscribes after every new
//! session, hands what arrives to [`State`], reports events, and reconnects with backoff
//! and a fresh connect proof (each proof is accepted once).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS};
use tokio::sync::{mpsc, oneshot, watch};

use super::{state::State, AgentConfig, AgentError, AgentEvent};
use crate::mqtt::{self, DeviceLogin, Endpoint};

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often refused messages are looked at for a resend.
const RETRY_TICK: Duration = Duration::from_millis(100);

struct Session {
    client: AsyncClient,
    state: Arc<Mutex<State>>,
    updates: watch::Sender<u64>,
    events: mpsc::Sender<AgentEvent>,
    endpoint: Endpoint,
    audience: String,
    tag: String,
    /// Subscriptions not acknowledged yet in this session.
    awaiting: usize,
    ready: Option<oneshot::Sender<()>>,
}

/// Starts the session task. The receiver fires once the first session's subscriptions
/// are acknowledged.
pub async fn spawn(
    config: &AgentConfig,
    state: Arc<Mutex<State>>,
    updates: watch::Sender<u64>,
    events: mpsc::Sender<AgentEvent>,
) -> Result<(AsyncClient, oneshot::Receiver<()>), AgentError> {
    let options = DeviceLogin {
        device: &config.device,
        key: &config.key,
        audience: &config.audience,
        tag: Some(&config.tag),
    }
    .options(&config.endpoint)?;
    let (client, mut event_loop) = AsyncClient::new(options, 64);
    let mut network = event_loop.network_options();
    network.set_tcp_nodelay(true);
    event_loop.set_network_options(network);
    let (ready_tx, ready) = oneshot::channel();
    let session = Session {
        client: client.clone(),
        state,
        updates,
        events,
        endpoint: config.endpoint.clone(),
        audience: config.audience.clone(),
        tag: config.tag.clone(),
        awaiting: 0,
        ready: Some(ready_tx),
    };
    tokio::spawn(session.run(event_loop));
    Ok((client, ready))
}

impl Session {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn report(&self, event: AgentEvent) {
        // An application that stopped reading loses nothing it asked for.
        let _ = self.events.send(event).await;
    }

    fn bump(&self) {
        self.updates.send_modify(|n| *n += 1);
    }

    async fn run(mut self, mut event_loop: EventLoop) {
        let mut backoff = FIRST_BACKOFF;
        let mut tick = tokio::time::interval(RETRY_TICK);
        loop {
            tokio::select! {
                polled = event_loop.poll() => match polled {
                    Ok(event) => {
                        if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                            backoff = FIRST_BACKOFF;
                        }
                        if !self.on_event(event).await {
                            return;
                        }
                    }
                    Err(e) => {
                        self.report(AgentEvent::Disconnected { reason: e.to_string() }).await;
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        self.refresh_proof(&mut event_loop);
                    }
                },
                _ = tick.tick() => self.resend().await,
            }
        }
    }

    /// Puts a fresh connect proof, signed with the current key, into the options.
    fn refresh_proof(&self, event_loop: &mut EventLoop) {
        let key = self.state().login_key().clone();
        let device = self.state().device.clone();
        let login = DeviceLogin {
            device: &device,
            key: &key,
            audience: &self.audience,
            tag: Some(&self.tag),
        };
        if let Err(e) = login.refresh(&mut event_loop.mqtt_options) {
            tracing::warn!(
                "cannot make a connect proof for {}: {e}",
                self.endpoint.broker.host
            );
        }
    }

    /// Handles one event; `false` once the client was dropped or disconnected.
    async fn on_event(&mut self, event: Event) -> bool {
        match event {
            Event::Incoming(Packet::ConnAck(ack)) if !ack.session_present => {
                self.subscribe_all();
            }
            Event::Incoming(Packet::SubAck(_)) => {
                self.awaiting = self.awaiting.saturating_sub(1);
                if self.awaiting == 0 {
                    if let Some(ready) = self.ready.take() {
                        let _ = ready.send(());
                    }
                    self.report(AgentEvent::Connected).await;
                }
            }
            Event::Incoming(Packet::PubAck(_)) => {
                self.state().acked();
                self.bump();
            }
            Event::Incoming(Packet::Publish(publish)) => {
                self.on_publish(&publish.topic, &publish.payload).await;
            }
            Event::Outgoing(rumqttc::Outgoing::Disconnect) => return false,
            _ => {}
        }
        true
    }

    fn subscribe_all(&mut self) {
        let (device, groups) = {
            let state = self.state();
            (state.device.clone(), state.reading())
        };
        let mut filters = vec![
            format!("km/v1/dev/{device}/#"),
            "km/v1/dir/+".to_string(),
            "km/v1/dir/grp/+".to_string(),
            format!("km/v1/dir/grp/+/member/{device}"),
        ];
        filters.extend(groups.iter().map(|g| mqtt::group_topic(g)));
        self.awaiting = 0;
        for filter in filters {
            match self.client.try_subscribe(filter, QoS::AtLeastOnce) {
                Ok(()) => self.awaiting += 1,
                Err(e) => tracing::warn!("subscribe: {e}"),
            }
        }
    }

    async fn on_publish(&mut self, topic: &str, payload: &[u8]) {
        let status = mqtt::status_topic(&self.state().device);
        if topic.starts_with("km/v1/dir/") {
            let (events, subscribe) = self.state().on_directory(topic, payload);
            for filter in subscribe {
                // A SUBACK that arrives after readiness changes nothing.
                if let Err(e) = self.client.try_subscribe(filter, QoS::AtLeastOnce) {
                    tracing::warn!("subscribe: {e}");
                }
            }
            self.bump();
            for event in events {
                self.report(event).await;
            }
        } else if topic == status {
            let event = self.state().on_notice(payload);
            if let Some(event) = event {
                self.report(event).await;
            }
        } else {
            let event = self.state().on_delivery(topic, payload);
            self.report(event).await;
        }
    }

    /// Seals again and resends what the bridge refused for a key that has changed since.
    async fn resend(&mut self) {
        let (resend, failed, reported) = {
            let mut state = self.state();
            let (resend, failed) = state.due_retries();
            (resend, failed, state.take_reported())
        };
        for (topic, sealed, event) in resend {
            if let Err(e) = self
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, sealed.bytes)
            {
                self.state().acked();
                self.report(AgentEvent::Refused {
                    message_id: sealed.message_id,
                    reason: "NotResent".into(),
                    detail: e.to_string(),
                })
                .await;
                continue;
            }
            self.report(event).await;
        }
        for event in failed.into_iter().chain(reported) {
            self.report(event).await;
        }
    }
}
