//! `keymesh-device`: a device's keys, envelopes and MQTT traffic from the command line.

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand};
use keymesh_device::{
    agent::{AgentConfig, Target},
    config::{self, Broker, FileConfig},
    envelope::{self, Envelope},
    keys::{self, KeyBits},
    mqtt, onboard,
};
use rsa::RsaPublicKey;

mod net;
mod offline;

/// KeyMesh device tool: make keys, seal and open envelopes, and talk through the bridge.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
struct Cli {
    /// TOML config file (broker, device_id, key, peers_dir); flags override it.
    #[arg(long, global = true, env = "KEYMESH_DEVICE_CONFIG")]
    config: Option<PathBuf>,
    /// MQTT broker, mqtt://host[:port].
    #[arg(long, global = true)]
    broker: Option<String>,
    /// This device's id (1..64 of [A-Za-z0-9._-]).
    #[arg(long, global = true)]
    device_id: Option<String>,
    /// This device's private key (PKCS#8 PEM).
    #[arg(long, global = true)]
    key: Option<PathBuf>,
    /// Offline only (`open`): folder of other devices' public keys, named
    /// `<device>.spki.pem` or `.spki.der`. `send`, `publish` and `listen` take keys from
    /// the attested directory and never read it.
    #[arg(long, global = true)]
    peers_dir: Option<PathBuf>,
    /// The deployment name the broker's front expects in connect proofs
    /// [default: keymesh-dev].
    #[arg(long, global = true)]
    audience: Option<String>,
    /// CA certificates (PEM) the broker's certificate must chain to; needed with mqtts://.
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// Accept directory entries and deliveries attested by this bridge (sr25519 public
    /// key, hex); repeatable. Anything else is refused.
    #[arg(long = "trust-bridge", global = true)]
    trust_bridges: Vec<String>,
    /// Where the agent keeps its key cache and replay window
    /// [default: $XDG_STATE_HOME/keymesh-device/<device>].
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug, Clone)]
enum Command {
    /// Make a new key pair: the private key (mode 0600, never overwritten) and its public key.
    Keygen {
        /// Where to write the private key (PKCS#8 PEM).
        #[arg(long)]
        out: PathBuf,
        /// Where to write the public key (SPKI; PEM if it ends in .pem, else DER).
        #[arg(long)]
        public: Option<PathBuf>,
        /// Modulus size.
        #[arg(long, value_enum, default_value = "2048")]
        bits: KeyBits,
    },
    /// Print the fingerprint (SHA-256 of the SPKI DER) of a public or private key file.
    Fingerprint {
        /// Key file: SPKI DER/PEM, or PKCS#8 PEM private key.
        file: PathBuf,
    },
    /// Seal a payload (file or stdin) into an envelope (file or stdout). Offline.
    Seal {
        /// Recipient device id, or group id with --topic.
        #[arg(long)]
        to: String,
        /// Recipient's (or topic's) public key.
        #[arg(long)]
        recipient_key: PathBuf,
        /// Seal to a group's topic key instead of a device key.
        #[arg(long)]
        topic: bool,
        /// Key epoch of the recipient's key (device rotations, or the group's epoch).
        #[arg(long, default_value_t = 0)]
        epoch: u32,
        /// Payload file; stdin when absent or "-".
        #[arg(long)]
        r#in: Option<PathBuf>,
        /// Envelope file; stdout when absent or "-".
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify and open an envelope (file or stdin) with this device's key. Offline.
    Open {
        /// Sender's public key; default: `<peers_dir>/<sender>.spki.pem|der`.
        #[arg(long)]
        sender_key: Option<PathBuf>,
        /// Envelope file; stdin when absent or "-".
        #[arg(long)]
        r#in: Option<PathBuf>,
        /// Payload file; stdout when absent or "-".
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Register this device (its id and the public half of --key) on chain, with an
    /// operator's signer (--signer-file or $KEYMESH_SIGNER); waits until finalized.
    Register {
        /// The node's JSON-RPC.
        #[arg(long, default_value = "ws://127.0.0.1:9944")]
        node: String,
        /// The account that may rotate or revoke the device (SS58); default: the signer.
        #[arg(long)]
        owner: Option<String>,
        /// File holding the signer's secret URI; default: $KEYMESH_SIGNER.
        #[arg(long)]
        signer_file: Option<PathBuf>,
    },
    /// Make a new key, submit it with the owner's signer, wait until finalized, and only
    /// then make it the key in --key (the old one is kept as <key>.prev).
    Rotate {
        /// The node's JSON-RPC.
        #[arg(long, default_value = "ws://127.0.0.1:9944")]
        node: String,
        /// File holding the owner's secret URI; default: $KEYMESH_SIGNER.
        #[arg(long)]
        signer_file: Option<PathBuf>,
        /// Modulus size of the new key.
        #[arg(long, value_enum, default_value = "2048")]
        bits: KeyBits,
    },
    /// Seal a direct message to a device's current key, checked against finalized state
    /// first, and publish it; report a refusal, or a resend after the key rotated.
    Send {
        /// Recipient device id.
        #[arg(long)]
        to: String,
        /// The message text.
        #[arg(long)]
        message: String,
        /// How long to wait for the bridge's refusal notice after the broker's ack.
        #[arg(long, default_value_t = 1000)]
        settle_ms: u64,
    },
    /// Seal a message to a group's current topic key and publish it.
    Publish {
        /// Group id.
        #[arg(long)]
        group: String,
        /// The message text.
        #[arg(long)]
        message: String,
        /// How long to wait for the bridge's refusal notice after the broker's ack.
        #[arg(long, default_value_t = 1000)]
        settle_ms: u64,
    },
    /// Listen on this device's inbox and every group it reads (followed by itself through
    /// the key directory); print what opens and why the rest does not.
    Listen {
        /// Stop after this many deliveries (opened or not).
        #[arg(long)]
        count: Option<usize>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Settings from flags, else the config file.
struct Settings {
    cli: Cli,
    file: FileConfig,
}

impl Settings {
    fn device_id(&self) -> Result<String> {
        let id = self
            .cli
            .device_id
            .clone()
            .or(self.file.device_id.clone())
            .ok_or(config::ConfigError::Missing("device_id"))?;
        Ok(config::device_id(&id)?)
    }

    fn key_path(&self) -> Result<PathBuf> {
        Ok(self
            .cli
            .key
            .clone()
            .or(self.file.key.clone())
            .ok_or(config::ConfigError::Missing("key"))?)
    }

    fn peers_dir(&self) -> Option<PathBuf> {
        self.cli.peers_dir.clone().or(self.file.peers_dir.clone())
    }

    /// What the agent needs for networked commands.
    fn agent(&self, tag: &str) -> Result<AgentConfig> {
        let broker = self
            .cli
            .broker
            .clone()
            .or(self.file.broker.clone())
            .unwrap_or_else(|| "mqtt://127.0.0.1:1883".into());
        let audience = self
            .cli
            .audience
            .clone()
            .or(self.file.audience.clone())
            .unwrap_or_else(|| config::DEFAULT_AUDIENCE.into());
        let broker = Broker::parse(&broker)?;
        let tls = match (
            broker.tls,
            self.cli.ca.clone().or(self.file.ca_file.clone()),
        ) {
            (false, _) => None,
            (true, Some(ca)) => Some(keymesh_device::tls::client_config(&ca)?),
            (true, None) => return Err(config::ConfigError::Missing("ca (for mqtts://)").into()),
        };
        let trusted = if self.cli.trust_bridges.is_empty() {
            self.file.trusted_bridges.clone().unwrap_or_default()
        } else {
            self.cli.trust_bridges.clone()
        };
        let trusted_bridges = trusted
            .iter()
            .map(|k| config::bridge_key(k))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if trusted_bridges.is_empty() {
            return Err(config::ConfigError::Missing("trust-bridge (or trusted_bridges)").into());
        }
        let device = self.device_id()?;
        let key_file = self.key_path()?;
        let state_dir = match self.cli.state_dir.clone().or(self.file.state_dir.clone()) {
            Some(dir) => dir,
            None => config::default_state_dir(&device)?,
        };
        Ok(AgentConfig {
            endpoint: mqtt::Endpoint { broker, tls },
            key: keys::read_private(&key_file)?,
            key_file: Some(key_file),
            device,
            audience: config::audience(&audience)?,
            trusted_bridges,
            state_dir,
            tag: tag.to_string(),
            grace: keymesh_device::agent::groups::DEFAULT_GRACE,
        })
    }
}

async fn run(cli: Cli) -> Result<()> {
    let file = match &cli.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let command = cli.command.clone();
    let settings = Settings { cli, file };
    match command {
        Command::Keygen { out, public, bits } => offline::keygen(&out, public, bits),
        Command::Fingerprint { file } => offline::fingerprint(&file),
        Command::Seal {
            to,
            recipient_key,
            topic,
            epoch,
            r#in,
            out,
        } => {
            let key = keys::read_private(&settings.key_path()?)?;
            let recipient = keys::read_public(&recipient_key)?;
            let payload = read_input(r#in.as_deref())?;
            let id = settings.device_id()?;
            let env = if topic {
                envelope::seal_topic(&id, &key, &to, &recipient, epoch, &payload)?
            } else {
                envelope::seal_direct(&id, &key, &to, &recipient, epoch, &payload)?
            };
            write_output(out.as_deref(), &env.to_bytes())
        }
        Command::Open {
            sender_key,
            r#in,
            out,
        } => {
            let key = keys::read_private(&settings.key_path()?)?;
            let bytes = read_input(r#in.as_deref())?;
            let decoded = Envelope::decode_bounded(&bytes)?;
            let sender = String::from_utf8_lossy(&decoded.header.sender).into_owned();
            let sender_pub = match sender_key {
                Some(path) => keys::read_public(&path)?,
                None => peer_key(settings.peers_dir().as_deref(), &sender)?,
            };
            let opened = envelope::open(&bytes, &key, &sender_pub)?;
            write_output(out.as_deref(), &opened.payload)
        }
        Command::Register {
            node,
            owner,
            signer_file,
        } => {
            let signer = onboard::load_signer(signer_file.as_deref())?;
            let owner = match owner {
                Some(text) => onboard::account(&text)?,
                None => signer.public_key().to_account_id(),
            };
            let key = keys::read_private(&settings.key_path()?)?.to_public_key();
            let id = settings.device_id()?;
            let block = onboard::register(&node, &signer, &id, &key, &owner).await?;
            println!(
                "registered device {id} (key {}) in finalized block {block}",
                hex::encode(keys::fingerprint(&key))
            );
            Ok(())
        }
        Command::Rotate {
            node,
            signer_file,
            bits,
        } => {
            let signer = onboard::load_signer(signer_file.as_deref())?;
            let id = settings.device_id()?;
            net::rotate(&node, &signer, &id, &settings.key_path()?, bits).await
        }
        Command::Send {
            to,
            message,
            settle_ms,
        } => {
            config::device_id(&to)?;
            let target = Target::Device(to);
            let config = settings.agent(&net::send_tag())?;
            net::send(config, target, message.as_bytes(), settle_ms).await
        }
        Command::Publish {
            group,
            message,
            settle_ms,
        } => {
            config::device_id(&group)?;
            let target = Target::Group(group);
            let config = settings.agent(&net::send_tag())?;
            net::send(config, target, message.as_bytes(), settle_ms).await
        }
        Command::Listen { count, json } => {
            net::listen(settings.agent("listen")?, count, json).await
        }
    }
}

fn peer_key(peers_dir: Option<&Path>, device: &str) -> Result<RsaPublicKey> {
    config::device_id(device)?;
    let dir = peers_dir.ok_or(config::ConfigError::Missing(
        "peers_dir (or an explicit key flag)",
    ))?;
    for ext in ["spki.pem", "spki.der"] {
        let path = dir.join(format!("{device}.{ext}"));
        if path.exists() {
            return Ok(keys::read_public(&path)?);
        }
    }
    Err(format!("no public key for device {device} in {}", dir.display()).into())
}

fn read_input(path: Option<&Path>) -> Result<Vec<u8>> {
    let limit = envelope::MAX_ENVELOPE_LEN as u64 + 1;
    let mut buf = Vec::new();
    match path {
        Some(p) if p != Path::new("-") => {
            std::fs::File::open(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .take(limit)
                .read_to_end(&mut buf)?;
        }
        _ => {
            std::io::stdin().take(limit).read_to_end(&mut buf)?;
        }
    }
    Ok(buf)
}

fn write_output(path: Option<&Path>, bytes: &[u8]) -> Result<()> {
    match path {
        Some(p) if p != Path::new("-") => {
            std::fs::write(p, bytes).map_err(|e| format!("{}: {e}", p.display()))?
        }
        _ => std::io::stdout().write_all(bytes)?,
    }
    Ok(())
}
