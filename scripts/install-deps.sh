#!/usr/bin/env bash
# Installs what building and testing crimux needs on Debian 12 (or a close relative).
#
# Idempotent and quick when everything is there: apt-get runs (update once, then install)
# only for packages that are missing. Works non-interactively as root, in CI (CI=true), and
# as a user with passwordless sudo.
#
#   containerd runc             the backend daemon the tests start privately
#   protobuf-compiler           protoc, for crates that generate gRPC code
#   docker-registry             a local OCI registry for the tests (distribution v2)
#   umoci skopeo busybox-static build the test images and push them to that registry
#   apache2-utils               htpasswd (bcrypt) for the authenticated registry
#   containernetworking-plugins CNI plugins for pod networking
#   iproute2 iptables           network namespaces and CNI's NAT rules
#   gcc-mingw-w64-x86-64        linker for `cargo check --target x86_64-pc-windows-gnu`
#   python3 util-linux          build-images.sh (JSON, flock)
#   socat openssl               the mutual-TLS relay in front of a delegate containerd, cert checks
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(
    containerd runc protobuf-compiler docker-registry umoci skopeo busybox-static
    containernetworking-plugins apache2-utils iproute2 iptables gcc-mingw-w64-x86-64
    python3 util-linux ca-certificates tar gzip socat openssl
)
WINDOWS_TARGET=x86_64-pc-windows-gnu

say() { echo "install-deps: $*" >&2; }
warn() {
    echo "" >&2
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    echo "!! WARNING: $*" >&2
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    echo "" >&2
}

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null; then
    SUDO=(sudo -n -E)
else
    SUDO=()
fi

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
    say "not a Debian-like system: install these yourself: ${PACKAGES[*]}"
    exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing: ${missing[*]}"
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" apt-get install -y -q -o Dpkg::Options::=--force-confdef \
        -o Dpkg::Options::=--force-confold "${missing[@]}"
else
    say "all ${#PACKAGES[@]} packages present"
fi

# Rust: never installed here (that is the machine's owner's choice), but found if present.
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null; then
    say "ERROR: cargo not found. Install Rust (https://rustup.rs), then re-run."
    exit 1
fi

if command -v rustup >/dev/null; then
    for component in rustfmt clippy; do
        if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
            say "adding rust component $component"
            rustup component add "$component"
        fi
    done
    if ! rustup target list --installed 2>/dev/null | grep -qx "$WINDOWS_TARGET"; then
        say "adding rust target $WINDOWS_TARGET"
        rustup target add "$WINDOWS_TARGET" ||
            warn "could not add rust target $WINDOWS_TARGET: the Windows build check will be skipped"
    fi
else
    warn "rustup not found: cannot add rust target $WINDOWS_TARGET; the Windows build check will be skipped"
fi
