#!/usr/bin/env bash
# Builds crimux's test images as one OCI layout, from the static busybox on this machine.
#
#   build-images.sh OUT_DIR          the standard set (seconds; skipped when up to date)
#   build-images.sh OUT_DIR big      also the ~100 MB benchmark image (4 random layers)
#
# Output: OUT_DIR/standard (and OUT_DIR/big), each holding oci/ (an OCI layout whose refs are
# "<name>-<tag>") and images.json,
# which describes every ref (top-level digest, the linux/amd64 manifest and config digests,
# layers) so tests can assert digests without talking to a registry. The build is guarded by a
# file lock, so parallel test binaries don't race, and by a stamp (hash of this script and of
# busybox), so a rebuild only happens when either changes.
#
# Images (name:tag):
#   busybox:1.0, busybox:latest  the same image: busybox + applet symlinks + /etc/passwd
#   busybox:1.1                  same layer, different config (label version=1.1)
#   multilayer:latest            5 layers: base, /opt/a/hello, /opt/b/data, /etc/motd,
#                                and a whiteout of /opt/a/hello
#   multiarch:latest             an index: linux/arm64, windows/amd64, linux/amd64 (in that
#                                order, so picking "the first" or "any amd64" is wrong)
#   windows:latest               a single manifest whose config says os=windows
#   withuser:latest              busybox with User=1000:1000
#   nameduser:latest             busybox with User=nobody
#   pause:latest                 a static C /pause (gcc -static): sleeps until SIGTERM/SIGINT,
#                                reaping children meanwhile; the pod sandbox image of the tests
#   big:latest                   (only with "big") 4 layers of 25 MiB of random data
set -euo pipefail

OUT=${1:?usage: build-images.sh OUT_DIR [big]}
WHAT=${2:-standard}
SCRIPT=$(readlink -f "$0")
BUSYBOX=$(readlink -f /bin/busybox)

for tool in umoci python3 flock sha256sum gcc; do
    command -v "$tool" >/dev/null || {
        echo "build-images.sh: $tool not installed: run scripts/install-deps.sh" >&2
        exit 1
    }
done
[ -x "$BUSYBOX" ] || {
    echo "build-images.sh: /bin/busybox missing (package busybox-static): run scripts/install-deps.sh" >&2
    exit 1
}

mkdir -p "$OUT"
OUT=$(readlink -f "$OUT")
exec 9>"$OUT/.lock"
flock 9

STAMP=$(cat "$SCRIPT" "$BUSYBOX" | sha256sum | cut -d' ' -f1)

