//! `crimux certs`, run as the real binary: the files and their modes, the certificates as
//! openssl reads them, and real mutual-TLS connections from crimux to a containerd behind a
//! TLS relay that uses exactly these files (as a WSL2 delegate is reached).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use k8s_cri::v1::{ListImagesRequest, VersionRequest};

use common::certs::Certs;
use common::crimux::BackendTls;
use common::process::{free_port, Daemon};
use common::{Containerd, Crimux, CrimuxConfig};

const FILES: [&str; 6] = [
    "ca.pem",
    "ca-key.pem",
    "server.pem",
    "server-key.pem",
    "client.pem",
    "client-key.pem",
];

fn certs(args: &[&str]) -> Output {
    Command::new(common::crimux::binary())
        .arg("certs")
        .args(args)
        .env_remove("CRIMUX_CONFIG")
        .output()
        .expect("run crimux certs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// Runs the openssl CLI (it must be installed: this test fails without it).
fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed for this test");
    let all = text(&out);
    assert!(out.status.success(), "openssl {args:?}: {all}");
    all
}

fn make(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["--out", dir.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let out = certs(&args);
    let all = text(&out);
    assert!(out.status.success(), "crimux certs {args:?}: {all}");
    all
}

#[test]
fn files_modes_and_refusal_to_overwrite() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("certs");
    let printed = make(&dir, &[]);

    assert_eq!(mode(&dir), 0o700, "directory");
    for f in FILES {
        let want = if f.ends_with("-key.pem") {
            0o600
        } else {
            0o644
        };
        assert_eq!(mode(&dir.join(f)), want, "{f}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !FILES.contains(&n.as_str()))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // The printout says which config line takes which file.
    let at = |f: &str| dir.join(f).display().to_string();
    for line in [
        "[backend.tls]".to_string(),
        format!("ca = '{}'", at("ca.pem")),
        format!("cert = '{}'", at("client.pem")),
        format!("key = '{}'", at("client-key.pem")),
        "server_name = \"localhost\"".to_string(),
        "cert=/etc/crimux/tls/server.pem,key=/etc/crimux/tls/server-key.pem,".to_string(),
        "cafile=/etc/crimux/tls/ca.pem,verify=1".to_string(),
        "UNIX-CONNECT:/run/crimux/crimux.sock".to_string(),
    ] {
        assert!(printed.contains(&line), "missing {line:?} in:\n{printed}");
    }

    // A second run refuses and changes nothing; --force replaces everything.
    let before: Vec<String> = FILES
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).expect("read"))
        .collect();
    let out = certs(&["--out", dir.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("pass --force"), "{}", text(&out));
    for (f, old) in FILES.iter().zip(&before) {
        assert_eq!(
            &std::fs::read_to_string(dir.join(f)).expect("read"),
            old,
            "{f}"
        );
    }
    make(&dir, &["--force"]);
    for (f, old) in FILES.iter().zip(&before) {
        assert_ne!(
            &std::fs::read_to_string(dir.join(f)).expect("read"),
            old,
            "{f}"
        );
        let want = if f.ends_with("-key.pem") {
            0o600
        } else {
            0o644
        };
        assert_eq!(mode(&dir.join(f)), want, "{f} after --force");
    }

    // Bad arguments are refused before anything is written.
    let empty = tmp.path().join("never");
    let out = certs(&[
        "--out",
        empty.to_str().expect("utf-8"),
        "--server-name",
        "not a name",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!empty.exists(), "nothing created for a refused name");
}

#[test]
fn openssl_reads_and_verifies_the_chain() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("c");
    make(
        &dir,
        &[
            "--server-name",
            "wsl.internal",
            "--server-name",
            "172.28.0.2",
            "--days",
            "30",
        ],
    );
    let p = |f: &str| dir.join(f).display().to_string();
    let ca = p("ca.pem");
    let verified = openssl(&[
        "verify",
        "-CAfile",
        &ca,
        "-purpose",
        "sslserver",
        &p("server.pem"),
    ]);
    assert!(verified.contains(": OK"), "{verified}");
    let verified = openssl(&[
        "verify",
        "-CAfile",
        &ca,
        "-purpose",
        "sslclient",
        &p("client.pem"),
    ]);
    assert!(verified.contains(": OK"), "{verified}");
    // The EKUs keep each certificate to its side.
    let out = Command::new("openssl")
        .args([
            "verify",
            "-CAfile",
            &ca,
            "-purpose",
            "sslclient",
            &p("server.pem"),
        ])
        .output()
        .expect("openssl");
    assert!(
        !out.status.success(),
        "server cert must not pass as a client cert"
    );

    let server = openssl(&["x509", "-in", &p("server.pem"), "-noout", "-text"]);
    assert!(server.contains("DNS:wsl.internal"), "{server}");
    assert!(server.contains("IP Address:172.28.0.2"), "{server}");
    assert!(server.contains("TLS Web Server Authentication"), "{server}");
    let client = openssl(&["x509", "-in", &p("client.pem"), "-noout", "-text"]);
    assert!(client.contains("TLS Web Client Authentication"), "{client}");
    assert!(
        client.contains("CN = crimux") || client.contains("CN=crimux"),
        "{client}"
    );
    let ca_text = openssl(&["x509", "-in", &ca, "-noout", "-text"]);
    assert!(ca_text.contains("CA:TRUE"), "{ca_text}");
    // Valid from a day ago for --days: 30 days from now is inside, 32 is not.
    openssl(&[
        "x509",
        "-in",
        &p("server.pem"),
        "-noout",
        "-checkend",
        &(29 * 86_400).to_string(),
    ]);
    let out = Command::new("openssl")
        .args([
            "x509",
            "-in",
            &p("server.pem"),
            "-noout",
            "-checkend",
            &(32 * 86_400).to_string(),
        ])
        .output()
        .expect("openssl");
    assert!(!out.status.success(), "certificate outlives --days 30");
    // Each key matches its certificate.
    for (cert, key) in [
        ("server.pem", "server-key.pem"),
        ("client.pem", "client-key.pem"),
        ("ca.pem", "ca-key.pem"),
    ] {
        let from_cert = openssl(&["x509", "-in", &p(cert), "-noout", "-pubkey"]);
        let from_key = openssl(&["pkey", "-in", &p(key), "-pubout"]);
        assert_eq!(from_cert, from_key, "{key} does not match {cert}");
    }
}

/// A crimux config whose only backend is `address` with `[backend.tls]` from `dir`.
fn tls_config(home: &Path, address: &str, dir: &Path) -> CrimuxConfig {
    let mut config = CrimuxConfig::new(home, address);
    config.backends[0].tls = Some(BackendTls {
        ca: dir.join("ca.pem"),
        cert: dir.join("client.pem"),
        key: dir.join("client-key.pem"),
        server_name: Some("localhost".into()),
    });
    config
}

/// The relay wsl2-setup.sh runs in the distro: socat (OpenSSL) terminating mutual TLS on
/// 127.0.0.1:`port` in front of containerd's unix socket. containerd's own `[grpc]
/// tcp_address` cannot serve this: in containerd 1.6 that listener carries only the CRI
/// plugin's service, and the native API answers "unknown service" there.
fn socat_relay(dir: &Path, certs: &Path, port: u16, socket: &Path) -> Daemon {
    let c = |f: &str| certs.join(f).display().to_string();
    let listen = format!(
        "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},cafile={},verify=1",
        c("server.pem"),
        c("server-key.pem"),
        c("ca.pem")
    );
    let connect = format!("UNIX-CONNECT:{}", socket.display());
    let relay = Daemon::start(
        "socat",
        "socat",
        &[&listen, &connect],
        &dir.join("socat.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        relay.assert_running();
        assert!(Instant::now() < deadline, "socat did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    relay
}

/// crimux with the generated client certificate answers Version and ListImages from the
/// containerd behind the relay; a client certificate from another run is refused at start.
async fn crimux_through(home: &Path, address: &str, dir: &Path, other: &Path) {
    let crimux = Crimux::start(tls_config(&home.join("crimux"), address, dir)).await;
    let version = crimux
        .runtime()
        .await
        .version(VersionRequest::default())
        .await
        .expect("Version")
        .into_inner();
    assert_eq!(version.runtime_name, "crimux");
    // ListImages is answered by the delegate's containerd over the TLS connection.
    let images = crimux
        .images()
        .await
        .list_images(ListImagesRequest::default())
        .await
        .expect("ListImages over mutual TLS")
        .into_inner();
    assert!(images.images.is_empty(), "{:?}", images.images);
    drop(crimux);

    let mut config = tls_config(&home.join("crimux-other"), address, dir);
    if let Some(tls) = config.backends[0].tls.as_mut() {
        tls.cert = other.join("client.pem");
        tls.key = other.join("client-key.pem");
    }
    let (code, output) = Crimux::run_to_exit(&config);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains(address), "{output}");
}

/// Needs containerd and socat. The deployment's path: socat (OpenSSL) serves the generated
/// server certificate and demands a client certificate from the generated CA, in front of
/// a real containerd; crimux (rustls) connects with the generated client certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_through_the_socat_relay_with_the_generated_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("certs");
    let other = tmp.path().join("other");
    make(&dir, &[]);
    make(&other, &[]);
    let containerd = Containerd::start().await;
    let port = free_port();
    let relay = socat_relay(tmp.path(), &dir, port, &containerd.socket());
    crimux_through(tmp.path(), &format!("tcp://127.0.0.1:{port}"), &dir, &other).await;
    relay.assert_running();
    assert!(containerd.is_running());
}

/// Needs containerd. The same files in the harness's own TLS relay (rustls server side).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_through_the_harness_relay_with_the_generated_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("certs");
    let other = tmp.path().join("other");
    make(&dir, &[]);
    make(&other, &[]);
    let containerd = Containerd::start_tcp_tls(&Certs { dir: dir.clone() }).await;
    let address = containerd.tcp_address().expect("tcp address");
    crimux_through(tmp.path(), &address, &dir, &other).await;
    assert!(containerd.is_running());
}
