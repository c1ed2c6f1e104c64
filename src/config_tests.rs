//! Config parsing and validation, from strings only.

use super::*;
use crate::platform::pipe_name::PipeName;

#[test]
fn empty_file_is_all_defaults() {
    let c = Config::parse("", false).expect("valid");
    assert_eq!(c, Config::default());
    assert_eq!(c.listen, "/run/crimux/crimux.sock");
    assert_eq!(c.root, PathBuf::from("/var/lib/crimux"));
    assert_eq!(c.sandbox_image, "registry.k8s.io/pause:3.10");
    assert_eq!(c.registry.config_path, PathBuf::from("/etc/crimux/certs.d"));
    assert_eq!(c.backends.len(), 1);
    let b = &c.backends[0];
    assert_eq!(
        (b.name.as_str(), b.address.as_str(), b.namespace()),
        (
            "default",
            "unix:///run/containerd/containerd.sock",
            "k8s.io"
        )
    );
    assert_eq!(c.role_of(b), BackendRole::Primary);
    assert_eq!(c.cni.bin_dirs, [PathBuf::from("/opt/cni/bin")]);
    assert_eq!(c.streaming.address, "127.0.0.1");
}

#[test]
fn full_file_parses() {
    let text = r#"
listen = "/tmp/crimux.sock"
root = "/tmp/crimux"
sandbox_image = "example.com/pause:1"

[registry]
config_path = "/tmp/certs.d"

[[backend]]
name = "win"
address = "tcp://10.0.0.2:1234"
namespace = "k8s.io"
role = "primary"
os = "windows"
arch = "amd64"
snapshotter = "windows"
[backend.tls]
ca = "/etc/crimux/ca.pem"
cert = "/etc/crimux/cert.pem"
key = "/etc/crimux/key.pem"
server_name = "containerd.local"
[[backend.runtime_handlers]]
name = "runhcs-wcow-process"
runtime_type = "io.containerd.runhcs.v1"
options = { Debug = true }

[[backend]]
name = "wsl"
address = "tcp://127.0.0.1:2375"
insecure = true
role = "delegate"
os = "linux"
[[backend.runtime_handlers]]
name = "runc"

[cni]
conf_dir = "/tmp/net.d"
bin_dirs = ["/a", "/b"]

[streaming]
address = "0.0.0.0"
port = 10010
tls_cert = "/c.pem"
tls_key = "/k.pem"
"#;
    let c = Config::parse(text, false).expect("valid");
    assert_eq!(c.backends.len(), 2);
    let win = &c.backends[0];
    assert_eq!(c.role_of(win), BackendRole::Primary);
    assert_eq!(
        win.tls.as_ref().and_then(|t| t.server_name.as_deref()),
        Some("containerd.local")
    );
    assert_eq!(
        win.runtime_handlers[0].runtime_type,
        "io.containerd.runhcs.v1"
    );
    assert_eq!(
        win.runtime_handlers[0].options.get("Debug"),
        Some(&toml::Value::Boolean(true))
    );
    assert_eq!(c.role_of(&c.backends[1]), BackendRole::Delegate);
    assert_eq!(c.backends[1].namespace(), "k8s.io");
    assert_eq!(c.streaming.port, 10010);
    assert_eq!(c.cni.bin_dirs.len(), 2);
}

