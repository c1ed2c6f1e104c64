#!/usr/bin/env bash
# Builds crimux (release) and runs it in the foreground, with a containerd to talk to.
#
#   scripts/run.sh                                   private containerd + generated config
#   scripts/run.sh --containerd-address unix:///run/containerd/containerd.sock
#   scripts/run.sh --config /etc/crimux/config.toml  your config; a private containerd is
#                                                    added only if it names no backend
#   scripts/run.sh --state DIR                       where the private containerd, the
#                                                    generated config, socket and root live
#                                                    (default /var/lib/crimux-dev)
#
# The private containerd has its CRI plugin disabled (crimux is the CRI), its own root, state
# and socket under the state dir, and logs to <state>/containerd.log. Ctrl-C stops crimux and
# then the private containerd. Any system containerd is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=""
ADDRESS=""
STATE=/var/lib/crimux-dev

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
    --config) CONFIG=${2:?--config needs a file}; shift 2 ;;
    --config=*) CONFIG=${1#*=}; shift ;;
    --containerd-address) ADDRESS=${2:?--containerd-address needs unix://PATH}; shift 2 ;;
    --containerd-address=*) ADDRESS=${1#*=}; shift ;;
    --state) STATE=${2:?--state needs a directory}; shift 2 ;;
    --state=*) STATE=${1#*=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done

say() { echo "run.sh: $*" >&2; }

bash scripts/install-deps.sh
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

say "building crimux and its log plugin (release)"
cargo build --release -p crimux -p crimux-cri-log
BIN="${CARGO_TARGET_DIR:-target}/release/crimux"

mkdir -p "$STATE"
STATE=$(readlink -f "$STATE")

# Does the given config already name a backend?
config_has_backend() {
    [ -n "$CONFIG" ] && grep -Eq '^[[:space:]]*\[\[backend\]\]' "$CONFIG"
}

CONTAINERD_PID=""
cleanup() {
    if [ -n "$CONTAINERD_PID" ] && kill -0 "$CONTAINERD_PID" 2>/dev/null; then
        say "stopping private containerd (pid $CONTAINERD_PID)"
        kill -TERM "$CONTAINERD_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$CONTAINERD_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$CONTAINERD_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

start_private_containerd() {
    local dir=$STATE/containerd
    mkdir -p "$dir"
    cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$dir/containerd.sock"

[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
EOF
    rm -f "$dir/containerd.sock"
    say "starting private containerd (log: $STATE/containerd.log)"
    containerd --config "$dir/config.toml" >>"$STATE/containerd.log" 2>&1 &
    CONTAINERD_PID=$!
    for _ in $(seq 300); do
        if ctr --address "$dir/containerd.sock" version >/dev/null 2>&1; then
            ADDRESS="unix://$dir/containerd.sock"
            return 0
        fi
        kill -0 "$CONTAINERD_PID" 2>/dev/null || break
        sleep 0.1
    done
    say "containerd did not start; the end of its log:"
    tail -n 30 "$STATE/containerd.log" >&2
    exit 1
}

# The node's CNI config when it has one; otherwise a bridge network of our own (crimux0,
# 10.88.0.0/16, masquerading pod traffic, hostPort through portmap) under the state dir.
cni_conf_dir() {
    if ls /etc/cni/net.d/*.conf /etc/cni/net.d/*.conflist /etc/cni/net.d/*.json >/dev/null 2>&1; then
        echo /etc/cni/net.d
        return
    fi
    local dir=$STATE/net.d
    mkdir -p "$dir"
    cat >"$dir/10-crimux.conflist" <<'JSON'
{
  "cniVersion": "1.0.0",
  "name": "crimux",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "crimux0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "10.88.0.0/16" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" }
  ]
}
JSON
    echo "$dir"
}

# The config crimux runs with: the given one if it names a backend; otherwise the given one
# (or a new one) plus a backend on --containerd-address or on a private containerd.
if config_has_backend; then
    RUN_CONFIG=$CONFIG
    if [ -n "$ADDRESS" ]; then
        say "note: $CONFIG names its own backends; --containerd-address $ADDRESS is ignored"
    fi
else
    RUN_CONFIG=$STATE/crimux.toml
    if [ -n "$CONFIG" ]; then
        cp "$CONFIG" "$RUN_CONFIG"
    else
        CERTS_D=/etc/containerd/certs.d
        [ -d "$CERTS_D" ] || CERTS_D=$STATE/certs.d
        mkdir -p "$CERTS_D"
        cat >"$RUN_CONFIG" <<EOF
# Written by scripts/run.sh.
listen = "$STATE/crimux.sock"
root = "$STATE/root"
sandbox_image = "registry.k8s.io/pause:3.10"

[registry]
config_path = "$CERTS_D"

[cni]
conf_dir = "$(cni_conf_dir)"
bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]
EOF
    fi
    [ -n "$ADDRESS" ] || start_private_containerd
    cat >>"$RUN_CONFIG" <<EOF

[[backend]]
name = "default"
address = "$ADDRESS"
namespace = "k8s.io"
EOF
fi

LISTEN=$(sed -nE 's/^[[:space:]]*listen[[:space:]]*=[[:space:]]*"([^"]*)".*/\1/p' "$RUN_CONFIG" | head -n1)
LISTEN=${LISTEN:-/run/crimux/crimux.sock}
mkdir -p "$(dirname "$LISTEN")"

say "config: $RUN_CONFIG"
echo ""
echo "crimux is starting; in another shell:"
echo "  crictl --runtime-endpoint unix://$LISTEN --image-endpoint unix://$LISTEN images"
echo ""
# In the foreground, so Ctrl-C reaches crimux; the EXIT trap then stops containerd.
status=0
"$BIN" --config "$RUN_CONFIG" || status=$?
exit "$status"
