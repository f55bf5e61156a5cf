#!/usr/bin/env bash
# Measures KeyMesh against the seed paper (Hsu & Lu, Tables 3 and 4) and prints both side by
# side, with the ratio. Run it after scripts/test.sh (it uses the release binaries that
# built); it takes about 10 minutes on a 2-core machine.
#
# On the dev chain and on the 4-validator local testnet, each with a bridge that is the
# key manager, at 3, 10, 100 and 1,000 devices registered:
#   - registration until finalized, one device at a time (p50 of 20);
#   - topic registration: a group and 4 members to a key at the finalized head (p50 of 5);
#   - keymesh_checkKey latency (p50, p99 of 1,000 calls);
# then 1,000 registrations submitted at once: until all are finalized and until the bridge
# has them. On a dev chain of its own (the data_plane example): a 1 MiB send and a 256-byte
# topic message, sealing to opening; gated throughput against the same broker alone, with
# a load generator that shows it outruns both; the bridge's CPU time per gated message; the
# exchange log's backlog after those 20,000 forwards and the time it took to drain.
#
# Writes $KEYMESH_BENCH_DIR (default ~/.cache/keymesh/bench): results.jsonl (one JSON object
# a measurement), latency.svg (latency against device count) and the processes' logs.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"

OUT="${KEYMESH_BENCH_DIR:-$HOME/.cache/keymesh/bench}"
BIN="$CARGO_TARGET_DIR/release"
BENCH="$BIN/keymesh-bench"
RESULTS="$OUT/results.jsonl"
DEV_RPC=19944
DEV_P2P=19333
BRIDGE_MQTT=19883
BRIDGE_METRICS=19615
TESTNET_RPC=(19945 19946 19947 19948)
COUNTS=(3 10 100 1000)

for bin in keymesh-node keymesh-bridge keymesh-bench examples/data_plane; do
    if [ ! -x "$BIN/$bin" ]; then
        log "$BIN/$bin is missing: building the workspace as scripts/test.sh does"
        ensure_toolchain
        cargo build --release --locked --workspace --all-targets
        break
    fi
done

rm -rf "$OUT"
mkdir -p "$OUT"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    KEYMESH_TESTNET_DIR="$OUT/testnet" "$REPO_ROOT/scripts/local-testnet.sh" --stop >/dev/null 2>&1 || true
    wait 2>/dev/null || true
}
trap cleanup EXIT

# Runs a measurement and appends {"net", "devices", "result"} to the results.
record() {
    local net="$1" devices="$2" line
    shift 2
    line=$("$@")
    printf '{"net":"%s","devices":%s,"result":%s}\n' "$net" "$devices" "$line" >>"$RESULTS"
}

start_bridge() {
    local rpc="$1" name="$2"
    "$BIN/keymesh-bridge" --node "ws://127.0.0.1:$rpc" --signer //Ferdie \
        --mqtt-listen "127.0.0.1:$BRIDGE_MQTT" --metrics "127.0.0.1:$BRIDGE_METRICS" \
        --state-dir "$OUT/$name-bridge" 2>"$OUT/$name-bridge.log" &
    pids+=($!)
    local deadline=$(( $(date +%s) + 60 ))
    until grep -q "forwarding from" "$OUT/$name-bridge.log" 2>/dev/null; do
        [ "$(date +%s)" -lt "$deadline" ] || { tail -n 20 "$OUT/$name-bridge.log" >&2; exit 1; }
        sleep 0.2
    done
}

stop_bridge() {
    local pid="${pids[-1]}"
    kill -INT "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset 'pids[-1]'
}

# The per-count figures on the network behind JSON-RPC port $2, then the bulk figure.
measure_net() {
    local net="$1" node="ws://127.0.0.1:$2" registered=0 count added
    for count in "${COUNTS[@]}"; do
        log "$net: $count devices"
        added=$((count - registered))
        "$BENCH" bulk --node "$node" --count "$added" --prefix "$net-$count-" \
            --within-s 120 >"$OUT/$net-fill-$count.json"
        registered=$count
        record "$net" "$count" "$BENCH" registration --node "$node" --count 20
        record "$net" "$count" "$BENCH" topic --node "$node" --count 5
        record "$net" "$count" "$BENCH" check-key --node "$node" --prefix "$net-$count-" \
            --devices "$added" --calls 1000
    done
    log "$net: 1,000 registrations submitted at once"
    record "$net" "$registered" "$BENCH" bulk --node "$node" --count 1000 --prefix "$net-batch-" \
        --bridge-metrics "127.0.0.1:$BRIDGE_METRICS" --within-s 120
}

log "dev chain"
"$BIN/keymesh-node" --dev --base-path "$OUT/dev" --rpc-port "$DEV_RPC" \
    --listen-addr "/ip4/127.0.0.1/tcp/$DEV_P2P" --no-prometheus --no-telemetry --no-mdns \
    2>"$OUT/dev-node.log" &
pids+=($!)
wait_rpc "$DEV_RPC" 60
start_bridge "$DEV_RPC" dev
measure_net dev "$DEV_RPC"
stop_bridge
kill -INT "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'

log "4-validator local testnet"
KEYMESH_TESTNET_DIR="$OUT/testnet" KEYMESH_NODE_BIN="$BIN/keymesh-node" \
    KEYMESH_TESTNET_RPC_PORTS="${TESTNET_RPC[*]}" \
    KEYMESH_TESTNET_P2P_PORTS="19334 19335 19336 19337" \
    KEYMESH_TESTNET_PROM_PORTS="19616 19617 19618 19619" \
    "$REPO_ROOT/scripts/local-testnet.sh" >/dev/null
start_bridge "${TESTNET_RPC[0]}" local4
measure_net local4 "${TESTNET_RPC[0]}"
stop_bridge
KEYMESH_TESTNET_DIR="$OUT/testnet" "$REPO_ROOT/scripts/local-testnet.sh" --stop >/dev/null

# The example logs its processes' output; its figure is its last line.
data_plane() { "$BIN/examples/data_plane" "$1" | tail -n 1; }
log "data plane (its own dev chain and bridge)"
record dev 4 data_plane 10000

"$BENCH" report --results "$RESULTS" --svg "$OUT/latency.svg" >"$OUT/report.md"
cat "$OUT/report.md"
log "results: $RESULTS; plot: $OUT/latency.svg"