/// (name, config text, windows, substring the one-line error must contain)
#[test]
fn invalid_configs_name_the_problem() {
    let backend = |extra: &str| format!("[[backend]]\nname = \"b\"\n{extra}\n");
    let cases: Vec<(&str, String, bool, &str)> = vec![
        ("unknown top key", "lisen = \"/x\"".into(), false, "unknown field `lisen`"),
        ("unknown key at line", "\n\nlisen = \"/x\"".into(), false, "at line 3"),
        ("unknown backend key", backend("address = \"unix:///x\"\nadress = 1"), false, "unknown field `adress`"),
        ("unknown tls key", backend("address = \"unix:///x\"\n[backend.tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\nca_file = \"d\""), false, "unknown field `ca_file`"),
        ("unknown registry key", "[registry]\nconfig = \"/x\"".into(), false, "unknown field `config`"),
        ("unknown cni key", "[cni]\nconfdir = \"/x\"".into(), false, "unknown field `confdir`"),
        ("unknown streaming key", "[streaming]\nhost = \"x\"".into(), false, "unknown field `host`"),
        ("wrong type", "listen = 5".into(), false, "invalid type"),
        ("missing address", backend(""), false, "missing field `address`"),
        ("bad role", backend("address = \"unix:///x\"\nrole = \"boss\""), false, "unknown variant `boss`"),
        ("bad scheme", backend("address = \"http://x:1\""), false, "address \"http://x:1\": scheme must be unix://, tcp:// or npipe://"),
        ("bare path", backend("address = \"/run/containerd.sock\""), false, "scheme must be"),
        ("empty unix path", backend("address = \"unix://\""), false, "empty socket path"),
        ("npipe on linux", backend("address = \"npipe:////./pipe/containerd\""), false, "only for Windows"),
        ("tcp without tls", backend("address = \"tcp://10.0.0.1:1234\""), false, "needs [backend.tls]"),
        ("tcp loopback without insecure", backend("address = \"tcp://127.0.0.1:1234\""), false, "needs [backend.tls]"),
        ("insecure remote", backend("address = \"tcp://10.0.0.1:1234\"\ninsecure = true"), false, "only for a loopback"),
        ("tcp no port", backend("address = \"tcp://10.0.0.1\"\ninsecure = true"), false, "host:port"),
        ("tcp bad port", backend("address = \"tcp://[::1]:http\"\ninsecure = true"), false, "invalid port"),
        ("bad os", backend("address = \"unix:///x\"\nos = \"plan9\""), false, "backend \"b\": os: unknown operating system \"plan9\""),
        ("empty name", "[[backend]]\nname = \"\"\naddress = \"unix:///x\"".into(), false, "name must not be empty"),
        ("no backends", "backend = []".into(), false, "at least one [[backend]]"),
        ("duplicate names", format!("{}{}", backend("address = \"unix:///x\"\nrole = \"primary\""), backend("address = \"unix:///y\"")), false, "backend \"b\": name is used by two"),
        ("two primaries", "[[backend]]\nname = \"a\"\naddress = \"unix:///a\"\nrole = \"primary\"\n[[backend]]\nname = \"b\"\naddress = \"unix:///b\"\nrole = \"primary\"".into(), false, "found 2 (a, b)"),
        ("no primary among several", "[[backend]]\nname = \"a\"\naddress = \"unix:///a\"\n[[backend]]\nname = \"b\"\naddress = \"unix:///b\"".into(), false, "found 0"),
        ("shared handler", "[[backend]]\nname = \"a\"\naddress = \"unix:///a\"\nrole = \"primary\"\n[[backend.runtime_handlers]]\nname = \"runc\"\n[[backend]]\nname = \"b\"\naddress = \"unix:///b\"\n[[backend.runtime_handlers]]\nname = \"runc\"".into(), false, "runtime handler \"runc\" is already served by backend \"a\""),
        ("half streaming tls", "[streaming]\ntls_cert = \"/c\"".into(), false, "tls_cert and tls_key"),
        ("empty listen", "listen = \"\"".into(), false, "listen"),
    ];
    for (name, text, windows, needle) in cases {
        let err = match Config::parse(&text, windows) {
            Ok(c) => panic!("{name}: accepted: {c:?}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(needle), "{name}: {err:?} lacks {needle:?}");
        assert!(!err.contains('\n'), "{name}: not one line: {err:?}");
    }
}

#[test]
fn valid_addresses() {
    let cases = [
        ("unix:///run/containerd/containerd.sock", false, ""),
        ("tcp://127.0.0.1:2375", false, "insecure = true"),
        ("tcp://[::1]:2375", false, "insecure = true"),
        ("tcp://localhost:2375", false, "insecure = true"),
        (
            "tcp://10.0.0.1:2375",
            false,
            "[backend.tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"",
        ),
        ("npipe:////./pipe/containerd-containerd", true, ""),
    ];
    for (address, windows, extra) in cases {
        let listen = if windows {
            "npipe:////./pipe/crimux"
        } else {
            "/run/crimux/crimux.sock"
        };
        let text = format!(
            "listen = \"{listen}\"\n[[backend]]\nname = \"b\"\naddress = \"{address}\"\n{extra}\n"
        );
        if let Err(e) = Config::parse(&text, windows) {
            panic!("{address}: {e}");
        }
    }
}

#[test]
fn load_reports_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.toml");
    let err = Config::load(&missing, false).expect_err("missing file");
    assert!(
        err.to_string()
            .starts_with(&format!("config {}: cannot read", missing.display())),
        "{err}"
    );
    assert_eq!(
        Config::load(&missing, true).expect("optional"),
        Config::default()
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "lisen = 1\n").expect("write");
    let err = Config::load(&bad, false)
        .expect_err("unknown key")
        .to_string();
    assert!(
        err.starts_with(&format!("config {}: unknown field `lisen`", bad.display())),
        "{err}"
    );
}

#[test]
fn windows_listen_is_a_named_pipe() {
    for listen in [
        "npipe:////./pipe/crimux",
        "npipe://./pipe/crimux",
        r"\\\\.\\pipe\\crimux",
    ] {
        let text = format!("listen = \"{listen}\"\n[[backend]]\nname = \"w\"\naddress = \"npipe:////./pipe/containerd-containerd\"\n");
        let c = Config::parse(&text, true).unwrap_or_else(|e| panic!("{listen}: {e}"));
        assert!(PipeName::parse(&c.listen).is_ok(), "{listen}");
    }
    let cases = [
        (
            "listen = \"/run/crimux/crimux.sock\"",
            true,
            "on Windows crimux serves a named pipe",
        ),
        (
            "listen = \"npipe:////./pipe/crimux\"",
            false,
            "named pipes are only for Windows",
        ),
        (
            r#"listen = '\\.\pipe\crimux'"#,
            false,
            "named pipes are only for Windows",
        ),
        (
            "listen = \"npipe:////server/pipe/crimux\"",
            true,
            "only local pipes",
        ),
        ("listen = \"npipe:////./pipe/\"", true, "empty pipe name"),
        ("listen = \"unix://\"", false, "empty socket path"),
    ];
    for (line, windows, needle) in cases {
        let text = format!("{line}\n[[backend]]\nname = \"w\"\naddress = \"unix:///x\"\n");
        let err = Config::parse(&text, windows).expect_err(line).to_string();
        assert!(err.starts_with("listen: "), "{line}: {err}");
        assert!(err.contains(needle), "{line}: {err:?} lacks {needle:?}");
    }
}

#[test]
fn backend_pipes_are_checked_and_normalised() {
    for address in [
        "npipe:////./pipe/containerd-containerd",
        "npipe://./pipe/containerd-containerd",
        r"npipe://\\\\.\\pipe\\containerd-containerd",
    ] {
        let text = format!("listen = \"npipe:////./pipe/crimux\"\n[[backend]]\nname = \"w\"\naddress = \"{address}\"\n");
        let c = Config::parse(&text, true).unwrap_or_else(|e| panic!("{address}: {e}"));
        assert_eq!(
            c.backends[0].address, "npipe:////./pipe/containerd-containerd",
            "{address}"
        );
    }
    let text = "listen = \"npipe:////./pipe/crimux\"\n[[backend]]\nname = \"w\"\naddress = \"npipe:////host/pipe/containerd\"\n";
    let err = Config::parse(text, true)
        .expect_err("remote pipe")
        .to_string();
    assert!(
        err.contains("backend \"w\"") && err.contains("only local pipes"),
        "{err}"
    );
}

#[test]
fn windows_defaults_are_a_valid_windows_config() {
    use crate::platform::defaults::WINDOWS;
    let text = format!(
        "listen = '{}'\nroot = '{}'\n[registry]\nconfig_path = '{}'\n[cni]\nconf_dir = '{}'\nbin_dirs = ['{}']\n[[backend]]\nname = \"windows\"\naddress = '{}'\n",
        WINDOWS.listen,
        WINDOWS.root,
        WINDOWS.registry_config_path,
        WINDOWS.cni_conf_dir,
        WINDOWS.cni_bin_dir,
        WINDOWS.containerd_address
    );
    let c = Config::parse(&text, true).expect("windows defaults");
    assert_eq!(
        PipeName::parse(&c.listen).expect("pipe").path(),
        r"\\.\pipe\crimux"
    );
    assert_eq!(c.root, PathBuf::from(r"C:\ProgramData\crimux\root"));
    // The Linux defaults are refused under Windows rules, and the other way round.
    assert!(Config::parse("", true).is_err());
    assert!(Config::parse(&text, false).is_err());
}

/// The config install-crimux.ps1 writes: Windows primary on the containerd pipe, the WSL2
/// delegate over mutual TLS on loopback, in both WSL networking setups.
#[test]
fn windows_node_config_with_wsl2_delegate() {
    let base = r#"
listen = "npipe:////./pipe/crimux"
root = 'C:\ProgramData\crimux\root'

[[backend]]
name = "windows"
address = "npipe:////./pipe/containerd-containerd"
role = "primary"
[[backend.runtime_handlers]]
name = "runhcs-wcow-process"
runtime_type = "io.containerd.runhcs.v1"
[[backend.runtime_handlers]]
name = "runhcs-wcow-hypervisor"
runtime_type = "io.containerd.runhcs.v1"
options = { SandboxIsolation = 1 }

[[backend]]
name = "wsl2"
address = "tcp://127.0.0.1:10010"
role = "delegate"
os = "linux"
"#;
    let tls = "[backend.tls]\nca = 'C:\\ProgramData\\crimux\\certs\\ca.pem'\ncert = 'C:\\ProgramData\\crimux\\certs\\client.pem'\nkey = 'C:\\ProgramData\\crimux\\certs\\client-key.pem'\nserver_name = \"localhost\"\n";
    let nat = format!("{base}{tls}[[backend.runtime_handlers]]\nname = \"wsl2\"\n");
    let c = Config::parse(&nat, true).expect("nat config");
    assert_eq!(c.backends[1].pod_network(), PodNetwork::Cni);
    assert_eq!(c.backends[1].node_ip, None);

    let mirrored = format!(
        "{base}pod_network = \"host\"\nnode_ip = \"192.168.1.20\"\n{tls}[[backend.runtime_handlers]]\nname = \"wsl2\"\n"
    );
    let c = Config::parse(&mirrored, true).expect("mirrored config");
    assert_eq!(c.backends[1].pod_network(), PodNetwork::Host);
    assert_eq!(
        c.backends[1].node_ip,
        Some("192.168.1.20".parse().expect("ip"))
    );
}

#[test]
fn pod_network_and_node_ip_go_together() {
    let backend =
        |extra: &str| format!("[[backend]]\nname = \"b\"\naddress = \"unix:///x\"\n{extra}\n");
    let ok = Config::parse(
        &backend("pod_network = \"host\"\nnode_ip = \"10.1.2.3\""),
        false,
    )
    .expect("host + node_ip");
    assert_eq!(ok.backends[0].pod_network(), PodNetwork::Host);
    let v6 = Config::parse(
        &backend("pod_network = \"host\"\nnode_ip = \"fd00::5\""),
        false,
    )
    .expect("v6 node_ip");
    assert_eq!(v6.backends[0].node_ip, Some("fd00::5".parse().expect("ip")));
    assert_eq!(
        Config::parse(&backend("pod_network = \"cni\""), false)
            .expect("cni")
            .backends[0]
            .pod_network(),
        PodNetwork::Cni
    );
    let cases = [
        ("pod_network = \"host\"", "needs node_ip"),
        (
            "node_ip = \"10.1.2.3\"",
            "node_ip is used only with pod_network = \"host\"",
        ),
        (
            "pod_network = \"host\"\nnode_ip = \"127.0.0.1\"",
            "not an address other nodes can reach",
        ),
        (
            "pod_network = \"host\"\nnode_ip = \"0.0.0.0\"",
            "not an address other nodes can reach",
        ),
        (
            "pod_network = \"host\"\nnode_ip = \"node-1\"",
            "invalid IP address",
        ),
        ("pod_network = \"bridge\"", "unknown variant `bridge`"),
    ];
    for (extra, needle) in cases {
        let err = Config::parse(&backend(extra), false)
            .expect_err(extra)
            .to_string();
        assert!(err.contains(needle), "{extra}: {err:?} lacks {needle:?}");
        assert!(!err.contains('\n'), "{extra}: not one line: {err:?}");
    }
}

/// The shipped examples stay valid: manifests/linux/config.toml as is, and the template
/// install-crimux.ps1 fills (its WSL2 backend is the distro's crimux, `kind = "cri"`).
#[test]
fn shipped_configs_are_valid() {
    let linux = Config::parse(include_str!("../manifests/linux/config.toml"), false)
        .expect("manifests/linux/config.toml");
    assert_eq!(linux.backends.len(), 1);
    assert_eq!(linux.role_of(&linux.backends[0]), BackendRole::Primary);

    let text = include_str!("../manifests/windows/config.toml")
        .replace("__DATA_DIR__", r"C:\ProgramData\crimux")
        .replace("__WSL_PORT__", "10010");
    let c = Config::parse(&text, true).unwrap_or_else(|e| panic!("windows template: {e}"));
    let names: Vec<&str> = c.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["windows", "wsl2"]);
    assert_eq!(c.role_of(&c.backends[0]), BackendRole::Primary);
    assert_eq!(
        c.backends[0].address,
        "npipe:////./pipe/containerd-containerd"
    );
    let wsl = &c.backends[1];
    assert_eq!(wsl.kind, BackendKind::Cri);
    assert_eq!(wsl.address, "tcp://127.0.0.1:10010");
    let tls = wsl.tls.as_ref().expect("[backend.tls]");
    assert_eq!(
        tls.key,
        PathBuf::from(r"C:\ProgramData\crimux\certs\client-key.pem")
    );
    assert_eq!(
        wsl.path_map,
        [PathMapConfig {
            host: r"C:\".into(),
            backend: "/mnt/c/".into()
        }]
    );
    let handlers: Vec<(&str, Option<&str>)> = c
        .backends
        .iter()
        .flat_map(|b| {
            b.runtime_handlers
                .iter()
                .map(|h| (h.name.as_str(), h.remote.as_deref()))
        })
        .collect();
    assert_eq!(
        handlers,
        [
            ("runhcs-wcow-process", None),
            ("runhcs-wcow-hypervisor", None),
            ("wsl2", Some(""))
        ]
    );
}

