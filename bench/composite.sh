#!/usr/bin/env bash
# Composite figures (issue 4):
#   1. ListContainers requests/s with $PODS pods (one container each) spread 50/50 over two
#      backends (primary on a unix socket, delegate over TCP with mutual TLS), against the
#      same $PODS pods on a crimux with one backend (and, to separate the fan-out cost, on
#      the two-backend crimux with every pod on the primary);
#   2. the container cycle (create+start+stop+remove) p50/p99 on the TLS delegate against
#      the unix-socket primary of the same crimux, and against the same delegate reached
#      through the same kind of relay without TLS (insecure loopback), which separates the
#      cost of TLS from the cost of the extra hop;
#   3. the same cycle on a forwarding delegate (`kind = "cri"`): a second crimux on the
#      delegate containerd, reached through the same kind of mutual-TLS relay — the design a
#      Windows node uses for its WSL2 distro — against the containerd-API TLS delegate.
#
#   bash bench/composite.sh   (env: PODS=100 RELIST_N=1000 CONC=4 N=50 ROUNDS=2
#                              PARTS="relist cycles" NODELAY=1 OUT=dir
#                              D=/tmp/crimux-bench-composite PORT=5078)
#
# Needs root, socat, openssl and a release build
# (cargo build --release -p crimux -p crimux-cri-log -p crimux-bench).
# scripts/bench-env.sh brings up the registry, the primary containerd and the one-backend
# crimux; this script adds a second containerd (the delegate, its own root/state/socket),
# a mutual-TLS front for it on 127.0.0.1 (socat: containerd's own `[grpc] tcp_address`
# carries only the CRI plugin's services, not the native API crimux uses), certificates
# made with openssl, and a second crimux with both backends. That crimux keeps its primary
# pods in namespace "composite", so both crimuxes share the primary containerd without
# seeing each other's pods. The relays set TCP_NODELAY (without it, Nagle + delayed ACK add
# ~40 ms stalls to small gRPC messages; NODELAY=0 measures that). Every run is interleaved
# (order flips each round) and the 1-minute load is recorded before it.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PODS=${PODS:-100}
RELIST_N=${RELIST_N:-1000}
CONC=${CONC:-4}
N=${N:-50}
ROUNDS=${ROUNDS:-2}
OUT=${OUT:-$REPO/target/bench-results/composite-$(date +%Y%m%dT%H%M%S)}
export D=${D:-/tmp/crimux-bench-composite} PORT=${PORT:-5078} PROFILE=release
BENCH=$REPO/target/release/crimux-bench
CRIMUX_BIN=$REPO/target/release/crimux
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

for tool in socat openssl; do
    command -v $tool >/dev/null || {
        echo "composite.sh: $tool not installed (apt-get install $tool)" >&2
        exit 1
    }
done
[ -x "$BENCH" ] && [ -x "$CRIMUX_BIN" ] || {
    echo "composite.sh: build first: cargo build --release -p crimux -p crimux-cri-log -p crimux-bench" >&2
    exit 1
}
mkdir -p "$OUT"

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

cleanup() {
    stop_pid $D/crimux2.pid
    stop_pid $D/crimux3.pid
    stop_pid $D/relay-cri.pid
    if [ -S $D/ctrd2/containerd.sock ]; then
        for ns in k8s.io plain fwd; do
            for t in $(timeout 10 ctr -a $D/ctrd2/containerd.sock -n $ns tasks ls -q 2>/dev/null); do
                timeout 10 ctr -a $D/ctrd2/containerd.sock -n $ns tasks kill -s KILL "$t" >/dev/null 2>&1 || true
                timeout 10 ctr -a $D/ctrd2/containerd.sock -n $ns tasks delete -f "$t" >/dev/null 2>&1 || true
            done
        done
    fi
    stop_pid $D/relay.pid
    stop_pid $D/relay-plain.pid
    stop_pid $D/ctrd2.pid
    bash scripts/bench-env.sh down
}
trap cleanup EXIT
bash scripts/bench-env.sh up >"$OUT/env.txt"
# shellcheck disable=SC1090
. "$D/env"

wait_socket() {
    for _ in $(seq 200); do
        [ -S "$1" ] && return 0
        sleep 0.1
    done
    echo "composite.sh: $1 did not appear; see $2" >&2
    tail -20 "$2" >&2
    return 1
}

# Mutual-TLS material: a CA, a server certificate for 127.0.0.1, a client certificate.
make_certs() {
    local c=$D/certs
    mkdir -p $c
    openssl ecparam -name prime256v1 -genkey -noout -out $c/ca-key.pem 2>/dev/null
    openssl req -x509 -new -key $c/ca-key.pem -subj "/CN=crimux bench CA" -days 2 -out $c/ca.pem
    local who ext
    for who in server client; do
        openssl ecparam -name prime256v1 -genkey -noout -out $c/$who-key.pem 2>/dev/null
        openssl req -new -key $c/$who-key.pem -subj "/CN=crimux bench $who" -out $c/$who.csr
        if [ $who = server ]; then
            ext="subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"
        else
            ext="extendedKeyUsage=clientAuth"
        fi
        openssl x509 -req -in $c/$who.csr -CA $c/ca.pem -CAkey $c/ca-key.pem -CAcreateserial \
            -days 2 -out $c/$who.pem -extfile <(printf "$ext\n") 2>/dev/null
    done
}

