//! The MQTT front: the only door devices have to the broker (DESIGN §4a).
//!
//! Devices connect here, never to the broker itself. The front authenticates each CONNECT
//! with the device's connect proof against finalized state, then relays the connection to
//! the backend broker, applying the topic policy to every publish, subscribe and delivery.
//! The backend (the embedded rumqttd, or Mosquitto) accepts only the front's and the
//! bridge's credentials, so the same rules hold whichever broker sits behind.
//!
//! | part | module |
//! |---|---|
//! | who may connect | [`auth`] |
//! | who may publish, subscribe and read what | [`acl`] |
//! | frames off a byte stream | [`frames`] |
//! | one connection's relay | [`session`] |

pub mod acl;
pub mod auth;
pub mod frames;
pub mod session;
pub mod tls;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::{net::TcpListener, sync::watch};

use crate::{gate::Snapshot, metrics::Metrics};

/// Where the backend broker is and the credential the front and the bridge present to it.
#[derive(Clone, Debug)]
pub struct Backend {
    pub host: String,
    pub port: u16,
    /// Username and password; `None` for a broker that takes anonymous clients, which is
    /// then safe only if devices cannot reach it.
    pub login: Option<(String, String)>,
    /// TLS to the broker, when it asks for it (`mqtts://`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// What every session shares.
pub struct Shared {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// Whether the bridge is subscribed to ingress at the broker: until it is, a device's
    /// publish could be acknowledged and then read by no one.
    pub ingress: watch::Receiver<bool>,
    pub auth: Mutex<auth::Authenticator>,
    pub backend: Backend,
    pub max_packet: usize,
    pub metrics: Metrics,
}

impl Shared {
    fn lock_auth(&self) -> MutexGuard<'_, auth::Authenticator> {
        // A panic while holding the lock cannot leave the nonce window half-updated in a way
        // that admits a replay: insertion is the last step.
        self.auth.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Most device connections the front holds at once; past it, new ones are closed at accept.
pub const MAX_CONNECTIONS: usize = 10_000;

/// Binds the front's listener.
pub async fn bind(listen: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(listen).await
}

/// How long a device may take over the TLS handshake.
const HANDSHAKE_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts device connections for ever, one task each; over TLS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("front accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!("front: {MAX_CONNECTIONS} connections open; closing {peer}");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (shared, tls) = (shared.clone(), tls.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let served = match tls {
                None => session::serve(shared, stream).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_WITHIN, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => session::serve(shared, stream).await,
                        Ok(Err(e)) => Err(session::SessionEnd::Refused(format!("TLS: {e}"))),
                        Err(_) => Err(session::SessionEnd::Refused(
                            "TLS handshake timed out".into(),
                        )),
                    }
                }
            };
            if let Err(end) = served {
                tracing::debug!("front connection from {peer}: {end}");
            }
        });
    }
}
