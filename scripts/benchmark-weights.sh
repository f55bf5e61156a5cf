#!/usr/bin/env bash
# Regenerates the weights the runtime charges from the pallets' FRAME benchmarks:
#   pallets/{devices,groups,exchange-log}/src/weights.rs   (template scripts/benchmark/pallet-weights.hbs)
#   runtime/src/weights/pallet_node_authorization.rs        (the bencher's default template)
#
# It builds the runtime wasm with `--features runtime-benchmarks` in a target dir of its own
# (the benchmark wasm must never reach the node that scripts/test.sh builds) and runs
# frame-omni-bencher against it; no benchmarking CLI is built into the node. Not part of
# scripts/test.sh or CI. On 2 cores: about 42 minutes cold (29 installing the bencher, 8
# building the benchmark runtime, 5 benchmarking), about 6 minutes warm.
#
#   STEPS=20 REPEAT=5 scripts/benchmark-weights.sh          # the defaults
#   scripts/benchmark-weights.sh pallet_groups              # one pallet
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"

BENCHER_VERSION=0.28.0 # frame-omni-bencher for polkadot-sdk stable2609 (sc-cli 0.63)
# Median slopes, not the default least squares: `set_epoch_key`'s cost per wrap grows with
# the group (a bigger trie), and a least-squares plane through its two sample lines
# undercharged the largest rekey by 11 % while charging an 8.7 ms base to every call. Median
# slopes charge at or above every measured point.
STEPS="${STEPS:-20}"
REPEAT="${REPEAT:-5}"
BENCH_TARGET_DIR="${BENCH_TARGET_DIR:-$HOME/.cache/keymesh/bench-target}"
TOOLS_DIR="${KEYMESH_TOOLS_DIR:-$HOME/.cache/keymesh/tools}"
BENCHER="$TOOLS_DIR/bin/frame-omni-bencher"
WASM="$BENCH_TARGET_DIR/release/wbuild/keymesh-runtime/keymesh_runtime.compact.compressed.wasm"

# pallet name in define_benchmarks! -> the weights file it writes
declare -A OUTPUT=(
    [pallet_devices]=pallets/devices/src/weights.rs
    [pallet_groups]=pallets/groups/src/weights.rs
    [pallet_exchange_log]=pallets/exchange-log/src/weights.rs
    [pallet_node_authorization]=runtime/src/weights/pallet_node_authorization.rs
)

install_bencher() {
    if [ -x "$BENCHER" ] && "$BENCHER" --version | grep -q "$BENCHER_VERSION"; then
        return
    fi
    # The bencher's sc-cli builds RocksDB, whose bindings need libclang.
    if ! command -v clang >/dev/null 2>&1 || ! ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1; then
        log "installing clang and libclang-dev (RocksDB bindings of the bencher)"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clang libclang-dev >/dev/null
    fi
    log "installing frame-omni-bencher $BENCHER_VERSION into $TOOLS_DIR"
    CARGO_TARGET_DIR="$HOME/.cache/keymesh/bencher-target" \
        cargo install frame-omni-bencher --version "$BENCHER_VERSION" --locked --root "$TOOLS_DIR"
}

build_benchmark_runtime() {
    log "building the runtime with runtime-benchmarks (target dir $BENCH_TARGET_DIR)"
    CARGO_TARGET_DIR="$BENCH_TARGET_DIR" \
        cargo build --release --locked -p keymesh-runtime --features runtime-benchmarks
    [ -f "$WASM" ] || { log "no runtime wasm at $WASM"; exit 1; }
}

benchmark() {
    local pallet="$1" output="${OUTPUT[$1]}"
    local template=()
    case "$pallet" in
        pallet_node_authorization) ;;
        *) template=(--template scripts/benchmark/pallet-weights.hbs) ;;
    esac
    log "benchmarking $pallet (steps $STEPS, repeat $REPEAT) -> $output"
    "$BENCHER" v1 benchmark pallet \
        --runtime "$WASM" \
        --pallet "$pallet" \
        --extrinsic '*' \
        --steps "$STEPS" \
        --repeat "$REPEAT" \
        --output-analysis median-slopes \
        --output "$output" \
        "${template[@]}"
    rustfmt --edition 2021 "$output"
}

ensure_toolchain
install_bencher
build_benchmark_runtime
if [ "$#" -gt 0 ]; then
    pallets=("$@")
else
    pallets=(pallet_devices pallet_groups pallet_exchange_log pallet_node_authorization)
fi
for pallet in "${pallets[@]}"; do
    [ -n "${OUTPUT[$pallet]:-}" ] || { log "unknown pallet $pallet (one of ${!OUTPUT[*]})"; exit 1; }
    benchmark "$pallet"
done
log "weights written; check them with: cargo test --release -p pallet-groups --features runtime-benchmarks"
