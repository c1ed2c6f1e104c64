#!/usr/bin/env bash
# Run as root inside the WSL2 distro that serves Linux pods for crimux on this Windows node:
#
#   sudo ./wsl2-setup.sh --certs /mnt/c/ProgramData/crimux/certs --crimux /mnt/c/path/to/crimux \
#        [--crimux-log PATH] [--port 10010] [--streaming-port 10011] [--boot auto|systemd|command] \
#        [--pod-network cni|host] [--node-ip IP] [--pod-cidr 10.88.0.0/16] [--no-packages] \
#        [--render DIR]
#
# It installs containerd, runc, the CNI plugins and socat (Debian/Ubuntu packages), installs the
# Linux build of crimux and crimux-log in /usr/local/bin (the same crimux version as crimux.exe
# on Windows), writes /etc/containerd/config.toml (CRI plugin disabled) and
# /etc/crimux/config.toml (this containerd, root /var/lib/crimux, CNI, the streaming server on
# 127.0.0.1:<streaming-port>), and runs a mutual-TLS relay (socat) on TCP 127.0.0.1:<port> in
# front of this crimux's unix socket. crimux.exe on Windows forwards its Linux pods to it
# (kind = "cri") through WSL's localhost forwarding, and relays exec/attach/port-forward to
# 127.0.0.1:<streaming-port>. All three start with the distro: as systemd units when the
# distro runs systemd (--boot auto picks that; --boot systemd turns it on in /etc/wsl.conf,
# then run `wsl.exe --shutdown`), else from /etc/wsl.conf [boot] command with nohup and
# pidfiles in /run/crimux-wsl2. --render DIR writes every file under DIR and changes nothing
# else. Safe to run again (it rewrites what it owns).
set -euo pipefail

port=10010
streaming_port=10011
certs=""
crimux=""
crimux_log=""
boot=auto
pod_network=cni
node_ip=""
pod_cidr=10.88.0.0/16
packages=1
render=""

usage() {
	sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

die() {
	echo "wsl2-setup: $*" >&2
	exit 1
}

check_port() {
	case "$2" in
	'' | *[!0-9]*) die "$1 must be a number" ;;
	esac
	if [ "$2" -lt 1 ] || [ "$2" -gt 65535 ]; then
		die "$1 must be between 1 and 65535"
	fi
}

while [ $# -gt 0 ]; do
	case "$1" in
	--port) port="${2:?--port needs a value}"; shift 2 ;;
	--streaming-port) streaming_port="${2:?--streaming-port needs a value}"; shift 2 ;;
	--certs) certs="${2:?--certs needs a directory}"; shift 2 ;;
	--crimux) crimux="${2:?--crimux needs a path}"; shift 2 ;;
	--crimux-log) crimux_log="${2:?--crimux-log needs a path}"; shift 2 ;;
	--boot) boot="${2:?--boot needs auto, systemd or command}"; shift 2 ;;
	--pod-network) pod_network="${2:?--pod-network needs cni or host}"; shift 2 ;;
	--node-ip) node_ip="${2:?--node-ip needs an address}"; shift 2 ;;
	--pod-cidr) pod_cidr="${2:?--pod-cidr needs a CIDR}"; shift 2 ;;
	--no-packages) packages=0; shift ;;
	--render) render="${2:?--render needs a directory}"; shift 2 ;;
	-h | --help) usage ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done

