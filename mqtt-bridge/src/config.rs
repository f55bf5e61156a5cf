//! Configuration: a TOML file, overridden by command-line flags.

use std::{net::SocketAddr, path::PathBuf, str::FromStr};

use serde::Deserialize;
use subxt_signer::{sr25519::Keypair, SecretUri};

use crate::gate::Limits;

/// `keymesh-bridge`: forwards device envelopes that finalized KeyMesh state confirms.
#[derive(Debug, clap::Parser)]
#[command(version, about)]
pub struct Cli {
    /// TOML file with any of the settings below (flags win).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The node's JSON-RPC endpoint [default: ws://127.0.0.1:9944].
    #[arg(long)]
    pub node: Option<String>,
    /// Use this external MQTT broker (mqtt://host:port) instead of the embedded one.
    #[arg(long)]
    pub broker: Option<String>,
    /// Where devices connect: the front, which authenticates them and enforces the topic
    /// policy in front of either broker [default: 127.0.0.1:1883].
    #[arg(long)]
    pub mqtt_listen: Option<SocketAddr>,
    /// Username the bridge (and its front) presents to the broker; with the embedded broker,
    /// the one credential it accepts (with KEYMESH_BROKER_PASSWORD) instead of a random one.
    #[arg(long)]
    pub broker_username: Option<String>,
    /// Also serve the front over TLS here (needs --tls-cert and --tls-key).
    #[arg(long)]
    pub mqtt_tls_listen: Option<SocketAddr>,
    /// The front's TLS certificate chain (PEM).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The front's TLS private key (PEM).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) an mqtts:// broker's certificate must chain to.
    #[arg(long)]
    pub broker_ca: Option<PathBuf>,
    /// Where the embedded broker listens, for operators' own tools (it takes only the broker
    /// credential) [default: a free loopback port].
    #[arg(long)]
    pub embedded_broker_listen: Option<SocketAddr>,
    /// The audience devices' connect proofs must name (this deployment's name)
    /// [default: keymesh-dev].
    #[arg(long)]
    pub audience: Option<String>,
    /// Secret URI of the bridge's sr25519 account, which signs attestations, the exchange
    /// log and group keys ("//Alice" on a dev chain; keep real ones out of shell history).
    #[arg(long, env = "KEYMESH_BRIDGE_SIGNER")]
    pub signer: Option<String>,
    /// Serve `/metrics` (Prometheus), `/healthz` and `/readyz` on this address
    /// [default: 127.0.0.1:9630].
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// Do not act as key manager (another bridge rekeys groups).
    #[arg(long)]
    pub no_keyman: bool,
    /// Directory for the bridge's own state (its replay window, so that a restart does not
    /// forget which messages it forwarded) [default: $XDG_STATE_HOME/keymesh-bridge, else
    /// ~/.local/state/keymesh-bridge].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Largest envelope accepted, in bytes.
    #[arg(long)]
    pub max_envelope: Option<usize>,
    /// How long message ids are remembered, in seconds.
    #[arg(long)]
    pub replay_window_secs: Option<u64>,
    /// Largest difference between an envelope's timestamp and the bridge's clock, in seconds.
    #[arg(long)]
    pub max_skew_secs: Option<u64>,
    /// Sustained envelopes per second per sender.
    #[arg(long)]
    pub rate_per_sec: Option<u32>,
    /// Envelopes per sender in a burst.
    #[arg(long)]
    pub rate_burst: Option<u32>,
    /// Oldest finalized head the bridge forwards on, by the block's timestamp against the
    /// bridge's clock, in seconds [default: 30]. Past it every envelope is refused
    /// (`StaleState`).
    #[arg(long)]
    pub max_staleness_secs: Option<u64>,
}

/// The environment variable that holds the external broker's password.
pub const BROKER_PASSWORD_ENV: &str = "KEYMESH_BROKER_PASSWORD";

/// The same settings, from a file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub node: Option<String>,
    pub broker: Option<String>,
    pub mqtt_listen: Option<SocketAddr>,
    pub broker_username: Option<String>,
    pub broker_password: Option<String>,
    pub embedded_broker_listen: Option<SocketAddr>,
    pub mqtt_tls_listen: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub broker_ca: Option<PathBuf>,
    pub audience: Option<String>,
    pub signer: Option<String>,
    pub metrics: Option<SocketAddr>,
    pub keyman: Option<bool>,
    pub state_dir: Option<PathBuf>,
    pub max_envelope: Option<usize>,
    pub replay_window_secs: Option<u64>,
    pub max_skew_secs: Option<u64>,
    pub rate_per_sec: Option<u32>,
    pub rate_burst: Option<u32>,
    pub max_staleness_secs: Option<u64>,
}

