//! The bridge's own connection to the broker: a persistent session with manual
//! acknowledgements, polled on its own task, reconnecting as rumqttc does.
//!
//! rumqttc keeps unacknowledged publishes across a reconnect only when the broker kept the
//! session; on a CONNACK without one it drops them. So whenever the connection fails, the
//! publishes waiting for their PUBACK are set aside here, and if the new CONNACK says the
//! session is gone they are queued again, behind a fresh subscription to ingress, and the
//! directory is republished (its retained entries went with the broker's state).
//!
//! `ready` is true only while connected and subscribed to ingress: the front admits no
//! device before that, so nothing a device sends can reach a broker nobody reads for us.

use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS,
    Request, Subscribe,
};
use subxt_signer::sr25519::Keypair;
use tokio::sync::{mpsc, watch};

use crate::{backoff::Backoff, front::Backend, outbox::Acks};

/// The ingress filter: every device's ingress topic.
pub const INGRESS: &str = "km/v1/in/+";

/// Most ingress publishes waiting for the forward loop. QoS 1 ingress is bounded by the
/// broker's in-flight window long before this; QoS 0 beyond it is dropped (and counted).
pub const QUEUE: usize = 4096;

/// Requests the client may queue ahead of the event loop.
const REQUESTS: usize = 1024;

const RECONNECT: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

/// What the poll task reports.
pub struct Signals {
    /// Connected and subscribed to ingress.
    pub ready: watch::Sender<bool>,
    /// Counts broker sessions lost (and the first one made): each means republishing.
    pub sessions: watch::Sender<u64>,
    /// Ingress publishes, for the forward loop.
    pub incoming: mpsc::Sender<Publish>,
    /// QoS 0 ingress dropped because the forward loop was full.
    pub dropped: substrate_prometheus_endpoint::Counter<substrate_prometheus_endpoint::U64>,
    /// Which of the [`crate::outbox::Outbox`]'s publishes the broker has acknowledged.
    pub acks: Acks,
}

/// The options of the bridge's session at `backend`.
pub fn options(backend: &Backend, signer: &Keypair, max_packet: usize) -> MqttOptions {
    let client_id = format!(
        "keymesh-bridge-{}",
        hex::encode(&signer.public_key().0[..8])
    );
    let mut options = MqttOptions::new(client_id, backend.host.clone(), backend.port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_session(false);
    options.set_manual_acks(true);
    if let Some((user, password)) = &backend.login {
        options.set_credentials(user.clone(), password.clone());
    }
    if let Some(tls) = &backend.tls {
        keymesh_device::tls::use_tls(&mut options, tls.clone());
    }
    options.set_max_packet_size(max_packet, max_packet);
    options
}

/// A client and its event loop (not yet connected: the poll task connects).
pub fn client(options: MqttOptions) -> (AsyncClient, EventLoop) {
    let (client, mut events) = AsyncClient::new(options, REQUESTS);
    // Forwards are small and pipelined: Nagle's algorithm would hold them back.
    let mut network = events.network_options();
    network.set_tcp_nodelay(true);
    events.set_network_options(network);
    (client, events)
}

/// The publishes rumqttc holds for resending, with their packet ids cleared so that a new
/// session assigns fresh ones.
fn unacknowledged(events: &EventLoop) -> Vec<Request> {
    events
        .pending
        .iter()
        .filter_map(|request| match request {
            Request::Publish(publish) => {
                let mut publish = publish.clone();
                publish.pkid = 0;
                publish.dup = false;
                Some(Request::Publish(publish))
            }
            _ => None,
        })
        .collect()
}

/// Polls the connection for ever (until the forward loop goes away).
pub async fn poll(mut events: EventLoop, mut signals: Signals) {
    let mut backoff = RECONNECT;
    let mut set_aside: Vec<Request> = Vec::new();
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if !hand_over(publish, &signals).await {
                    return;
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => signals.acks.sent(pkid),
            Ok(Event::Incoming(Packet::PubAck(puback))) => signals.acks.acknowledged(puback.pkid),
            Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                backoff.reset();
                if connack.session_present {
                    set_aside.clear();
                    tracing::info!("broker session resumed");
                    signals.ready.send_replace(true);
                } else {
                    // The subscription first, then every publish the broker never
                    // acknowledged, then (on its own task) the directory.
                    events.pending.clear();
                    events.pending.push_back(Request::Subscribe(Subscribe::new(
                        INGRESS,
                        QoS::AtLeastOnce,
                    )));
                    signals.acks.new_session();
                    let resent = set_aside.len();
                    events.pending.extend(set_aside.drain(..));
                    tracing::info!(
                        "new broker session: subscribing to {INGRESS}, resending {resent} \
                         unacknowledged publish(es), republishing the directory"
                    );
                    signals.sessions.send_modify(|n| *n += 1);
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                if !signals.ready.send_replace(true) {
                    tracing::info!("subscribed to {INGRESS}");
                }
            }
            Ok(other) => tracing::trace!("mqtt {other:?}"),
            Err(e) => {
                let was_ready = signals.ready.send_replace(false);
                // After a failure `pending` holds what was in flight and queued; it stays
                // there across failed attempts until a CONNACK settles its fate.
                set_aside = unacknowledged(&events);
                signals.acks.failed(&events.pending);
                let wait = backoff.next_wait();
                log_failure(&e, was_ready, wait);
                tokio::time::sleep(wait).await;
            }
        }
    }
}

fn log_failure(e: &ConnectionError, was_ready: bool, wait: Duration) {
    if was_ready {
        tracing::warn!("broker connection lost: {e}; reconnecting");
    } else {
        tracing::debug!("broker not reachable: {e}; retrying in {wait:?}");
    }
}

/// Hands an ingress publish to the forward loop; false once the loop is gone.
async fn hand_over(publish: Publish, signals: &Signals) -> bool {
    if publish.qos == QoS::AtMostOnce {
        return match signals.incoming.try_send(publish) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                signals.dropped.inc();
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        };
    }
    signals.incoming.send(publish).await.is_ok()
}
