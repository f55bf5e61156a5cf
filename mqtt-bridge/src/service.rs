//! The service: opens the journals, takes the first snapshot, and wires the tasks together.
//!
//! | task | module | queue in (bounded) |
//! |---|---|---|
//! | follow finalized blocks | [`crate::follow`] | — (publishes snapshots and `caught_up`) |
//! | forward ingress | [`crate::forward`] | ingress publishes ([`ingress::QUEUE`]) |
//! | poll the broker connection | [`crate::ingress`] | — |
//! | sign chain writes | [`crate::write_queue`] | writes ([`write_queue::QUEUE`]) |
//! | key manager | [`crate::rekey`] | rekey requests ([`rekey::QUEUE`]) |
//! | key directory | [`crate::directory_feed`] | — (watches snapshots and sessions) |
//! | devices' front | [`crate::front`] | per session |
//! | `/metrics`, `/healthz`, `/readyz` | [`crate::health`] | — |

use std::{sync::Arc, time::Duration};

use subxt::{tx::Signer, utils::AccountId32, PolkadotConfig};
use subxt_signer::sr25519::Keypair;
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    audit::{lock, Flusher, SharedJournal},
    audit_journal::AuditJournal,
    broker,
    chain::{self, Node},
    clock::now_ms,
    config::{BrokerChoice, Settings},
    directory_feed,
    follow::{Follower, Outputs},
    forward::Forward,
    front::{self, Backend},
    gate::{Gate, Snapshot},
    health::{self, Health},
    ingress,
    metrics::Metrics,
    outbox::{Acks, Outbox},
    proof_archive::ProofArchive,
    rekey,
    replay::{JournalError, ReplayJournal},
    write_queue::{self, Write},
    writer::Writer,
};

/// Why the bridge stopped.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error(transparent)]
    Chain(#[from] chain::ChainError),
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error("MQTT front on {listen}: {reason}")]
    Front { listen: String, reason: String },
    #[error("MQTT: {0}")]
    Mqtt(String),
    #[error("metrics on {listen}: {reason}")]
    Metrics { listen: String, reason: String },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// How long a shutdown waits for the audit queue to reach the chain; what is left stays
/// journaled for the next start.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// The journals, opened, with the gate primed from them.
struct Journals {
    replay: ReplayJournal,
    audit: Arc<SharedJournal>,
    /// The leaves of what the audit writes, for proofs.
    archive: ProofArchive,
    gate: Gate,
}

/// Opens both journals and primes a gate with the ids they remember.
fn open_journals(settings: &Settings) -> Result<Journals, BridgeError> {
    // One journal per bridge account, so bridges sharing a state directory keep apart.
    let tag = hex::encode(&settings.signer.public_key().0[..8]);
    let replay_name = format!("replay-{tag}.log");
    let (replay, remembered) = ReplayJournal::open(&settings.state_dir, &replay_name, now_ms())?;
    tracing::info!(
        "replay window: {} message id(s) remembered from {}",
        remembered.len(),
        settings.state_dir.join(&replay_name).display()
    );
    // The audit journal has every forwarded id before the replay journal does: a crash
    // between the two appends must not make the redelivery a new exchange.
    let audit_name = format!("audit-{tag}.log");
    let (audit, restored) = AuditJournal::open(&settings.state_dir, &audit_name, now_ms())?;
    tracing::info!(
        "audit journal: {} record(s) not yet on chain",
        restored.pending
    );
    let archive = ProofArchive::open(&settings.state_dir.join(format!("proofs-{tag}")))?;
    let mut gate = Gate::new(settings.limits.clone());
    // Forwarded before the restart but never finished (the replay journal is written only
    // once the broker has acknowledged the delivery): the broker's redelivery of each may
    // pass once.
    let known: std::collections::HashSet<[u8; 16]> =
        remembered.iter().map(|s| s.message_id).collect();
    for seen in remembered {
        gate.remember(seen);
    }
    for seen in restored.forwarded {
        if !known.contains(&seen.message_id) {
            gate.remember_open(seen);
        }
    }
    Ok(Journals {
        replay,
        audit: Arc::new(std::sync::Mutex::new(audit)),
        archive,
        gate,
    })
}

