//! The integration-test harness: real daemons (containerd, a local registry, crimux itself)
//! started per test or per test binary, and helpers to check containerd's own state.
//!
//! A test that needs a daemon fails loudly when it is not installed; nothing is skipped.
//! Every test gets its own containerd, crimux and certs.d, so tests run in parallel; the two
//! registries (anonymous and password-protected) are shared per test binary, read-only.
#![allow(dead_code, unused_imports)]

pub mod certs;
pub mod containerd;
pub mod crimux;
pub mod leaks;
pub mod process;
pub mod registry;
pub mod runtime;
pub mod streaming;
pub mod test_images;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::{ImageSpec, PodSandboxConfig, PullImageRequest};
use tempfile::TempDir;
use tonic::transport::Channel;

pub use self::containerd::{Containerd, ContainerdClient};
pub use self::crimux::{Crimux, CrimuxConfig};
pub use self::registry::Registry;
pub use self::test_images::{test_images, TestImage};

/// The containerd namespace the default backend uses.
pub const NS: &str = "k8s.io";

/// One test's world: its own containerd and crimux, a certs.d naming both shared registries
/// (and mirroring docker.io to the anonymous one). Dropped in field order: crimux first.
pub struct TestEnv {
    pub crimux: Crimux,
    pub containerd: Containerd,
    pub registry: &'static Registry,
    pub auth_registry: &'static Registry,
    pub dir: TempDir,
}

impl TestEnv {
    pub async fn start() -> TestEnv {
        TestEnv::start_with(|_| {}).await
    }

    /// Like [`TestEnv::start`], letting the test adjust crimux's config first.
    pub async fn start_with(adjust: impl FnOnce(&mut CrimuxConfig)) -> TestEnv {
        let (registry, auth_registry) = Registry::shared_pair();
        let dir = tempfile::Builder::new()
            .prefix("crimux-")
            .tempdir()
            .expect("create test dir");
        let certs_d = dir.path().join("certs.d");
        registry.write_hosts(&certs_d);
        registry.write_docker_io_mirror(&certs_d);
        auth_registry.write_hosts(&certs_d);
        let containerd = Containerd::start().await;
        let mut config = CrimuxConfig::new(&dir.path().join("crimux"), &containerd.address());
        config.registry_config_path = Some(certs_d);
        adjust(&mut config);
        let crimux = Crimux::start(config).await;
        TestEnv {
            crimux,
            containerd,
            registry,
            auth_registry,
            dir,
        }
    }

    pub fn certs_d(&self) -> PathBuf {
        self.dir.path().join("certs.d")
    }

    pub async fn images(&self) -> ImageServiceClient<Channel> {
        self.crimux.images().await
    }

    pub async fn ctrd(&self) -> ContainerdClient {
        self.containerd.client().await
    }

    /// Pulls `image` (anonymously) and returns the image ref crimux answers with.
    pub async fn pull(&self, image: &str) -> Result<String, tonic::Status> {
        self.pull_for(image, None).await
    }

    /// Pulls `image` (anonymously), for `pod` when given (as kubelet does); the image ref.
    pub async fn pull_for(
        &self,
        image: &str,
        pod: Option<&PodSandboxConfig>,
    ) -> Result<String, tonic::Status> {
        let req = PullImageRequest {
            image: Some(spec(image)),
            auth: None,
            sandbox_config: pod.cloned(),
        };
        self.images()
            .await
            .pull_image(req)
            .await
            .map(|r| r.into_inner().image_ref)
    }

    /// Pulls `image` and panics (with crimux's log) if that fails.
    pub async fn pull_ok(&self, image: &str) -> String {
        match self.pull(image).await {
            Ok(id) => id,
            Err(status) => {
                self.crimux.dump_log();
                panic!("PullImage {image}: {status:?}");
            }
        }
    }

    /// Asserts that `ns` holds nothing a failed pull could have left: image records, leases,
    /// snapshots, content, ingests (waiting up to 15 s for containerd's GC).
    pub async fn assert_clean(&self, ns: &str) {
        let ctrd = self.ctrd().await;
        leaks::assert_nothing_left(
            &format!("namespace {ns} to be empty"),
            Duration::from_secs(15),
            || {
                let ctrd = ctrd.clone();
                async move { ctrd.leftovers(ns).await }
            },
        )
        .await;
    }
}

/// An `ImageSpec` naming `image`.
pub fn spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

/// Retries `check` every 100 ms until it returns Ok or `timeout` passes; then panics with
/// the last error. For state containerd settles asynchronously (GC after a delete).
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let err = match check().await {
            Ok(()) => return,
            Err(e) => e,
        };
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}: {err}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
