//! `keymesh-node`: the KeyMesh chain node.

mod chain_spec;
mod cli;
mod command;
mod instant;
mod peers;
mod rpc;
mod service;

fn main() -> sc_cli::Result<()> {
    command::run()
}
