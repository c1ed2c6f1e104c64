#!/usr/bin/env bash
# Streaming figures: `head -c $BYTES /dev/zero` through exec stdout (MB/s, median of RUNS),
# and the latency of a 1-byte round trip through an open interactive `cat` exec session
# next to ExecSync `echo x` and a fresh Exec session running `echo x` (p50/p99 of N), through
# crimux (SPDY/3.1 as kubelet speaks it, no WINDOW_UPDATEs from the client) and, for
# reference, through containerd 1.6's own CRI plugin and its streaming server.
#
#   bash bench/streaming.sh   (env: N=200 RUNS=5 BYTES=104857600 ROUNDS=1 WITH_CRI=1
#                              OUT=dir D=/tmp/crimux-bench)
#
# Each round runs crimux and containerd-CRI back to back, the order flipping every round; the
# 1-minute load average is recorded before every run. Needs root and a release build:
#   cargo build --release -p crimux -p crimux-cri-log -p crimux-bench
# scripts/bench-env.sh starts the registry, containerd and crimux under $D and tears it all
# down on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
N=${N:-200}
RUNS=${RUNS:-5}
BYTES=${BYTES:-104857600}
ROUNDS=${ROUNDS:-1}
export WITH_CRI=${WITH_CRI:-1}
OUT=${OUT:-$REPO/target/bench-results/streaming-$(date +%Y%m%dT%H%M%S)}
export D=${D:-/tmp/crimux-bench} PROFILE=release
BENCH=$REPO/target/release/crimux-bench
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

[ -x "$BENCH" ] || {
    echo "streaming.sh: build first: cargo build --release -p crimux -p crimux-cri-log -p crimux-bench" >&2
    exit 1
}
mkdir -p "$OUT"
trap 'bash scripts/bench-env.sh down' EXIT
bash scripts/bench-env.sh up >"$OUT/env.txt"
# shellcheck disable=SC1090,SC1091
. "$D/env"

load1() { cut -d' ' -f1 /proc/loadavg; }

bench() { # label endpoint
    local label=$1 ep=$2 l
    l=$(load1)
    echo "== $label (load $l)" | tee -a "$OUT/summary.txt" >&2
    "$BENCH" --endpoint "$ep" --image "$IMAGE" --pause-image "$PAUSE" --n "$N" \
        --json "$OUT/$label.json" stream --bytes "$BYTES" --throughput-runs "$RUNS" \
        >"$OUT/$label.txt" 2>"$OUT/$label.err"
    grep -v '^crimux-bench: .* (CRI ' "$OUT/$label.err" | tee -a "$OUT/summary.txt" >&2 || true
    tee -a "$OUT/summary.txt" <"$OUT/$label.txt" >&2
}

sides=(crimux)
[ "$WITH_CRI" = 1 ] && sides=(crimux cri)
for r in $(seq "$ROUNDS"); do
    order=("${sides[@]}")
    if [ $((r % 2)) = 0 ]; then
        order=()
        for ((i = ${#sides[@]} - 1; i >= 0; i--)); do order+=("${sides[i]}"); done
    fi
    for side in "${order[@]}"; do
        case $side in
        crimux) bench "stream-crimux-r$r" "$CRIMUX" ;;
        cri) bench "stream-cri-r$r" "$CRI" ;;
        esac
    done
done
echo "machine: $(nproc) CPUs, $(uname -r); results in $OUT" | tee -a "$OUT/summary.txt" >&2
