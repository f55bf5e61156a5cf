//! The real stack on loopback for end-to-end tests: a `keymesh-node` dev chain, the
//! `keymesh-bridge` binary (embedded broker or Mosquitto), and devices 1111..1114 played by
//! the `keymesh-device` library over rumqttc. Every process is killed and reaped on drop;
//! every wait polls a readiness condition.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub use keymesh_test_ports::free_port;
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use subxt::{dynamic::Value, OnlineClient, PolkadotConfig};
use subxt_signer::sr25519::Keypair;

mod devices;
mod helpers;
mod proxy;
mod raw;
pub use devices::*;
// Each test file and example uses its own part of these.
#[allow(unused_imports)]
pub use helpers::*;
#[allow(unused_imports)]
pub use proxy::*;
#[allow(unused_imports)]
pub use raw::*;

pub type Api = OnlineClient<PolkadotConfig>;

/// A binary next to this test's executable (`target/<profile>/`).
pub fn sibling_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `within`.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process, killed and reaped when dropped.
pub struct Process {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Process {
    pub fn spawn(command: &mut Command, log: PathBuf) -> Process {
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        Process {
            child: Some(child),
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGKILL, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().unwrap()
    }
}

impl Process {
    /// SIGTERM, then up to `within` for the exit; `None` (and SIGKILL) if it did not come.
    pub fn terminate_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The bridge's credential at the test Mosquitto.
pub const MOSQUITTO_USER: &str = "keymesh-bridge";
pub const MOSQUITTO_PASSWORD: &str = "test-only-secret";

/// Mosquitto as a production site would run it behind KeyMesh: no anonymous clients, one
/// password for the bridge, persistent sessions on disk, everything queued for a bridge
/// that is down.
pub fn start_mosquitto(dir: &tempfile::TempDir, port: u16, closed: bool) -> Process {
    start_mosquitto_with(dir, port, closed, true)
}

/// Mosquitto as above; with `persistent` false it keeps nothing across a restart, as a
/// broker on a fresh machine or in memory does.
pub fn start_mosquitto_with(
    dir: &tempfile::TempDir,
    port: u16,
    closed: bool,
    persistent: bool,
) -> Process {
    let access = if closed {
        let passwd = dir.path().join("mosquitto.passwd");
        let status = Command::new("mosquitto_passwd")
            .args([
                "-b",
                "-c",
                passwd.to_str().unwrap(),
                MOSQUITTO_USER,
                MOSQUITTO_PASSWORD,
            ])
            .status()
            .unwrap();
        assert!(status.success(), "mosquitto_passwd: {status:?}");
        let tls = if dir.path().join("server.pem").exists() {
            let file = |name: &str| dir.path().join(name).display().to_string();
            format!(
                "\ncafile {}\ncertfile {}\nkeyfile {}",
                file("ca.pem"),
                file("server.pem"),
                file("server.key")
            )
        } else {
            String::new()
        };
        format!(
            "allow_anonymous false\npassword_file {}{tls}",
            passwd.display()
        )
    } else {
        "allow_anonymous true".to_string()
    };
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\n{access}\n\
             max_queued_messages 0\nmax_inflight_messages 100\n\
             persistence {persistent}\npersistence_location {}/\n",
            dir.path().display()
        ),
    )
    .unwrap();
    Process::spawn(
        Command::new("mosquitto").args(["-c", conf.to_str().unwrap()]),
        dir.path().join(format!("mosquitto-{}.log", free_port())),
    )
}

/// Which broker the bridge uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerKind {
    Embedded,
    /// Behind a password only the bridge holds.
    Mosquitto,
    /// A broker without ACLs or passwords that anyone can reach: what the gate alone must
    /// survive.
    OpenMosquitto,
    /// Behind a password, over TLS only; the front also listens over TLS (`tls_port`).
    MosquittoTls,
}

/// Makes a test CA and a certificate for 127.0.0.1 signed by it, with the openssl tool:
/// `ca.pem`, `server.pem` and `server.key` in `dir`.
pub fn make_test_ca(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=keymesh-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    // Mosquitto started as root loads its TLS files as the `mosquitto` user: a test-only key.
    use std::os::unix::fs::PermissionsExt;
    let readable = std::fs::Permissions::from_mode(0o644);
    std::fs::set_permissions(dir.join("server.key"), readable).unwrap();
}