check_port --port "$port"
check_port --streaming-port "$streaming_port"
[ "$port" != "$streaming_port" ] || die "--port and --streaming-port must differ"
case "$boot" in
auto | systemd | command) ;;
*) die "--boot must be auto, systemd or command" ;;
esac
case "$pod_network" in
cni) [ -z "$node_ip" ] || die "--node-ip is used only with --pod-network host" ;;
host) [ -n "$node_ip" ] || die "--pod-network host needs --node-ip (the node's address, as given to kubelet's --node-ip)" ;;
*) die "--pod-network must be cni or host" ;;
esac
case "$node_ip" in
*[!0-9a-fA-F.:]*) die "--node-ip must be an IP address" ;;
esac
case "$pod_cidr" in
*/* | '') ;;
*) die "--pod-cidr must be a CIDR such as 10.88.0.0/16" ;;
esac
[ -n "$certs" ] || die "--certs is required: the directory 'crimux certs --out' wrote (seen from the distro, e.g. /mnt/c/ProgramData/crimux/certs)"
for f in ca.pem server.pem server-key.pem; do
	[ -r "$certs/$f" ] || die "$certs/$f is missing or unreadable; run 'crimux certs --out <dir>' on Windows first (the directory is Administrators-only: see docs/windows.md)"
done
if [ -z "$render" ]; then
	[ "$(id -u)" -eq 0 ] || die "run as root (sudo)"
	[ -n "$crimux" ] || die "--crimux is required: the Linux build of crimux (the same version as crimux.exe)"
fi
if [ -n "$crimux" ]; then
	[ -r "$crimux" ] || die "$crimux not found (the Linux build of crimux)"
	[ -n "$crimux_log" ] || crimux_log="$(dirname "$crimux")/crimux-log"
	[ -r "$crimux_log" ] || die "$crimux_log not found (the Linux build of crimux-log; or pass --crimux-log)"
fi
if [ "$boot" = auto ]; then
	if [ -d /run/systemd/system ]; then boot="systemd"; else boot="command"; fi
fi
if [ -z "$render" ]; then
	grep -qi microsoft /proc/sys/kernel/osrelease 2>/dev/null ||
		echo "wsl2-setup: warning: this does not look like WSL2; going on" >&2
fi

# Every file goes under $prefix: "" normally, the --render directory otherwise. The files'
# contents always name the real paths.
prefix=""
if [ -n "$render" ]; then
	prefix="$(cd "$(dirname "$render")" && pwd)/$(basename "$render")"
	mkdir -p "$prefix"
fi
bin=/usr/local/bin
tls_dir=/etc/crimux/tls
ctr_config=/etc/containerd/config.toml
crimux_config=/etc/crimux/config.toml
crimux_sock=/run/crimux/crimux.sock
relay=/usr/local/sbin/crimux-wsl2-relay
start_script=/usr/local/sbin/crimux-wsl2-start
cni_dir=/etc/cni/net.d

if [ -z "$render" ] && [ "$packages" -eq 1 ]; then
	echo "== installing containerd, runc, CNI plugins, socat"
	command -v apt-get >/dev/null || die "only Debian/Ubuntu distros (apt-get) are supported by this script; or install the packages yourself and pass --no-packages"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q containerd runc containernetworking-plugins socat iptables ca-certificates
fi

if [ -n "$crimux" ]; then
	echo "== crimux and crimux-log in $bin (side by side: the shims start crimux-log from crimux's directory)"
	install -d -m 0755 "$prefix$bin"
	install -m 0755 "$crimux" "$prefix$bin/crimux.new"
	install -m 0755 "$crimux_log" "$prefix$bin/crimux-log.new"
	mv "$prefix$bin/crimux.new" "$prefix$bin/crimux"
	mv "$prefix$bin/crimux-log.new" "$prefix$bin/crimux-log"
	if [ -z "$render" ]; then
		echo "   $("$bin/crimux" --version 2>&1 || true): compare with 'crimux.exe --version' on Windows; they must match"
	fi
fi

echo "== TLS material in $tls_dir"
install -d -m 0700 "$prefix$tls_dir"
install -m 0644 "$certs/ca.pem" "$prefix$tls_dir/ca.pem"
install -m 0644 "$certs/server.pem" "$prefix$tls_dir/server.pem"
install -m 0600 "$certs/server-key.pem" "$prefix$tls_dir/server-key.pem"
if [ -z "$render" ] && [ -e /etc/containerd/tls/server-key.pem ]; then
	echo "   note: /etc/containerd/tls is from an earlier setup (relay to containerd); it is no longer used"
fi

# Writes stdin to $prefix$1 with mode $2, keeping a file we did not write as $1.before-crimux.
write_file() {
	local path="$prefix$1" mode="$2"
	install -d -m 0755 "$(dirname "$path")"
	if [ -f "$path" ] && ! grep -q 'written by crimux wsl2-setup.sh' "$path"; then
		cp -p "$path" "$path.before-crimux"
		echo "   (the previous $1 is kept as $1.before-crimux)"
	fi
	cat >"$path.tmp"
	chmod "$mode" "$path.tmp"
	mv "$path.tmp" "$path"
}

echo "== $ctr_config"
write_file "$ctr_config" 0644 <<EOF
# written by crimux wsl2-setup.sh: containerd for the crimux inside this WSL2 distro.
# containerd's CRI plugin is disabled: crimux is the CRI. Only crimux (on the unix socket)
# talks to it; crimux on Windows reaches that crimux through ${relay}.
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "/run/containerd/containerd.sock"
EOF

echo "== $crimux_config"
network_lines=""
if [ "$pod_network" = host ]; then
	network_lines="# WSL mirrored networking: every pod in the distro's (= the node's) network.
pod_network = \"host\"
node_ip = \"${node_ip}\""
fi
write_file "$crimux_config" 0644 <<EOF
# written by crimux wsl2-setup.sh: the Linux crimux of the WSL2 delegate. crimux.exe on the
# Windows host forwards its Linux pods here (its [[backend]] "wsl2", kind = "cri") through
# the mutual-TLS relay on 127.0.0.1:${port}. It must be the same crimux version as crimux.exe.
listen = "${crimux_sock}"
root = "/var/lib/crimux"
sandbox_image = "registry.k8s.io/pause:3.10"

[registry]
config_path = "/etc/crimux/certs.d"

[cni]
conf_dir = "${cni_dir}"
# Debian's and Ubuntu's containernetworking-plugins install into /usr/lib/cni.
bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]

[[backend]]
name = "default"
address = "unix:///run/containerd/containerd.sock"
namespace = "k8s.io"
role = "primary"
snapshotter = "overlayfs"
${network_lines}

[streaming]
# A fixed port on the distro's loopback: crimux.exe relays exec/attach/port-forward here,
# and WSL forwards the distro's 127.0.0.1 listeners to Windows' 127.0.0.1.
address = "127.0.0.1"
port = ${streaming_port}
EOF

if [ "$pod_network" = cni ]; then
	if ls "$prefix$cni_dir"/*.conf "$prefix$cni_dir"/*.conflist "$prefix$cni_dir"/*.json >/dev/null 2>&1; then
		echo "== keeping the CNI config in $cni_dir"
	else
		echo "== $cni_dir/10-crimux.conflist (bridge crimux0, $pod_cidr)"
		write_file "$cni_dir/10-crimux.conflist" 0644 <<EOF
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
        "ranges": [[{ "subnet": "${pod_cidr}" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" }
  ]
}
EOF
	fi
fi

echo "== TLS relay $relay: 127.0.0.1:${port} -> $crimux_sock"
# verify=1 with cafile: a client certificate signed by crimux's CA is mandatory.
listen="OPENSSL-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork,nodelay"
listen="${listen},cert=${tls_dir}/server.pem,key=${tls_dir}/server-key.pem"
listen="${listen},cafile=${tls_dir}/ca.pem,verify=1"
write_file "$relay" 0755 <<EOF
#!/bin/sh
# written by crimux wsl2-setup.sh: mutual TLS on 127.0.0.1:${port} in front of the socket of
# the crimux in this distro, for crimux.exe on the Windows host.
exec /usr/bin/socat "${listen}" UNIX-CONNECT:${crimux_sock}
EOF

# Sets key=value in section [boot] of /etc/wsl.conf, keeping everything else. With an empty
# value it removes the key instead, but only when its value is $3.
set_boot() {
	local key="$1" value="$2" only_if="${3:-}" conf="$prefix/etc/wsl.conf"
	mkdir -p "$(dirname "$conf")"
	touch "$conf"
	awk -v key="$key" -v value="$value" -v only_if="$only_if" '
		BEGIN { in_boot = 0; done = 0 }
		/^[[:space:]]*\[/ {
			if (in_boot && !done && value != "") { print key "=" value; done = 1 }
			in_boot = ($0 ~ /^[[:space:]]*\[boot\][[:space:]]*$/)
			if (in_boot) { seen = 1 }
			print; next
		}
		in_boot && $0 ~ "^[[:space:]]*" key "[[:space:]]*=" {
			if (value == "") {
				current = $0
				sub("^[[:space:]]*" key "[[:space:]]*=[[:space:]]*", "", current)
				sub("[[:space:]]*$", "", current)
				if (current != only_if) { print }
				next
			}
			if (!done) { print key "=" value; done = 1 }
			next
		}
		{ print }
		END {
			if (!done && value != "") {
				if (!seen) { print ""; print "[boot]" }
				print key "=" value
			}
		}' "$conf" >"$conf.tmp"
	mv "$conf.tmp" "$conf"
}

# Sends SIGTERM to $1 and waits up to 10 s for it to end.
stop_pid() {
	kill -TERM "$1" 2>/dev/null || return 0
	for _ in $(seq 1 20); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.5
	done
	echo "wsl2-setup: warning: process $1 did not stop within 10 s" >&2
}

echo "== start at distro start ($boot)"
if [ "$boot" = systemd ]; then
	set_boot systemd true
	set_boot command "" "$start_script"
	write_file /etc/systemd/system/crimux.service 0644 <<EOF
# written by crimux wsl2-setup.sh: the crimux of the WSL2 delegate (see manifests/linux).
[Unit]
Description=crimux CRI runtime (the WSL2 delegate of crimux.exe on the Windows host)
After=containerd.service
Wants=containerd.service

[Service]
Type=simple
ExecStart=${bin}/crimux --config ${crimux_config}
Restart=always
RestartSec=5
# Containers belong to containerd's shims, and the loggers are theirs too: stopping or
# restarting crimux must not kill them.
KillMode=process
RuntimeDirectory=crimux
RuntimeDirectoryPreserve=yes
StateDirectory=crimux
StateDirectoryMode=0700
LimitNOFILE=1048576
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
EOF
	write_file /etc/systemd/system/crimux-wsl2-relay.service 0644 <<EOF
# written by crimux wsl2-setup.sh
[Unit]
Description=mutual-TLS relay to the distro's crimux, for crimux.exe on the Windows host
After=crimux.service
Wants=crimux.service

[Service]
ExecStart=${relay}
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
EOF
	if [ -z "$render" ]; then
		mkdir -p /etc/systemd/system/multi-user.target.wants
		for unit in containerd.service crimux.service crimux-wsl2-relay.service; do
			if ! systemctl enable "$unit" >/dev/null 2>&1; then
				src=/etc/systemd/system/$unit
				[ -f "$src" ] || src=/lib/systemd/system/$unit
				ln -sf "$src" "/etc/systemd/system/multi-user.target.wants/$unit"
			fi
		done
		if [ -d /run/systemd/system ]; then
			systemctl daemon-reload
			systemctl restart containerd.service
			systemctl restart crimux.service crimux-wsl2-relay.service
		fi
	fi
else
	set_boot command "$start_script"
	write_file "$start_script" 0755 <<EOF
#!/bin/sh
# written by crimux wsl2-setup.sh; run by WSL at distro start ([boot] command in
# /etc/wsl.conf): containerd, crimux and the TLS relay in the background (nohup), with
# pidfiles in /run/crimux-wsl2 and logs in /var/log. Running it again starts only what is
# not running. Nothing restarts a process that dies: prefer systemd (--boot systemd).
run=/run/crimux-wsl2
mkdir -p "\$run" /run/containerd /run/crimux

# start NAME LOG COMMAND...: unless NAME's pidfile names a live process.
start() {
	name=\$1 log=\$2
	shift 2
	if [ -f "\$run/\$name.pid" ] && kill -0 "\$(cat "\$run/\$name.pid")" 2>/dev/null; then
		return 0
	fi
	nohup "\$@" >>"\$log" 2>&1 </dev/null &
	echo \$! >"\$run/\$name.pid"
}

# A containerd started otherwise (a systemd unit) is used as it is.
if ! pgrep -x containerd >/dev/null; then
	start containerd /var/log/containerd.log /usr/bin/containerd --config ${ctr_config}
fi
# crimux exits at once when containerd does not answer: wait for its socket.
i=0
while [ ! -S /run/containerd/containerd.sock ] && [ \$i -lt 60 ]; do
	sleep 0.5
	i=\$((i + 1))
done
start crimux /var/log/crimux.log ${bin}/crimux --config ${crimux_config}
start crimux-wsl2-relay /var/log/crimux-wsl2-relay.log ${relay}
EOF
	if [ -z "$render" ]; then
		# A crimux or relay already running has the old binary, config or certificates:
		# stop it (SIGTERM: crimux stops gracefully; containers keep running) and start
		# again. A relay of an earlier setup (to containerd, without a pidfile) goes too.
		for name in crimux-wsl2-relay crimux; do
			pidfile=/run/crimux-wsl2/$name.pid
			if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
				stop_pid "$(cat "$pidfile")"
			fi
		done
		for pid in $(pgrep -f "socat OPENSSL-LISTEN:${port}," || true); do
			stop_pid "$pid"
		done
		"$start_script"
	fi
fi

if [ -n "$render" ]; then
	echo "rendered into $prefix; nothing else was changed."
	exit 0
fi

echo "== checking"
ok=0
for _ in $(seq 1 30); do
	if [ -S "$crimux_sock" ] && (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
		ok=1
		break
	fi
	sleep 1
done
if [ "$ok" -eq 1 ]; then
	echo "crimux serves $crimux_sock and the TLS relay to it listens on 127.0.0.1:${port}."
else
	echo "crimux's socket $crimux_sock, or the relay on 127.0.0.1:${port}, is not there yet."
	if [ "$boot" = systemd ] && [ ! -d /run/systemd/system ]; then
		echo "systemd is not running in this distro yet: run 'wsl.exe --shutdown' on Windows and start the distro again."
	elif [ "$boot" = systemd ]; then
		echo "see 'journalctl -u containerd -u crimux -u crimux-wsl2-relay'."
	else
		echo "see /var/log/containerd.log, /var/log/crimux.log and /var/log/crimux-wsl2-relay.log."
	fi
fi
echo "Next, on Windows: install-crimux.ps1 -WslPort ${port} (see docs/windows.md)."