# A minimal root filesystem: static busybox, a symlink per applet, users for the user tests.
make_rootfs() {
    local dir=$1
    mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp" "$dir/root" "$dir/home/app"
    cp "$BUSYBOX" "$dir/bin/busybox"
    local applet
    for applet in $("$BUSYBOX" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
    done
    cat >"$dir/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    cat >"$dir/etc/group" <<'EOF'
root:x:0:
app:x:1000:
nogroup:x:65534:
EOF
    chmod 1777 "$dir/tmp"
}

# Writes images.json for every ref in the layout $1 into $2.
describe_layout() {
    python3 - "$1" "$2" <<'EOF'
import hashlib, json, os, sys
layout, out = sys.argv[1], sys.argv[2]

def chain_ids(diff_ids):
    # The identity containerd names committed snapshots by (OCI image spec, "ChainID").
    chain = []
    for d in diff_ids:
        chain.append(d if not chain else
                     "sha256:" + hashlib.sha256(f"{chain[-1]} {d}".encode()).hexdigest())
    return chain

def blob(digest):
    algo, hexd = digest.split(":", 1)
    with open(os.path.join(layout, "blobs", algo, hexd), "rb") as f:
        return json.load(f)

def describe_manifest(desc):
    m = blob(desc["digest"])
    cfg = blob(m["config"]["digest"])
    return {
        "manifest": desc["digest"],
        "config": m["config"]["digest"],
        "os": cfg.get("os"),
        "architecture": cfg.get("architecture"),
        "user": cfg.get("config", {}).get("User", ""),
        "layers": [l["digest"] for l in m["layers"]],
        "diff_ids": cfg["rootfs"]["diff_ids"],
        "chain_ids": chain_ids(cfg["rootfs"]["diff_ids"]),
        "size": desc["size"] + m["config"]["size"] + sum(l["size"] for l in m["layers"]),
    }

images = {}
for desc in json.load(open(os.path.join(layout, "index.json")))["manifests"]:
    ref = desc.get("annotations", {}).get("org.opencontainers.image.ref.name")
    if not ref or "-" not in ref:
        continue
    name, tag = ref.rsplit("-", 1)
    entry = {"ref": ref, "name": name, "tag": tag, "digest": desc["digest"],
             "media_type": desc["mediaType"], "platforms": []}
    if desc["mediaType"].endswith("image.index.v1+json"):
        # Describe the linux/amd64 child as "the" image; list every child's platform.
        for child in blob(desc["digest"])["manifests"]:
            p = child["platform"]
            entry["platforms"].append(dict(p, manifest=child["digest"]))
            if p["os"] == "linux" and p["architecture"] == "amd64":
                entry.update(describe_manifest(child))
    else:
        entry.update(describe_manifest(desc))
    images[f"{name}:{tag}"] = entry

with open(out, "w") as f:
    json.dump(images, f, indent=1, sort_keys=True)
EOF
}

# Appends an image index over the given refs (each "ref os arch [variant]") as ref $2.
make_index() {
    local layout=$1 ref=$2
    shift 2
    python3 - "$layout" "$ref" "$@" <<'EOF'
import hashlib, json, os, sys
layout, ref, children = sys.argv[1], sys.argv[2], sys.argv[3:]
index_path = os.path.join(layout, "index.json")
top = json.load(open(index_path))
by_ref = {d.get("annotations", {}).get("org.opencontainers.image.ref.name"): d
          for d in top["manifests"]}
manifests = []
for child in children:
    parts = child.split()
    desc = dict(by_ref[parts[0]])
    desc.pop("annotations", None)
    platform = {"architecture": parts[2], "os": parts[1]}
    if len(parts) > 3:
        platform["variant"] = parts[3]
    desc["platform"] = platform
    manifests.append(desc)
body = json.dumps({"schemaVersion": 2,
                   "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": manifests}, separators=(",", ":")).encode()
digest = hashlib.sha256(body).hexdigest()
with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
    f.write(body)
top["manifests"] = [d for d in top["manifests"]
                    if d.get("annotations", {}).get("org.opencontainers.image.ref.name") != ref]
top["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json",
                         "digest": "sha256:" + digest, "size": len(body),
                         "annotations": {"org.opencontainers.image.ref.name": ref}})
with open(index_path, "w") as f:
    json.dump(top, f, separators=(",", ":"))
EOF
}

# add_layer IMAGE DIR: appends DIR's contents (as /) as one layer. umoci insert is not used:
# the Debian umoci 0.4.7 writes unpadded, unterminated tars for small files.
add_layer() {
    local image=$1 dir=$2
    tar --numeric-owner --owner=0 --group=0 -C "$dir" -cf "$dir.tar" .
    umoci raw add-layer --image "$image" "$dir.tar"
    rm -f "$dir.tar"
}

