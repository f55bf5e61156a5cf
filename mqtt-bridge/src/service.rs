//! The service: wires follow, gate, forward, audit and keyman together.
//!
//! - One task follows finalized blocks and publishes each new key snapshot on a watch
//!   channel; it also asks the writer to flush the audit queue once per block and hands
//!   `RekeyRequired` to keyman.
//! - The forward loop (this task) reads `km/v1/in/+`, runs the gate against the latest
//!   snapshot, publishes attested deliveries or refusals, and journals audit records. Incoming
//!   messages are acknowledged only after their outcome is published and journaled, so a
//!   crash re-delivers them rather than losing them; devices drop duplicates by message id.
//!   Forwarded message ids go to the replay journal, so a restart does not reopen the replay
//!   window.
//! - The writer task signs every chain write, one at a time.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use keymesh_device::{mqtt, Attestation, Delivery};
use rsa::RsaPublicKey;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use serde::Serialize;
use subxt_signer::sr25519::Keypair;
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    audit::{self, lock, Record, SharedJournal, Writer},
    audit_journal::AuditJournal,
    broker,
    chain::{self, Api},
    config::{BrokerChoice, Settings},
    front::{self, Backend},
    gate::{Gate, Reason, Refused, Snapshot, Target},
    keyman::{self, EpochKey, MAX_WRAPS_PER_CALL},
    metrics::Metrics,
    replay::{JournalError, ReplayJournal, Seen},
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
    #[error("metrics: {0}")]
    Metrics(String),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// A journal with this many records more than the window holds is rewritten.
const COMPACT_SLACK: usize = 65_536;

/// What the writer task does, in order.
enum Write {
    /// Submit everything in the audit queue as one `record` call (if anything is queued).
    FlushAudit(Option<oneshot::Sender<()>>),
    /// Submit a group's epoch key.
    EpochKey(EpochKey),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What a sender reads on its status topic when an envelope is refused.
#[derive(Debug, Serialize)]
struct RefusalNotice<'a> {
    reason: &'static str,
    message_id: Option<String>,
    target: Option<String>,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    presented: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<String>,
    /// The finalized block the check used.
    block: u32,
}

fn target_text(target: &Target) -> String {
    match target {
        Target::Device(id) => id.clone(),
        Target::Group(id) => format!("grp/{id}"),
    }
}

