//! The embedded backend broker (rumqttd), used unless `--broker` names an external one.
//!
//! rumqttd 0.20 checks a username and password at CONNECT but has no topic ACLs, so it is
//! never exposed: it listens on a loopback port of its own and accepts one credential, a
//! random secret made at every start and held only in this process. Devices reach it only
//! through the front ([`crate::front`]), which enforces DESIGN §4a.

use std::net::{SocketAddr, TcpListener};

use rand::RngCore;

use crate::front::Backend;

/// The one username the embedded broker accepts.
pub const BACKEND_USER: &str = "keymesh-front";

/// Why the embedded broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("embedded broker configuration: {0}")]
    Config(String),
}

/// Starts rumqttd (MQTT 3.1.1) on its own thread, on `listen` or a free loopback port, behind
/// `login` or else a fresh secret. Returns where it listens and the credential; callers wait
/// for readiness by connecting.
pub fn start_embedded(
    listen: Option<SocketAddr>,
    login: Option<(String, String)>,
    max_payload: usize,
) -> Result<Backend, BrokerError> {
    let config_error = |e: &dyn std::fmt::Display| BrokerError::Config(e.to_string());
    let listen: SocketAddr = match listen {
        Some(listen) => listen,
        None => TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| config_error(&e))?,
    };
    let (user, secret) = login.unwrap_or_else(|| {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        (BACKEND_USER.to_string(), hex::encode(secret))
    });
    // Both go into TOML below as quoted strings.
    let quotable = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
    };
    if !quotable(&user) || !quotable(&secret) {
        return Err(BrokerError::Config(
            "the broker username and password must be printable ASCII without quotes or backslashes".into(),
        ));
    }
    // rumqttd is configured through serde; this is its documented TOML shape.
    let text = format!(
        r#"
id = 0
[router]
id = 0
max_connections = 10010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "keymesh-backend"
listen = "{listen}"
next_connection_delay_ms = 1
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = {max_payload}
    max_inflight_count = 500
    dynamic_filters = true
    auth = {{ "{user}" = "{secret}" }}
"#
    );
    let config: rumqttd::Config = toml::from_str(&text).map_err(|e| config_error(&e))?;
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!("embedded broker stopped: {e}");
            }
        })
        .map_err(|e| config_error(&e))?;
    Ok(Backend {
        host: listen.ip().to_string(),
        port: listen.port(),
        login: Some((user, secret)),
        tls: None,
    })
}