/// Starts the embedded broker, or describes the external one.
fn backend(settings: &Settings) -> Result<Backend, BridgeError> {
    match &settings.broker {
        BrokerChoice::Embedded { listen, login } => {
            let backend = broker::start_embedded(
                *listen,
                login.clone(),
                settings.limits.max_envelope + 1024,
            )?;
            tracing::info!(
                "embedded MQTT broker on {}:{} (private; devices use the front)",
                backend.host,
                backend.port
            );
            Ok(backend)
        }
        BrokerChoice::External {
            host,
            port,
            login,
            ca,
        } => Ok(Backend {
            host: host.clone(),
            port: *port,
            login: login.clone(),
            tls: match ca {
                Some(ca) => Some(
                    keymesh_device::tls::client_config(ca)
                        .map_err(|e| BridgeError::Mqtt(e.to_string()))?,
                ),
                None => None,
            },
        }),
    }
}

/// Connects to the node, retrying for a minute while it starts, and reads the first
/// snapshot.
async fn first_snapshot(url: &str, bridge: &AccountId32) -> Result<(Node, Snapshot), BridgeError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = async {
            let node = chain::connect(url).await?;
            let at = node.api.at_current_block().await.map_err(chain::query)?;
            let snapshot = chain::snapshot(&at, bridge).await?;
            Ok::<_, chain::ChainError>((node, snapshot))
        };
        match attempt.await {
            Ok(first) => return Ok(first),
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::warn!("{e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Serves the devices' front, plain and (if configured) over TLS.
async fn start_front(settings: &Settings, shared: Arc<front::Shared>) -> Result<(), BridgeError> {
    let front_error = |listen: std::net::SocketAddr, reason: String| BridgeError::Front {
        listen: listen.to_string(),
        reason,
    };
    let listener = front::bind(settings.mqtt_listen)
        .await
        .map_err(|e| front_error(settings.mqtt_listen, e.to_string()))?;
    tokio::spawn(front::serve(listener, shared.clone(), None));
    if let Some(tls) = &settings.front_tls {
        let config = front::tls::server_config(&tls.cert, &tls.key)
            .map_err(|e| front_error(tls.listen, e.to_string()))?;
        let listener = front::bind(tls.listen)
            .await
            .map_err(|e| front_error(tls.listen, e.to_string()))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(front::serve(listener, shared, Some(acceptor)));
        tracing::info!("MQTT front over TLS on {}", tls.listen);
    }
    tracing::info!(
        "MQTT front for devices on {} (audience {:?})",
        settings.mqtt_listen,
        settings.audience
    );
    Ok(())
}

/// Logs readiness to forward the first time ingress is subscribed.
fn announce_forwarding(mut ingress: watch::Receiver<bool>, signer: &Keypair) {
    let bridge = hex::encode(signer.public_key().0);
    tokio::spawn(async move {
        if ingress.wait_for(|ready| *ready).await.is_ok() {
            tracing::info!("bridge {bridge} forwarding from {}", ingress::INGRESS);
        }
    });
}

/// What the tasks watch: the snapshot and whether the follower is caught up (the
/// follower's), whether ingress is subscribed and how many broker sessions there were (the
/// broker session's).
#[derive(Clone)]
struct Views {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    caught_up: watch::Receiver<bool>,
    finalized_seen: watch::Receiver<u64>,
    ingress: watch::Receiver<bool>,
    sessions: watch::Receiver<u64>,
}

/// The sending sides of [`Views`], each moved to the one task that knows it.
struct Publishers {
    snapshot: watch::Sender<Arc<Snapshot>>,
    caught_up: watch::Sender<bool>,
    finalized_seen: watch::Sender<u64>,
    ingress: watch::Sender<bool>,
    sessions: watch::Sender<u64>,
}

fn channels(first: Snapshot) -> (Publishers, Views) {
    let first_block = first.block_number;
    let (snapshot, snapshot_rx) = watch::channel(Arc::new(first));
    let (caught_up, caught_up_rx) = watch::channel(false);
    let (finalized_seen, finalized_seen_rx) = watch::channel(u64::from(first_block));
    let (ingress, ingress_rx) = watch::channel(false);
    let (sessions, sessions_rx) = watch::channel(0);
    (
        Publishers {
            snapshot,
            caught_up,
            finalized_seen,
            ingress,
            sessions,
        },
        Views {
            snapshot: snapshot_rx,
            caught_up: caught_up_rx,
            finalized_seen: finalized_seen_rx,
            ingress: ingress_rx,
            sessions: sessions_rx,
        },
    )
}

impl Views {
    fn health(&self, settings: &Settings) -> Arc<Health> {
        Arc::new(Health {
            snapshot: self.snapshot.clone(),
            caught_up: self.caught_up.clone(),
            ingress: self.ingress.clone(),
            journals_writable: true.into(),
            max_staleness_ms: settings.limits.max_staleness_ms,
        })
    }
}

/// `/metrics`, `/healthz` and `/readyz`, if configured.
async fn serve_health(
    settings: &Settings,
    health: &Arc<Health>,
    views: &Views,
    metrics: &Metrics,
) -> Result<(), BridgeError> {
    let Some(listen) = settings.metrics else {
        return Ok(());
    };
    let listener =
        tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| BridgeError::Metrics {
                listen: listen.to_string(),
                reason: e.to_string(),
            })?;
    tokio::spawn(health::serve(
        listener,
        health.clone(),
        metrics.registry.clone(),
    ));
    tokio::spawn(health::track_age(views.snapshot.clone(), metrics.clone()));
    Ok(())
}

/// The writer and, if this bridge is a key manager, the keyman; returns the writer's queue
/// and the keyman's.
fn spawn_chain_writes(
    settings: &Settings,
    views: &Views,
    (audit, archive): (&Arc<SharedJournal>, ProofArchive),
    metrics: &Metrics,
) -> (mpsc::Sender<Write>, Option<mpsc::Sender<rekey::Rekey>>) {
    let (write_tx, write_rx) = mpsc::channel(write_queue::QUEUE);
    tokio::spawn(write_queue::run(
        Writer::new(&settings.node, settings.signer.clone()),
        write_rx,
        views.snapshot.clone(),
        Flusher::new(audit.clone(), archive),
        metrics.clone(),
    ));
    let rekeys = settings.keyman.then(|| {
        let (rekey_tx, rekey_rx) = mpsc::channel(rekey::QUEUE);
        for request in rekey::unanswered(&views.snapshot.borrow()) {
            let _ = rekey_tx.try_send(request);
        }
        tokio::spawn(rekey::run(
            rekey_rx,
            views.snapshot.clone(),
            write_tx.clone(),
        ));
        rekey_tx
    });
    (write_tx, rekeys)
}

/// The bridge's broker session, as the forward loop uses it.
struct BrokerSession {
    client: rumqttc::AsyncClient,
    outbox: Arc<Outbox>,
    /// Outbox publishes numbered below this are acknowledged by the broker.
    acked: watch::Receiver<u64>,
    incoming: mpsc::Receiver<rumqttc::Publish>,
}

/// The bridge's broker session and the directory published over it.
fn spawn_broker_session(
    settings: &Settings,
    backend: &Backend,
    (ready, sessions): (watch::Sender<bool>, watch::Sender<u64>),
    views: &Views,
    metrics: &Metrics,
) -> BrokerSession {
    let max_packet = settings.limits.max_envelope + 1024;
    let (client, events) = ingress::client(ingress::options(backend, &settings.signer, max_packet));
    let (incoming_tx, incoming) = mpsc::channel(ingress::QUEUE);
    let acks = Acks::new();
    let acked = acks.mark();
    tokio::spawn(ingress::poll(
        events,
        ingress::Signals {
            ready,
            sessions,
            incoming: incoming_tx,
            dropped: metrics.ingress_dropped.clone(),
            acks,
        },
    ));
    announce_forwarding(views.ingress.clone(), &settings.signer);
    let outbox = Arc::new(Outbox::new(client.clone()));
    tokio::spawn(directory_feed::run(
        outbox.clone(),
        views.snapshot.clone(),
        views.sessions.clone(),
        settings.signer.clone(),
    ));
    BrokerSession {
        client,
        outbox,
        acked,
        incoming,
    }
}

/// Follows finalized blocks once ingress is subscribed, beginning by catching up every
/// block finalized since the first snapshot, however long the broker took: the start-up
/// window is a gap like any other.
fn spawn_follower(
    settings: &Settings,
    node: Node,
    (snapshot, caught_up, finalized_seen): (
        watch::Sender<Arc<Snapshot>>,
        watch::Sender<bool>,
        watch::Sender<u64>,
    ),
    probes: mpsc::Receiver<crate::follow::Probe>,
    views: &Views,
    rekeys: Option<mpsc::Sender<rekey::Rekey>>,
    metrics: &Metrics,
) {
    let account = <Keypair as Signer<PolkadotConfig>>::account_id(&settings.signer);
    let follower = Follower::new(
        &settings.node,
        account,
        Outputs {
            snapshot,
            caught_up,
            finalized_seen,
            rekeys,
        },
        metrics.clone(),
        probes,
    );
    let mut ingress_up = views.ingress.clone();
    tokio::spawn(async move {
        if ingress_up.wait_for(|ready| *ready).await.is_ok() {
            follower.run(node).await;
        }
    });
}

/// Gives the audit queue [`SHUTDOWN_FLUSH`] to reach the chain and lets the broker go.
async fn shut_down(
    audit: &SharedJournal,
    write_tx: mpsc::Sender<Write>,
    client: rumqttc::AsyncClient,
) {
    let pending = lock(audit).pending();
    tracing::info!("shutting down: flushing {pending} audit record(s)");
    let (done_tx, done_rx) = oneshot::channel();
    let flushed = async {
        if write_tx
            .send(Write::FlushAudit(Some(done_tx)))
            .await
            .is_ok()
        {
            let _ = done_rx.await;
        }
    };
    if tokio::time::timeout(SHUTDOWN_FLUSH, flushed).await.is_err() {
        tracing::warn!("audit records left journaled for the next start");
    }
    // Never waits on a broker that is gone.
    let _ = client.try_disconnect();
}

/// Runs the bridge until `shutdown` resolves; then flushes the audit queue (for at most
/// [`SHUTDOWN_FLUSH`]) and returns.
pub async fn run(
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), BridgeError> {
    let metrics = Metrics::new().map_err(|e| BridgeError::Metrics {
        listen: String::new(),
        reason: e.to_string(),
    })?;
    let journals = open_journals(&settings)?;
    crate::metrics::register_backlog(&metrics.registry, journals.audit.clone()).map_err(|e| {
        BridgeError::Metrics {
            listen: String::new(),
            reason: e.to_string(),
        }
    })?;
    let backend = backend(&settings)?;
    let account = <Keypair as Signer<PolkadotConfig>>::account_id(&settings.signer);
    let (node, first) = first_snapshot(&settings.node, &account).await?;
    tracing::info!(
        "key cache at finalized #{}: {} devices, {} groups",
        first.block_number,
        first.devices.len(),
        first.groups.len()
    );
    if !first.bridge_listed {
        tracing::error!("the exchange log does not list this bridge: nothing is forwarded");
    }
    let (publishers, views) = channels(first);
    let health = views.health(&settings);
    serve_health(&settings, &health, &views, &metrics).await?;
    let (write_tx, rekeys) = spawn_chain_writes(
        &settings,
        &views,
        (&journals.audit, journals.archive),
        &metrics,
    );
    let session = spawn_broker_session(
        &settings,
        &backend,
        (publishers.ingress, publishers.sessions),
        &views,
        &metrics,
    );
    let (probes, probed) = mpsc::channel(crate::follow::PROBES);
    spawn_follower(
        &settings,
        node,
        (
            publishers.snapshot,
            publishers.caught_up,
            publishers.finalized_seen,
        ),
        probed,
        &views,
        rekeys,
        &metrics,
    );
    let shared = Arc::new(front::Shared {
        snapshot: views.snapshot.clone(),
        ingress: views.ingress.clone(),
        auth: std::sync::Mutex::new(front::auth::Authenticator::new(
            settings.audience.clone(),
            settings.limits.max_skew_ms,
        )),
        backend: backend.clone(),
        max_packet: settings.limits.max_envelope + 1024,
        metrics: metrics.clone(),
    });
    start_front(&settings, shared).await?;

    let forward = Forward {
        client: session.client.clone(),
        outbox: session.outbox,
        acked: session.acked,
        gate: journals.gate,
        journal: journals.replay,
        signer: settings.signer.clone(),
        snapshot: views.snapshot.clone(),
        caught_up: views.caught_up.clone(),
        finalized_seen: views.finalized_seen.clone(),
        probes,
        audit: journals.audit.clone(),
        health,
        metrics,
    };
    forward.start().run(session.incoming, shutdown).await;
    shut_down(&journals.audit, write_tx, session.client).await;
    Ok(())
}
