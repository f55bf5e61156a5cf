//! Command-line interface.

/// How blocks are produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Sealing {
    /// Aura authors one block a slot and GRANDPA finalizes: the production mode.
    #[default]
    Aura,
    /// One block per transaction and an empty one every 2 s, finalized at once and stamped
    /// with the wall clock: for local work and tests. Needs no validator key and has no
    /// finality lag.
    Instant,
}

/// The node's arguments: every standard Substrate flag plus `--sealing`.
#[derive(Debug, clap::Parser)]
#[command(
    propagate_version = true,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub subcommand: Option<Subcommand>,

    #[clap(flatten)]
    pub run: sc_cli::RunCmd,

    /// Block production: `aura` (Aura + GRANDPA) or `instant` (a block per transaction,
    /// finalized at once).
    #[arg(long, value_enum, default_value_t = Sealing::Aura)]
    pub sealing: Sealing,
}

#[derive(Debug, clap::Subcommand)]
#[allow(clippy::large_enum_variant)]
pub enum Subcommand {
    /// Key management: generate and inspect account keys and node keys.
    #[command(subcommand)]
    Key(sc_cli::KeySubcommand),

    /// Export the chain specification (`--chain dev|local`) as JSON.
    ExportChainSpec(sc_cli::ExportChainSpecCmd),

    /// Remove the whole chain database.
    PurgeChain(sc_cli::PurgeChainCmd),
}
