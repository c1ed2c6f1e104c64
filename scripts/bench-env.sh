#!/usr/bin/env bash
# The private benchmark environment under $D (default /tmp/crimux-bench), all on loopback:
#   - a registry on 127.0.0.1:$PORT holding bench/busybox:latest and bench/pause:latest
#     (from target/test-images, built by tests/harness/build-images.sh);
#   - containerd "plain" (CRI plugin disabled) with crimux in front of it: unix://$D/crimux.sock;
#   - with WITH_CRI=1, containerd "cri" with its built-in CRI plugin enabled, configured like
#     crimux (same pause image, registry hosts, CNI plugins; its own bridge and subnet):
#     unix://$D/ctrd-cri/containerd.sock.
#
#   scripts/bench-env.sh up     start everything; writes $D/env (shell variables) and prints it
#   scripts/bench-env.sh down   remove every pod, stop every daemon and shim started under $D,
#                               unmount what is mounted under $D, delete the bench bridges
#
# PROFILE=release|debug picks the crimux build (target/$PROFILE/crimux, crimux-log beside it).
# Build first: cargo build --release -p crimux -p crimux-cri-log -p crimux-bench
set -euo pipefail
D=${D:-/tmp/crimux-bench}
PORT=${PORT:-5077}
PROFILE=${PROFILE:-release}
WITH_CRI=${WITH_CRI:-0}
REPO=$(cd "$(dirname "$0")/.." && pwd)
CRICTL=${CRICTL:-/opt/cri-tools/crictl}
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
# Bench-only bridges and subnets, so nothing collides with the tests' or the host's networks.
BR_CRIMUX=crbench0
BR_CRI=crbench1
NET_CRIMUX=10.196.10.0/24
NET_CRI=10.196.11.0/24

log() { echo "bench-env: $*" >&2; }

# Waits up to 20 s for a unix socket to appear.
wait_socket() {
    for _ in $(seq 200); do
        [ -S "$1" ] && return 0
        sleep 0.1
    done
    log "$1 did not appear; see $2"
    tail -20 "$2" >&2
    return 1
}

conflist() { # name bridge subnet ipam-dir
    cat <<C
{"cniVersion":"1.0.0","name":"$1","plugins":[
 {"type":"bridge","bridge":"$2","isGateway":true,"ipMasq":false,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"$3"}]],"dataDir":"$4"}},
 {"type":"portmap","capabilities":{"portMappings":true}},{"type":"loopback"}]}
C
}

start_registry() {
    mkdir -p $D/reg
    cat >$D/reg/config.yml <<C
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $D/reg/data
http:
  addr: 127.0.0.1:$PORT
C
    docker-registry serve $D/reg/config.yml >$D/reg/log 2>&1 &
    echo $! >$D/reg.pid
    for _ in $(seq 100); do
        curl -sf http://127.0.0.1:$PORT/v2/ >/dev/null && break
        sleep 0.1
    done
    local i
    for i in busybox-latest:bench/busybox:latest pause-latest:bench/pause:latest; do
        skopeo --insecure-policy copy --quiet --dest-tls-verify=false \
            oci:$REPO/target/test-images/standard/oci:${i%%:*} docker://127.0.0.1:$PORT/${i#*:}
    done
    mkdir -p $D/certs.d/127.0.0.1:$PORT
    printf 'server = "http://127.0.0.1:%s"\n[host."http://127.0.0.1:%s"]\n  capabilities = ["pull", "resolve"]\n' \
        $PORT $PORT >$D/certs.d/127.0.0.1:$PORT/hosts.toml
}

start_plain() {
    mkdir -p $D/ctrd $D/net.d $D/crimux
    cat >$D/ctrd/config.toml <<C
version = 2
root = "$D/ctrd/root"
state = "$D/ctrd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$D/ctrd/containerd.sock"
C
    containerd --config $D/ctrd/config.toml >$D/ctrd/log 2>&1 &
    echo $! >$D/ctrd.pid
    wait_socket $D/ctrd/containerd.sock $D/ctrd/log
    conflist crimux-bench $BR_CRIMUX $NET_CRIMUX $D/ipam >$D/net.d/10-bench.conflist
    cat >$D/crimux/crimux.toml <<C
listen = "$D/crimux.sock"
root = "$D/crimux/root"
sandbox_image = "127.0.0.1:$PORT/bench/pause:latest"
[registry]
config_path = "$D/certs.d"
[cni]
conf_dir = "$D/net.d"
bin_dirs = ["/usr/lib/cni"]
[[backend]]
name = "default"
address = "unix://$D/ctrd/containerd.sock"
namespace = "k8s.io"
C
    local bin=$REPO/target/$PROFILE/crimux
    [ -x "$bin" ] && [ -x "$REPO/target/$PROFILE/crimux-log" ] || {
        log "$bin or crimux-log missing: cargo build --$PROFILE -p crimux -p crimux-cri-log"
        return 1
    }
    $bin --config $D/crimux/crimux.toml >$D/crimux/log 2>&1 &
    echo $! >$D/crimux.pid
    wait_socket $D/crimux.sock $D/crimux/log
}

