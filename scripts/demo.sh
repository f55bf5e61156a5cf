#!/usr/bin/env bash
# Runs the seeds' scenarios (direct message, tampered key, topics, cross-group rekey) with
# devices 1111..1114 against the stack that scripts/dev.sh runs, printing for each step who
# checked what, who opened the message and who could not.
#   scripts/dev.sh            # in one terminal
#   scripts/demo.sh           # in another
# KEYMESH_RPC_PORT, KEYMESH_MQTT_PORT and KEYMESH_BRIDGE_METRICS_PORT select another stack.
set -euo pipefail
source "$(dirname "$0")/common.sh"

ensure_toolchain
build_node
if ! wait_rpc "${KEYMESH_RPC_PORT:-9944}" 5; then
    log "no node on port ${KEYMESH_RPC_PORT:-9944}: start scripts/dev.sh first"
    exit 1
fi
exec "$CARGO_TARGET_DIR/release/examples/demo" \
    --rpc-port "${KEYMESH_RPC_PORT:-9944}" --mqtt-port "${KEYMESH_MQTT_PORT:-1883}" \
    --metrics-port "${KEYMESH_BRIDGE_METRICS_PORT:-9630}"