/// Which broker sits behind the front.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerChoice {
    /// Start rumqttd in-process on a private port, behind `login` or else a fresh secret.
    Embedded {
        listen: Option<SocketAddr>,
        login: Option<(String, String)>,
    },
    /// Connect to this one, presenting `login`, over TLS trusting `ca` if given
    /// (`mqtts://`).
    External {
        host: String,
        port: u16,
        login: Option<(String, String)>,
        ca: Option<PathBuf>,
    },
}

/// The front's TLS listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontTls {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything the service needs, resolved.
pub struct Settings {
    pub node: String,
    pub broker: BrokerChoice,
    /// Where the front listens for devices.
    pub mqtt_listen: SocketAddr,
    /// Where it also listens over TLS, if anywhere.
    pub front_tls: Option<FrontTls>,
    /// What devices' connect proofs must name.
    pub audience: String,
    pub signer: Keypair,
    pub metrics: Option<SocketAddr>,
    pub keyman: bool,
    pub state_dir: PathBuf,
    pub limits: Limits,
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("broker {0:?} is not mqtt://host:port")]
    Broker(String),
    #[error("audience {0:?} is not 1..64 of [A-Za-z0-9._-]")]
    Audience(String),
    #[error("a broker password needs a broker username")]
    PasswordWithoutUser,
    #[error("--mqtt-tls-listen needs --tls-cert and --tls-key")]
    TlsFiles,
    #[error("an mqtts:// broker needs --broker-ca")]
    BrokerCa,
    #[error(
        "no signer: pass --signer (or signer = \"…\" in the config), e.g. //Alice on a dev chain"
    )]
    NoSigner,
    #[error("signer is not a valid secret URI: {0}")]
    Signer(String),
    #[error("no state directory: pass --state-dir (neither XDG_STATE_HOME nor HOME is set)")]
    NoStateDir,
}

/// Where state goes when no directory is given, as the XDG base-directory convention has it.
fn default_state_dir() -> Option<PathBuf> {
    let from = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    from("XDG_STATE_HOME")
        .or_else(|| from("HOME").map(|home| home.join(".local/state")))
        .map(|base| base.join("keymesh-bridge"))
}

/// Parses `mqtt://host:port` (the port defaults to 1883) or `mqtts://host:port` (8883);
/// returns the host, the port and whether it is TLS.
pub fn parse_broker(url: &str) -> Result<(String, u16, bool), ConfigError> {
    let bad = || ConfigError::Broker(url.to_string());
    let (rest, tls) = match url.strip_prefix("mqtts://") {
        Some(rest) => (rest, true),
        None => (url.strip_prefix("mqtt://").ok_or_else(bad)?, false),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().map_err(|_| bad())?),
        None => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() || host.contains('/') {
        return Err(bad());
    }
    Ok((host.to_string(), port, tls))
}

