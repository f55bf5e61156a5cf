#!/usr/bin/env bash
# Runs the KeyMesh dev stack: one validator (Alice) that authors and finalizes, and the
# bridge with its embedded MQTT broker, signing as //Ferdie (the dev chain's registered
# bridge and key manager).
#   scripts/dev.sh                      Aura + GRANDPA, 1 s blocks
#   scripts/dev.sh --sealing instant    a block per transaction, finalized at once
# Any other argument is passed to keymesh-node. Ctrl-C stops everything this started.
# KEYMESH_NO_BRIDGE=1 runs the chain alone.
# The chain lives in $KEYMESH_DEV_BASE (default: a fresh temporary directory).
set -euo pipefail
source "$(dirname "$0")/common.sh"

RPC_PORT="${KEYMESH_RPC_PORT:-9944}"
MQTT_PORT="${KEYMESH_MQTT_PORT:-1883}"
BRIDGE_METRICS_PORT="${KEYMESH_BRIDGE_METRICS_PORT:-9630}"
BRIDGE_BIN="$CARGO_TARGET_DIR/release/keymesh-bridge"
P2P_PORT="${KEYMESH_P2P_PORT:-30333}"

ensure_toolchain
build_node

base="${KEYMESH_DEV_BASE:-}"
cleanup_base=""
if [ -z "$base" ]; then
    base="$(mktemp -d -t keymesh-dev.XXXXXX)"
    cleanup_base="$base"
fi

node_pid=""
bridge_pid=""
cleanup() {
    trap - INT TERM EXIT
    if [ -n "$bridge_pid" ] && kill -0 "$bridge_pid" 2>/dev/null; then
        log "stopping keymesh-bridge ($bridge_pid); it flushes its audit batch first"
        kill -TERM "$bridge_pid" 2>/dev/null || true
        wait "$bridge_pid" 2>/dev/null || true
    fi
    if [ -n "$node_pid" ] && kill -0 "$node_pid" 2>/dev/null; then
        log "stopping keymesh-node ($node_pid)"
        kill -INT "$node_pid" 2>/dev/null || true
        wait "$node_pid" 2>/dev/null || true
    fi
    [ -z "$cleanup_base" ] || rm -rf "$cleanup_base"
}
trap cleanup INT TERM EXIT

# Node key 0x…01 is the dev chain's well-known node (see the runtime's genesis presets).
"$NODE_BIN" --dev --base-path "$base" \
    --node-key 0000000000000000000000000000000000000000000000000000000000000001 \
    --rpc-port "$RPC_PORT" --listen-addr "/ip4/127.0.0.1/tcp/$P2P_PORT" --rpc-cors all \
    --no-telemetry --no-mdns "$@" 2>"$base/node.log" &
node_pid=$!

if ! wait_rpc "$RPC_PORT" 60; then
    log "the node did not answer on $RPC_PORT; its log:"
    tail -40 "$base/node.log" >&2
    exit 1
fi

bridge_line="  Bridge:                      not started (KEYMESH_NO_BRIDGE=1)"
if [ -z "${KEYMESH_NO_BRIDGE:-}" ]; then
    "$BRIDGE_BIN" --node "ws://127.0.0.1:$RPC_PORT" --signer //Ferdie \
        --mqtt-listen "127.0.0.1:$MQTT_PORT" --metrics "127.0.0.1:$BRIDGE_METRICS_PORT" \
        --state-dir "$base/bridge-state" 2>"$base/bridge.log" &
    bridge_pid=$!
    for _ in $(seq 1 600); do
        grep -q "forwarding from" "$base/bridge.log" 2>/dev/null && break
        kill -0 "$bridge_pid" 2>/dev/null || break
        sleep 0.1
    done
    if ! grep -q "forwarding from" "$base/bridge.log"; then
        log "the bridge did not start; its log:"
        tail -40 "$base/bridge.log" >&2
        exit 1
    fi
    bridge_line="  MQTT for devices (front):    mqtt://127.0.0.1:$MQTT_PORT (device id + connect proof; audience keymesh-dev)
  Bridge metrics and health:   http://127.0.0.1:$BRIDGE_METRICS_PORT/metrics, /readyz, /healthz
  Bridge key (trust it):       $(bridge_key_hex)
  Bridge log:                  $base/bridge.log
  Bridge state (replay ids):   $base/bridge-state"
fi

cat <<INFO
KeyMesh dev stack is up.
  JSON-RPC (HTTP + WebSocket): http://127.0.0.1:$RPC_PORT   ws://127.0.0.1:$RPC_PORT
  libp2p:                      /ip4/127.0.0.1/tcp/$P2P_PORT/p2p/12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp
  Node metrics:                http://127.0.0.1:9615/metrics
  Node log:                    $base/node.log
$bridge_line
  Try: curl -s -H 'Content-Type: application/json' -d '{"id":1,"jsonrpc":"2.0","method":"keymesh_device","params":["1111"]}' http://127.0.0.1:$RPC_PORT
       scripts/demo.sh   (the seeds' scenarios against this stack)
Ctrl-C stops it.
INFO
wait "$node_pid"
