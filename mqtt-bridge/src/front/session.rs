//! One device's connection through the front.
//!
//! 1. The first frame must be a CONNECT whose password is a valid connect proof
//!    ([`super::auth`]); anything else gets a refusing CONNACK and the connection closes.
//! 2. The front opens the device's own connection to the backend broker, under the front's
//!    backend credential and the client id `dev:<client id>`, which no bridge uses.
//! 3. Four tasks then relay frames: device → front → broker, where every PUBLISH and
//!    SUBSCRIBE meets the topic policy ([`super::acl`]); and broker → front → device, where
//!    every PUBLISH is checked again against the latest finalized snapshot, so a removed
//!    member stops receiving a group's messages within one finalized block.
//! 4. A device that publishes outside its rights is disconnected; one that the chain
//!    suspends or revokes is disconnected as soon as the bridge applies that block.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use rumqttc::mqttbytes::{
    v4::{
        self, ConnAck, ConnectReturnCode, PubAck, Publish, SubAck, Subscribe, SubscribeReasonCode,
    },
    PacketType, Protocol, QoS,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    sync::{mpsc, watch},
    task::JoinSet,
};

use super::{
    acl,
    auth::ConnectRequest,
    frames::{encode, write_frames, Frame, FrameError, FrameReader},
    Shared,
};
use crate::gate::Snapshot;
use keymesh_primitives::DeviceStatus;

/// Prefix of every client id the front opens at the backend. Device ids cannot contain ':',
/// so no device can reach the bridge's own client id, and no two devices share one.
pub const BACKEND_CLIENT_PREFIX: &str = "dev:";
/// SUBSCRIBEs awaiting their SUBACK per connection; more is abuse.
const MAX_PENDING_SUBSCRIBES: usize = 64;
/// Frames queued toward one side of a connection.
const QUEUE: usize = 256;
/// How long the broker-side writer may take to drain after a clean DISCONNECT.
const DRAIN_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a new connection may take to send its CONNECT.
const CONNECT_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionEnd {
    #[error("{0}")]
    Frames(#[from] FrameError),
    #[error("refused at CONNECT: {0}")]
    Refused(String),
    #[error("denied: {0}")]
    Denied(String),
    #[error("device {0} is no longer active in finalized state")]
    Kicked(String),
    #[error("disconnected")]
    Disconnect,
    #[error("backend broker: {0}")]
    Backend(String),
}

/// Which SUBSCRIBE filters the policy allowed, by packet id, so the broker's SUBACK can be
/// widened back to the device's request.
type PendingSubscribes = Arc<Mutex<HashMap<u16, Vec<bool>>>>;

/// Serves one accepted connection until it ends.
pub async fn serve<S>(shared: Arc<Shared>, stream: S) -> Result<(), SessionEnd>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (client_rd, mut client_wr) = tokio::io::split(stream);
    let mut client = FrameReader::new(client_rd, shared.max_packet);
    let first = tokio::time::timeout(CONNECT_WITHIN, client.next())
        .await
        .map_err(|_| SessionEnd::Refused("no CONNECT in time".into()))??;
    // Checked before the proof, so a device's nonce is not spent on a refusal.
    if !*shared.ingress.borrow() {
        refuse_connect(&mut client_wr, ConnectReturnCode::ServiceUnavailable).await;
        return Err(SessionEnd::Refused(
            "the bridge is not subscribed to ingress yet".into(),
        ));
    }
    let (device, connect) = match authenticate(&shared, &first) {
        Ok(authenticated) => authenticated,
        Err((code, reason)) => {
            refuse_connect(&mut client_wr, code).await;
            return Err(SessionEnd::Refused(reason));
        }
    };
    let backend = match connect_backend(&shared.backend).await {
        Ok(backend) => backend,
        Err(e) => {
            refuse_connect(&mut client_wr, ConnectReturnCode::ServiceUnavailable).await;
            return Err(e);
        }
    };
    let (backend_rd, backend_wr) = tokio::io::split(backend);
    let (to_backend, backend_queue) = mpsc::channel::<Bytes>(QUEUE);
    let (to_client, client_queue) = mpsc::channel::<Bytes>(QUEUE);
    to_backend
        .send(backend_connect(&shared, &connect)?)
        .await
        .map_err(|_| SessionEnd::Disconnect)?;
    shared.metrics.front_sessions.inc();
    let pending: PendingSubscribes = Arc::default();
    // The broker-side writer is kept apart so a clean DISCONNECT can let it drain.
    let mut backend_writer = tokio::spawn(async move {
        write_frames(backend_wr, backend_queue)
            .await
            .map_err(SessionEnd::from)
    });
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        write_frames(client_wr, client_queue)
            .await
            .map_err(SessionEnd::from)
    });
    tasks.spawn(upstream(
        Upstream {
            device: device.clone(),
            shared: shared.clone(),
            to_backend: to_backend.clone(),
            to_client: to_client.clone(),
            pending: pending.clone(),
        },
        client,
    ));
    tasks.spawn(downstream(
        Downstream {
            device: device.clone(),
            snapshot: shared.snapshot.clone(),
            to_backend,
            to_client,
            pending,
            shared: shared.clone(),
        },
        FrameReader::new(backend_rd, shared.max_packet),
    ));
    let end = tokio::select! {
        Some(ended) = tasks.join_next() => match ended {
            // Only the device's DISCONNECT ends a task cleanly.
            Ok(Ok(())) => {
                drain(&mut tasks, &mut backend_writer).await;
                SessionEnd::Disconnect
            }
            Ok(Err(end)) => end,
            Err(e) => SessionEnd::Backend(e.to_string()),
        },
        written = &mut backend_writer => match written {
            Ok(Ok(())) => SessionEnd::Disconnect,
            Ok(Err(end)) => end,
            Err(e) => SessionEnd::Backend(e.to_string()),
        },
        device = kicked(device.clone(), shared.snapshot.clone()) => {
            shared.metrics.front_kicked.inc();
            SessionEnd::Kicked(device)
        }
    };
    backend_writer.abort();
    shared.metrics.front_sessions.dec();
    tracing::debug!("session of {device} ended: {end}");
    Err(end)
}

