//! Config parsing and validation, from strings only.

use super::*;

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
        (b.name.as_str(), b.address.as_str(), b.namespace.as_str()),
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
    assert_eq!(c.backends[1].namespace, "k8s.io");
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
        let text = format!("[[backend]]\nname = \"b\"\naddress = \"{address}\"\n{extra}\n");
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