/// A running node, bridge and broker.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub node: Process,
    pub bridge: Option<Process>,
    pub mosquitto: Option<Process>,
    pub rpc_port: u16,
    /// The bridge's front, where devices connect.
    pub mqtt_port: u16,
    /// Mosquitto's own port (only the bridge may connect there).
    pub broker_port: u16,
    /// The front's TLS port (`MosquittoTls` only).
    pub tls_port: u16,
    pub metrics_port: u16,
    pub api: Api,
    pub broker: BrokerKind,
    /// Extra flags for the bridge.
    pub bridge_args: Vec<String>,
    /// Extra environment for the bridge.
    pub bridge_env: Vec<(String, String)>,
    /// The node's `--sealing` and any extra flags it was started with.
    pub node_args: Vec<String>,
    /// The node's libp2p port, kept across restarts.
    pub p2p_port: u16,
    /// Where the bridge reaches the node, when not directly (a test's proxy).
    pub node_url: Option<String>,
}

/// How a test wants its stack.
#[derive(Clone, Debug)]
pub struct StackOptions {
    pub broker: BrokerKind,
    pub bridge_args: Vec<String>,
    pub bridge_env: Vec<(String, String)>,
    /// `instant` (the default) or `aura`.
    pub sealing: &'static str,
    /// Start Mosquitto before the bridge (false: the test starts it later).
    pub mosquitto_first: bool,
    /// Wait for the bridge to forward before returning.
    pub wait_for_bridge: bool,
}

impl StackOptions {
    pub fn new(broker: BrokerKind) -> Self {
        StackOptions {
            broker,
            bridge_args: Vec::new(),
            bridge_env: Vec::new(),
            sealing: "instant",
            mosquitto_first: true,
            wait_for_bridge: true,
        }
    }

    pub fn bridge_args(mut self, args: &[&str]) -> Self {
        self.bridge_args = args.iter().map(|a| a.to_string()).collect();
        self
    }
}

/// The node's command line, on `base` with JSON-RPC on `rpc_port`.
fn node_command(base: &Path, rpc_port: u16, p2p_port: u16, args: &[String]) -> Command {
    let mut command = Command::new(sibling_binary("keymesh-node"));
    command
        .args([
            "--dev",
            "--base-path",
            base.to_str().unwrap(),
            "--rpc-port",
            &rpc_port.to_string(),
            "--listen-addr",
            &format!("/ip4/127.0.0.1/tcp/{p2p_port}"),
            "--no-prometheus",
            "--no-telemetry",
            "--no-mdns",
        ])
        .args(args);
    command
}

/// Waits for the node's JSON-RPC at `rpc_port`.
async fn connect_node(rpc_port: u16) -> Api {
    let url = format!("ws://127.0.0.1:{rpc_port}");
    wait_for("the node's JSON-RPC", Duration::from_secs(60), || async {
        keymesh_device::node_client::connect(&url)
            .await
            .ok()
            .map(|(api, _)| api)
    })
    .await
}

impl Stack {
    pub async fn start(broker: BrokerKind) -> Stack {
        Stack::start_with(broker, &[]).await
    }

    /// Starts the stack, giving the bridge `bridge_args` besides the usual flags.
    pub async fn start_with(broker: BrokerKind, bridge_args: &[&str]) -> Stack {
        Stack::start_with_env(broker, bridge_args, &[]).await
    }

    /// Starts the stack, giving the bridge `bridge_args` and `bridge_env` besides the usual.
    pub async fn start_with_env(
        broker: BrokerKind,
        bridge_args: &[&str],
        bridge_env: &[(&str, &str)],
    ) -> Stack {
        let mut options = StackOptions::new(broker).bridge_args(bridge_args);
        options.bridge_env = bridge_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Stack::start_options(options).await
    }

    /// Starts the node and the broker; the bridge too, unless `before_bridge` is to run
    /// first (then call [`Stack::start_bridge`]).
    pub async fn start_options(options: StackOptions) -> Stack {
        let mut stack = Stack::start_chain(&options).await;
        if options.wait_for_bridge {
            stack.start_bridge().await;
        }
        stack
    }

