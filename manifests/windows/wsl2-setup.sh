#!/usr/bin/env bash
# Run as root inside the WSL2 distro that serves Linux pods for crimux on this Windows node:
#
#   sudo ./wsl2-setup.sh --certs /mnt/c/ProgramData/crimux/certs [--port 10010] \
#        [--crimux-log /mnt/c/ProgramData/crimux/linux/crimux-log] [--boot systemd|command]
#
# It installs containerd, runc, the CNI plugins and socat (Debian/Ubuntu packages), installs
# crimux-log, copies the delegate's TLS material from the Windows side, writes
# /etc/containerd/config.toml (CRI plugin disabled), and runs a mutual-TLS relay (socat) on
# TCP 127.0.0.1:<port> in front of containerd's unix socket, which crimux on Windows
# reaches through WSL's localhost forwarding. containerd's own [grpc] tcp_address is not
# used: it carries only the CRI plugin's service, not the native API crimux speaks.
# Both start with the distro: with systemd (/etc/wsl.conf [boot] systemd=true, the
# default) or with a [boot] command. Run `wsl.exe --shutdown` from Windows afterwards so
# /etc/wsl.conf takes effect. Safe to run again (it rewrites what it owns).
set -euo pipefail

port=10010
certs=""
crimux_log=""
boot=systemd
tls_dir=/etc/containerd/tls
config=/etc/containerd/config.toml
relay=/usr/local/sbin/crimux-wsl2-relay

usage() {
	sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

die() {
	echo "wsl2-setup: $*" >&2
	exit 1
}

while [ $# -gt 0 ]; do
	case "$1" in
	--port) port="${2:?--port needs a value}"; shift 2 ;;
	--certs) certs="${2:?--certs needs a directory}"; shift 2 ;;
	--crimux-log) crimux_log="${2:?--crimux-log needs a path}"; shift 2 ;;
	--boot) boot="${2:?--boot needs systemd or command}"; shift 2 ;;
	-h | --help) usage ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done

[ "$(id -u)" -eq 0 ] || die "run as root (sudo)"
[ -n "$certs" ] || die "--certs is required: the directory 'crimux certs --out' wrote (seen from the distro, e.g. /mnt/c/ProgramData/crimux/certs)"
case "$port" in
'' | *[!0-9]*) die "--port must be a number" ;;
esac
if [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
	die "--port must be between 1 and 65535"
fi
case "$boot" in
systemd | command) ;;
*) die "--boot must be systemd or command" ;;
esac
for f in ca.pem server.pem server-key.pem; do
	[ -r "$certs/$f" ] || die "$certs/$f is missing; run 'crimux certs --out <dir>' on Windows first"
done
grep -qi microsoft /proc/sys/kernel/osrelease 2>/dev/null ||
	echo "wsl2-setup: warning: this does not look like WSL2; going on" >&2

echo "== installing containerd, runc, CNI plugins, socat"
command -v apt-get >/dev/null || die "only Debian/Ubuntu distros (apt-get) are supported by this script"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q containerd runc containernetworking-plugins socat iptables ca-certificates

if [ -n "$crimux_log" ]; then
	echo "== installing crimux-log"
	[ -r "$crimux_log" ] || die "$crimux_log not found (the Linux build of crimux-log)"
	install -m 0755 "$crimux_log" /usr/local/bin/crimux-log
fi

echo "== TLS material in $tls_dir"
install -d -m 0700 "$tls_dir"
install -m 0644 "$certs/ca.pem" "$tls_dir/ca.pem"
install -m 0644 "$certs/server.pem" "$tls_dir/server.pem"
install -m 0600 "$certs/server-key.pem" "$tls_dir/server-key.pem"

echo "== $config"
install -d -m 0755 /etc/containerd
if [ -f "$config" ] && ! grep -q '^# written by crimux wsl2-setup.sh' "$config"; then
	cp -p "$config" "$config.before-crimux"
	echo "   (the previous file is kept as $config.before-crimux)"
fi
cat >"$config.tmp" <<EOF
# written by crimux wsl2-setup.sh: the WSL2 delegate of crimux on the Windows host.
# containerd's CRI plugin is disabled: crimux is the CRI. crimux reaches this containerd
# through the mutual-TLS relay ${relay} on 127.0.0.1:${port}.
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "/run/containerd/containerd.sock"
EOF
mv "$config.tmp" "$config"