/// After a clean DISCONNECT: stops the other tasks, so every sender of the broker-side queue
/// is gone, then lets the writer put what the device sent before it on the wire.
async fn drain(
    tasks: &mut JoinSet<Result<(), SessionEnd>>,
    backend_writer: &mut tokio::task::JoinHandle<Result<(), SessionEnd>>,
) {
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let _ = tokio::time::timeout(DRAIN_WITHIN, backend_writer).await;
}

/// A byte stream to the backend broker: TCP, or TLS over TCP.
trait BackendStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> BackendStream for T {}

/// Opens the device's connection to the backend broker.
async fn connect_backend(backend: &super::Backend) -> Result<Box<dyn BackendStream>, SessionEnd> {
    let error = |e: &dyn std::fmt::Display| SessionEnd::Backend(e.to_string());
    let tcp = TcpStream::connect((backend.host.as_str(), backend.port))
        .await
        .map_err(|e| error(&e))?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = &backend.tls else {
        return Ok(Box::new(tcp));
    };
    let name =
        rustls::pki_types::ServerName::try_from(backend.host.clone()).map_err(|e| error(&e))?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| error(&e))?;
    Ok(Box::new(stream))
}

/// Tells a client its CONNECT was refused; it is closed right after, so a failed write
/// changes nothing.
async fn refuse_connect<W: AsyncWrite + Unpin>(client: &mut W, code: ConnectReturnCode) {
    if let Ok(connack) = encode(&v4::Packet::ConnAck(ConnAck::new(code, false))) {
        let _ = tokio::io::AsyncWriteExt::write_all(client, &connack).await;
    }
}

/// Decodes and authenticates the first frame: the device and its CONNECT, or on refusal the
/// CONNACK code and why.
fn authenticate(
    shared: &Shared,
    first: &Frame,
) -> Result<(String, v4::Connect), (ConnectReturnCode, String)> {
    if first.kind != PacketType::Connect {
        return Err((
            ConnectReturnCode::NotAuthorized,
            "first packet is not CONNECT".into(),
        ));
    }
    let connect = match v4::Connect::read(first.header, first.bytes.clone()) {
        Ok(connect) => connect,
        Err(rumqttc::mqttbytes::Error::InvalidProtocolLevel(level)) => {
            return Err((
                ConnectReturnCode::RefusedProtocolVersion,
                format!("protocol level {level}; the front speaks MQTT 3.1.1"),
            ))
        }
        Err(e) => {
            return Err((
                ConnectReturnCode::NotAuthorized,
                format!("bad CONNECT: {e}"),
            ))
        }
    };
    let non_empty = |s: &str| (!s.is_empty()).then_some(());
    let login = connect.login.as_ref();
    let request = ConnectRequest {
        client_id: &connect.client_id,
        username: login.and_then(|l| non_empty(&l.username).map(|()| l.username.as_str())),
        password: login.and_then(|l| non_empty(&l.password).map(|()| l.password.as_bytes())),
        has_last_will: connect.last_will.is_some(),
    };
    let snapshot = shared.snapshot.borrow().clone();
    let verdict = shared
        .lock_auth()
        .authenticate(&request, &snapshot, crate::clock::now_ms());
    match verdict {
        Ok(device) => {
            shared
                .metrics
                .front_connects
                .with_label_values(&["accepted"])
                .inc();
            Ok((device, connect))
        }
        Err(refusal) => {
            shared
                .metrics
                .front_connects
                .with_label_values(&[refusal.label()])
                .inc();
            // Anyone can make these; the metric counts them, the log would only grow.
            tracing::debug!("CONNECT of {:?} refused: {refusal}", connect.client_id);
            Err((refusal.connack_code(), refusal.to_string()))
        }
    }
}

