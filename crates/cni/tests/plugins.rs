//! Two pods on a real `bridge` + `portmap` + `loopback` network from the node's CNI plugins
//! (Debian's containernetworking-plugins in /usr/lib/cni). Needs root, iptables and the
//! plugins; fails loudly without them. All traffic stays on loopback and the test's own
//! namespaces; every test uses its own bridge, /24 in 10.199.0.0/16 and IPAM dir, and a
//! guard tears everything down even when an assertion fails.
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use common::{mounts_under, NsDir};
use crimux_cni::{AttachRequest, Cni, NetNs};
use crimux_core::sandbox::{PortMapping, Protocol, SandboxMetadata};
use serde_json::json;

const PLUGIN_DIR: &str = "/usr/lib/cni";

/// Hands out distinct /24s within 10.199.0.0/16 to the tests of this process.
fn next_octet() -> u8 {
    static NEXT: AtomicU8 = AtomicU8::new(0);
    static BASE: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| rand::random::<u8>() % 200);
    base + NEXT.fetch_add(1, Ordering::SeqCst) % 50 + 1
}

/// One test network; dropping it DELs every pod it attached, deletes the bridge and
/// unmounts the namespaces.
struct TestNet {
    cni: Cni,
    name: String,
    bridge: String,
    subnet_prefix: String,
    ipam_dir: PathBuf,
    requests: Vec<AttachRequest>,
    nsdir: NsDir,
    _tmp: tempfile::TempDir,
}

impl TestNet {
    fn new() -> TestNet {
        for plugin in ["bridge", "host-local", "portmap", "loopback"] {
            let p = Path::new(PLUGIN_DIR).join(plugin);
            assert!(
                p.is_file(),
                "{} missing: install containernetworking-plugins",
                p.display()
            );
        }
        let tag: String = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let octet = next_octet();
        let tmp = tempfile::tempdir().unwrap();
        let (conf, cache, ipam_dir) = (
            tmp.path().join("net.d"),
            tmp.path().join("cache"),
            tmp.path().join("ipam"),
        );
        std::fs::create_dir_all(&conf).unwrap();
        let name = format!("crimuxt-{tag}");
        let bridge = format!("crimuxt{tag}");
        let list = json!({
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": format!("10.199.{octet}.0/24")}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": ipam_dir,
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
                {"type": "loopback"},
            ],
        });
        std::fs::write(conf.join("10-test.conflist"), list.to_string()).unwrap();
        let cni = Cni::new(&conf, vec![PathBuf::from(PLUGIN_DIR)], &cache);
        cni.status().expect("CNI status");
        TestNet {
            cni,
            name,
            bridge,
            subnet_prefix: format!("10.199.{octet}."),
            ipam_dir,
            requests: Vec::new(),
            nsdir: NsDir::new(),
            _tmp: tmp,
        }
    }

    /// A new namespace and the request that attaches it (remembered for cleanup).
    fn pod(&mut self, suffix: &str, ports: Vec<PortMapping>) -> (NetNs, AttachRequest) {
        let id = format!("{}{suffix}", self.bridge);
        let ns = NetNs::create(self.nsdir.path(), &id).expect("create netns (root?)");
        let pod = SandboxMetadata {
            name: format!("pod-{suffix}"),
            uid: format!("uid-{suffix}"),
            namespace: "crimux-test".into(),
            attempt: 0,
        };
        let mut req = AttachRequest::new(id.as_str().into(), ns.path().to_path_buf(), pod);
        req.port_mappings = ports;
        self.requests.push(req.clone());
        (ns, req)
    }

    /// Addresses host-local still holds for this network.
    fn reserved_ips(&self) -> Vec<String> {
        let dir = self.ipam_dir.join(&self.name);
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<IpAddr>().is_ok())
            .collect()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let (cni, requests) = (self.cni.clone(), self.requests.clone());
        // Drop may run inside the test's runtime: tear down on a thread with its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            for req in &requests {
                if let Err(e) = rt.block_on(cni.teardown(req)) {
                    eprintln!("cleanup: teardown {}: {e}", req.container_id);
                }
                let _ = NetNs::at(&req.netns).remove();
            }
        })
        .join();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

