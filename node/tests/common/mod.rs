//! Helpers for end-to-end tests: start real `keymesh-node` processes on loopback, wait
//! on their JSON-RPC, and build signed extrinsics with the dev keys.
#![allow(dead_code, clippy::unwrap_used)]

pub use keymesh_test_ports::free_port;
use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use codec::Encode;
use jsonrpsee::{
    core::client::ClientT,
    http_client::{HttpClient, HttpClientBuilder},
    rpc_params,
};
use keymesh_runtime::{RuntimeCall, SignedPayload, TxExtension, UncheckedExtrinsic, VERSION};
use serde_json::Value;
use sp_core::{Pair, H256};
use sp_keyring::Sr25519Keyring;
use sp_runtime::{generic::Era, MultiAddress, MultiSignature};

/// How often readiness is polled. Short, so waits end as soon as the condition holds.
pub const POLL: Duration = Duration::from_millis(100);

pub fn node_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keymesh-node"))
}

/// A `keymesh-node` child process. Killed (and reaped) when dropped.
pub struct Node {
    pub name: String,
    pub rpc_port: u16,
    pub p2p_port: u16,
    pub base_path: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    /// Starts a node with `extra` arguments on fresh loopback ports.
    pub fn start(name: &str, base_path: &Path, extra: &[&str]) -> Node {
        Node::start_on(name, base_path, free_port(), free_port(), extra)
    }

