//! `scripts/local-testnet.sh`, run as an operator runs it: four real validators on
//! OS-assigned loopback ports. It must report the network up only once all four finalize,
//! stop them with `--stop`, and, when it gives up, print the failing validator's log tail
//! and keep the logs.
// Test helpers fail the test on any error, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
};
use tokio::sync::Mutex;

use common::{free_port, node_binary, Rpc};

/// The two tests each run four validators; on two cores they take turns.
static ONE_NETWORK_AT_A_TIME: Mutex<()> = Mutex::const_new(());

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/local-testnet.sh")
}

/// One run of the script against `state` with fresh ports; stops what it started when
/// dropped, whatever the test did.
struct Testnet {
    state: PathBuf,
    node_bin: PathBuf,
    rpc: Vec<u16>,
    p2p: Vec<u16>,
    prometheus: Vec<u16>,
}

impl Testnet {
    fn new(state: &Path, node_bin: PathBuf) -> Testnet {
        let ports = || (0..4).map(|_| free_port()).collect::<Vec<_>>();
        Testnet {
            state: state.to_path_buf(),
            node_bin,
            rpc: ports(),
            p2p: ports(),
            prometheus: ports(),
        }
    }

    fn run(&self, args: &[&str], finality_s: u32) -> Output {
        let join = |ports: &[u16]| {
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        Command::new("bash")
            .arg(script())
            .args(args)
            .env("KEYMESH_TESTNET_DIR", &self.state)
            .env("KEYMESH_NODE_BIN", &self.node_bin)
            .env("KEYMESH_TESTNET_RPC_PORTS", join(&self.rpc))
            .env("KEYMESH_TESTNET_P2P_PORTS", join(&self.p2p))
            .env("KEYMESH_TESTNET_PROM_PORTS", join(&self.prometheus))
            .env("KEYMESH_TESTNET_FINALITY_S", finality_s.to_string())
            .output()
            .unwrap()
    }

    /// Whether any validator still answers JSON-RPC.
    async fn any_answers(&self) -> bool {
        for port in &self.rpc {
            if Rpc::new(*port).finalized_head().await.is_ok() {
                return true;
            }
        }
        false
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        let _ = self.run(&["--stop"], 0);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_script_reports_the_network_up_once_all_four_finalize_and_stops_it() {
    let _turn = ONE_NETWORK_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let net = Testnet::new(&dir.path().join("testnet"), node_binary());

    let out = net.run(&[], 180);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "the script failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("KeyMesh local testnet is up"), "{stdout}");
    for port in &net.rpc {
        assert!(
            stdout.contains(&format!("http://127.0.0.1:{port}")),
            "{stdout}"
        );
        // The script's word is checked against each validator itself.
        let (finalized, _) = Rpc::new(*port).finalized_head().await.unwrap();
        assert!(
            finalized >= 1,
            "validator on {port} reports #{finalized} finalized"
        );
    }

    let stop = net.run(&["--stop"], 0);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    assert!(
        !net.any_answers().await,
        "a validator still runs after --stop"
    );
    assert!(
        !net.state.join("pids").exists(),
        "--stop left its pid file behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn when_finality_never_comes_the_script_prints_the_log_tail_and_keeps_the_logs() {
    let _turn = ONE_NETWORK_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    // Validators that author blocks but never vote: no block is ever finalized.
    let no_grandpa = dir.path().join("keymesh-node-without-grandpa");
    std::fs::write(
        &no_grandpa,
        format!(
            "#!/bin/sh\nexec '{}' \"$@\" --no-grandpa\n",
            node_binary().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&no_grandpa, std::fs::Permissions::from_mode(0o755)).unwrap();
    let net = Testnet::new(&dir.path().join("testnet"), no_grandpa);

    let out = net.run(&[], 5);
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "the script reported a network that never finalized"
    );
    assert!(
        stderr.contains("alice did not finalize a block within 5 s"),
        "{stderr}"
    );
    let log = std::fs::read_to_string(net.state.join("alice.log")).unwrap();
    let tail: Vec<&str> = stderr
        .split_once("the last lines of")
        .map(|(_, rest)| rest.lines().skip(1).collect())
        .unwrap_or_default();
    let printed: Vec<&&str> = tail
        .iter()
        .filter(|line| !line.is_empty() && !line.starts_with("[keymesh]"))
        .collect();
    assert!(!printed.is_empty(), "no log tail was printed:\n{stderr}");
    for line in printed {
        assert!(
            log.contains(*line),
            "printed a line not in alice.log: {line}"
        );
    }
    assert!(
        !net.any_answers().await,
        "validators still run after giving up"
    );
}
