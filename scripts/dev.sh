#!/usr/bin/env bash
# Runs the KeyMesh dev chain: one validator (Alice) that authors and finalizes.
#   scripts/dev.sh                      Aura + GRANDPA, 1 s blocks
#   scripts/dev.sh --sealing instant    a block per transaction, finalized at once
# Any other argument is passed to keymesh-node. Ctrl-C stops everything this started.
# The chain lives in $KEYMESH_DEV_BASE (default: a fresh temporary directory).
set -euo pipefail
source "$(dirname "$0")/common.sh"

RPC_PORT="${KEYMESH_RPC_PORT:-9944}"
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
cleanup() {
    trap - INT TERM EXIT
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

cat <<INFO
KeyMesh dev chain is up.
  JSON-RPC (HTTP + WebSocket): http://127.0.0.1:$RPC_PORT   ws://127.0.0.1:$RPC_PORT
  libp2p:                      /ip4/127.0.0.1/tcp/$P2P_PORT/p2p/12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp
  Prometheus:                  http://127.0.0.1:9615/metrics
  Node log:                    $base/node.log
  Try: curl -s -H 'Content-Type: application/json' -d '{"id":1,"jsonrpc":"2.0","method":"chain_getFinalizedHead"}' http://127.0.0.1:$RPC_PORT
Ctrl-C stops it.
INFO
wait "$node_pid"