    /// Starts a node with `extra` arguments on the given loopback ports.
    pub fn start_on(
        name: &str,
        base_path: &Path,
        rpc_port: u16,
        p2p_port: u16,
        extra: &[&str],
    ) -> Node {
        let mut node = Node {
            name: name.to_string(),
            rpc_port,
            p2p_port,
            base_path: base_path.to_path_buf(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            log: base_path.join(format!("{name}.log")),
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.base_path).unwrap();
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(node_binary())
            .arg("--base-path")
            .arg(&self.base_path)
            .args(["--rpc-port", &self.rpc_port.to_string()])
            .args([
                "--listen-addr",
                &format!("/ip4/127.0.0.1/tcp/{}", self.p2p_port),
            ])
            .args(["--no-prometheus", "--no-telemetry", "--no-mdns"])
            .args(["--rpc-cors", "all", "--rpc-methods", "unsafe"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// The multiaddress other nodes use to reach this one.
    pub fn multiaddr(&self, peer_id: &str) -> String {
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", self.p2p_port, peer_id)
    }

    pub fn rpc(&self) -> Rpc {
        Rpc::new(self.rpc_port)
    }

    /// Waits until the node answers JSON-RPC; fails at once, with its log, if it exits.
    pub async fn wait_ready(&mut self, within: Duration) -> Rpc {
        let rpc = self.rpc();
        let deadline = Instant::now() + within;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "{} exited ({status}) before it was ready:\n{}",
                        self.name,
                        self.log_tail()
                    );
                }
            }
            if rpc.call("system_health", rpc_params![]).await.is_ok() {
                return rpc;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} did not answer JSON-RPC within {within:?}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the process with SIGINT (a clean database shutdown) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(POLL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again with the same arguments, ports and base path.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the node first");
        self.spawn();
    }

    /// The node's log so far, for assertion messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A JSON-RPC client of one node.
pub struct Rpc {
    client: HttpClient,
}

impl Rpc {
    pub fn new(port: u16) -> Rpc {
        let client = HttpClientBuilder::default()
            .request_timeout(Duration::from_secs(10))
            .build(format!("http://127.0.0.1:{port}"))
            .unwrap();
        Rpc { client }
    }

    pub async fn call(
        &self,
        method: &str,
        params: jsonrpsee::core::params::ArrayParams,
    ) -> Result<Value, String> {
        self.client
            .request::<Value, _>(method, params)
            .await
            .map_err(|e| e.to_string())
    }

    /// Waits until the node answers JSON-RPC.
    pub async fn wait_ready(&self, within: Duration) -> Result<(), String> {
        wait_for(within, || async {
            self.call("system_health", rpc_params![]).await.map(|_| ())
        })
        .await
    }

    pub async fn finalized_head(&self) -> Result<(u32, H256), String> {
        let hash = self.call("chain_getFinalizedHead", rpc_params![]).await?;
        let header = self
            .call("chain_getHeader", rpc_params![hash.clone()])
            .await?;
        Ok((block_number(&header)?, parse_hash(&hash)?))
    }

    pub async fn best_number(&self) -> Result<u32, String> {
        let header = self.call("chain_getHeader", rpc_params![]).await?;
        block_number(&header)
    }

    pub async fn block_hash(&self, number: u32) -> Result<H256, String> {
        parse_hash(&self.call("chain_getBlockHash", rpc_params![number]).await?)
    }

    pub async fn peers(&self) -> Result<u64, String> {
        let health = self.call("system_health", rpc_params![]).await?;
        health["peers"]
            .as_u64()
            .ok_or_else(|| format!("no peers in {health}"))
    }

    /// The PeerIds this node is connected to (`system_peers`, allowed on loopback).
    pub async fn peer_ids(&self) -> Result<Vec<String>, String> {
        let v = self.call("system_peers", rpc_params![]).await?;
        let peers = v.as_array().ok_or_else(|| format!("not an array: {v}"))?;
        Ok(peers
            .iter()
            .filter_map(|p| p["peerId"].as_str().map(str::to_string))
            .collect())
    }

    pub async fn local_peer_id(&self) -> Result<String, String> {
        let v = self.call("system_localPeerId", rpc_params![]).await?;
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("not a string: {v}"))
    }

    pub async fn next_nonce(&self, who: Sr25519Keyring) -> Result<u32, String> {
        let v = self
            .call(
                "system_accountNextIndex",
                rpc_params![who.to_account_id().to_string()],
            )
            .await?;
        v.as_u64()
            .map(|n| n as u32)
            .ok_or_else(|| format!("not a nonce: {v}"))
    }

    /// Waits until the finalized block number reaches `at_least`; returns it.
    pub async fn wait_finalized(&self, at_least: u32, within: Duration) -> Result<u32, String> {
        wait_for(within, || async {
            let (n, _) = self.finalized_head().await?;
            if n >= at_least {
                Ok(n)
            } else {
                Err(format!("finalized #{n} < #{at_least}"))
            }
        })
        .await
    }

    /// Signs `call` with `signer` (immortal era, next nonce) and submits it.
    /// Returns the extrinsic's hex encoding, as it will appear in a block body.
    pub async fn submit(
        &self,
        signer: Sr25519Keyring,
        call: RuntimeCall,
    ) -> Result<String, String> {
        let genesis = self.block_hash(0).await?;
        let nonce = self.next_nonce(signer).await?;
        let xt = signed_extrinsic(signer, call, nonce, genesis);
        let hex = format!("0x{}", hex_encode(&xt.encode()));
        self.call("author_submitExtrinsic", rpc_params![hex.clone()])
            .await?;
        Ok(hex)
    }

    /// The hex-encoded extrinsics of the block `hash`.
    pub async fn block_extrinsics(&self, hash: H256) -> Result<Vec<String>, String> {
        let block = self
            .call("chain_getBlock", rpc_params![format!("{hash:?}")])
            .await?;
        Ok(block["block"]["extrinsics"]
            .as_array()
            .ok_or_else(|| format!("no extrinsics in {block}"))?
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect())
    }

    /// Waits until `xt_hex` is in a finalized block; returns that block's number.
    pub async fn wait_finalized_extrinsic(
        &self,
        xt_hex: &str,
        from: u32,
        within: Duration,
    ) -> Result<u32, String> {
        wait_for(within, || async {
            let (head, _) = self.finalized_head().await?;
            for n in from..=head {
                let hash = self.block_hash(n).await?;
                if self
                    .block_extrinsics(hash)
                    .await?
                    .iter()
                    .any(|x| x == xt_hex)
                {
                    return Ok(n);
                }
            }
            Err(format!("not in a finalized block up to #{head}"))
        })
        .await
    }
}

/// Polls `check` every [`POLL`] until it succeeds or `within` has passed.
pub async fn wait_for<T, F, Fut>(within: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(format!("timed out: {e}")),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

fn block_number(header: &Value) -> Result<u32, String> {
    let n = header["number"]
        .as_str()
        .ok_or_else(|| format!("no number in {header}"))?;
    u32::from_str_radix(n.trim_start_matches("0x"), 16).map_err(|e| e.to_string())
}

fn parse_hash(v: &Value) -> Result<H256, String> {
    let s = v.as_str().ok_or_else(|| format!("not a hash: {v}"))?;
    s.parse::<H256>().map_err(|e| format!("{e:?}"))
}

pub fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A signed, immortal extrinsic, built from the runtime's own types.
pub fn signed_extrinsic(
    signer: Sr25519Keyring,
    call: RuntimeCall,
    nonce: u32,
    genesis: H256,
) -> UncheckedExtrinsic {
    let tx_ext: TxExtension = (
        frame_system::CheckNonZeroSender::new(),
        keymesh_runtime::known_signers::CheckKnownSigner,
        frame_system::CheckSpecVersion::new(),
        frame_system::CheckTxVersion::new(),
        frame_system::CheckGenesis::new(),
        frame_system::CheckEra::from(Era::Immortal),
        frame_system::CheckNonce::from(nonce),
        frame_system::CheckWeight::new(),
        pallet_transaction_payment::ChargeTransactionPayment::from(0),
        frame_metadata_hash_extension::CheckMetadataHash::new(false),
    );
    let implicit = (
        (),
        (),
        VERSION.spec_version,
        VERSION.transaction_version,
        genesis,
        genesis,
        (),
        (),
        (),
        None,
    );
    let payload = SignedPayload::from_raw(call.clone(), tx_ext.clone(), implicit);
    let signature = payload.using_encoded(|bytes| signer.pair().sign(bytes));
    UncheckedExtrinsic::new_signed(
        call,
        MultiAddress::Id(signer.to_account_id()),
        MultiSignature::Sr25519(signature),
        tx_ext,
    )
}
