#!/usr/bin/env bash
# RuntimeService figures: pod cycle and container cycle p50/p99 through crimux (containerd with
# its CRI plugin off) and through containerd 1.6's own CRI plugin, the containerd-API floor,
# relist with $PODS pods, and the daemons' RSS with $PODS pods running.
#
#   bash bench/runtime.sh   (env: N=50 ROUNDS=2 PODS=50 RELIST_N=200 PARTS="cycles relist"
#                            OUT=dir D=/tmp/crimux-bench)
#
# Every comparison is interleaved: each round runs crimux, containerd-CRI and the floor back
# to back, and the order flips every round, so both sides see the same machine load; the
# 1-minute load average is recorded before every run. Needs root, a release build
# (cargo build --release -p crimux -p crimux-cri-log -p crimux-bench). RELIST_N list
# iterations per relist run (default 200).
# Everything runs under $D on loopback and private bridges; scripts/bench-env.sh down
# (run on exit) removes pods, daemons, shims, mounts and bridges. The RSS of the daemons is
# sampled while each relist run holds its $PODS pods (pause + sleeping container each).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
N=${N:-50}
ROUNDS=${ROUNDS:-2}
PODS=${PODS:-50}
RELIST_N=${RELIST_N:-200}
PARTS=${PARTS:-cycles relist}
OUT=${OUT:-$REPO/target/bench-results/runtime-$(date +%Y%m%dT%H%M%S)}
export D=${D:-/tmp/crimux-bench} WITH_CRI=1 PROFILE=release
BENCH=$REPO/target/release/crimux-bench
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

[ -x "$BENCH" ] || {
    echo "runtime.sh: build first: cargo build --release -p crimux -p crimux-cri-log -p crimux-bench" >&2
    exit 1
}
mkdir -p "$OUT"
SAMPLER=
trap '[ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null; bash scripts/bench-env.sh down' EXIT
bash scripts/bench-env.sh up >"$OUT/env.txt"
# shellcheck disable=SC1090
. "$D/env"

load1() { cut -d' ' -f1 /proc/loadavg; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# The (only) containerd process serving a socket, by the pid file bench-env wrote.
PLAIN_PID=$(cat "$D/ctrd.pid")

# One crimux-bench run; its JSON goes to $OUT/<label>.json with the load beside it.
bench() {
    local label=$1
    shift
    local l
    l=$(load1)
    echo "== $label (load $l)" >&2
    "$BENCH" --image "$IMAGE" --n "${BN:-$N}" --json "$OUT/$label.json" "$@" >"$OUT/$label.txt"
    cat "$OUT/$label.txt" >&2
    echo "$l" >"$OUT/$label.load"
}

# Pull the images into both runtimes (crimux-bench pulls through the endpoint before timing).
for ep in "$CRIMUX" "$CRI"; do
    "$BENCH" --endpoint "$ep" --image "$IMAGE" --pause-image "$PAUSE" --n 1 pod-cycle >/dev/null
done

sleep 3
echo "crimux idle RSS: $(rss_kib "$CRIMUX_PID") KiB (load $(load1))" | tee "$OUT/rss-idle.txt" >&2

[[ " $PARTS " == *" cycles "* ]] && for r in $(seq "$ROUNDS"); do
    sides=(crimux cri floor)
    [ $((r % 2)) = 0 ] && sides=(floor cri crimux)
    for scenario in pod-cycle container-cycle; do
        for side in "${sides[@]}"; do
            case $side in
            crimux) bench "$scenario-crimux-r$r" --endpoint "$CRIMUX" --pause-image "$PAUSE" "$scenario" ;;
            cri) bench "$scenario-cri-r$r" --endpoint "$CRI" --pause-image "$PAUSE" "$scenario" ;;
            floor)
                if [ "$scenario" = container-cycle ]; then
                    bench "floor-r$r" floor --containerd "$PLAIN_CONTAINERD" --namespace k8s.io
                fi
                ;;
            esac
        done
    done
done

# Samples, every 0.5 s while a relist run holds $PODS pods, the number of running tasks in
# containerd and the VmRSS of the given processes; bench/summarize.py keeps the samples
# taken while all $PODS pods (pause + container each) were running.
sample_rss() { # containerd-socket out pid...
    local sock=$1 out=$2 running p line
    shift 2
    while :; do
        running=$(ctr -a "${sock#unix://}" -n k8s.io tasks ls 2>/dev/null | grep -c RUNNING || true)
        line=$running
        for p in "$@"; do line="$line $(rss_kib "$p")"; done
        echo "$line" >>"$out"
        sleep 0.5
    done
}

# crictl v1.26 cannot be used against crimux (tonic rejects grpc-go's socket-path
# :authority), so the pods are the ones a relist run holds open.
[[ " $PARTS " == *" relist "* ]] && for r in $(seq "$ROUNDS"); do
    sides=(crimux cri)
    [ $((r % 2)) = 0 ] && sides=(cri crimux)
    for side in "${sides[@]}"; do
        case $side in
        crimux)
            sample_rss "$PLAIN_CONTAINERD" "$OUT/rss-relist-crimux-r$r.samples" "$CRIMUX_PID" "$PLAIN_PID" &
            SAMPLER=$!
            BN=$RELIST_N bench "relist-crimux-r$r" --endpoint "$CRIMUX" relist --pods "$PODS"
            ;;
        cri)
            sample_rss "$CRI" "$OUT/rss-relist-cri-r$r.samples" "$CRI_PID" &
            SAMPLER=$!
            BN=$RELIST_N bench "relist-cri-r$r" --endpoint "$CRI" relist --pods "$PODS"
            ;;
        esac
        kill "$SAMPLER"
        wait "$SAMPLER" 2>/dev/null || true
        SAMPLER=
    done
done

python3 bench/summarize.py "$OUT" | tee "$OUT/summary.md"
