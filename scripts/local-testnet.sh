#!/usr/bin/env bash
# Starts the 4-validator local testnet (Alice, Bob, Charlie, Dave) on loopback, each with
# its fixed dev node key, waits until all of them finalize, and prints their endpoints.
#   scripts/local-testnet.sh           start (fresh chain)
#   scripts/local-testnet.sh --stop    stop the validators it started
set -euo pipefail
source "$(dirname "$0")/common.sh"

STATE_DIR="${KEYMESH_TESTNET_DIR:-$HOME/.cache/keymesh/local-testnet}"
PID_FILE="$STATE_DIR/pids"
NAMES=(alice bob charlie dave)
PEERS=(
    12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp
    12D3KooWHdiAxVd8uMQR1hGWXccidmfCwLqcMpGwR6QcTP6QRMuD
    12D3KooWSCufgHzV4fCwRijfH2k3abrpAJxTKxEvN1FDuRXA2U9x
    12D3KooWSsChzF81YDUKpe9Uk5AHV5oqAaXAcWNSPYgoLauUk4st
)
RPC_BASE=9945
P2P_BASE=30334

stop() {
    [ -f "$PID_FILE" ] || { log "no testnet is running"; return 0; }
    while read -r pid; do
        kill -INT "$pid" 2>/dev/null || true
    done <"$PID_FILE"
    while read -r pid; do
        while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    done <"$PID_FILE"
    rm -f "$PID_FILE"
    log "testnet stopped"
}

if [ "${1:-}" = "--stop" ]; then
    stop
    exit 0
fi

ensure_toolchain
build_node
[ ! -f "$PID_FILE" ] || stop
rm -rf "$STATE_DIR"
mkdir -p "$STATE_DIR"

bootnodes=()
for i in 0 1 2 3; do
    bootnodes+=("/ip4/127.0.0.1/tcp/$((P2P_BASE + i))/p2p/${PEERS[$i]}")
done

for i in 0 1 2 3; do
    name="${NAMES[$i]}"
    key=$(printf '%064x' $((i + 1)))
    "$NODE_BIN" --chain local --validator "--$name" \
        --base-path "$STATE_DIR/$name" --node-key "$key" \
        --rpc-port "$((RPC_BASE + i))" \
        --listen-addr "/ip4/127.0.0.1/tcp/$((P2P_BASE + i))" \
        --prometheus-port "$((9616 + i))" --no-telemetry --no-mdns \
        --bootnodes "${bootnodes[@]}" 2>"$STATE_DIR/$name.log" &
    echo $! >>"$PID_FILE"
done

for i in 0 1 2 3; do
    port=$((RPC_BASE + i))
    wait_rpc "$port" 60 || { log "${NAMES[$i]} did not answer on $port"; stop; exit 1; }
done
log "waiting for all four validators to finalize"
deadline=$(( $(date +%s) + 120 ))
for i in 0 1 2 3; do
    port=$((RPC_BASE + i))
    until [ "$(finalized_number "$port" 2>/dev/null || echo 0)" -ge 1 ]; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log "${NAMES[$i]} did not finalize; see $STATE_DIR/${NAMES[$i]}.log"
            stop
            exit 1
        fi
        sleep 0.2
    done
done

echo "KeyMesh local testnet is up (all four validators finalize)."
for i in 0 1 2 3; do
    printf '  %-8s JSON-RPC http://127.0.0.1:%d  p2p %s  log %s\n' \
        "${NAMES[$i]}" "$((RPC_BASE + i))" "${bootnodes[$i]}" "$STATE_DIR/${NAMES[$i]}.log"
done
echo "Stop it with: scripts/local-testnet.sh --stop"