/// Runs the bridge until `shutdown` resolves; then flushes the audit queue and returns.
pub async fn run(
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), BridgeError> {
    let metrics = Metrics::new().map_err(|e| BridgeError::Metrics(e.to_string()))?;
    // One journal per bridge account, so bridges sharing a state directory keep apart.
    let journal_name = format!(
        "replay-{}.log",
        hex::encode(&settings.signer.public_key().0[..8])
    );
    let (journal, remembered) = ReplayJournal::open(&settings.state_dir, &journal_name, now_ms())?;
    let mut gate = Gate::new(settings.limits.clone());
    tracing::info!(
        "replay window: {} message id(s) remembered from {}",
        remembered.len(),
        settings.state_dir.join(&journal_name).display()
    );
    // The audit journal has every forwarded id before the replay journal does: a crash
    // between the two appends must not make the redelivery a new exchange.
    let audit_name = format!(
        "audit-{}.log",
        hex::encode(&settings.signer.public_key().0[..8])
    );
    let (audit_journal, restored) = AuditJournal::open(&settings.state_dir, &audit_name, now_ms())?;
    tracing::info!(
        "audit journal: {} record(s) not yet on chain",
        restored.pending
    );
    // Forwarded before the restart but never finished (the replay journal is written only
    // once the hand-over is acknowledged): the broker's redelivery of each may pass once.
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
    if let Some(addr) = settings.metrics {
        let registry = metrics.registry.clone();
        tokio::spawn(async move {
            if let Err(e) = substrate_prometheus_endpoint::init_prometheus(addr, registry).await {
                tracing::error!("metrics endpoint on {addr}: {e}");
            }
        });
    }
    let backend = match &settings.broker {
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
            backend
        }
        BrokerChoice::External {
            host,
            port,
            login,
            ca,
        } => Backend {
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
        },
    };
    let listener = front::bind(settings.mqtt_listen)
        .await
        .map_err(|e| BridgeError::Front {
            listen: settings.mqtt_listen.to_string(),
            reason: e.to_string(),
        })?;

    let api = connect_chain(&settings.node).await?;
    let at = api.at_current_block().await.map_err(chain::query)?;
    let first = chain::snapshot(&at).await?;
    tracing::info!(
        "key cache at finalized #{}: {} devices, {} groups",
        first.block_number,
        first.devices.len(),
        first.groups.len()
    );
    let startup_rekeys: Vec<(String, u32)> = first
        .groups
        .iter()
        .filter(|(_, g)| g.needs_rekey)
        .map(|(id, g)| (id.clone(), g.epoch.saturating_add(1)))
        .collect();
    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(first));
    let updated_at = Arc::new(AtomicU64::new(now_ms()));

    let audit: Arc<SharedJournal> = Arc::new(std::sync::Mutex::new(audit_journal));
    let (write_tx, write_rx) = mpsc::unbounded_channel();
    let writer = Writer::connect(api.clone(), &settings.node, settings.signer.clone()).await?;
    tokio::spawn(write_loop(writer, write_rx, audit.clone(), metrics.clone()));

    let (rekey_tx, rekey_rx) = mpsc::unbounded_channel();
    if settings.keyman {
        for rekey in startup_rekeys {
            let _ = rekey_tx.send(rekey);
        }
        tokio::spawn(keyman_loop(rekey_rx, snapshot_rx.clone(), write_tx.clone()));
    }
    tokio::spawn(follow_loop(
        api.clone(),
        snapshot_tx,
        updated_at.clone(),
        write_tx.clone(),
        settings.keyman.then_some(rekey_tx),
        metrics.clone(),
    ));
    {
        // Once a second: the cache's age, and an audit flush in case no block came (a chain
        // sealing on demand makes blocks only when there is something to seal).
        let (metrics, updated_at, write_tx) =
            (metrics.clone(), updated_at.clone(), write_tx.clone());
        tokio::spawn(async move {
            loop {
                let age = now_ms().saturating_sub(updated_at.load(Ordering::Relaxed)) / 1000;
                metrics.cache_age.set(age);
                if write_tx.send(Write::FlushAudit(None)).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    let shared = Arc::new(front::Shared {
        snapshot: snapshot_rx.clone(),
        auth: std::sync::Mutex::new(front::auth::Authenticator::new(
            settings.audience.clone(),
            settings.limits.max_skew_ms,
        )),
        backend: backend.clone(),
        max_packet: settings.limits.max_envelope + 1024,
        metrics: metrics.clone(),
    });
    tokio::spawn(front::serve(listener, shared.clone(), None));
    if let Some(tls) = &settings.front_tls {
        let front_error = |reason: String| BridgeError::Front {
            listen: tls.listen.to_string(),
            reason,
        };
        let config = front::tls::server_config(&tls.cert, &tls.key)
            .map_err(|e| front_error(e.to_string()))?;
        let listener = front::bind(tls.listen)
            .await
            .map_err(|e| front_error(e.to_string()))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(front::serve(listener, shared, Some(acceptor)));
        tracing::info!("MQTT front over TLS on {}", tls.listen);
    }
    tracing::info!(
        "MQTT front for devices on {} (audience {:?})",
        settings.mqtt_listen,
        settings.audience
    );
    let (client, events) = connect_mqtt(&settings, &backend).await?;
    client
        .subscribe("km/v1/in/+", QoS::AtLeastOnce)
        .await
        .map_err(|e| BridgeError::Mqtt(e.to_string()))?;
    tracing::info!(
        "bridge {} forwarding from km/v1/in/+",
        hex::encode(settings.signer.public_key().0)
    );
    tokio::spawn(directory_loop(
        client.clone(),
        snapshot_rx.clone(),
        settings.signer.clone(),
    ));
    let forward = Forward {
        client: client.clone(),
        compact_at: journal.records().saturating_add(COMPACT_SLACK),
        journal,
        gate,
        signer: settings.signer.clone(),
        snapshot: snapshot_rx,
        audit: audit.clone(),
        metrics: metrics.clone(),
    };
    forward.run(events, shutdown).await;

    let pending = lock(&audit).pending();
    tracing::info!("shutting down: flushing {pending} audit record(s)");
    let (done_tx, done_rx) = oneshot::channel();
    if write_tx.send(Write::FlushAudit(Some(done_tx))).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(30), done_rx).await;
    }
    let _ = client.disconnect().await;
    Ok(())
}

/// Connects to the node, retrying for a minute while it starts.
async fn connect_chain(url: &str) -> Result<Api, chain::ChainError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match chain::connect(url).await {
            Ok(api) => return Ok(api),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!("{e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Connects to the backend broker under the bridge's own credential (waiting for the
/// embedded one to come up) with a persistent session and manual acknowledgements.
async fn connect_mqtt(
    settings: &Settings,
    backend: &Backend,
) -> Result<(AsyncClient, EventLoop), BridgeError> {
    let (host, port) = (backend.host.clone(), backend.port);
    let client_id = format!(
        "keymesh-bridge-{}",
        hex::encode(&settings.signer.public_key().0[..8])
    );
    let mut options = MqttOptions::new(client_id, host.clone(), port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_session(false);
    options.set_manual_acks(true);
    if let Some((user, password)) = &backend.login {
        options.set_credentials(user.clone(), password.clone());
    }
    if let Some(tls) = &backend.tls {
        keymesh_device::tls::use_tls(&mut options, tls.clone());
    }
    let max_packet = settings.limits.max_envelope + 1024;
    options.set_max_packet_size(max_packet, max_packet);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (client, mut events) = AsyncClient::new(options.clone(), 1024);
        // Forwards are small and pipelined: Nagle's algorithm would hold them back.
        let mut network = events.network_options();
        network.set_tcp_nodelay(true);
        events.set_network_options(network);
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok((client, events)),
            Ok(_) => continue,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("broker {host}:{port} not ready: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(BridgeError::Mqtt(format!("{host}:{port}: {e}"))),
        }
    }
}

/// Follows finalized blocks: new snapshots, audit flushes, rekeys.
async fn follow_loop(
    api: Api,
    snapshot_tx: watch::Sender<Arc<Snapshot>>,
    updated_at: Arc<AtomicU64>,
    write_tx: mpsc::UnboundedSender<Write>,
    rekey_tx: Option<mpsc::UnboundedSender<(String, u32)>>,
    metrics: Metrics,
) {
    loop {
        let mut blocks = match api.stream_blocks().await {
            Ok(blocks) => blocks,
            Err(e) => {
                tracing::warn!("cannot follow finalized blocks: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        tracing::debug!("following finalized blocks");
        while let Some(block) = blocks.next().await {
            let result = async {
                let block = block.map_err(chain::query)?;
                tracing::debug!("finalized #{}", block.number());
                let at = block.at().await.map_err(chain::query)?;
                let changes = chain::changes(&at).await?;
                let current = snapshot_tx.borrow().clone();
                if u64::from(current.block_number) >= at.block_number() {
                    return Ok::<_, chain::ChainError>(());
                }
                let next = chain::apply(&current, &at, &changes).await?;
                tracing::debug!("cache at #{}: {changes:?}", next.block_number);
                metrics.cache_block.set(u64::from(next.block_number));
                snapshot_tx.send_replace(Arc::new(next));
                updated_at.store(now_ms(), Ordering::Relaxed);
                if let Some(tx) = &rekey_tx {
                    for rekey in changes.rekeys {
                        let _ = tx.send(rekey);
                    }
                }
                let _ = write_tx.send(Write::FlushAudit(None));
                Ok(())
            }
            .await;
            if let Err(e) = result {
                tracing::warn!("following finalized blocks: {e}");
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Signs and submits the bridge's chain writes in order.
async fn write_loop(
    writer: Writer,
    mut writes: mpsc::UnboundedReceiver<Write>,
    audit: Arc<SharedJournal>,
    metrics: Metrics,
) {
    while let Some(write) = writes.recv().await {
        match write {
            Write::FlushAudit(done) => {
                audit::flush(&writer, &audit).await;
                metrics.audit_backlog.set(lock(&audit).pending() as u64);
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Write::EpochKey(key) => {
                audit::settle(&writer, &audit).await;
                let mut ok = true;
                for wraps in key.wraps.chunks(MAX_WRAPS_PER_CALL) {
                    let result = writer
                        .set_epoch_key(
                            &key.group,
                            key.epoch,
                            &key.topic_public_key,
                            &key.sealed_private_key,
                            wraps,
                        )
                        .await;
                    if let Err(e) = result {
                        tracing::warn!("epoch {} of group {}: {e}", key.epoch, key.group);
                        ok = false;
                        break;
                    }
                }
                if ok {
                    metrics.rekeys.inc();
                    tracing::info!(
                        "group {} epoch {} key submitted with {} wrap(s)",
                        key.group,
                        key.epoch,
                        key.wraps.len()
                    );
                }
            }
        }
    }
}

/// Makes epoch keys for `RekeyRequired` groups, against the latest snapshot.
async fn keyman_loop(
    mut rekeys: mpsc::UnboundedReceiver<(String, u32)>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    write_tx: mpsc::UnboundedSender<Write>,
) {
    while let Some((group, epoch)) = rekeys.recv().await {
        let current = snapshot.borrow().clone();
        let Some(record) = current.groups.get(&group) else {
            continue;
        };
        if record.epoch.saturating_add(1) != epoch {
            continue;
        }
        let members: Vec<(String, RsaPublicKey)> = record
            .members
            .keys()
            .filter_map(|id| {
                let device = current.devices.get(id)?;
                Some((id.clone(), device.public_key.clone()))
            })
            .collect();
        let made =
            tokio::task::spawn_blocking(move || keyman::make_epoch_key(&group, epoch, &members))
                .await;
        match made {
            Ok(Ok(key)) => {
                let _ = write_tx.send(Write::EpochKey(key));
            }
            Ok(Err(e)) => tracing::warn!("rekey to epoch {epoch}: {e}"),
            Err(e) => tracing::warn!("rekey to epoch {epoch}: {e}"),
        }
    }
}

/// Publishes the retained directory entries that each new snapshot changes.
async fn directory_loop(
    client: AsyncClient,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    signer: Keypair,
) {
    let mut published: Option<Arc<Snapshot>> = None;
    loop {
        let current = snapshots.borrow_and_update().clone();
        for (topic, payload) in
            crate::directory::changed_entries(published.as_deref(), &current, &signer)
        {
            if let Err(e) = client.publish(topic, QoS::AtLeastOnce, true, payload).await {
                tracing::warn!("directory entry: {e}");
            }
        }
        published = Some(current);
        if snapshots.changed().await.is_err() {
            return;
        }
    }
}

/// Polls the MQTT connection (reconnecting as rumqttc does) and hands on every publish.
async fn poll_mqtt(mut events: EventLoop, incoming: mpsc::UnboundedSender<Publish>) {
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if incoming.send(publish).is_err() {
                    return;
                }
            }
            Ok(other) => tracing::trace!("mqtt {other:?}"),
            Err(e) => {
                tracing::warn!("MQTT: {e}; reconnecting");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The forward loop's state.
struct Forward {
    client: AsyncClient,
    gate: Gate,
    journal: ReplayJournal,
    /// Journal size at which it is next compacted.
    compact_at: usize,
    signer: Keypair,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    audit: Arc<SharedJournal>,
    metrics: Metrics,
}

impl Forward {
    async fn run(mut self, events: EventLoop, shutdown: impl std::future::Future<Output = ()>) {
        // The event loop runs on its own task: forwarding awaits the client's request queue,
        // which only drains while the loop is polled. The broker's in-flight limit bounds
        // what waits in `incoming`, since nothing is acknowledged before it is handled.
        let (incoming_tx, mut incoming) = mpsc::unbounded_channel();
        tokio::spawn(poll_mqtt(events, incoming_tx));
        tokio::pin!(shutdown);
        let mut sync = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    self.sync_journal();
                    return;
                }
                _ = sync.tick() => self.sync_journal(),
                publish = incoming.recv() => {
                    let Some(publish) = publish else { return };
                    let used = self.handle(&publish).await;
                    if let Err(e) = self.client.ack(&publish).await {
                        tracing::warn!("ack: {e}");
                    }
                    // Only now is the hand-over finished: until the id is here, a restart
                    // treats the broker's redelivery as the unfinished forward it is.
                    if let Some(seen) = used {
                        self.journal(seen);
                    }
                }
            }
        }
    }

    fn sync_journal(&mut self) {
        if let Err(e) = self.journal.sync() {
            tracing::error!("{e}");
        }
        if let Err(e) = lock(&self.audit).sync() {
            tracing::error!("{e}");
        }
    }

    /// Journals an audit record about the envelope `envelope_hash`.
    fn audit(&self, record: Record, envelope_hash: [u8; 32], forwarded: Option<([u8; 16], u64)>) {
        if let Err(e) = lock(&self.audit).append(record, envelope_hash, forwarded) {
            tracing::error!("{e}; the exchange log will miss this record");
        }
    }

    /// Journals a forwarded message id, compacting the journal when it has grown well past
    /// the window.
    fn journal(&mut self, seen: Seen) {
        if let Err(e) = self.journal.append(seen) {
            // Forwarding goes on: the id is still remembered until the bridge stops.
            tracing::error!("{e}; a restart would forget message ids");
            return;
        }
        if self.journal.records() >= self.compact_at {
            let live = self.gate.remembered(now_ms());
            match self.journal.compact(&live) {
                Ok(()) => tracing::debug!("replay journal compacted to {} id(s)", live.len()),
                Err(e) => tracing::error!("{e}"),
            }
            self.compact_at = self.journal.records().saturating_add(COMPACT_SLACK);
        }
    }

    /// Gates one envelope and publishes the outcome; returns the message id it used up,
    /// for the replay journal once the hand-over is acknowledged.
    async fn handle(&mut self, publish: &Publish) -> Option<Seen> {
        let sender = publish.topic.strip_prefix("km/v1/in/")?;
        keymesh_primitives::validate_id(sender.as_bytes()).ok()?;
        let snapshot = self.snapshot.borrow().clone();
        let started = Instant::now();
        // The MQTT `DUP` flag is not consulted: anyone can set it. Redeliveries are known
        // from the bridge's own journals (`Gate::remember_open`).
        let verdict = self
            .gate
            .check(sender, &publish.payload, now_ms(), &snapshot);
        self.metrics
            .check_latency
            .observe(started.elapsed().as_secs_f64());
        let used = match verdict {
            Ok(accepted) => self.forward(accepted, &snapshot, publish).await,
            Err(refused) => {
                let consumed = refused.consumed;
                self.refuse(refused, &snapshot, publish).await;
                consumed
            }
        };
        let pending = lock(&self.audit).pending();
        self.metrics.audit_backlog.set(pending as u64);
        used
    }

    async fn forward(
        &mut self,
        accepted: crate::gate::Accepted,
        snapshot: &Snapshot,
        publish: &Publish,
    ) -> Option<Seen> {
        let delivery = Delivery {
            attestation: Attestation::sign(
                &self.signer,
                &publish.payload,
                snapshot.block_number,
                snapshot.block_hash,
            ),
            envelope: publish.payload.to_vec(),
        };
        let topic = match &accepted.target {
            Target::Device(id) => mqtt::inbox_topic(id),
            Target::Group(id) => mqtt::group_topic(id),
        };
        if let Err(e) = self
            .client
            .publish(topic, QoS::AtLeastOnce, false, delivery.to_bytes())
            .await
        {
            tracing::warn!("forward: {e}");
            return None;
        }
        let seen = Seen {
            message_id: accepted.message_id,
            envelope_hash: accepted.envelope_hash,
            expiry_ms: accepted.expiry_ms,
        };
        if accepted.redelivery {
            tracing::debug!(
                "unfinished forward of {} forwarded again",
                hex::encode(accepted.message_id)
            );
            self.metrics.redelivered.inc();
            return Some(seen);
        }
        self.metrics.forwarded.inc();
        // Audit first: at a restart the audit journal tells which forwards were unfinished.
        self.audit(
            Record::Exchanged {
                sender: accepted.sender,
                target: accepted.target,
                fingerprint: accepted.fingerprint,
                envelope_hash: accepted.envelope_hash,
                checked_at: snapshot.block_number,
            },
            accepted.envelope_hash,
            Some((accepted.message_id, accepted.expiry_ms)),
        );
        Some(seen)
    }

    async fn refuse(&mut self, refused: Refused, snapshot: &Snapshot, publish: &Publish) {
        let code = refused.reason.code();
        self.metrics.refused.with_label_values(&[code]).inc();
        let (presented, expected) = match &refused.reason {
            Reason::KeyMismatch {
                presented,
                expected,
            } => (Some(hex::encode(presented)), Some(hex::encode(expected))),
            _ => (None, None),
        };
        let notice = RefusalNotice {
            reason: code,
            message_id: refused.message_id.map(hex::encode),
            target: refused.target.as_ref().map(target_text),
            detail: &refused.detail,
            presented,
            expected,
            block: snapshot.block_number,
        };
        let notify = self
            .gate
            .may_notify(&refused.reported_to, now_ms(), snapshot);
        // Logged at info within the sender's notice budget; past it a flood would fill the
        // disk with lines the metrics already count.
        if notify {
            tracing::info!(
                "refused from {}: {code}: {}",
                refused.reported_to,
                refused.detail
            );
        } else {
            self.metrics.notices_suppressed.inc();
            tracing::debug!(
                "refused from {}: {code}: {}",
                refused.reported_to,
                refused.detail
            );
        }
        if let (true, Ok(json)) = (notify, serde_json::to_vec(&notice)) {
            let topic = mqtt::status_topic(&refused.reported_to);
            if let Err(e) = self
                .client
                .publish(topic, QoS::AtLeastOnce, false, json)
                .await
            {
                tracing::warn!("refusal notice: {e}");
            }
        }
        if let (
            Reason::KeyMismatch {
                presented,
                expected,
            },
            Some(target),
        ) = (refused.reason, refused.target)
        {
            let envelope_hash = keymesh_device::envelope_hash(&publish.payload);
            // A crash between the audit append and the replay-journal append leaves the id
            // unjournaled; the redelivery is the same refusal, already in the audit journal.
            if lock(&self.audit).has_record_of(&envelope_hash) {
                return;
            }
            self.audit(
                Record::Mismatch {
                    sender: refused.reported_to,
                    target,
                    presented,
                    expected,
                },
                envelope_hash,
                None,
            );
        }
    }
}