/// The device's CONNECT as the backend sees it: the front's credential, a client id in the
/// front's own namespace, no will (refused earlier), the device's session flags.
fn backend_connect(shared: &Shared, connect: &v4::Connect) -> Result<Bytes, SessionEnd> {
    let mut rewritten = v4::Connect::new(format!("{BACKEND_CLIENT_PREFIX}{}", connect.client_id));
    rewritten.protocol = Protocol::V4;
    rewritten.keep_alive = connect.keep_alive;
    rewritten.clean_session = connect.clean_session;
    if let Some((user, password)) = &shared.backend.login {
        rewritten.set_login(user.clone(), password.clone());
    }
    Ok(encode(&v4::Packet::Connect(rewritten))?)
}

/// Resolves once `device` is no longer active in the latest snapshot.
async fn kicked(device: String, mut snapshots: watch::Receiver<Arc<Snapshot>>) -> String {
    loop {
        let active = snapshots
            .borrow_and_update()
            .devices
            .get(&device)
            .is_some_and(|d| d.status == DeviceStatus::Active);
        if !active || snapshots.changed().await.is_err() {
            return device;
        }
    }
}

struct Upstream {
    device: String,
    shared: Arc<Shared>,
    to_backend: mpsc::Sender<Bytes>,
    to_client: mpsc::Sender<Bytes>,
    pending: PendingSubscribes,
}

/// Device → broker: publishes only on its own ingress, subscriptions only within its rights.
async fn upstream<R: AsyncRead + Unpin>(
    up: Upstream,
    mut client: FrameReader<R>,
) -> Result<(), SessionEnd> {
    loop {
        let frame = client.next().await?;
        let forward = match frame.kind {
            PacketType::Publish => {
                let publish =
                    Publish::read(frame.header, frame.bytes.clone()).map_err(FrameError::from)?;
                if let Err(denied) = check_publish(&up.device, &publish) {
                    up.shared
                        .metrics
                        .front_denied
                        .with_label_values(&["publish"])
                        .inc();
                    tracing::info!("{} disconnected: {denied}", up.device);
                    return Err(SessionEnd::Denied(denied));
                }
                Some(frame.bytes)
            }
            PacketType::Subscribe => up.subscribe(frame).await?,
            PacketType::Connect => return Err(SessionEnd::Denied("a second CONNECT".into())),
            PacketType::Disconnect => {
                let _ = up.to_backend.send(frame.bytes).await;
                return Ok(());
            }
            _ => Some(frame.bytes),
        };
        if let Some(bytes) = forward {
            up.to_backend
                .send(bytes)
                .await
                .map_err(|_| SessionEnd::Disconnect)?;
        }
    }
}

fn check_publish(device: &str, publish: &Publish) -> Result<(), String> {
    if publish.qos == QoS::ExactlyOnce {
        return Err("QoS 2 is not used on KeyMesh's MQTT plane".into());
    }
    acl::may_publish(device, &publish.topic, publish.retain)
        .map_err(|denied| format!("publish to {:?}: {denied:?}", publish.topic))
}