/// A Windows node whose WSL2 delegate is a Linux crimux reached over mutual TLS.
const CRI_NODE: &str = r#"
listen = "npipe:////./pipe/crimux"
root = 'C:\ProgramData\crimux\root'

[[backend]]
name = "windows"
address = "npipe:////./pipe/containerd-containerd"
role = "primary"

[[backend]]
name = "wsl2"
kind = "cri"
address = "tcp://127.0.0.1:10011"
role = "delegate"
[backend.tls]
ca = 'C:\ProgramData\crimux\certs\ca.pem'
cert = 'C:\ProgramData\crimux\certs\client.pem'
key = 'C:\ProgramData\crimux\certs\client-key.pem'
server_name = "localhost"
[[backend.path_map]]
host = 'C:\'
backend = '/mnt/c/'
[[backend.path_map]]
host = 'D:\data\'
backend = '/mnt/d/data/'
[[backend.runtime_handlers]]
name = "wsl2"
[[backend.runtime_handlers]]
name = "wsl2-kata"
remote = "kata"
"#;

#[test]
fn cri_backend_parses() {
    let c = Config::parse(CRI_NODE, true).expect("valid");
    assert_eq!(c.backends[0].kind, BackendKind::Containerd);
    let wsl = &c.backends[1];
    assert_eq!(wsl.kind, BackendKind::Cri);
    assert_eq!(c.role_of(wsl), BackendRole::Delegate);
    assert_eq!(
        wsl.path_map,
        [
            PathMapConfig {
                host: r"C:\".into(),
                backend: "/mnt/c/".into()
            },
            PathMapConfig {
                host: r"D:\data\".into(),
                backend: "/mnt/d/data/".into()
            },
        ]
    );
    let handlers: Vec<(&str, Option<&str>)> = wsl
        .runtime_handlers
        .iter()
        .map(|h| (h.name.as_str(), h.remote.as_deref()))
        .collect();
    assert_eq!(handlers, [("wsl2", None), ("wsl2-kata", Some("kata"))]);
    // The keys of a containerd backend keep their defaults, unused.
    assert_eq!(wsl.namespace, None);
    assert_eq!(wsl.pod_network, None);

    // On Linux: a unix socket, and plain TCP on loopback with insecure = true.
    for address in [
        "address = \"unix:///run/crimux-inner.sock\"",
        "address = \"tcp://127.0.0.1:10011\"\ninsecure = true",
    ] {
        let text = format!(
            "[[backend]]\nname = \"a\"\naddress = \"unix:///a\"\nrole = \"primary\"\n\
             [[backend]]\nname = \"b\"\nkind = \"cri\"\n{address}\n"
        );
        let c = Config::parse(&text, false).unwrap_or_else(|e| panic!("{address}: {e}"));
        assert_eq!(c.backends[1].kind, BackendKind::Cri);
    }
}