echo "== TLS relay $relay on 127.0.0.1:${port}"
# verify=1 with cafile: a client certificate signed by crimux's CA is mandatory.
listen="OPENSSL-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork"
listen="${listen},cert=${tls_dir}/server.pem,key=${tls_dir}/server-key.pem"
listen="${listen},cafile=${tls_dir}/ca.pem,verify=1"
cat >"$relay" <<EOF
#!/bin/sh
# written by crimux wsl2-setup.sh: mutual TLS on 127.0.0.1:${port} in front of
# containerd's socket, for crimux on the Windows host.
exec /usr/bin/socat "${listen}" UNIX-CONNECT:/run/containerd/containerd.sock
EOF
chmod 0755 "$relay"

# Sets key=value in section [boot] of /etc/wsl.conf, keeping everything else.
set_boot() {
	local key="$1" value="$2" conf=/etc/wsl.conf
	touch "$conf"
	awk -v key="$key" -v value="$value" '
		BEGIN { in_boot = 0; done = 0 }
		/^[[:space:]]*\[/ {
			if (in_boot && !done) { print key "=" value; done = 1 }
			in_boot = ($0 ~ /^[[:space:]]*\[boot\][[:space:]]*$/)
			if (in_boot) { seen = 1 }
			print; next
		}
		in_boot && $0 ~ "^[[:space:]]*" key "[[:space:]]*=" {
			if (!done) { print key "=" value; done = 1 }
			next
		}
		{ print }
		END {
			if (!done) {
				if (!seen) { print ""; print "[boot]" }
				print key "=" value
			}
		}' "$conf" >"$conf.tmp"
	mv "$conf.tmp" "$conf"
}

echo "== start at distro start ($boot)"
if [ "$boot" = systemd ]; then
	set_boot systemd true
	cat >/etc/systemd/system/crimux-wsl2-relay.service <<EOF
[Unit]
Description=mutual-TLS relay to containerd for crimux on the Windows host
After=containerd.service
Requires=containerd.service

[Service]
ExecStart=${relay}
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
EOF
	mkdir -p /etc/systemd/system/multi-user.target.wants
	for unit in containerd.service crimux-wsl2-relay.service; do
		if ! systemctl enable "$unit" >/dev/null 2>&1; then
			src=/etc/systemd/system/$unit
			[ -f "$src" ] || src=/lib/systemd/system/$unit
			ln -sf "$src" "/etc/systemd/system/multi-user.target.wants/$unit"
		fi
	done
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload
		systemctl restart containerd.service crimux-wsl2-relay.service
	fi
else
	set_boot command "/usr/local/sbin/crimux-wsl2-start"
	cat >/usr/local/sbin/crimux-wsl2-start <<EOF
#!/bin/sh
# written by crimux wsl2-setup.sh; started by WSL at distro start ([boot] command in
# /etc/wsl.conf): containerd and the TLS relay in the background, logs in /var/log/.
mkdir -p /run/containerd
/usr/bin/containerd --config ${config} >>/var/log/containerd.log 2>&1 &
${relay} >>/var/log/crimux-wsl2-relay.log 2>&1 &
EOF
	chmod 0755 /usr/local/sbin/crimux-wsl2-start
	if ! pgrep -x containerd >/dev/null; then
		/usr/local/sbin/crimux-wsl2-start
	elif ! pgrep -f "$relay" >/dev/null; then
		"$relay" >>/var/log/crimux-wsl2-relay.log 2>&1 &
	fi
fi

echo "== checking"
ok=0
for _ in $(seq 1 30); do
	if (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
		ok=1
		break
	fi
	sleep 1
done
if [ "$ok" -eq 1 ]; then
	echo "the TLS relay to containerd listens on 127.0.0.1:${port}."
else
	echo "nothing listens on 127.0.0.1:${port} yet."
	if [ "$boot" = systemd ] && [ ! -d /run/systemd/system ]; then
		echo "systemd is not running in this distro yet: run 'wsl.exe --shutdown' on Windows and start the distro again."
	else
		echo "see 'journalctl -u containerd -u crimux-wsl2-relay', or /var/log/containerd.log and /var/log/crimux-wsl2-relay.log."
	fi
fi
echo "Next, on Windows: install-crimux.ps1 -WslPort ${port} (see docs/windows.md)."