impl Settings {
    /// Resolves flags over the file over defaults.
    pub fn resolve(cli: Cli) -> Result<Settings, ConfigError> {
        let file = match &cli.config {
            None => FileConfig::default(),
            Some(path) => {
                let shown = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: shown,
                    reason: e.to_string(),
                })?
            }
        };
        let login = match (
            cli.broker_username.or(file.broker_username),
            // Never a flag: a password on the command line shows in `ps` and shell history.
            std::env::var(BROKER_PASSWORD_ENV)
                .ok()
                .or(file.broker_password),
        ) {
            (Some(user), password) => Some((user, password.unwrap_or_default())),
            (None, Some(_)) => return Err(ConfigError::PasswordWithoutUser),
            (None, None) => None,
        };
        let broker = match cli.broker.or(file.broker) {
            Some(url) => {
                let (host, port, tls) = parse_broker(&url)?;
                let ca = match (tls, cli.broker_ca.or(file.broker_ca)) {
                    (false, _) => None,
                    (true, Some(ca)) => Some(ca),
                    (true, None) => return Err(ConfigError::BrokerCa),
                };
                BrokerChoice::External {
                    host,
                    port,
                    login,
                    ca,
                }
            }
            None => BrokerChoice::Embedded {
                listen: cli.embedded_broker_listen.or(file.embedded_broker_listen),
                login,
            },
        };
        let front_tls = match (
            cli.mqtt_tls_listen.or(file.mqtt_tls_listen),
            cli.tls_cert.or(file.tls_cert),
            cli.tls_key.or(file.tls_key),
        ) {
            (None, _, _) => None,
            (Some(listen), Some(cert), Some(key)) => Some(FrontTls { listen, cert, key }),
            (Some(_), _, _) => return Err(ConfigError::TlsFiles),
        };
        let audience = cli
            .audience
            .or(file.audience)
            .unwrap_or_else(|| "keymesh-dev".into());
        if keymesh_primitives::validate_id(audience.as_bytes()).is_err() {
            return Err(ConfigError::Audience(audience));
        }
        let uri = cli.signer.or(file.signer).ok_or(ConfigError::NoSigner)?;
        let uri = SecretUri::from_str(&uri).map_err(|e| ConfigError::Signer(e.to_string()))?;
        let signer = Keypair::from_uri(&uri).map_err(|e| ConfigError::Signer(e.to_string()))?;
        let defaults = Limits::default();
        let secs =
            |s: Option<u64>, default_ms: u64| s.map_or(default_ms, |s| s.saturating_mul(1000));
        Ok(Settings {
            node: cli
                .node
                .or(file.node)
                .unwrap_or_else(|| "ws://127.0.0.1:9944".into()),
            broker,
            mqtt_listen: cli
                .mqtt_listen
                .or(file.mqtt_listen)
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 1883))),
            front_tls,
            audience,
            signer,
            metrics: Some(
                cli.metrics
                    .or(file.metrics)
                    .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9630))),
            ),
            keyman: !cli.no_keyman && file.keyman.unwrap_or(true),
            state_dir: cli
                .state_dir
                .or(file.state_dir)
                .or_else(default_state_dir)
                .ok_or(ConfigError::NoStateDir)?,
            limits: Limits {
                max_envelope: cli
                    .max_envelope
                    .or(file.max_envelope)
                    .unwrap_or(defaults.max_envelope),
                replay_window_ms: secs(
                    cli.replay_window_secs.or(file.replay_window_secs),
                    defaults.replay_window_ms,
                ),
                max_skew_ms: secs(
                    cli.max_skew_secs.or(file.max_skew_secs),
                    defaults.max_skew_ms,
                ),
                rate_per_sec: cli
                    .rate_per_sec
                    .or(file.rate_per_sec)
                    .unwrap_or(defaults.rate_per_sec),
                rate_burst: cli
                    .rate_burst
                    .or(file.rate_burst)
                    .unwrap_or(defaults.rate_burst),
                max_remembered: defaults.max_remembered,
                max_staleness_ms: secs(
                    cli.max_staleness_secs.or(file.max_staleness_secs),
                    defaults.max_staleness_ms,
                ),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn brokers_parse_or_fail_clearly() {
        assert_eq!(
            parse_broker("mqtt://127.0.0.1:1884").unwrap(),
            ("127.0.0.1".into(), 1884, false)
        );
        assert_eq!(parse_broker("mqtt://broker").unwrap().1, 1883);
        assert_eq!(
            parse_broker("mqtts://broker").unwrap(),
            ("broker".into(), 8883, true)
        );
        for bad in ["127.0.0.1:1883", "mqtt://", "mqtt://h:port", "http://h:1"] {
            assert!(parse_broker(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_override_the_file_and_a_signer_is_required() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bridge.toml");
        std::fs::write(
            &path,
            "signer = \"//Alice\"\nrate_per_sec = 7\nbroker = \"mqtt://10.0.0.1:1883\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "keymesh-bridge",
            "--config",
            path.to_str().unwrap(),
            "--broker",
            "mqtt://127.0.0.1:2883",
            "--state-dir",
            "/var/lib/keymesh-bridge",
        ]);
        let settings = Settings::resolve(cli).unwrap();
        assert_eq!(settings.limits.rate_per_sec, 7);
        assert!(matches!(
            &settings.broker,
            BrokerChoice::External { host, port: 2883, login: None, ca: None } if host == "127.0.0.1"
        ));
        assert_eq!(settings.audience, "keymesh-dev");
        assert_eq!(settings.state_dir, PathBuf::from("/var/lib/keymesh-bridge"));
        assert_eq!(
            settings.signer.public_key().0,
            subxt_signer::sr25519::dev::alice().public_key().0
        );
        let none = Settings::resolve(Cli::parse_from(["keymesh-bridge"]));
        assert!(matches!(none, Err(ConfigError::NoSigner)));
        std::fs::write(&path, "colour = \"blue\"\n").unwrap();
        let cli = Cli::parse_from(["keymesh-bridge", "--config", path.to_str().unwrap()]);
        assert!(matches!(
            Settings::resolve(cli),
            Err(ConfigError::Parse { .. })
        ));
    }
}
