//! Device configuration: a TOML file, overridden by command-line flags.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default MQTT port.
pub const DEFAULT_MQTT_PORT: u16 = 1883;
/// Default MQTT-over-TLS port.
pub const DEFAULT_MQTTS_PORT: u16 = 8883;
/// The audience a dev bridge's front expects when none is configured.
pub const DEFAULT_AUDIENCE: &str = "keymesh-dev";

/// The TOML file's fields; every one is optional and a flag overrides it.
///
/// ```toml
/// broker = "mqtt://127.0.0.1:1883"
/// device_id = "1111"
/// key = "/var/lib/keymesh/1111.key.pem"
/// peers_dir = "/var/lib/keymesh/peers"
/// # the deployment name the broker's front expects in connect proofs
/// audience = "plant-7"
/// # sr25519 public keys of the bridges whose attested deliveries `listen` accepts
/// trusted_bridges = ["0x1cbd2d43530a44705ad088af313e18f80b53ef16b36177cd4b77b846f2a5f07c"]
/// # with broker = "mqtts://…": the CA certificates (PEM) the broker's certificate must chain to
/// ca_file = "/etc/keymesh/fleet-ca.pem"
/// # the agent's key cache and replay window
/// state_dir = "/var/lib/keymesh/1111"
/// ```
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub broker: Option<String>,
    pub device_id: Option<String>,
    pub key: Option<PathBuf>,
    pub peers_dir: Option<PathBuf>,
    pub trusted_bridges: Option<Vec<String>>,
    pub audience: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config {path} is not valid: {reason}")]
    Parse { path: String, reason: String },
    #[error("broker URL {0:?} is not mqtt://host[:port] or mqtts://host[:port]")]
    BadBroker(String),
    #[error("device id {0:?} is not 1..64 bytes of [A-Za-z0-9._-]")]
    BadDeviceId(String),
    #[error("audience {0:?} is not 1..64 bytes of [A-Za-z0-9._-]")]
    BadAudience(String),
    #[error("bridge key {0:?} is not 64 hex digits (an sr25519 public key)")]
    BadBridgeKey(String),
    #[error("missing setting: {0} (give it in the config file or as a flag)")]
    Missing(&'static str),
}

/// Parses a bridge's sr25519 public key: 64 hex digits, `0x` optional.
pub fn bridge_key(text: &str) -> Result<[u8; 32], ConfigError> {
    let bad = || ConfigError::BadBridgeKey(text.to_string());
    let digits = text.strip_prefix("0x").unwrap_or(text);
    hex::decode(digits)
        .map_err(|_| bad())?
        .try_into()
        .map_err(|_| bad())
}

impl FileConfig {
    /// Reads a TOML config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }
}

/// An MQTT broker address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    /// `mqtts://`: connect over TLS.
    pub tls: bool,
}

impl Broker {
    /// Parses `mqtt://host[:port]`, `mqtts://host[:port]` (TLS) or `host[:port]`.
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::BadBroker(url.to_string());
        let (rest, tls) = match url.strip_prefix("mqtts://") {
            Some(rest) => (rest, true),
            None => (url.strip_prefix("mqtt://").unwrap_or(url), false),
        };
        let rest = rest.trim_end_matches('/');
        let default_port = if tls {
            DEFAULT_MQTTS_PORT
        } else {
            DEFAULT_MQTT_PORT
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad())?),
            None => (rest, default_port),
        };
        if host.is_empty() || host.contains('/') || port == 0 {
            return Err(bad());
        }
        Ok(Broker {
            host: host.to_string(),
            port,
            tls,
        })
    }
}

/// The agent's default state directory: `$XDG_STATE_HOME/keymesh-device/<device>`, else
/// `$HOME/.local/state/keymesh-device/<device>`.
pub fn default_state_dir(device: &str) -> Result<PathBuf, ConfigError> {
    let base = match std::env::var_os("XDG_STATE_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".local/state"))
            .ok_or(ConfigError::Missing("state_dir (no $HOME)"))?,
    };
    Ok(base.join("keymesh-device").join(device))
}

/// Checks a device id as the chain would.
pub fn device_id(id: &str) -> Result<String, ConfigError> {
    keymesh_primitives::validate_id(id.as_bytes())
        .map(|()| id.to_string())
        .map_err(|_| ConfigError::BadDeviceId(id.to_string()))
}

/// Checks an audience (a deployment name): the same syntax as ids.
pub fn audience(name: &str) -> Result<String, ConfigError> {
    keymesh_primitives::validate_id(name.as_bytes())
        .map(|()| name.to_string())
        .map_err(|_| ConfigError::BadAudience(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse_and_garbage_is_refused() {
        assert_eq!(
            Broker::parse("mqtt://127.0.0.1:1884").unwrap(),
            Broker {
                host: "127.0.0.1".into(),
                port: 1884,
                tls: false,
            }
        );
        assert_eq!(Broker::parse("localhost").unwrap().port, DEFAULT_MQTT_PORT);
        let secure = Broker::parse("mqtts://broker.plant").unwrap();
        assert!(secure.tls);
        assert_eq!(secure.port, DEFAULT_MQTTS_PORT);
        for bad in [
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:99999",
            "mqtt://h:x",
            "mqtt://a/b:1",
        ] {
            assert!(Broker::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_file_parses_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.toml");
        std::fs::write(&path, "broker = \"mqtt://h:1\"\ndevice_id = \"1111\"\n").unwrap();
        let cfg = FileConfig::load(&path).unwrap();
        assert_eq!(cfg.device_id.as_deref(), Some("1111"));
        std::fs::write(&path, "brokr = \"x\"\n").unwrap();
        assert!(matches!(
            FileConfig::load(&path),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            FileConfig::load(&dir.path().join("none")),
            Err(ConfigError::Read { .. })
        ));
        assert!(device_id("a/b").is_err());
    }
}