    /// The node (and Mosquitto, if asked), no bridge yet.
    pub async fn start_chain(options: &StackOptions) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let rpc_port = free_port();
        let p2p_port = free_port();
        let node_args = vec!["--sealing".to_string(), options.sealing.to_string()];
        let node = Process::spawn(
            &mut node_command(&dir.path().join("node"), rpc_port, p2p_port, &node_args),
            dir.path().join("node.log"),
        );
        let api = connect_node(rpc_port).await;
        let mqtt_port = free_port();
        let broker_port = free_port();
        if options.broker == BrokerKind::MosquittoTls {
            make_test_ca(dir.path());
        }
        let mosquitto = match options.broker {
            BrokerKind::Embedded => None,
            _ if !options.mosquitto_first => None,
            BrokerKind::Mosquitto | BrokerKind::MosquittoTls => {
                Some(start_mosquitto(&dir, broker_port, true))
            }
            BrokerKind::OpenMosquitto => Some(start_mosquitto(&dir, broker_port, false)),
        };
        Stack {
            dir,
            node,
            bridge: None,
            mosquitto,
            rpc_port,
            mqtt_port,
            broker_port,
            tls_port: free_port(),
            metrics_port: free_port(),
            api,
            broker: options.broker,
            bridge_args: options.bridge_args.clone(),
            bridge_env: options.bridge_env.clone(),
            node_args,
            p2p_port,
            node_url: None,
        }
    }

    /// Kills the node (SIGKILL).
    pub fn stop_node(&mut self) {
        self.node.kill();
    }

    /// Starts the node again on its base path and ports, with `extra` flags; waits for its
    /// JSON-RPC.
    pub async fn start_node(&mut self, extra: &[&str]) {
        let mut args = self.node_args.clone();
        args.extend(extra.iter().map(|a| a.to_string()));
        let log = self.dir.path().join(format!("node-{}.log", free_port()));
        self.node = Process::spawn(
            &mut node_command(
                &self.dir.path().join("node"),
                self.rpc_port,
                self.p2p_port,
                &args,
            ),
            log,
        );
        self.api = connect_node(self.rpc_port).await;
    }

    /// Kills Mosquitto.
    pub fn stop_mosquitto(&mut self) {
        if let Some(mut mosquitto) = self.mosquitto.take() {
            mosquitto.kill();
        }
    }

    /// Starts Mosquitto (again) on its port; `persistent` false keeps nothing from before.
    pub fn start_mosquitto(&mut self, persistent: bool) {
        let closed = self.broker != BrokerKind::OpenMosquitto;
        self.mosquitto = Some(start_mosquitto_with(
            &self.dir,
            self.broker_port,
            closed,
            persistent,
        ));
    }

    /// `/readyz`: whether it answered 200, and its body.
    pub async fn readyz(&self) -> (bool, String) {
        bridge_http(self.metrics_port, "/readyz")
            .await
            .map(|(status, body)| (status == 200, body))
            .unwrap_or((false, "no answer".into()))
    }

    /// Starts (or restarts) the bridge and waits until it forwards: subscribed to ingress,
    /// and `/readyz` ready (caught up with a fresh finalized head).
    pub async fn start_bridge(&mut self) {
        self.spawn_bridge();
        let ready = "forwarding from km/v1/in/+";
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.bridge_log().contains(ready) || !self.readyz().await.0 {
            assert!(
                Instant::now() < deadline,
                "bridge not ready ({:?}):\n{}",
                self.readyz().await.1,
                self.bridge_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts (or restarts) the bridge without waiting for it.
    pub fn spawn_bridge(&mut self) {
        // One bridge at a time: the new one takes the old one's ports.
        if let Some(mut old) = self.bridge.take() {
            old.kill();
        }
        let log = self.dir.path().join(format!(
            "bridge-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut command = Command::new(sibling_binary("keymesh-bridge"));
        command.args(&self.bridge_args);
        command.envs(self.bridge_env.iter().map(|(k, v)| (k, v)));
        let node_url = self
            .node_url
            .clone()
            .unwrap_or_else(|| format!("ws://127.0.0.1:{}", self.rpc_port));
        command.args([
            "--node",
            &node_url,
            "--signer",
            "//Ferdie",
            "--metrics",
            &format!("127.0.0.1:{}", self.metrics_port),
            // Kept across restarts, as an operator's would be.
            "--state-dir",
            self.dir.path().join("bridge-state").to_str().unwrap(),
        ]);
        command.args(["--mqtt-listen", &format!("127.0.0.1:{}", self.mqtt_port)]);
        let file = |name: &str| self.dir.path().join(name).display().to_string();
        match self.broker {
            BrokerKind::Embedded => {}
            BrokerKind::Mosquitto | BrokerKind::OpenMosquitto => {
                command.args([
                    "--broker",
                    &format!("mqtt://127.0.0.1:{}", self.broker_port),
                ]);
            }
            BrokerKind::MosquittoTls => {
                command
                    .args([
                        "--broker",
                        &format!("mqtts://127.0.0.1:{}", self.broker_port),
                    ])
                    .args(["--broker-ca", &file("ca.pem")])
                    .args(["--mqtt-tls-listen", &format!("127.0.0.1:{}", self.tls_port)])
                    .args([
                        "--tls-cert",
                        &file("server.pem"),
                        "--tls-key",
                        &file("server.key"),
                    ]);
            }
        }
        if matches!(
            self.broker,
            BrokerKind::Mosquitto | BrokerKind::MosquittoTls
        ) {
            command
                .args(["--broker-username", MOSQUITTO_USER])
                .env("KEYMESH_BROKER_PASSWORD", MOSQUITTO_PASSWORD);
        }
        self.bridge = Some(Process::spawn(&mut command, log));
    }

    /// The running bridge's process id (0 if none runs).
    pub fn bridge_pid(&self) -> u32 {
        self.bridge.as_ref().map_or(0, Process::pid)
    }

    /// A metric's value from the bridge's `/metrics` endpoint.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        bridge_metric(self.metrics_port, name).await
    }

    /// Waits until the bridge's key cache reflects the chain's finalized head.
    pub async fn bridge_synced(&self) {
        let head = self.finalized().await as f64;
        wait_for(
            "the bridge's cache to reach the finalized head",
            Duration::from_secs(30),
            || async { (self.metric("keymesh_bridge_cache_block").await? >= head).then_some(()) },
        )
        .await;
    }

    pub fn bridge_log(&self) -> String {
        self.bridge
            .as_ref()
            .map(Process::log_text)
            .unwrap_or_default()
    }

    /// Signs `pallet.call(args)` and waits until it is finalized and succeeded.
    pub async fn submit(&self, signer: &Keypair, pallet: &str, call: &str, args: Vec<Value>) {
        self.submit_in_block(signer, pallet, call, args).await;
    }

    /// As [`Stack::submit`]; returns the number of the finalized block it is in.
    pub async fn submit_in_block(
        &self,
        signer: &Keypair,
        pallet: &str,
        call: &str,
        args: Vec<Value>,
    ) -> u64 {
        let payload = subxt::dynamic::tx(pallet, call, args);
        let in_block = self
            .api
            .tx()
            .await
            .unwrap()
            .sign_and_submit_then_watch_default(&payload, signer)
            .await
            .unwrap_or_else(|e| panic!("{pallet}.{call}: {e}"))
            .wait_for_finalized()
            .await
            .unwrap_or_else(|e| panic!("{pallet}.{call}: {e}"));
        let hash = in_block.block_hash();
        in_block
            .wait_for_success()
            .await
            .unwrap_or_else(|e| panic!("{pallet}.{call}: {e}"));
        self.api.at_block(hash).await.unwrap().block_number()
    }

    /// The node's finalized block number. Read from the node itself: the client's own
    /// follow subscription may report it a block late, and a caller that just read
    /// finalized state over `keymesh_*` must not wait for less than that state's block.
    pub async fn finalized(&self) -> u64 {
        let hash = self
            .rpc("chain_getFinalizedHead", subxt::rpcs::client::rpc_params![])
            .await;
        let header = self
            .rpc("chain_getHeader", subxt::rpcs::client::rpc_params![hash])
            .await;
        let number = header["number"].as_str().unwrap().trim_start_matches("0x");
        u64::from_str_radix(number, 16).unwrap()
    }

    /// Every (pallet.event, fields) in finalized blocks `from..=to`.
    pub async fn events(&self, from: u64, pallet: &str) -> Vec<(String, Value)> {
        let to = self.finalized().await;
        let mut out = Vec::new();
        for n in from..=to {
            let at = self.api.at_block(n).await.unwrap();
            for event in at.events().fetch().await.unwrap().iter() {
                let event = event.unwrap();
                if event.pallet_name() == pallet {
                    out.push((
                        event.event_name().to_string(),
                        event.decode_fields_unchecked_as::<Value>().unwrap(),
                    ));
                }
            }
        }
        out
    }

    /// A JSON-RPC call to the node (`keymesh_*` and the standard methods).
    pub async fn rpc(
        &self,
        method: &str,
        params: subxt::rpcs::client::RpcParams,
    ) -> serde_json::Value {
        let client =
            subxt::rpcs::RpcClient::from_insecure_url(format!("ws://127.0.0.1:{}", self.rpc_port))
                .await
                .unwrap();
        client.request(method, params).await.unwrap()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // A failed test shows what the bridge saw.
        if std::thread::panicking() {
            let log = self.bridge_log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- bridge log (last 40 lines) ---");
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
            if let Some(mosquitto) = &self.mosquitto {
                let log = mosquitto.log_text();
                let lines: Vec<&str> = log.lines().collect();
                eprintln!("--- mosquitto log (last 20 lines) ---");
                for line in &lines[lines.len().saturating_sub(20)..] {
                    eprintln!("{line}");
                }
            }
        }
    }
}
