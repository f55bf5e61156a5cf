//! `keymesh-device`: a device's keys, envelopes and MQTT traffic from the command line.

use std::{
    collections::HashMap,
    io::{Read, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use clap::{Parser, Subcommand};
use keymesh_device::{
    config::{self, Broker, FileConfig},
    directory::DirectoryView,
    envelope::{self, Envelope},
    keys::{self, KeyBits},
    mqtt, Delivery,
};
use rsa::{RsaPrivateKey, RsaPublicKey};
use rumqttc::{Event, Packet, QoS};

/// KeyMesh device tool: make keys, seal and open envelopes, and talk through the bridge.
#[derive(Parser, Debug)]
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
    /// Folder of other devices' public keys, named `<device>.spki.pem` or `.spki.der`.
    #[arg(long, global = true)]
    peers_dir: Option<PathBuf>,
    /// The deployment name the broker's front expects in connect proofs
    /// [default: keymesh-dev].
    #[arg(long, global = true)]
    audience: Option<String>,
    /// CA certificates (PEM) the broker's certificate must chain to; needed with mqtts://.
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
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
    /// Seal a direct message and publish it to this device's ingress topic (QoS 1).
    Send {
        /// Recipient device id.
        #[arg(long)]
        to: String,
        /// Recipient's public key; default: from peers_dir.
        #[arg(long)]
        recipient_key: Option<PathBuf>,
        /// Recipient's key epoch.
        #[arg(long, default_value_t = 0)]
        epoch: u32,
        /// The message text.
        #[arg(long)]
        message: String,
    },
    /// Seal a message to a group's topic key and publish it to this device's ingress topic.
    Publish {
        /// Group id.
        #[arg(long)]
        group: String,
        /// The group's topic public key for the current epoch.
        #[arg(long)]
        topic_key: PathBuf,
        /// The group's current epoch.
        #[arg(long)]
        epoch: u32,
        /// The message text.
        #[arg(long)]
        message: String,
    },
    /// Listen on this device's inbox (and groups), print what opens and why the rest does not.
    Listen {
        /// Accept deliveries attested by this bridge (sr25519 public key, hex); repeatable.
        /// Anything else, including envelopes published straight to the inbox, is refused.
        #[arg(long = "trust-bridge")]
        trust_bridges: Vec<String>,
        /// Also listen to a group: `<group>=<topic private key PEM>`.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<usize>,
        /// Also follow the bridge's key directory (km/v1/dir/#): print each attested entry,
        /// refuse one older than an entry already accepted.
        #[arg(long)]
        directory: bool,
    },
}

/// The settings a networked command needs.
struct Device {
    endpoint: mqtt::Endpoint,
    id: String,
    key: RsaPrivateKey,
    peers_dir: Option<PathBuf>,
    audience: String,
}

impl Device {
    /// The login for one connection, told apart from the device's others by `tag`.
    fn login<'a>(&'a self, tag: &'a str) -> mqtt::DeviceLogin<'a> {
        mqtt::DeviceLogin {
            device: &self.id,
            key: &self.key,
            audience: &self.audience,
            tag: Some(tag),
        }
    }
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

async fn run(cli: Cli) -> Result<()> {
    let file = match &cli.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let key_path = cli.key.clone().or(file.key.clone());
    let peers_dir = cli.peers_dir.clone().or(file.peers_dir.clone());
    let device = || -> Result<Device> {
        let broker = cli
            .broker
            .clone()
            .or(file.broker.clone())
            .unwrap_or_else(|| "mqtt://127.0.0.1:1883".into());
        let id = cli
            .device_id
            .clone()
            .or(file.device_id.clone())
            .ok_or(config::ConfigError::Missing("device_id"))?;
        let key = key_path
            .as_deref()
            .ok_or(config::ConfigError::Missing("key"))?;
        let audience = cli
            .audience
            .clone()
            .or(file.audience.clone())
            .unwrap_or_else(|| config::DEFAULT_AUDIENCE.into());
        let broker = Broker::parse(&broker)?;
        let tls = match (broker.tls, cli.ca.clone().or(file.ca_file.clone())) {
            (false, _) => None,
            (true, Some(ca)) => Some(keymesh_device::tls::client_config(&ca)?),
            (true, None) => return Err(config::ConfigError::Missing("ca (for mqtts://)").into()),
        };
        Ok(Device {
            endpoint: mqtt::Endpoint { broker, tls },
            id: config::device_id(&id)?,
            key: keys::read_private(key)?,
            peers_dir: peers_dir.clone(),
            audience: config::audience(&audience)?,
        })
    };

    match cli.command {
        Command::Keygen { out, public, bits } => {
            let key = keys::generate(bits)?;
            keys::write_private(&out, &key)?;
            let public_path = public.unwrap_or_else(|| out.with_extension("spki.pem"));
            keys::write_public(&public_path, &key.to_public_key())?;
            println!("private key: {} (0600)", out.display());
            println!("public key:  {}", public_path.display());
            println!(
                "fingerprint: {}",
                hex::encode(keys::fingerprint(&key.to_public_key()))
            );
        }
        Command::Fingerprint { file } => {
            let public = match keys::read_public(&file) {
                Ok(k) => k,
                Err(_) => keys::read_private(&file)?.to_public_key(),
            };
            println!("{}", hex::encode(keys::fingerprint(&public)));
        }
        Command::Seal {
            to,
            recipient_key,
            topic,
            epoch,
            r#in,
            out,
        } => {
            let id = cli
                .device_id
                .clone()
                .or(file.device_id.clone())
                .ok_or(config::ConfigError::Missing("device_id"))?;
            let key = keys::read_private(
                key_path
                    .as_deref()
                    .ok_or(config::ConfigError::Missing("key"))?,
            )?;
            let recipient = keys::read_public(&recipient_key)?;
            let payload = read_input(r#in.as_deref())?;
            let env = if topic {
                envelope::seal_topic(&id, &key, &to, &recipient, epoch, &payload)?
            } else {
                envelope::seal_direct(&id, &key, &to, &recipient, epoch, &payload)?
            };
            write_output(out.as_deref(), &env.to_bytes())?;
        }
        Command::Open {
            sender_key,
            r#in,
            out,
        } => {
            let key = keys::read_private(
                key_path
                    .as_deref()
                    .ok_or(config::ConfigError::Missing("key"))?,
            )?;
            let bytes = read_input(r#in.as_deref())?;
            let decoded = Envelope::decode_bounded(&bytes)?;
            let sender = String::from_utf8_lossy(&decoded.header.sender).into_owned();
            let sender_pub = match sender_key {
                Some(path) => keys::read_public(&path)?,
                None => peer_key(peers_dir.as_deref(), &sender)?,
            };
            let opened = envelope::open(&bytes, &key, &sender_pub)?;
            write_output(out.as_deref(), &opened.payload)?;
        }
        Command::Send {
            to,
            recipient_key,
            epoch,
            message,
        } => {
            let device = device()?;
            let recipient = match recipient_key {
                Some(path) => keys::read_public(&path)?,
                None => peer_key(device.peers_dir.as_deref(), &to)?,
            };
            let env = envelope::seal_direct(
                &device.id,
                &device.key,
                &to,
                &recipient,
                epoch,
                message.as_bytes(),
            )?;
            publish(&device, env).await?;
        }
        Command::Publish {
            group,
            topic_key,
            epoch,
            message,
        } => {
            let device = device()?;
            let topic = keys::read_public(&topic_key)?;
            let env = envelope::seal_topic(
                &device.id,
                &device.key,
                &group,
                &topic,
                epoch,
                message.as_bytes(),
            )?;
            publish(&device, env).await?;
        }
        Command::Listen {
            trust_bridges,
            groups,
            count,
            directory,
        } => {
            let trusted = if trust_bridges.is_empty() {
                file.trusted_bridges.clone().unwrap_or_default()
            } else {
                trust_bridges
            };
            let trusted = trusted
                .iter()
                .map(|k| config::bridge_key(k))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let device = device()?;
            if trusted.is_empty() {
                eprintln!(
                    "warning: no trusted bridge (--trust-bridge or trusted_bridges): every delivery will be refused"
                );
            }
            let directory = directory.then(|| DirectoryView::new(trusted.clone()));
            listen(&device, &trusted, &groups, count, directory).await?;
        }
    }
    Ok(())
}

async fn publish(device: &Device, env: Envelope) -> Result<()> {
    let id = hex::encode(env.header.message_id);
    let tag = format!("send-{}", &id[..8]);
    mqtt::publish_acked(
        &device.endpoint,
        &device.login(&tag),
        &mqtt::ingress_topic(&device.id),
        env.to_bytes(),
        Duration::from_secs(10),
    )
    .await?;
    println!(
        "published message {id} to {}",
        mqtt::ingress_topic(&device.id)
    );
    Ok(())
}

async fn listen(
    device: &Device,
    trusted: &[[u8; 32]],
    groups: &[String],
    count: Option<usize>,
    mut directory: Option<DirectoryView>,
) -> Result<()> {
    let mut group_keys: HashMap<String, RsaPrivateKey> = HashMap::new();
    for spec in groups {
        let (group, path) = spec
            .split_once('=')
            .ok_or_else(|| format!("--group {spec:?} is not <group>=<key file>"))?;
        config::device_id(group)?;
        group_keys.insert(
            mqtt::group_topic(group),
            keys::read_private(Path::new(path))?,
        );
    }
    let (client, mut events) = mqtt::connect(&device.endpoint, &device.login("listen")).await?;
    let inbox = mqtt::inbox_topic(&device.id);
    client.subscribe(inbox.clone(), QoS::AtLeastOnce).await?;
    for topic in group_keys.keys() {
        client.subscribe(topic.clone(), QoS::AtLeastOnce).await?;
    }
    if directory.is_some() {
        client.subscribe("km/v1/dir/#", QoS::AtLeastOnce).await?;
    }
    // Ready only once the broker has every subscription: nothing published after this line
    // is missed.
    let mut awaiting = 1 + group_keys.len() + usize::from(directory.is_some());
    while awaiting > 0 {
        match events.poll().await {
            Ok(Event::Incoming(Packet::SubAck(_))) => awaiting -= 1,
            Ok(_) => {}
            Err(e) => return Err(format!("MQTT connection lost: {e}").into()),
        }
    }
    eprintln!(
        "listening on {inbox} and {} group topic(s){}",
        group_keys.len(),
        if directory.is_some() {
            " and the key directory"
        } else {
            ""
        }
    );
    let mut seen = std::collections::HashSet::new();
    let mut handled = 0usize;
    while count.is_none_or(|c| handled < c) {
        let publish = match events.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => p,
            Ok(_) => continue,
            Err(e) => return Err(format!("MQTT connection lost: {e}").into()),
        };
        handled += 1;
        if let Some(view) = directory
            .as_mut()
            .filter(|_| publish.topic.starts_with("km/v1/dir/"))
        {
            match view.accept(&publish.topic, &publish.payload) {
                Ok(entry) => println!(
                    "{}: directory entry at block #{}: {}",
                    publish.topic,
                    entry.block,
                    String::from_utf8_lossy(&entry.json)
                ),
                Err(e) => println!("{}: directory entry refused: {e}", publish.topic),
            }
            std::io::stdout().flush()?;
            continue;
        }
        let (reader, addressed_to) = match group_keys.get(&publish.topic) {
            Some(key) => (key, Addressee::Group(group_of(&publish.topic))),
            None => (&device.key, Addressee::Device(&device.id)),
        };
        match describe(
            &publish.payload,
            trusted,
            (reader, addressed_to),
            device.peers_dir.as_deref(),
            &mut seen,
        ) {
            Ok(line) => println!("{}: {line}", publish.topic),
            Err(reason) => println!("{}: cannot open: {reason}", publish.topic),
        }
        std::io::stdout().flush()?;
    }
    Ok(())
}

/// Whom a topic's deliveries must be addressed to.
enum Addressee<'a> {
    Device(&'a str),
    Group(&'a str),
}

/// The group of a `km/v1/grp/<group>/msgs` topic.
fn group_of(topic: &str) -> &str {
    topic
        .strip_prefix("km/v1/grp/")
        .and_then(|rest| rest.strip_suffix("/msgs"))
        .unwrap_or("")
}

/// Refuses an envelope that was not sealed for where it arrived: a delivery to this
/// device's inbox must name this device, one on a group's topic that group.
fn check_addressed(
    header: &envelope::Header,
    to: &Addressee<'_>,
) -> std::result::Result<(), String> {
    let target = String::from_utf8_lossy(&header.target);
    let (kind, expected) = match to {
        Addressee::Device(id) => (envelope::Kind::Direct, *id),
        Addressee::Group(id) => (envelope::Kind::Topic, *id),
    };
    if header.kind != kind || target != expected {
        return Err(format!(
            "not addressed here: a {:?} envelope for {target:?} on the topic of {expected:?}",
            header.kind
        ));
    }
    Ok(())
}

/// Verifies a delivery's attestation and addressee, then opens its envelope and drops
/// duplicates.
fn describe(
    delivery: &[u8],
    trusted: &[[u8; 32]],
    (reader, addressed_to): (&RsaPrivateKey, Addressee<'_>),
    peers_dir: Option<&Path>,
    seen: &mut std::collections::HashSet<[u8; 16]>,
) -> std::result::Result<String, String> {
    let delivery = Delivery::verify(delivery, trusted).map_err(|e| e.to_string())?;
    let bytes = &delivery.envelope[..];
    let decoded = Envelope::decode_bounded(bytes).map_err(|e| e.to_string())?;
    check_addressed(&decoded.header, &addressed_to)?;
    let sender = String::from_utf8_lossy(&decoded.header.sender).into_owned();
    let sender_key: RsaPublicKey = peer_key(peers_dir, &sender).map_err(|e| e.to_string())?;
    let opened = envelope::open(bytes, reader, &sender_key).map_err(|e| e.to_string())?;
    if !seen.insert(opened.header.message_id) {
        return Err(format!(
            "duplicate message {}",
            hex::encode(opened.header.message_id)
        ));
    }
    Ok(format!(
        "from {sender}: {} (checked by bridge {} at block #{})",
        String::from_utf8_lossy(&opened.payload),
        &hex::encode(delivery.attestation.bridge)[..8],
        delivery.attestation.block_number
    ))
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
