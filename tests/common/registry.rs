//! A local OCI registry (distribution's `docker-registry`) holding the test images.
//!
//! Pushing every image costs a couple of seconds, so each test binary shares one anonymous
//! and one password-protected registry ([`Registry::shared`], [`Registry::shared_auth`]).
//! Tests only read from them. Their data lives under `$TMPDIR/crimux-test-registries/<pid>-*`;
//! directories of test processes that are gone are removed when a new one starts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::process::{free_port, run, wait_http, Daemon};
use super::test_images::{test_images, TestImages};

/// The repository prefix every test image is pushed under.
pub const PREFIX: &str = "crimux-test";
/// Credentials of the auth registry.
pub const USER: &str = "crimux";
pub const PASSWORD: &str = "s3cret-Pa55";

/// Images pushed to every registry, as `name:tag`.
pub const STANDARD_IMAGES: &[&str] = &[
    "busybox:1.0",
    "busybox:1.1",
    "busybox:latest",
    "multilayer:latest",
    "multiarch:latest",
    "windows:latest",
    "withuser:latest",
    "nameduser:latest",
];

pub struct Registry {
    daemon: Daemon,
    port: u16,
    auth: Option<(String, String)>,
    dir: PathBuf,
}

impl Registry {
    /// The process-wide anonymous registry, with the standard images and `library/busybox`.
    pub fn shared() -> &'static Registry {
        static REGISTRY: OnceLock<Registry> = OnceLock::new();
        REGISTRY.get_or_init(|| Registry::with_standard_images(None))
    }

    /// The process-wide registry requiring [`USER`]/[`PASSWORD`] (htpasswd, bcrypt).
    pub fn shared_auth() -> &'static Registry {
        static REGISTRY: OnceLock<Registry> = OnceLock::new();
        REGISTRY.get_or_init(|| Registry::with_standard_images(Some((USER, PASSWORD))))
    }

    /// Both shared registries, started concurrently on first use.
    pub fn shared_pair() -> (&'static Registry, &'static Registry) {
        std::thread::scope(|s| {
            let auth = s.spawn(Registry::shared_auth);
            let anon = Registry::shared();
            (anon, auth.join().expect("start the auth registry"))
        })
    }

    fn with_standard_images(auth: Option<(&str, &str)>) -> Registry {
        let images = test_images();
        let registry = Registry::start(auth);
        let mut pushes: Vec<(&str, String)> = STANDARD_IMAGES
            .iter()
            .map(|name_tag| (*name_tag, format!("{PREFIX}/{name_tag}")))
            .collect();
        pushes.push(("busybox:latest", "library/busybox:latest".to_string()));
        std::thread::scope(|s| {
            for (name_tag, dest) in &pushes {
                let registry = &registry;
                s.spawn(move || registry.push(images, name_tag, dest));
            }
        });
        registry
    }

    /// Starts an empty registry on a free port of 127.0.0.1.
    pub fn start(auth: Option<(&str, &str)>) -> Registry {
        let dir = data_dir();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        );
        if let Some((user, password)) = auth {
            let line = run(Command::new("htpasswd").args(["-Bbn", user, password]));
            let htpasswd = dir.join("htpasswd");
            std::fs::write(&htpasswd, line.trim()).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: crimux-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let daemon = Daemon::start(
            "docker-registry",
            "docker-registry",
            &["serve", &config_path.to_string_lossy()],
            &dir.join("registry.log"),
        );
        let code = wait_http(&daemon, port, "/v2/", Duration::from_secs(20));
        assert!(
            code == 200 || (auth.is_some() && code == 401),
            "registry on port {port} answered /v2/ with {code}"
        );
        Registry {
            daemon,
            port,
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
            dir,
        }
    }

    /// Copies `name_tag` from the image layout to `<this registry>/<dest>` (all platforms).
    pub fn push(&self, images: &TestImages, name_tag: &str, dest: &str) {
        let image = images.get(name_tag);
        let src = format!("oci:{}:{}", images.layout().display(), image.layout_ref);
        let dst = format!("docker://{}/{dest}", self.host());
        let mut cmd = Command::new("skopeo");
        cmd.args(["--insecure-policy", "copy", "--all", "--quiet"])
            .args(["--dest-tls-verify=false", "--retry-times", "3"]);
        if let Some((user, password)) = &self.auth {
            cmd.arg("--dest-creds").arg(format!("{user}:{password}"));
        }
        cmd.arg(&src).arg(&dst);
        run(&mut cmd);
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// "127.0.0.1:PORT"
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The full reference of a test image: "127.0.0.1:PORT/crimux-test/busybox:1.0".
    pub fn image(&self, name_tag: &str) -> String {
        format!("{}/{PREFIX}/{name_tag}", self.host())
    }

    /// The repository of a test image: "127.0.0.1:PORT/crimux-test/busybox".
    pub fn repo(&self, name: &str) -> String {
        format!("{}/{PREFIX}/{name}", self.host())
    }

    /// "repo@digest" of a test image.
    pub fn by_digest(&self, name: &str, digest: &str) -> String {
        format!("{}@{digest}", self.repo(name))
    }

    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    pub fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `<certs_d>/127.0.0.1:PORT/hosts.toml`: plain HTTP, pull + resolve.
    pub fn write_hosts(&self, certs_d: &Path) {
        let host = self.host();
        write_hosts_toml(
            &certs_d.join(&host),
            &format!(
                "server = \"http://{host}\"\n\n[host.\"http://{host}\"]\n  \
                 capabilities = [\"pull\", \"resolve\"]\n"
            ),
        );
    }

    /// Writes `<certs_d>/docker.io/hosts.toml` mirroring docker.io to this registry, so
    /// `busybox` resolves to its `library/busybox:latest`.
    pub fn write_docker_io_mirror(&self, certs_d: &Path) {
        let host = self.host();
        write_hosts_toml(
            &certs_d.join("docker.io"),
            &format!(
                "server = \"https://registry-1.docker.io\"\n\n[host.\"http://{host}\"]\n  \
                 capabilities = [\"pull\", \"resolve\"]\n"
            ),
        );
    }
}

fn write_hosts_toml(dir: &Path, text: &str) {
    std::fs::create_dir_all(dir).expect("create certs.d host dir");
    std::fs::write(dir.join("hosts.toml"), text).expect("write hosts.toml");
}

/// A fresh directory for one registry's data; removes those of test processes that are gone.
fn data_dir() -> PathBuf {
    let base = std::env::temp_dir().join("crimux-test-registries");
    std::fs::create_dir_all(&base).expect("create registry base dir");
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().unwrap_or("");
            if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    tempfile::Builder::new()
        .prefix(&format!("{}-", std::process::id()))
        .tempdir_in(&base)
        .expect("create registry dir")
        .keep()
}
