#!/usr/bin/env bash
# Pull benchmark: crimux PullImage vs `ctr images pull --plain-http` of the same ~100 MB,
# 4-layer image from a local registry, each into a fresh private containerd, interleaved
# PULL_REPS times (default 5); prints every repetition with the load, the medians, their
# ratio, and crimux's idle RSS. Needs root (containerd). See bench/pull.rs.
#   PULL_REPS=7 bash bench/pull.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

if ! grep -q 'path = "bench/pull.rs"' Cargo.toml; then
    cat >&2 <<'MSG'
bench/pull.sh: Cargo.toml lacks the bench target; add:
[[bench]]
name = "pull"
path = "bench/pull.rs"
harness = false
MSG
    exit 1
fi

# The bench profile is release: crimux and the driver are both optimised.
cargo bench --bench pull "$@"
