//! Weights of pallets from outside this workspace, generated from their benchmarks by
//! `scripts/benchmark-weights.sh`. (KeyMesh's own pallets keep theirs in `src/weights.rs`.)

pub mod pallet_node_authorization;
