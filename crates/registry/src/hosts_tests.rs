//! Tests for `hosts.toml` loading: files written into a temporary config dir.

use super::*;

fn write(dir: &Path, host: &str, text: &str) {
    let d = dir.join(host);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(HOSTS_FILE), text).unwrap();
}

fn urls(hosts: &[RegistryHost]) -> Vec<&str> {
    hosts.iter().map(|h| h.url.as_str()).collect()
}

#[test]
fn no_config_means_https_server() {
    let cfg = HostsConfig::load(None).unwrap();
    let h = cfg.hosts_for("quay.io").unwrap();
    assert_eq!(urls(&h), ["https://quay.io/v2"]);
    assert_eq!(h[0].capabilities, Capabilities::ALL);
    assert!(!h[0].http_fallback);
    let h = cfg.hosts_for("docker.io").unwrap();
    assert_eq!(urls(&h), ["https://registry-1.docker.io/v2"]);
    let h = cfg.hosts_for("127.0.0.1:5000").unwrap();
    assert_eq!(urls(&h), ["https://127.0.0.1:5000/v2"]);
    assert!(h[0].http_fallback);
    // A missing directory is no configuration, not an error.
    let cfg = HostsConfig::load(Some(Path::new("/nonexistent/crimux/certs.d"))).unwrap();
    assert_eq!(
        urls(&cfg.hosts_for("quay.io").unwrap()),
        ["https://quay.io/v2"]
    );
}

#[test]
fn localhost_detection() {
    for (d, want) in [
        ("localhost", true),
        ("localhost:5000", true),
        ("127.0.0.1", true),
        ("127.1.2.3:80", true),
        ("[::1]:5000", true),
        ("[::1]", true),
        ("10.0.0.1:5000", false),
        ("localhost.example.com", false),
        ("docker.io", false),
    ] {
        assert_eq!(is_localhost(d), want, "{d}");
    }
}

#[test]
fn mirrors_in_file_order_then_server() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "docker.io",
        r#"
[host."https://zmirror.example.com"]
  capabilities = ["pull"]
[host."http://amirror.local:5000"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
  ca = "ca.pem"
  [host."http://amirror.local:5000".header]
    x-custom = "1"
    x-multi = ["a", "b"]
[host."https://pathy.example.com/custom/api"]
  override_path = true
  ca = ["/etc/a.pem", "b.pem"]
  client = [["c.pem", "k.pem"], "both.pem"]
"#,
    );
    let cfg = HostsConfig::load(Some(dir.path())).unwrap();
    let h = cfg.hosts_for("docker.io").unwrap();
    assert_eq!(
        urls(&h),
        [
            "https://zmirror.example.com/v2",
            "http://amirror.local:5000/v2",
            "https://pathy.example.com/custom/api",
            "https://registry-1.docker.io/v2",
        ]
    );
    assert_eq!(
        h[0].capabilities,
        Capabilities {
            pull: true,
            resolve: false,
            push: false
        }
    );
    assert_eq!(h[1].capabilities, Capabilities::MIRROR_DEFAULT);
    assert!(h[1].skip_verify && !h[0].skip_verify);
    let base = dir.path().join("docker.io");
    assert_eq!(h[1].ca, vec![base.join("ca.pem")]);
    assert_eq!(
        h[1].headers,
        vec![
            ("x-custom".to_string(), "1".to_string()),
            ("x-multi".to_string(), "a".to_string()),
            ("x-multi".to_string(), "b".to_string()),
        ]
    );
    assert!(h[2].override_path);
    assert_eq!(
        h[2].ca,
        vec![PathBuf::from("/etc/a.pem"), base.join("b.pem")]
    );
    assert_eq!(
        h[2].client,
        vec![
            ClientCert {
                cert: base.join("c.pem"),
                key: Some(base.join("k.pem"))
            },
            ClientCert {
                cert: base.join("both.pem"),
                key: None
            },
        ]
    );
    assert_eq!(h[3].capabilities, Capabilities::ALL);
    // Other registries are untouched by docker.io's file.
    assert_eq!(
        urls(&cfg.hosts_for("quay.io").unwrap()),
        ["https://quay.io/v2"]
    );
}

#[test]
fn server_and_top_level_keys() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "registry.example.com:5000",
        r#"
server = "http://registry.example.com:5000"
capabilities = ["pull", "resolve"]
skip_verify = true
[header]
  authorization-extra = "x"
[host."mirror.example.com/prefix/"]
"#,
    );
    let cfg = HostsConfig::load(Some(dir.path())).unwrap();
    let h = cfg.hosts_for("registry.example.com:5000").unwrap();
    assert_eq!(
        urls(&h),
        [
            "https://mirror.example.com/prefix/v2",
            "http://registry.example.com:5000/v2"
        ]
    );
    assert_eq!(h[1].capabilities, Capabilities::MIRROR_DEFAULT);
    assert!(h[1].skip_verify);
    assert_eq!(
        h[1].headers,
        vec![("authorization-extra".into(), "x".into())]
    );
    assert!(h[0].headers.is_empty());
}

#[test]
fn default_dir_applies_to_unconfigured_hosts() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "_default",
        "[host.\"https://cache.local\"]\ncapabilities = [\"pull\"]\n",
    );
    write(dir.path(), "quay.io", "server = \"https://quay.io\"\n");
    let cfg = HostsConfig::load(Some(dir.path())).unwrap();
    assert_eq!(
        urls(&cfg.hosts_for("ghcr.io").unwrap()),
        ["https://cache.local/v2", "https://ghcr.io/v2"]
    );
    assert_eq!(
        urls(&cfg.hosts_for("docker.io").unwrap()),
        ["https://cache.local/v2", "https://registry-1.docker.io/v2"]
    );
    assert_eq!(
        urls(&cfg.hosts_for("quay.io").unwrap()),
        ["https://quay.io/v2"]
    );
    // The loopback http fallback survives a _default file that does not name a server.
    let h = cfg.hosts_for("localhost:5000").unwrap();
    assert!(h[1].http_fallback);
}

#[test]
fn malformed_files_name_the_file() {
    let cases = [
        "server = ",
        "capabilities = [\"pull\", \"fly\"]",
        "[host.\"https://m\"]\ncapabilities = [\"teleport\"]",
        "skip_verify = \"yes\"",
        "[host.\"ftp://m\"]",
        "host = 3",
        "[header]\nx = 3",
    ];
    for text in cases {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "r.example.com", text);
        let err = HostsConfig::load(Some(dir.path()))
            .and_then(|c| c.hosts_for("r.example.com"))
            .expect_err(text);
        let msg = err.to_string();
        assert!(matches!(err, Error::InvalidArgument(_)), "{text}: {msg}");
        assert!(msg.contains("r.example.com/hosts.toml"), "{text}: {msg}");
    }
    // load() itself reports a syntax error.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bad.example.com", "[host");
    let err = HostsConfig::load(Some(dir.path())).unwrap_err();
    assert!(
        err.to_string().contains("bad.example.com/hosts.toml"),
        "{err}"
    );
}
