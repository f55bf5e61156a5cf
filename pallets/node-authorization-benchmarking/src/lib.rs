//! FRAME benchmarks (v2) of `pallet-node-authorization`.
//!
//! The pallet ships with placeholder weights (50 ms a call) and no benchmarks. This crate
//! benchmarks it from outside, through a wrapper `Pallet` (the pattern of
//! `pallet-session-benchmarking`), so the KeyMesh runtime can charge measured weights:
//! `scripts/benchmark-weights.sh` writes them to
//! `runtime/src/weights/pallet_node_authorization.rs`.
//!
//! Its calls take unbounded lists, so "worst case" needs a bound the pallet does not give:
//! a `reset_well_known_nodes` of `MaxWellKnownNodes - 1` nodes and connection lists of
//! `MaxWellKnownNodes` peers, every peer id `MaxPeerIdLength - 1` bytes long. Longer lists
//! cost more than they are charged; only root and the runtime's known signers may submit
//! them (`docs/operations.md`).
#![cfg_attr(not(feature = "std"), no_std)]
#![cfg(feature = "runtime-benchmarks")]

extern crate alloc;

mod benchmarking;
#[cfg(test)]
mod mock;

/// Benchmarks `pallet_node_authorization::Pallet<T>`; never instantiated.
pub struct Pallet<T: Config>(pallet_node_authorization::Pallet<T>);

/// A runtime with `pallet-node-authorization` whose origins the benchmarks can satisfy.
pub trait Config: pallet_node_authorization::Config {}
