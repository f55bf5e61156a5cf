#!/usr/bin/env bash
# The test command: installs what is missing, checks formatting, builds in release, and
# runs every unit test and every end-to-end test (real node processes on loopback).
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"

ensure_toolchain

log "checking formatting"
cargo fmt --all -- --check

start=$(date +%s)
log "building workspace and tests (release)"
cargo build --release --locked --workspace --all-targets
log "build took $(( $(date +%s) - start )) s"

# Unit tests, then the end-to-end tests (node/tests/*.rs start real nodes on loopback).
start=$(date +%s)
log "running cargo test --release --workspace"
cargo test --release --locked --workspace
log "tests took $(( $(date +%s) - start )) s"
