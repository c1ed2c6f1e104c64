#!/usr/bin/env bash
# Starts a private containerd, registry (pause + busybox images) and crimux for crimux-bench
# under $D (default /tmp/crimux-bench). Needs `cargo build` first; see README "Benchmarks".
set -euo pipefail
D=${D:-/tmp/crimux-bench}
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p $D/ctrd $D/reg $D/net.d $D/crimux
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
PORT=5077
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
sleep 2
for i in busybox-latest:bench/busybox:latest pause-latest:bench/pause:latest; do
  skopeo --insecure-policy copy --quiet --dest-tls-verify=false \
    oci:$REPO/target/test-images/standard/oci:${i%%:*} docker://127.0.0.1:$PORT/${i#*:}
done
mkdir -p $D/certs.d/127.0.0.1:$PORT
printf 'server = "http://127.0.0.1:%s"\n[host."http://127.0.0.1:%s"]\n  capabilities = ["pull", "resolve"]\n' $PORT $PORT >$D/certs.d/127.0.0.1:$PORT/hosts.toml
cat >$D/net.d/10-bench.conflist <<C
{"cniVersion":"1.0.0","name":"crimux-bench","plugins":[
 {"type":"bridge","bridge":"crtbench","isGateway":true,"ipMasq":false,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"10.197.250.0/24"}]],"dataDir":"$D/ipam"}},
 {"type":"portmap","capabilities":{"portMappings":true}},{"type":"loopback"}]}
C
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
$REPO/target/debug/crimux --config $D/crimux/crimux.toml >$D/crimux/log 2>&1 &
echo $! >$D/crimux.pid
sleep 2
echo "ready: unix://$D/crimux.sock image 127.0.0.1:$PORT/bench/busybox:latest"
