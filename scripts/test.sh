#!/usr/bin/env bash
# Builds and tests everything, as CI does (.ci/run calls this):
#   1. installs missing packages (scripts/install-deps.sh)
#   2. builds the test images (tests/harness/build-images.sh; cached by a stamp)
#   3. cargo build, then cargo test --workspace: unit tests and the integration tests, which
#      start private containerd, registry and crimux daemons (root is required)
#   4. cargo clippy and cargo build for x86_64-pc-windows-gnu, when that target is installed
# Exits non-zero on the first failure. Extra arguments go to `cargo test` (after --, they
# go to the test binaries: scripts/test.sh -- --test-threads=1).
set -euo pipefail
cd "$(dirname "$0")/.."

WINDOWS_TARGET=x86_64-pc-windows-gnu
step() { echo "==> $*" >&2; }
warn() {
    echo "" >&2
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    echo "!! WARNING: $*" >&2
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    echo "" >&2
}

start=$(date +%s)

# No incremental cache: a one-shot build doesn't reuse it, and it doubles target/'s size.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir"
# A full run needs about 5 GiB under target/ (debug builds carry line tables only, see
# Cargo.toml). Say so up front rather than dying in the linker with ENOSPC.
free_kib=$(df -Pk "$target_dir" | awk 'NR == 2 { print $4 }')
echo "scripts/test.sh: $((free_kib / 1024)) MiB free for $target_dir" >&2
if [ "${free_kib:-0}" -lt $((6 * 1024 * 1024)) ]; then
    warn "only $((free_kib / 1024)) MiB free where $target_dir lives; the build needs ~5 GiB"
fi

step "installing dependencies"
bash scripts/install-deps.sh
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
# containerd, runc and friends live in sbin, which a non-login shell may not have on PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: the integration tests start containerd, which needs root" >&2
    exit 1
fi

step "building test images"
bash tests/harness/build-images.sh "${CARGO_TARGET_DIR:-target}/test-images"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo build"
cargo build --workspace --all-targets

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace --no-fail-fast "$@"

if rustup target list --installed 2>/dev/null | grep -qx "$WINDOWS_TARGET"; then
    step "cargo clippy --target $WINDOWS_TARGET"
    cargo clippy --workspace --target "$WINDOWS_TARGET" -- -D warnings
    step "cargo build --target $WINDOWS_TARGET (crimux.exe, crimux-log.exe, crimux-bench.exe)"
    cargo build --workspace --target "$WINDOWS_TARGET"
else
    warn "rust target $WINDOWS_TARGET not installed: the Windows build was NOT checked"
fi

du -sh "$target_dir" >&2 || true
echo "scripts/test.sh: all passed in $(($(date +%s) - start)) s" >&2
