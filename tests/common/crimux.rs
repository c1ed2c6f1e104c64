//! The crimux binary under test: a config file, a socket in a tempdir, CRI clients.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{ListImagesRequest, PodSandboxStatus, PodSandboxStatusRequest, VersionRequest};
use tonic::transport::{Channel, Endpoint};

use super::process::Daemon;

/// One `[[backend]]` of the config.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub name: String,
    /// "unix:///path/to/containerd.sock" or "tcp://127.0.0.1:<port>"
    pub address: String,
    pub namespace: String,
    /// `role = "primary" | "delegate"`; unset leaves crimux's default.
    pub role: Option<String>,
    /// `os = ...`: overrides what containerd's introspection says (a simulated Windows node).
    pub os: Option<String>,
    /// `[[backend.runtime_handlers]]` names (runtime_type left to crimux's default).
    pub runtime_handlers: Vec<String>,
    /// `[backend.tls]`: mutual TLS for a `tcp://` address.
    pub tls: Option<BackendTls>,
    pub insecure: bool,
}

/// `[backend.tls]` paths.
#[derive(Debug, Clone)]
pub struct BackendTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub server_name: Option<String>,
}

impl BackendConfig {
    /// A backend with only a name and an address, namespace k8s.io.
    pub fn new(name: &str, address: &str) -> BackendConfig {
        BackendConfig {
            name: name.to_string(),
            address: address.to_string(),
            namespace: "k8s.io".to_string(),
            role: None,
            os: None,
            runtime_handlers: Vec::new(),
            tls: None,
            insecure: false,
        }
    }

    /// This backend as a `[[backend]]` table.
    pub fn to_toml(&self) -> String {
        let mut toml = format!(
            "\n[[backend]]\nname = {:?}\naddress = {:?}\nnamespace = {:?}\n",
            self.name, self.address, self.namespace
        );
        if let Some(role) = &self.role {
            toml.push_str(&format!("role = {role:?}\n"));
        }
        if let Some(os) = &self.os {
            toml.push_str(&format!("os = {os:?}\n"));
        }
        if self.insecure {
            toml.push_str("insecure = true\n");
        }
        for handler in &self.runtime_handlers {
            toml.push_str(&format!(
                "[[backend.runtime_handlers]]\nname = {handler:?}\n"
            ));
        }
        if let Some(tls) = &self.tls {
            toml.push_str(&format!(
                "[backend.tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
                tls.ca.display().to_string(),
                tls.cert.display().to_string(),
                tls.key.display().to_string()
            ));
            if let Some(name) = &tls.server_name {
                toml.push_str(&format!("server_name = {name:?}\n"));
            }
        }
        toml
    }
}

/// What goes into crimux's TOML config. Paths are absolute.
#[derive(Debug, Clone)]
pub struct CrimuxConfig {
    /// Where the config file, socket, root and log go.
    pub dir: PathBuf,
    pub sandbox_image: String,
    /// `[registry] config_path` (a containerd-style certs.d directory), if any.
    pub registry_config_path: Option<PathBuf>,
    pub backends: Vec<BackendConfig>,
    /// `[cni] conf_dir` and `bin_dirs`, when a test runs pods.
    pub cni: Option<(PathBuf, Vec<PathBuf>)>,
    /// Raw TOML appended at the end (for options a test needs that this struct lacks).
    pub extra_toml: String,
}

impl CrimuxConfig {
    /// A config with one backend named "default" on `containerd_address`, namespace k8s.io.
    pub fn new(dir: &Path, containerd_address: &str) -> CrimuxConfig {
        CrimuxConfig {
            dir: dir.to_path_buf(),
            sandbox_image: "registry.k8s.io/pause:3.10".to_string(),
            registry_config_path: None,
            backends: vec![BackendConfig::new("default", containerd_address)],
            cni: None,
            extra_toml: String::new(),
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("crimux.sock")
    }

    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    pub fn to_toml(&self) -> String {
        let mut toml = format!(
            "listen = {:?}\nroot = {:?}\nsandbox_image = {:?}\n",
            self.socket().display().to_string(),
            self.root().display().to_string(),
            self.sandbox_image
        );
        if let Some(path) = &self.registry_config_path {
            toml.push_str(&format!(
                "\n[registry]\nconfig_path = {:?}\n",
                path.display().to_string()
            ));
        }
        if let Some((conf_dir, bin_dirs)) = &self.cni {
            let bin_dirs: Vec<String> = bin_dirs.iter().map(|d| d.display().to_string()).collect();
            toml.push_str(&format!(
                "\n[cni]\nconf_dir = {:?}\nbin_dirs = {bin_dirs:?}\n",
                conf_dir.display().to_string()
            ));
        }
        for backend in &self.backends {
            toml.push_str(&backend.to_toml());
        }
        if !self.extra_toml.is_empty() {
            toml.push('\n');
            toml.push_str(&self.extra_toml);
            toml.push('\n');
        }
        toml
    }
}

pub struct Crimux {
    daemon: Daemon,
    config: CrimuxConfig,
}

impl Crimux {
    /// Writes the config, starts the binary and waits until the socket answers Version.
    pub async fn start(config: CrimuxConfig) -> Crimux {
        std::fs::create_dir_all(&config.dir).expect("create crimux dir");
        let config_path = config.dir.join("crimux.toml");
        std::fs::write(&config_path, config.to_toml()).expect("write crimux config");
        let daemon = Daemon::start(
            "crimux",
            &binary(),
            &["--config", &config_path.to_string_lossy()],
            &config.dir.join("crimux.log"),
        );
        let crimux = Crimux { daemon, config };
        crimux.wait_ready(Duration::from_secs(30)).await;
        crimux
    }

