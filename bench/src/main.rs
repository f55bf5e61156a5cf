//! `keymesh-bench`: measures one figure against a running KeyMesh network and prints it as
//! one JSON line. `scripts/bench.sh` will start the networks and call it; so far it
//! measures registration until finalized, one at a time and in bulk.

mod bulk;
mod chain;
mod check_key;
mod metrics;
mod registration;
mod report;
mod stats;
mod topic;

use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    figure: Figure,
}

#[derive(Subcommand)]
enum Figure {
    /// Registration until finalized: from submitting `devices.register` (signed by Alice, an
    /// operator of both presets) to the node reporting its block finalized, one device at
    /// a time.
    Registration {
        /// The node's WebSocket JSON-RPC endpoint.
        #[arg(long, default_value = "ws://127.0.0.1:9944")]
        node: String,
        /// How many devices to register, one after another.
        #[arg(long, default_value_t = 20)]
        count: u32,
    },
    /// Bulk registration: `count` registrations signed by Alice under consecutive nonces,
    /// all submitted at once; the time until all are finalized and (with
    /// `--bridge-metrics`) until the bridge's key cache has them.
    Bulk {
        /// The node's WebSocket JSON-RPC endpoint.
        #[arg(long, default_value = "ws://127.0.0.1:9944")]
        node: String,
        #[arg(long, default_value_t = 1000)]
        count: u32,
        /// Device ids are `{prefix}{i}` (default: unique to the run).
        #[arg(long)]
        prefix: Option<String>,
        /// A DER (PKCS#1) RSA public key to register every device with (default: the dev
        /// key of device 1111).
        #[arg(long)]
        key: Option<std::path::PathBuf>,
        /// The bridge's metrics address (host:port).
        #[arg(long)]
        bridge_metrics: Option<String>,
        /// Seconds to wait for the whole batch before reporting it stalled.
        #[arg(long, default_value_t = 120)]
        within_s: u64,
    },
    /// Topic registration: from creating a group with its members (signed by Alice, in one
    /// block) to a topic key at the finalized head, made by a running bridge that is a key
    /// manager; one group after another.
    Topic {
        /// The node's WebSocket JSON-RPC endpoint.
        #[arg(long, default_value = "ws://127.0.0.1:9944")]
        node: String,
        /// Members of each group: fresh devices, registered before the first sample.
        #[arg(long, default_value_t = 4)]
        members: u32,
        #[arg(long, default_value_t = 10)]
        count: u32,
        /// Seconds to wait for one group's key.
        #[arg(long, default_value_t = 60)]
        within_s: u64,
    },
    /// Key check before a send: `keymesh_checkKey` latency, one call after another.
    CheckKey {
        /// The node's WebSocket JSON-RPC endpoint.
        #[arg(long, default_value = "ws://127.0.0.1:9944")]
        node: String,
        /// Devices to ask about, in turn: `{prefix}0` .. `{prefix}{devices - 1}`.
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        devices: u32,
        #[arg(long, default_value_t = 1000)]
        calls: u32,
    },
    /// Prints the seeds' table with KeyMesh's figures beside them from the JSON lines
    /// `scripts/bench.sh` collected, and plots latency against device count (SVG).
    Report {
        #[arg(long)]
        results: std::path::PathBuf,
        #[arg(long)]
        svg: std::path::PathBuf,
    },
}

fn read_key(path: Option<std::path::PathBuf>) -> Result<Vec<u8>, registration::BenchError> {
    match path {
        None => Ok(registration::DEVICE_KEY.to_vec()),
        Some(path) => std::fs::read(&path)
            .map_err(|e| registration::BenchError::Key(format!("{}: {e}", path.display()))),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.figure {
        Figure::Registration { node, count } => registration::measure(&node, count).await,
        Figure::Bulk {
            node,
            count,
            prefix,
            key,
            bridge_metrics,
            within_s,
        } => match read_key(key) {
            Ok(key) => {
                let bulk = bulk::Bulk {
                    node,
                    count,
                    prefix,
                    key,
                    bridge_metrics,
                    within: Duration::from_secs(within_s),
                };
                bulk::measure(&bulk).await
            }
            Err(e) => Err(e),
        },
        Figure::Topic {
            node,
            members,
            count,
            within_s,
        } => topic::measure(&node, members, count, Duration::from_secs(within_s)).await,
        Figure::CheckKey {
            node,
            prefix,
            devices,
            calls,
        } => {
            let ids: Vec<String> = (0..devices).map(|i| format!("{prefix}{i}")).collect();
            check_key::measure(&node, &ids, calls).await
        }
        Figure::Report { results, svg } => report::run(&results, &svg),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keymesh-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