start_delegate() {
    mkdir -p $D/ctrd2 $D/crimux2
    cat >$D/ctrd2/config.toml <<C
version = 2
root = "$D/ctrd2/root"
state = "$D/ctrd2/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$D/ctrd2/containerd.sock"
[ttrpc]
  address = "$D/ctrd2/containerd.sock.ttrpc"
C
    containerd --config $D/ctrd2/config.toml >$D/ctrd2/log 2>&1 &
    echo $! >$D/ctrd2.pid
    wait_socket $D/ctrd2/containerd.sock $D/ctrd2/log
    TLS_PORT=$((PORT + 1))
    local nd=,nodelay
    [ "${NODELAY:-1}" = 0 ] && nd=
    socat OPENSSL-LISTEN:$TLS_PORT,bind=127.0.0.1,reuseaddr,fork$nd,cert=$D/certs/server.pem,key=$D/certs/server-key.pem,cafile=$D/certs/ca.pem,verify=1 \
        UNIX-CONNECT:$D/ctrd2/containerd.sock >$D/relay.log 2>&1 &
    echo $! >$D/relay.pid
    # The same hop without TLS, to tell the relay's cost from TLS's.
    PLAIN_PORT=$((PORT + 2))
    socat TCP-LISTEN:$PLAIN_PORT,bind=127.0.0.1,reuseaddr,fork$nd UNIX-CONNECT:$D/ctrd2/containerd.sock \
        >$D/relay-plain.log 2>&1 &
    echo $! >$D/relay-plain.pid
    for port in $TLS_PORT $PLAIN_PORT; do
        for _ in $(seq 100); do
            (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
            sleep 0.1
        done
    done
    cat >$D/crimux2/crimux.toml <<C
listen = "$D/crimux2.sock"
root = "$D/crimux2/root"
sandbox_image = "$PAUSE"
[registry]
config_path = "$D/certs.d"
[cni]
conf_dir = "$D/net.d"
bin_dirs = ["/usr/lib/cni"]
[[backend]]
name = "default"
role = "primary"
address = "$PLAIN_CONTAINERD"
namespace = "composite"
[[backend]]
name = "wsl"
role = "delegate"
address = "tcp://127.0.0.1:$TLS_PORT"
namespace = "k8s.io"
[[backend.runtime_handlers]]
name = "wsl2"
[backend.tls]
ca = "$D/certs/ca.pem"
cert = "$D/certs/client.pem"
key = "$D/certs/client-key.pem"
[[backend]]
name = "wsl-plain"
role = "delegate"
address = "tcp://127.0.0.1:$PLAIN_PORT"
namespace = "plain"
insecure = true
[[backend.runtime_handlers]]
name = "tcp-plain"
C
    # The forwarding delegate: a crimux on the delegate containerd (namespace "fwd"), behind
    # a mutual-TLS relay in front of its CRI socket, as a WSL2 distro runs it.
    mkdir -p $D/crimux3
    cat >$D/crimux3/crimux.toml <<C
listen = "$D/crimux3.sock"
root = "$D/crimux3/root"
sandbox_image = "$PAUSE"
[registry]
config_path = "$D/certs.d"
[cni]
conf_dir = "$D/net.d"
bin_dirs = ["/usr/lib/cni"]
[[backend]]
name = "distro"
address = "unix://$D/ctrd2/containerd.sock"
namespace = "fwd"
C
    $CRIMUX_BIN --config $D/crimux3/crimux.toml >$D/crimux3/log 2>&1 &
    echo $! >$D/crimux3.pid
    wait_socket $D/crimux3.sock $D/crimux3/log
    CRI_PORT=$((PORT + 3))
    socat OPENSSL-LISTEN:$CRI_PORT,bind=127.0.0.1,reuseaddr,fork$nd,cert=$D/certs/server.pem,key=$D/certs/server-key.pem,cafile=$D/certs/ca.pem,verify=1 \
        UNIX-CONNECT:$D/crimux3.sock >$D/relay-cri.log 2>&1 &
    echo $! >$D/relay-cri.pid
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/$CRI_PORT) 2>/dev/null && break
        sleep 0.1
    done
    cat >>$D/crimux2/crimux.toml <<C
[[backend]]
name = "wsl-cri"
kind = "cri"
role = "delegate"
address = "tcp://127.0.0.1:$CRI_PORT"
[[backend.runtime_handlers]]
name = "cri-fwd"
[backend.tls]
ca = "$D/certs/ca.pem"
cert = "$D/certs/client.pem"
key = "$D/certs/client-key.pem"
C
    $CRIMUX_BIN --config $D/crimux2/crimux.toml >$D/crimux2/log 2>&1 &
    echo $! >$D/crimux2.pid
    wait_socket $D/crimux2.sock $D/crimux2/log
    CRIMUX2=unix://$D/crimux2.sock
}

make_certs
start_delegate
load1() { cut -d' ' -f1 /proc/loadavg; }

