//! `keymesh-proof`: proves that envelopes a bridge forwarded are in the exchange log. See
//! `keymesh-proof --help` and `docs/exchange-proof.md`.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use keymesh_bridge::{chain, proof_check};

/// Proves that envelopes a bridge forwarded are in the exchange log.
///
/// For each envelope hash (hex SHA-256 of the envelope), prints one JSON line: the
/// finalized block whose `KeysExchanged` event counts it, and the Merkle path from the
/// envelope to that event's root; or why it cannot be proved. Exits 0 if every envelope is
/// proved, 1 if one is not, 2 if it could not check.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The bridge's state directory: its proof archives are the `proofs-*` directories.
    #[arg(long)]
    state_dir: PathBuf,
    /// The node whose finalized exchange log is checked.
    #[arg(long, default_value = "ws://127.0.0.1:9944")]
    node: String,
    /// A file of envelope hashes, one hex hash a line.
    #[arg(long)]
    hashes_from: Option<PathBuf>,
    /// Envelope hashes, hex.
    hashes: Vec<String>,
}

fn parse_hash(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    let bytes = hex::decode(text.trim_start_matches("0x"))
        .map_err(|e| format!("{text:?} is not hex: {e}"))?;
    bytes
        .try_into()
        .map_err(|_| format!("{text:?} is not 32 bytes"))
}

fn hashes(cli: &Cli) -> Result<Vec<[u8; 32]>, String> {
    let mut texts = cli.hashes.clone();
    if let Some(path) = &cli.hashes_from {
        let file = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        texts.extend(
            file.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string),
        );
    }
    if texts.is_empty() {
        return Err("no envelope hashes: pass some, or --hashes-from FILE".into());
    }
    texts.iter().map(|t| parse_hash(t)).collect()
}

async fn run(cli: Cli) -> Result<bool, String> {
    let hashes = hashes(&cli)?;
    let archives = proof_check::archives_in(&cli.state_dir)
        .map_err(|e| format!("cannot read {}: {e}", cli.state_dir.display()))?;
    if archives.is_empty() {
        return Err(format!(
            "no proofs-* archive in {}",
            cli.state_dir.display()
        ));
    }
    let node = chain::connect(&cli.node).await.map_err(|e| e.to_string())?;
    let verdicts = proof_check::prove_all(&archives, &node, &hashes)
        .await
        .map_err(|e| e.to_string())?;
    for verdict in &verdicts {
        let line = serde_json::to_string(verdict).map_err(|e| e.to_string())?;
        println!("{line}");
    }
    Ok(verdicts.iter().all(proof_check::Verdict::is_logged))
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("keymesh-proof: {e}");
            ExitCode::from(2)
        }
    }
}