impl Upstream {
    /// Passes the filters the device may hold; answers the rest with a failure code.
    async fn subscribe(&self, frame: Frame) -> Result<Option<Bytes>, SessionEnd> {
        let mut subscribe =
            Subscribe::read(frame.header, frame.bytes.clone()).map_err(FrameError::from)?;
        let snapshot = self.shared.snapshot.borrow().clone();
        let allowed: Vec<bool> = subscribe
            .filters
            .iter()
            .map(|f| acl::may_subscribe(&self.device, &f.path, &snapshot))
            .collect();
        let denied = allowed.iter().filter(|a| !**a).count();
        if denied > 0 {
            self.shared
                .metrics
                .front_denied
                .with_label_values(&["subscribe"])
                .inc_by(denied as u64);
            tracing::debug!(
                "{} may not subscribe to {:?}",
                self.device,
                subscribe
                    .filters
                    .iter()
                    .zip(&allowed)
                    .filter(|(_, a)| !**a)
                    .map(|(f, _)| f.path.as_str())
                    .collect::<Vec<_>>()
            );
        }
        if denied == allowed.len() {
            let refusal = SubAck::new(subscribe.pkid, vec![SubscribeReasonCode::Failure; denied]);
            let bytes = encode(&v4::Packet::SubAck(refusal))?;
            self.to_client
                .send(bytes)
                .await
                .map_err(|_| SessionEnd::Disconnect)?;
            return Ok(None);
        }
        let exactly_once = subscribe.filters.iter().any(|f| f.qos == QoS::ExactlyOnce);
        if denied == 0 && !exactly_once {
            return Ok(Some(frame.bytes));
        }
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.len() >= MAX_PENDING_SUBSCRIBES {
                return Err(SessionEnd::Denied(
                    "too many SUBSCRIBEs awaiting SUBACK".into(),
                ));
            }
            pending.insert(subscribe.pkid, allowed.clone());
        }
        let mut allowed_flags = allowed.iter();
        subscribe
            .filters
            .retain(|_| allowed_flags.next().copied().unwrap_or(false));
        for filter in &mut subscribe.filters {
            // KeyMesh's plane is QoS 0 and 1; a device asking for 2 is granted 1.
            if filter.qos == QoS::ExactlyOnce {
                filter.qos = QoS::AtLeastOnce;
            }
        }
        Ok(Some(encode(&v4::Packet::Subscribe(subscribe))?))
    }
}

struct Downstream {
    device: String,
    shared: Arc<Shared>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    to_backend: mpsc::Sender<Bytes>,
    to_client: mpsc::Sender<Bytes>,
    pending: PendingSubscribes,
}

/// Broker → device: every delivery checked against the latest snapshot; SUBACKs widened.
async fn downstream<R: AsyncRead + Unpin>(
    down: Downstream,
    mut backend: FrameReader<R>,
) -> Result<(), SessionEnd> {
    loop {
        let frame = backend.next().await?;
        let bytes = match frame.kind {
            PacketType::Publish => {
                let publish =
                    Publish::read(frame.header, frame.bytes.clone()).map_err(FrameError::from)?;
                let readable = acl::may_read(&down.device, &publish.topic, &down.snapshot.borrow());
                if !readable {
                    down.withhold(&publish).await?;
                    continue;
                }
                frame.bytes
            }
            PacketType::SubAck => down.widen(frame)?,
            _ => frame.bytes,
        };
        down.to_client
            .send(bytes)
            .await
            .map_err(|_| SessionEnd::Disconnect)?;
    }
}

impl Downstream {
    /// Drops a delivery the device may no longer read, acknowledging it so the broker does
    /// not hand it over again.
    async fn withhold(&self, publish: &Publish) -> Result<(), SessionEnd> {
        self.shared
            .metrics
            .front_denied
            .with_label_values(&["delivery"])
            .inc();
        tracing::debug!("withheld {} from {}", publish.topic, self.device);
        if publish.qos == QoS::AtLeastOnce {
            let ack = encode(&v4::Packet::PubAck(PubAck::new(publish.pkid)))?;
            self.to_backend
                .send(ack)
                .await
                .map_err(|_| SessionEnd::Disconnect)?;
        }
        Ok(())
    }

    /// Puts refused filters back into a SUBACK, in the device's order.
    fn widen(&self, frame: Frame) -> Result<Bytes, SessionEnd> {
        let suback = SubAck::read(frame.header, frame.bytes.clone()).map_err(FrameError::from)?;
        let allowed = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&suback.pkid);
        let Some(allowed) = allowed else {
            return Ok(frame.bytes);
        };
        let mut granted = suback.return_codes.into_iter();
        let codes = allowed
            .iter()
            .map(|ok| match ok {
                true => granted.next().unwrap_or(SubscribeReasonCode::Failure),
                false => SubscribeReasonCode::Failure,
            })
            .collect();
        Ok(encode(&v4::Packet::SubAck(SubAck::new(
            suback.pkid,
            codes,
        )))?)
    }
}