/// (name, extra keys for a `kind = "cri"` backend, substring of the one-line error)
#[test]
fn cri_backend_refuses_what_the_inner_crimux_owns() {
    let cri = |extra: &str| {
        format!(
            "[[backend]]\nname = \"a\"\naddress = \"unix:///a\"\nrole = \"primary\"\n\
             [[backend]]\nname = \"b\"\nkind = \"cri\"\n{extra}\n"
        )
    };
    let unix = "address = \"unix:///inner.sock\"\n";
    let cases: Vec<(&str, String, &str)> = vec![
        ("bad kind", cri(unix).replace("\"cri\"", "\"crio\""), "unknown variant `crio`"),
        ("namespace", cri(&format!("{unix}namespace = \"k8s.io\"")), "backend \"b\": namespace is not for kind = \"cri\" backends"),
        ("snapshotter", cri(&format!("{unix}snapshotter = \"overlayfs\"")), "snapshotter is not for kind = \"cri\""),
        ("pod_network", cri(&format!("{unix}pod_network = \"cni\"")), "pod_network is not for kind = \"cri\""),
        ("node_ip", cri(&format!("{unix}node_ip = \"10.0.0.5\"")), "node_ip is not for kind = \"cri\""),
        ("runtime_type", cri(&format!("{unix}[[backend.runtime_handlers]]\nname = \"wsl2\"\nruntime_type = \"io.containerd.runc.v2\"")), "runtime handler \"wsl2\": runtime_type and options are not for kind = \"cri\""),
        ("options", cri(&format!("{unix}[[backend.runtime_handlers]]\nname = \"wsl2\"\noptions = {{ SystemdCgroup = true }}")), "remote = \"<handler>\""),
        ("tcp without tls", cri("address = \"tcp://10.0.0.1:10011\""), "needs [backend.tls]"),
        ("insecure remote", cri("address = \"tcp://10.0.0.1:10011\"\ninsecure = true"), "only for a loopback"),
        ("npipe on linux", cri("address = \"npipe:////./pipe/crimux\""), "only for Windows"),
        ("empty path_map host", cri(&format!("{unix}[[backend.path_map]]\nhost = \"\"\nbackend = \"/mnt/c/\"")), "path_map: host and backend must not be empty"),
        ("relative path_map", cri(&format!("{unix}[[backend.path_map]]\nhost = 'C:'\nbackend = '/mnt/c'")), "both must be absolute paths"),
        ("relative path_map backend", cri(&format!("{unix}[[backend.path_map]]\nhost = '/h/'\nbackend = 'mnt/c/'")), "both must be absolute paths"),
        ("path_map twice", cri(&format!("{unix}[[backend.path_map]]\nhost = 'C:\\'\nbackend = '/mnt/c/'\n[[backend.path_map]]\nhost = 'c:\\'\nbackend = '/mnt/x/'")), "host \"c:\\\\\" is mapped twice"),
        ("path_map unknown key", cri(&format!("{unix}[[backend.path_map]]\nhost = 'C:\\'\nguest = '/mnt/c/'")), "unknown field `guest`"),
        ("path_map on containerd", cri(&format!("{unix}[[backend.path_map]]\nhost = 'C:\\'\nbackend = '/mnt/c/'")).replace("kind = \"cri\"\n", ""), "path_map is only for kind = \"cri\" backends"),
        ("remote on containerd", cri(&format!("{unix}[[backend.runtime_handlers]]\nname = \"wsl2\"\nremote = \"\"")).replace("kind = \"cri\"\n", ""), "runtime handler \"wsl2\": remote is only for kind = \"cri\""),
        ("handler twice", format!("{}[[backend.runtime_handlers]]\nname = \"runc\"\n", cri(&format!("{unix}[[backend.runtime_handlers]]\nname = \"runc\""))), "runtime handler \"runc\" is already served by backend \"b\""),
    ];
    for (name, text, needle) in cases {
        let err = match Config::parse(&text, false) {
            Ok(c) => panic!("{name}: accepted: {c:?}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(needle), "{name}: {err:?} lacks {needle:?}");
        assert!(!err.contains('\n'), "{name}: not one line: {err:?}");
    }
    // On Windows a cri backend is still never a named pipe: the other crimux is in WSL2.
    let text = CRI_NODE.replace("tcp://127.0.0.1:10011", "npipe:////./pipe/inner");
    let err = Config::parse(&text, true)
        .expect_err("npipe cri")
        .to_string();
    assert!(err.contains("reached by unix:// or tcp://"), "{err}");
}