fn iptables_lines_mentioning(needle: &str) -> Vec<String> {
    let out = Command::new("iptables-save")
        .output()
        .expect("run iptables-save");
    assert!(out.status.success(), "iptables-save failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn two_pods_ping_and_a_host_port_reaches_a_pod() {
    let mut net = TestNet::new();
    let host_port = free_port();
    let (ns_a, req_a) = net.pod(
        "a",
        vec![PortMapping {
            protocol: Protocol::Tcp,
            container_port: 8080,
            host_port: host_port as i32,
            host_ip: "127.0.0.1".into(),
        }],
    );
    let (ns_b, req_b) = net.pod("b", Vec::new());

    let res_a = net.cni.setup(&req_a).await.expect("ADD a");
    let res_b = net.cni.setup(&req_b).await.expect("ADD b");
    let (ip_a, ip_b) = (
        res_a.primary_ip().expect("ip a"),
        res_b.primary_ip().expect("ip b"),
    );
    for ip in [ip_a, ip_b] {
        assert!(
            ip.to_string().starts_with(&net.subnet_prefix),
            "{ip} not in the test subnet"
        );
    }
    assert_ne!(ip_a, ip_b);
    assert_eq!(
        res_a.pod_ips(),
        vec![ip_a],
        "only eth0's address, not the bridge's"
    );
    let eth0 = res_a
        .interfaces
        .iter()
        .find(|i| i.name == "eth0")
        .expect("eth0 in result");
    assert_eq!(eth0.sandbox, ns_a.path().display().to_string());
    assert_eq!(net.reserved_ips().len(), 2);

    // Inside A: eth0 holds the address; the loopback plugin brought lo up.
    let (addrs, lo) = ns_a
        .run_in(|| {
            let a = Command::new("ip")
                .args(["-o", "addr", "show", "eth0"])
                .output();
            let l = Command::new("ip")
                .args(["-o", "link", "show", "lo"])
                .output();
            (a, l)
        })
        .unwrap();
    let addrs = String::from_utf8_lossy(&addrs.unwrap().stdout).into_owned();
    assert!(addrs.contains(&format!("inet {ip_a}/24")), "{addrs}");
    let lo = String::from_utf8_lossy(&lo.unwrap().stdout).into_owned();
    assert!(lo.contains(",UP"), "{lo}");

    // Pod to pod across the bridge.
    let ping = ns_a
        .run_in(|| {
            Command::new("busybox")
                .args(["ping", "-c1", "-W2", &ip_b.to_string()])
                .output()
        })
        .unwrap()
        .expect("run busybox ping");
    assert!(
        ping.status.success(),
        "ping a->b: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // A server inside A (the socket stays in A's namespace after run_in returns).
    let listener = ns_a
        .run_in(|| TcpListener::bind("0.0.0.0:8080"))
        .unwrap()
        .expect("bind in a");
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut conn, _) = listener.accept().expect("accept");
            conn.write_all(b"hello from pod a\n").expect("write");
        }
    });
    let read_all = |mut s: TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).expect("read");
        got
    };
    // The host port on 127.0.0.1 reaches it through portmap's DNAT.
    let addr = format!("127.0.0.1:{host_port}").parse().unwrap();
    let conn = tokio::task::spawn_blocking(move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    })
    .await
    .unwrap()
    .expect("connect to the host port");
    assert_eq!(read_all(conn), "hello from pod a\n");
    // And the pod's own localhost, the way port-forward will reach it.
    let conn = ns_a
        .run_in(|| {
            TcpStream::connect_timeout(&"127.0.0.1:8080".parse().unwrap(), Duration::from_secs(5))
        })
        .unwrap()
        .expect("connect inside a");
    assert_eq!(read_all(conn), "hello from pod a\n");
    server.join().unwrap();
    assert!(
        !iptables_lines_mentioning(req_a.container_id.as_str()).is_empty(),
        "portmap rules"
    );

    // DEL: A normally, B after its namespace is already gone; both twice.
    net.cni.teardown(&req_a).await.expect("DEL a");
    ns_b.remove().unwrap();
    net.cni
        .teardown(&req_b)
        .await
        .expect("DEL b with its netns gone");
    net.cni.teardown(&req_a).await.expect("DEL a again");
    net.cni.teardown(&req_b).await.expect("DEL b again");
    ns_a.remove().unwrap();

    for req in [&req_a, &req_b] {
        let left = iptables_lines_mentioning(req.container_id.as_str());
        assert!(left.is_empty(), "iptables rules left: {left:?}");
    }
    assert!(
        net.reserved_ips().is_empty(),
        "host-local still holds {:?}",
        net.reserved_ips()
    );
    let left: Vec<_> = mounts_under(net.nsdir.path())
        .into_iter()
        .filter(|(_, t)| t == "nsfs")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!ns_a.path().exists() && !ns_b.path().exists());
}

#[tokio::test]
async fn a_pod_can_be_attached_again_after_teardown() {
    let mut net = TestNet::new();
    let (ns, req) = net.pod("c", Vec::new());
    let first = net.cni.setup(&req).await.expect("ADD");
    net.cni.check(&req).await.expect("CHECK");
    net.cni.teardown(&req).await.expect("DEL");
    assert!(net.reserved_ips().is_empty());
    let second = net.cni.setup(&req).await.expect("ADD again");
    assert!(second.primary_ip().is_some());
    assert!(first.primary_ip().is_some());
    net.cni.teardown(&req).await.expect("DEL again");
    ns.remove().unwrap();
}