# containerd 1.6 with its CRI plugin on, set up like crimux. This machine has no
# CAP_SYS_RESOURCE (restrict_oom_score_adj) and no AppArmor.
start_cri() {
    mkdir -p $D/ctrd-cri $D/net-cri.d
    conflist containerd-cri-bench $BR_CRI $NET_CRI $D/ipam-cri >$D/net-cri.d/10-bench.conflist
    cat >$D/ctrd-cri/config.toml <<C
version = 2
root = "$D/ctrd-cri/root"
state = "$D/ctrd-cri/state"
[grpc]
  address = "$D/ctrd-cri/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "127.0.0.1:$PORT/bench/pause:latest"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$D/net-cri.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$D/certs.d"
C
    containerd --config $D/ctrd-cri/config.toml >$D/ctrd-cri/log 2>&1 &
    echo $! >$D/ctrd-cri.pid
    wait_socket $D/ctrd-cri/containerd.sock $D/ctrd-cri/log
}

write_env() {
    cat >$D/env <<C
D=$D
IMAGE=127.0.0.1:$PORT/bench/busybox:latest
PAUSE=127.0.0.1:$PORT/bench/pause:latest
CRIMUX=unix://$D/crimux.sock
CRIMUX_PID=$(cat $D/crimux.pid)
PLAIN_CONTAINERD=unix://$D/ctrd/containerd.sock
C
    if [ "$WITH_CRI" = 1 ]; then
        echo "CRI=unix://$D/ctrd-cri/containerd.sock" >>$D/env
        echo "CRI_PID=$(cat $D/ctrd-cri.pid)" >>$D/env
    fi
    cat $D/env
}

up() {
    [ -e $D/env ] && { log "$D is in use: run '$0 down' first"; return 1; }
    [ -d $REPO/target/test-images/standard/oci ] || bash $REPO/tests/harness/build-images.sh $REPO/target/test-images
    mkdir -p $D
    start_registry
    start_plain
    [ "$WITH_CRI" = 1 ] && start_cri
    write_env
}

# Removes every pod through containerd's CRI socket (tears down CNI and netns the proper way).
# Not used on crimux: crictl v1.26 (grpc-go) sends the socket path as :authority, which
# tonic/h2 rejects; crimux's pods go with their tasks, and its pinned netns with the unmounts.
remove_pods() {
    [ -S "$1" ] && [ -x "$CRICTL" ] || return 0
    local pod
    for pod in $(timeout 30 $CRICTL -r unix://$1 -i unix://$1 pods -q 2>/dev/null); do
        timeout 60 $CRICTL -r unix://$1 -i unix://$1 rmp -f "$pod" >/dev/null 2>&1 || true
    done
}

# Kills every task left in every namespace of one containerd (shims outlive containerd).
kill_tasks() {
    [ -S "$1" ] || return 0
    local ns t
    for ns in $(timeout 10 ctr -a $1 namespaces ls -q 2>/dev/null); do
        for t in $(timeout 10 ctr -a $1 -n $ns tasks ls -q 2>/dev/null); do
            timeout 10 ctr -a $1 -n $ns tasks kill -s KILL $t >/dev/null 2>&1 || true
            timeout 10 ctr -a $1 -n $ns tasks delete -f $t >/dev/null 2>&1 || true
        done
    done
}

stop_pid() {
    [ -f "$1" ] || return 0
    local pid
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$1"
}

down() {
    [ -d $D ] || return 0
    remove_pods $D/ctrd-cri/containerd.sock
    stop_pid $D/crimux.pid
    kill_tasks $D/ctrd/containerd.sock
    kill_tasks $D/ctrd-cri/containerd.sock
    stop_pid $D/ctrd-cri.pid
    stop_pid $D/ctrd.pid
    stop_pid $D/reg.pid
    # Shims started by our containerds carry our socket path on their command line.
    local pid
    for pid in $(pgrep -f -- "-address $D/" || true); do
        kill -9 "$pid" 2>/dev/null || true
    done
    local m
    for m in $(findmnt -rn -o TARGET | grep "^$D/" | sort -r || true); do
        umount -l "$m" 2>/dev/null || true
    done
    local br
    for br in $BR_CRIMUX $BR_CRI; do
        ip link del $br 2>/dev/null || true
    done
    rm -rf $D
}

case ${1:-} in
up) up ;;
down) down ;;
*)
    echo "usage: $0 up|down   (env: D, PORT, PROFILE, WITH_CRI=1)" >&2
    exit 2
    ;;
esac
