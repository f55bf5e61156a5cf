//! `keymesh-bench`: measures one figure against a running KeyMesh network and prints it as
//! one JSON line. `scripts/bench.sh` will start the networks and call it; so far it
//! measures registration until finalized.

mod registration;
mod stats;

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
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.figure {
        Figure::Registration { node, count } => registration::measure(&node, count).await,
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