build_standard() {
    local work=$1 oci=$1/oci
    umoci init --layout "$oci"

    make_rootfs "$work/rootfs"
    umoci new --image "$oci:busybox-latest"
    add_layer "$oci:busybox-latest" "$work/rootfs"
    umoci config --image "$oci:busybox-latest" --config.cmd /bin/sh \
        --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    umoci tag --image "$oci:busybox-latest" busybox-1.0
    umoci config --image "$oci:busybox-latest" --config.label version=1.1 --tag busybox-1.1

    mkdir -p "$work/l2/opt/a" "$work/l3/opt/b" "$work/l4/etc" "$work/l5/opt/a"
    echo "hello from layer 2" >"$work/l2/opt/a/hello"
    head -c 65536 /dev/urandom >"$work/l3/opt/b/data"
    echo "layer 4 motd" >"$work/l4/etc/motd"
    : >"$work/l5/opt/a/.wh.hello"
    umoci config --image "$oci:busybox-latest" --config.label layers=5 --tag multilayer-latest
    local layer
    for layer in l2 l3 l4 l5; do
        add_layer "$oci:multilayer-latest" "$work/$layer"
    done

    umoci config --image "$oci:busybox-latest" --config.user 1000:1000 --tag withuser-latest
    umoci config --image "$oci:busybox-latest" --config.user nobody --tag nameduser-latest

    # Platform variants: each gets its own small layer and a config naming its platform.
    mkdir -p "$work/arm64" "$work/win"
    echo "not really arm64" >"$work/arm64/README"
    echo "not really windows" >"$work/win/README.txt"
    umoci new --image "$oci:arm64-only"
    add_layer "$oci:arm64-only" "$work/arm64"
    umoci config --image "$oci:arm64-only" --os linux --architecture arm64 --config.cmd /README
    umoci new --image "$oci:windows-latest"
    add_layer "$oci:windows-latest" "$work/win"
    umoci config --image "$oci:windows-latest" --os windows --architecture amd64 \
        --config.cmd 'cmd.exe'
    umoci config --image "$oci:busybox-latest" --config.label platform=linux/amd64 \
        --tag amd64-only
    make_index "$oci" multiarch-latest \
        "arm64-only linux arm64 v8" "windows-latest windows amd64" "amd64-only linux amd64"
    build_pause "$oci" "$work"
    rm -rf "$work/rootfs" "$work/l2" "$work/l3" "$work/l4" "$work/l5" "$work/arm64" "$work/win"
}

# build_pause LAYOUT WORK: tag pause-latest, one layer holding a static /pause that sleeps
# until SIGTERM/SIGINT and reaps every child that exits meanwhile (it is the pod's PID 1
# when the pod shares its PID namespace).
build_pause() {
    local oci=$1 work=$2
    mkdir -p "$work/pause"
    cat >"$work/pause.c" <<'CEOF'
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
    (void)sig;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = quit;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = reap;
    sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);
    for (;;) pause();
}
CEOF
    gcc -static -O2 -s -o "$work/pause/pause" "$work/pause.c"
    umoci new --image "$oci:pause-latest"
    add_layer "$oci:pause-latest" "$work/pause"
    umoci config --image "$oci:pause-latest" --config.entrypoint /pause \
        --config.user 65535:65535 --os linux --architecture amd64
    rm -rf "$work/pause" "$work/pause.c"
}

build_big() {
    local work=$1 oci=$1/oci i
    umoci init --layout "$oci"
    umoci new --image "$oci:big-latest"
    for i in 1 2 3 4; do
        mkdir -p "$work/big$i/data"
        head -c $((25 * 1024 * 1024)) /dev/urandom >"$work/big$i/data/layer$i"
        add_layer "$oci:big-latest" "$work/big$i"
        rm -rf "$work/big$i"
    done
    umoci config --image "$oci:big-latest" --config.cmd /data/layer1
}

# build KIND DEST: builds into a scratch dir next to DEST, then swaps it in.
build() {
    local kind=$1 dest=$2
    if [ "$(cat "$dest/.stamp" 2>/dev/null)" = "$STAMP" ]; then
        return 0
    fi
    local work
    work=$(mktemp -d "$OUT/.build-$kind.XXXXXX")
    "build_$kind" "$work"
    describe_layout "$work/oci" "$work/images.json"
    rm -rf "$dest"
    chmod 755 "$work"
    echo "$STAMP" >"$work/.stamp"
    mv "$work" "$dest"
    echo "build-images.sh: built $kind images in $dest" >&2
}

build standard "$OUT/standard"
if [ "$WHAT" = big ]; then
    build big "$OUT/big"
fi