bench() { # label args...
    local label=$1 l
    shift
    l=$(load1)
    echo "== $label (load $l)" >&2
    "$BENCH" --image "$IMAGE" --pause-image "$PAUSE" --json "$OUT/$label.json" "$@" \
        >"$OUT/$label.txt" 2>"$OUT/$label.err"
    cat "$OUT/$label.txt" >&2
    grep iterations/s "$OUT/$label.err" >&2 || true
    echo "$l" >"$OUT/$label.load"
}

# Warm up: pull the images everywhere, the pause per backend.
"$BENCH" --endpoint "$CRIMUX" --image "$IMAGE" --pause-image "$PAUSE" --n 1 pod-cycle >/dev/null
for h in "" wsl2 tcp-plain cri-fwd; do
    "$BENCH" --endpoint "$CRIMUX2" --image "$IMAGE" --pause-image "$PAUSE" --n 1 \
        ${h:+--runtime-handler $h} pod-cycle >/dev/null
done

PARTS=${PARTS:-relist cycles}
for r in $(seq "$ROUNDS"); do
    runs=(one two twoprim)
    [ $((r % 2)) = 0 ] && runs=(twoprim two one)
    [[ " $PARTS " == *" relist "* ]] || runs=()
    for run in "${runs[@]}"; do
        case $run in
        one) bench "relist-one-r$r" --endpoint "$CRIMUX" --n "$RELIST_N" --concurrency "$CONC" \
            relist --pods "$PODS" --containers-only ;;
        two) bench "relist-two-r$r" --endpoint "$CRIMUX2" --runtime-handler ,wsl2 --n "$RELIST_N" \
            --concurrency "$CONC" relist --pods "$PODS" --containers-only ;;
        twoprim) bench "relist-twoprim-r$r" --endpoint "$CRIMUX2" --n "$RELIST_N" \
            --concurrency "$CONC" relist --pods "$PODS" --containers-only ;;
        esac
    done
    sides=(primary delegate plain forward)
    [ $((r % 2)) = 0 ] && sides=(forward plain delegate primary)
    [[ " $PARTS " == *" cycles "* ]] || sides=()
    for side in "${sides[@]}"; do
        case $side in
        primary) bench "cycle-primary-r$r" --endpoint "$CRIMUX2" --n "$N" container-cycle ;;
        delegate) bench "cycle-delegate-r$r" --endpoint "$CRIMUX2" --runtime-handler wsl2 --n "$N" \
            container-cycle ;;
        plain) bench "cycle-plain-r$r" --endpoint "$CRIMUX2" --runtime-handler tcp-plain --n "$N" \
            container-cycle ;;
        forward) bench "cycle-forward-r$r" --endpoint "$CRIMUX2" --runtime-handler cri-fwd --n "$N" \
            container-cycle ;;
        esac
    done
done

python3 - "$OUT" <<'PY' | tee "$OUT/summary.md"
import json, re, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
names = {"one": "1 backend (all pods on it)", "two": "2 backends (half unix primary, half TLS delegate)",
         "twoprim": "2 backends (all pods on the primary, delegate empty)",
         "primary": "unix-socket primary", "delegate": "TLS delegate (socat mTLS front)",
         "plain": "plain-TCP delegate (socat front, no TLS)",
         "forward": "forwarding delegate (kind = cri: crimux behind a socat mTLS front)"}
rows = {}
print("| run | round | load | result |\n|---|---|---|---|")
for p in sorted(out.glob("*.json")):
    m = re.fullmatch(r"(relist|cycle)-(\w+)-r(\d+)", p.stem)
    if not m:
        continue
    kind, side, rnd = m.groups()
    rep = json.loads(p.read_text())
    load = p.with_suffix(".load").read_text().strip()
    if kind == "relist":
        lc = rep["ops"]["ListContainers"]
        rps = rep["n"] / (rep["ops"]["list-loop"]["max_ms"] / 1000)
        rows.setdefault((kind, side), []).append((rps, lc["p50_ms"], lc["p99_ms"]))
        txt = f"{rep['pods']} pods: ListContainers {rps:.0f} req/s (concurrency {rep['concurrency']}), p50 {lc['p50_ms']:.2f} ms, p99 {lc['p99_ms']:.2f} ms"
    else:
        c = rep["cycle"]
        rows.setdefault((kind, side), []).append((c["p50_ms"], c["p99_ms"]))
        txt = f"container cycle p50 {c['p50_ms']:.1f} ms, p99 {c['p99_ms']:.1f} ms (n={rep['n']})"
    print(f"| {kind} {names.get(side, side)} | {rnd} | {load} | {txt} |")
print("\nMedians over rounds:\n")
for (kind, side), vals in sorted(rows.items()):
    med = [statistics.median(v) for v in zip(*vals)]
    if kind == "relist":
        print(f"- ListContainers, {names[side]}: {med[0]:.0f} req/s, p50 {med[1]:.2f} ms, p99 {med[2]:.2f} ms")
    else:
        print(f"- container cycle, {names[side]}: p50 {med[0]:.1f} ms, p99 {med[1]:.1f} ms")
PY
