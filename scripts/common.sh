# Shared by the scripts: paths and the one-time installs every script needs.
# shellcheck shell=bash

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keymesh/target}"
NODE_BIN="$CARGO_TARGET_DIR/release/keymesh-node"

log() { printf '[keymesh] %s\n' "$*" >&2; }

# Installs what a fresh machine lacks: Debian packages and rustup parts.
# mosquitto is also put on PATH from /usr/sbin, where Debian installs the broker.
ensure_toolchain() {
    case ":$PATH:" in *:/usr/sbin:*) ;; *) export PATH="$PATH:/usr/sbin" ;; esac
    local missing=()
    command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    command -v mosquitto >/dev/null 2>&1 || missing+=(mosquitto)
    command -v mosquitto_sub >/dev/null 2>&1 || missing+=(mosquitto-clients)
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing Debian packages: ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ! rustup target list --installed | grep -qx wasm32v1-none; then
        log "adding rustup target wasm32v1-none"
        rustup target add wasm32v1-none
    fi
    if ! rustup component list --installed | grep -q '^rust-src'; then
        log "adding rustup component rust-src"
        rustup component add rust-src
    fi
}

# Builds the node in release mode unless an up-to-date binary is there (cargo decides).
build_node() {
    log "building keymesh-node (release; target dir $CARGO_TARGET_DIR)"
    # The same command as scripts/test.sh, so running and testing share one build.
    (cd "$REPO_ROOT" && cargo build --release --locked --workspace --all-targets)
}

# Waits until a node answers JSON-RPC on $1, for at most $2 seconds.
wait_rpc() {
    local port="$1" within="$2" i=0
    while [ "$i" -lt "$((within * 10))" ]; do
        if rpc_call "$port" system_health '[]' >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# Calls JSON-RPC method $2 with params $3 (a JSON array) on the node on port $1.
rpc_call() {
    curl -sf -H 'Content-Type: application/json' \
        -d "{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"$2\",\"params\":$3}" \
        "http://127.0.0.1:$1"
}

# Prints the finalized block number of the node on port $1. The answers carry no trailing
# newline, so the number is cut out with sed, not read line by line.
finalized_number() {
    local port="$1" hash hex
    hash=$(rpc_call "$port" chain_getFinalizedHead '[]' |
        sed -nE 's/.*"result":"(0x[0-9a-f]+)".*/\1/p') || return 1
    [ -n "$hash" ] || return 1
    hex=$(rpc_call "$port" chain_getHeader "[\"$hash\"]" |
        sed -nE 's/.*"number":"0x([0-9a-f]+)".*/\1/p') || return 1
    [ -n "$hex" ] || return 1
    echo $((16#$hex))
}

# The dev bridge's sr25519 public key (//Ferdie), which devices trust with --trust-bridge.
bridge_key_hex() {
    echo "1cbd2d43530a44705ad088af313e18f80b53ef16b36177cd4b77b846f2a5f07c"
}
