#!/usr/bin/env bash
# Starts the 4-validator local testnet (Alice, Bob, Charlie, Dave) on loopback, each with
# its fixed dev node key, waits until all of them finalize, and prints their endpoints.
#   scripts/local-testnet.sh           start (fresh chain)
#   scripts/local-testnet.sh --stop    stop the validators it started
# If a validator does not answer or finalize in time, it prints that validator's log tail,
# stops the validators and exits 1; the logs stay in the state dir.
#
# Environment (the end-to-end test sets these; the defaults suit a developer's machine):
#   KEYMESH_TESTNET_DIR          state dir (logs, databases, pids)
#   KEYMESH_TESTNET_RPC_PORTS    four JSON-RPC ports      (default 9945 9946 9947 9948)
#   KEYMESH_TESTNET_P2P_PORTS    four libp2p ports        (default 30334 30335 30336 30337)
#   KEYMESH_TESTNET_PROM_PORTS   four Prometheus ports    (default 9616 9617 9618 9619)
#   KEYMESH_TESTNET_FINALITY_S   seconds to wait for all four to finalize (default 180: a
#                                busy 2-core machine runs four validators slowly)
#   KEYMESH_NODE_BIN             a built node to run instead of building one
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
read -r -a RPC_PORTS <<<"${KEYMESH_TESTNET_RPC_PORTS:-9945 9946 9947 9948}"
read -r -a P2P_PORTS <<<"${KEYMESH_TESTNET_P2P_PORTS:-30334 30335 30336 30337}"
read -r -a PROM_PORTS <<<"${KEYMESH_TESTNET_PROM_PORTS:-9616 9617 9618 9619}"
FINALITY_S="${KEYMESH_TESTNET_FINALITY_S:-180}"

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

# Prints validator $1's log tail, stops the network and exits 1. Nothing is removed, so the
# whole logs stay for a look.
give_up() {
    local i="$1" why="$2" log_file="$STATE_DIR/${NAMES[$1]}.log"
    log "${NAMES[$i]} $why; the last lines of $log_file:"
    tail -n 30 "$log_file" >&2 || true
    stop
    exit 1
}

if [ "${#RPC_PORTS[@]}" -ne 4 ] || [ "${#P2P_PORTS[@]}" -ne 4 ] || [ "${#PROM_PORTS[@]}" -ne 4 ]; then
    log "four ports each: RPC ${RPC_PORTS[*]}; p2p ${P2P_PORTS[*]}; Prometheus ${PROM_PORTS[*]}"
    exit 1
fi

if [ -n "${KEYMESH_NODE_BIN:-}" ]; then
    NODE_BIN="$KEYMESH_NODE_BIN"
else
    ensure_toolchain
    build_node
fi
[ ! -f "$PID_FILE" ] || stop
rm -rf "$STATE_DIR"
mkdir -p "$STATE_DIR"

bootnodes=()
for i in 0 1 2 3; do
    bootnodes+=("/ip4/127.0.0.1/tcp/${P2P_PORTS[$i]}/p2p/${PEERS[$i]}")
done

for i in 0 1 2 3; do
    name="${NAMES[$i]}"
    key=$(printf '%064x' $((i + 1)))
    "$NODE_BIN" --chain local --validator "--$name" \
        --base-path "$STATE_DIR/$name" --node-key "$key" \
        --rpc-port "${RPC_PORTS[$i]}" \
        --listen-addr "/ip4/127.0.0.1/tcp/${P2P_PORTS[$i]}" \
        --prometheus-port "${PROM_PORTS[$i]}" --no-telemetry --no-mdns \
        --bootnodes "${bootnodes[@]}" >"$STATE_DIR/$name.log" 2>&1 &
    echo $! >>"$PID_FILE"
done

for i in 0 1 2 3; do
    wait_rpc "${RPC_PORTS[$i]}" 60 || give_up "$i" "did not answer JSON-RPC on ${RPC_PORTS[$i]}"
done
log "waiting up to $FINALITY_S s for all four validators to finalize"
deadline=$(( $(date +%s) + FINALITY_S ))
for i in 0 1 2 3; do
    until [ "$(finalized_number "${RPC_PORTS[$i]}" 2>/dev/null || echo 0)" -ge 1 ]; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            give_up "$i" "did not finalize a block within $FINALITY_S s"
        fi
        sleep 0.2
    done
done

echo "KeyMesh local testnet is up (all four validators finalize)."
for i in 0 1 2 3; do
    printf '  %-8s JSON-RPC http://127.0.0.1:%d  p2p %s  log %s\n' \
        "${NAMES[$i]}" "${RPC_PORTS[$i]}" "${bootnodes[$i]}" "$STATE_DIR/${NAMES[$i]}.log"
done
echo "Stop it with: scripts/local-testnet.sh --stop"