    async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last_err = String::from("socket not created");
        loop {
            self.daemon.assert_running();
            if self.config.socket().exists() {
                match try_connect(&self.config.socket()).await {
                    Ok(channel) => {
                        let mut client = RuntimeServiceClient::new(channel);
                        match client.version(VersionRequest::default()).await {
                            Ok(_) => return,
                            Err(status) => last_err = format!("Version: {status:?}"),
                        }
                    }
                    Err(e) => last_err = e,
                }
            }
            if Instant::now() > deadline {
                self.daemon.dump_log();
                panic!("crimux did not answer Version within {timeout:?}: {last_err}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn config(&self) -> &CrimuxConfig {
        &self.config
    }

    pub fn socket(&self) -> PathBuf {
        self.config.socket()
    }

    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// What crimux wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    pub fn dump_log(&self) {
        self.daemon.dump_log();
    }

    /// SIGTERM and wait (also done on drop).
    pub fn stop(&self) {
        self.daemon.stop();
    }

    /// SIGKILL, as a crash would: nothing gets a chance to clean up.
    pub fn kill(&self) {
        let pid = self.daemon.pid();
        if pid != 0 {
            // SAFETY: kill(2) on the pid of our own child, not reaped yet.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        // Reaps the killed child (its SIGTERM finds it gone).
        self.daemon.stop();
    }

    /// Writes the config and runs the binary expecting it to exit (a refused config);
    /// returns its exit code and output. Panics if it is still running after 30 s.
    pub fn run_to_exit(config: &CrimuxConfig) -> (i32, String) {
        std::fs::create_dir_all(&config.dir).expect("create crimux dir");
        let config_path = config.dir.join("crimux.toml");
        std::fs::write(&config_path, config.to_toml()).expect("write crimux config");
        let mut child = std::process::Command::new(binary())
            .args(["--config", &config_path.to_string_lossy()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start crimux");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait for crimux") {
                let out = child.wait_with_output().expect("crimux output");
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                return (status.code().unwrap_or(-1), text);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().expect("crimux output");
                panic!(
                    "crimux still running after 30 s; output:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts crimux again with the same config (root, socket, log file), after
    /// [`Crimux::kill`] or [`Crimux::stop`].
    pub async fn restart(&mut self) {
        self.daemon.stop();
        *self = Crimux::start(self.config.clone()).await;
    }

    pub async fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(connect(&self.socket()).await)
    }

    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(connect(&self.socket()).await)
    }

    /// PodSandboxStatus of pod `id` (not verbose): its status, if the answer carries one.
    pub async fn pod_status(&self, id: &str) -> Result<Option<PodSandboxStatus>, tonic::Status> {
        self.runtime()
            .await
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.to_string(),
                verbose: false,
            })
            .await
            .map(|r| r.into_inner().status)
    }

    /// `(image id, repo tags, pinned)` of every image this crimux lists.
    pub async fn listed_images(&self) -> Vec<(String, Vec<String>, bool)> {
        self.images()
            .await
            .list_images(ListImagesRequest { filter: None })
            .await
            .expect("ListImages")
            .into_inner()
            .images
            .into_iter()
            .map(|i| (i.id, i.repo_tags, i.pinned))
            .collect()
    }
}

/// The crimux binary under test: `$CRIMUX_BIN` if set, else the one cargo built for the tests.
pub fn binary() -> String {
    std::env::var("CRIMUX_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_crimux").to_string())
}

/// A gRPC channel over a unix socket. Calls time out after 120 s so a hung RPC fails the test
/// instead of hanging CI.
pub async fn connect(socket: &Path) -> Channel {
    try_connect(socket).await.unwrap_or_else(|e| panic!("{e}"))
}

pub async fn try_connect(socket: &Path) -> Result<Channel, String> {
    let path = socket.to_path_buf();
    Endpoint::from_static("http://crimux.invalid")
        .timeout(Duration::from_secs(120))
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| format!("connect to {}: {e}", socket.display()))
}
