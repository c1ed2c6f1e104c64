//! The CRI scenarios: pod-cycle, container-cycle and relist, over any CRI endpoint.
//!
//! Every worker owns a client clone and takes cycle numbers from a shared counter until `n`
//! cycles are done. A failed call ends the run with the call's status; what the cycle had
//! created is removed first (best effort), so a failed run leaves no pods behind.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec, LinuxContainerConfig,
    LinuxPodSandboxConfig, ListContainersRequest, ListPodSandboxRequest, PodSandboxConfig,
    PodSandboxMetadata, PullImageRequest, RemoveContainerRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
    VersionRequest,
};
use tonic::transport::{Channel, Endpoint};

use crate::cli::{socket_path, Cli, Mode};
use crate::stats::{Samples, CYCLE};

/// A channel to a CRI unix socket; fails when nothing answers Version within 10 s.
pub async fn connect(endpoint: &str) -> Result<Channel> {
    let path = socket_path(endpoint)?;
    let dial = path.clone();
    let channel = Endpoint::from_static("http://cri.invalid")
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(300))
        .connect_with_connector(tower::service_fn(move |_| {
            let path = dial.clone();
            async move { dial_socket(&path).await }
        }))
        .await
        .with_context(|| format!("cannot connect to {}", path.display()))?;
    let version = tokio::time::timeout(
        Duration::from_secs(10),
        RuntimeServiceClient::new(channel.clone()).version(VersionRequest::default()),
    )
    .await
    .map_err(|_| anyhow!("{}: no answer to Version within 10 s", path.display()))?
    .with_context(|| format!("{}: Version", path.display()))?;
    let v = version.into_inner();
    eprintln!(
        "crimux-bench: {} {} (CRI {})",
        v.runtime_name, v.runtime_version, v.runtime_api_version
    );
    Ok(channel)
}

/// Everything a scenario needs: the client, the knobs, a run-unique name prefix.
#[derive(Clone)]
struct Bench {
    rt: RuntimeServiceClient<Channel>,
    image: String,
    stop_timeout: i64,
    run: String,
    log_dir: String,
    /// RuntimeClass handlers pods are spread over (never empty: `[""]` by default).
    handlers: Vec<String>,
}

/// Times `call`, recording it as `op`.
async fn timed<T, F>(samples: &mut Samples, op: &str, call: F) -> Result<T>
where
    F: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
{
    let start = Instant::now();
    let out = call.await;
    samples.record(op, start.elapsed());
    out.map(tonic::Response::into_inner)
        .map_err(|s| anyhow!("{op}: {} ({:?})", s.message(), s.code()))
}

impl Bench {
    fn pod_config(&self, name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.to_string(),
                uid: format!("{}-{name}", self.run),
                namespace: "crimux-bench".to_string(),
                attempt: 0,
            }),
            hostname: name.chars().take(63).collect(),
            log_directory: format!("{}/{name}", self.log_dir),
            labels: HashMap::from([("crimux-bench".to_string(), self.run.clone())]),
            linux: Some(LinuxPodSandboxConfig::default()),
            ..Default::default()
        }
    }

    fn container_config(&self, name: &str) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.to_string(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: self.image.clone(),
                ..Default::default()
            }),
            command: vec!["sleep".into(), "3600".into()],
            log_path: format!("{name}.log"),
            labels: HashMap::from([("crimux-bench".to_string(), self.run.clone())]),
            linux: Some(LinuxContainerConfig::default()),
            ..Default::default()
        }
    }

    /// The handler of the `i`th pod: round-robin over `--runtime-handler`.
    fn handler(&self, i: usize) -> String {
        self.handlers
            .get(i % self.handlers.len().max(1))
            .cloned()
            .unwrap_or_default()
    }

    async fn run_pod(
        &mut self,
        s: &mut Samples,
        pod: &PodSandboxConfig,
        handler: String,
    ) -> Result<String> {
        let req = RunPodSandboxRequest {
            config: Some(pod.clone()),
            runtime_handler: handler,
        };
        Ok(timed(s, "RunPodSandbox", self.rt.run_pod_sandbox(req))
            .await?
            .pod_sandbox_id)
    }

    async fn remove_pod(&mut self, s: &mut Samples, id: &str) -> Result<()> {
        let stop = StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        timed(s, "StopPodSandbox", self.rt.stop_pod_sandbox(stop)).await?;
        let remove = RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        timed(s, "RemovePodSandbox", self.rt.remove_pod_sandbox(remove)).await?;
        Ok(())
    }

    /// Create, start, stop, remove one container in `pod_id`.
    async fn container_cycle(
        &mut self,
        s: &mut Samples,
        pod_id: &str,
        pod: &PodSandboxConfig,
        name: &str,
    ) -> Result<()> {
        let create = CreateContainerRequest {
            pod_sandbox_id: pod_id.to_string(),
            config: Some(self.container_config(name)),
            sandbox_config: Some(pod.clone()),
        };
        let id = timed(s, "CreateContainer", self.rt.create_container(create))
            .await?
            .container_id;
        let result = self.start_stop(s, &id).await;
        let remove = RemoveContainerRequest {
            container_id: id.clone(),
        };
        let removed = timed(s, "RemoveContainer", self.rt.remove_container(remove)).await;
        result.and(removed.map(|_| ()))
    }

    async fn start_stop(&mut self, s: &mut Samples, id: &str) -> Result<()> {
        let start = StartContainerRequest {
            container_id: id.to_string(),
        };
        timed(s, "StartContainer", self.rt.start_container(start)).await?;
        let stop = StopContainerRequest {
            container_id: id.to_string(),
            timeout: self.stop_timeout,
        };
        timed(s, "StopContainer", self.rt.stop_container(stop)).await?;
        Ok(())
    }

    /// The whole pod cycle; on failure the pod is removed anyway.
    async fn pod_cycle(&mut self, s: &mut Samples, i: usize) -> Result<()> {
        let name = format!("bench-{}-{i}", self.run);
        let pod = self.pod_config(&name);
        let pod_id = self.run_pod(s, &pod, self.handler(i)).await?;
        let result = self.container_cycle(s, &pod_id, &pod, "c").await;
        let removed = self.remove_pod(s, &pod_id).await;
        result.and(removed)
    }

    async fn pull(&self, channel: Channel, image: &str) -> Result<()> {
        let req = PullImageRequest {
            image: Some(ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        };
        ImageServiceClient::new(channel)
            .pull_image(req)
            .await
            .map_err(|s| anyhow!("PullImage {image}: {}", s.message()))?;
        Ok(())
    }
}

/// Runs `worker` on `concurrency` tasks until `n` cycles are done; merges their samples.
async fn spread<F, Fut>(n: usize, concurrency: usize, worker: F) -> Result<Samples>
where
    F: Fn(Arc<AtomicUsize>) -> Fut,
    Fut: std::future::Future<Output = Result<Samples>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(n) {
        tasks.spawn(worker(next.clone()));
    }
    let mut all = Samples::default();
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        match done.map_err(|e| anyhow!("worker: {e}")).and_then(|r| r) {
            Ok(samples) => all.merge(samples),
            Err(e) => {
                next.store(n, Ordering::SeqCst);
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(all),
    }
}

fn claim(next: &AtomicUsize, n: usize) -> Option<usize> {
    let i = next.fetch_add(1, Ordering::SeqCst);
    (i < n).then_some(i)
}

/// Runs the CRI scenario `cli.mode` and returns its samples.
pub async fn run(cli: &Cli) -> Result<Samples> {
    let endpoint = cli
        .endpoint
        .as_deref()
        .ok_or_else(|| anyhow!("--endpoint is required"))?;
    let channel = connect(endpoint).await?;
    let run = format!("{:08x}", rand::random::<u32>());
    let log_dir = std::env::temp_dir().join(format!("crimux-bench-{run}"));
    let bench = Bench {
        rt: RuntimeServiceClient::new(channel.clone()),
        image: cli.image.clone(),
        stop_timeout: cli.stop_timeout,
        run,
        log_dir: log_dir.display().to_string(),
        handlers: if cli.runtime_handlers.is_empty() {
            vec![String::new()]
        } else {
            cli.runtime_handlers.clone()
        },
    };
    bench.pull(channel.clone(), &cli.image).await?;
    if let Some(pause) = &cli.pause_image {
        bench.pull(channel, pause).await?;
    }
    let (n, concurrency) = (cli.n, cli.concurrency);
    let result = match &cli.mode {
        Mode::PodCycle => {
            spread(n, concurrency, |next| {
                let mut b = bench.clone();
                async move {
                    let mut s = Samples::default();
                    while let Some(i) = claim(&next, n) {
                        let start = Instant::now();
                        b.pod_cycle(&mut s, i).await?;
                        s.record(CYCLE, start.elapsed());
                    }
                    Ok(s)
                }
            })
            .await
        }
        Mode::ContainerCycle => {
            let worker_no = Arc::new(AtomicUsize::new(0));
            spread(n, concurrency, |next| {
                let mut b = bench.clone();
                let w = worker_no.fetch_add(1, Ordering::SeqCst);
                async move {
                    // The worker's pod is set-up, not measured.
                    let mut setup = Samples::default();
                    let name = format!("bench-{}-w{w}", b.run);
                    let pod = b.pod_config(&name);
                    let pod_id = b.run_pod(&mut setup, &pod, b.handler(w)).await?;
                    let mut s = Samples::default();
                    let mut result = Ok(());
                    while let Some(i) = claim(&next, n) {
                        let start = Instant::now();
                        result = b
                            .container_cycle(&mut s, &pod_id, &pod, &format!("c{i}"))
                            .await;
                        if result.is_err() {
                            break;
                        }
                        s.record(CYCLE, start.elapsed());
                    }
                    let removed = b.remove_pod(&mut setup, &pod_id).await;
                    result.and(removed).map(|_| s)
                }
            })
            .await
        }
        Mode::Relist(r) => relist(&bench, n, concurrency, r.pods, r.containers_only).await,
        Mode::Floor(_) | Mode::Stream(_) => Err(anyhow!("not a CRI cycle scenario")),
    };
    let _ = std::fs::remove_dir_all(Path::new(&bench.log_dir));
    result
}

/// The op under which relist records the wall time of its whole list loop, from which the
/// list throughput is `n / LIST_LOOP`.
pub const LIST_LOOP: &str = "list-loop";

/// Sets up `pods` pods with a running container each (spread over the handlers), lists `n`
/// times, removes them.
async fn relist(
    bench: &Bench,
    n: usize,
    concurrency: usize,
    pods: usize,
    containers_only: bool,
) -> Result<Samples> {
    let created = spread(pods, concurrency, |next| {
        let mut b = bench.clone();
        async move {
            let mut s = Samples::default();
            while let Some(i) = claim(&next, pods) {
                let pod = b.pod_config(&format!("bench-{}-{i}", b.run));
                let pod_id = b.run_pod(&mut s, &pod, b.handler(i)).await?;
                let create = CreateContainerRequest {
                    pod_sandbox_id: pod_id.clone(),
                    config: Some(b.container_config("c")),
                    sandbox_config: Some(pod),
                };
                let id = timed(&mut s, "CreateContainer", b.rt.create_container(create))
                    .await?
                    .container_id;
                let start = StartContainerRequest { container_id: id };
                timed(&mut s, "StartContainer", b.rt.start_container(start)).await?;
            }
            Ok(s)
        }
    })
    .await;
    let mut measured = Samples::default();
    let listed = match created {
        Ok(_) => {
            let start = Instant::now();
            let listed = list_loop(bench, n, concurrency, containers_only).await;
            let took = start.elapsed();
            if listed.is_ok() {
                eprintln!(
                    "crimux-bench: {n} list iterations with {pods} pods in {:.3} s: {:.0} \
                     iterations/s (concurrency {concurrency})",
                    took.as_secs_f64(),
                    n as f64 / took.as_secs_f64().max(f64::EPSILON)
                );
            }
            listed.map(|mut s| {
                s.record(LIST_LOOP, took);
                s
            })
        }
        Err(e) => Err(e),
    };
    // Tear down every pod of this run, whatever happened.
    let mut b = bench.clone();
    let mut rt = b.rt.clone();
    let mine = rt
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .map_err(|s| anyhow!("ListPodSandbox: {}", s.message()))?
        .into_inner()
        .items
        .into_iter()
        .filter(|p| p.labels.get("crimux-bench") == Some(&bench.run));
    let mut teardown = Samples::default();
    for pod in mine {
        b.remove_pod(&mut teardown, &pod.id).await?;
    }
    measured.merge(listed?);
    Ok(measured)
}

async fn list_loop(
    bench: &Bench,
    n: usize,
    concurrency: usize,
    containers_only: bool,
) -> Result<Samples> {
    spread(n, concurrency, |next| {
        let mut rt = bench.rt.clone();
        async move {
            let mut s = Samples::default();
            while claim(&next, n).is_some() {
                let start = Instant::now();
                if !containers_only {
                    let pods = ListPodSandboxRequest::default();
                    timed(&mut s, "ListPodSandbox", rt.list_pod_sandbox(pods)).await?;
                }
                let containers = ListContainersRequest::default();
                timed(&mut s, "ListContainers", rt.list_containers(containers)).await?;
                s.record(CYCLE, start.elapsed());
            }
            Ok(s)
        }
    })
    .await
}

/// Connects to a CRI unix socket.
#[cfg(unix)]
async fn dial_socket(
    path: &std::path::Path,
) -> std::io::Result<hyper_util::rt::TokioIo<tokio::net::UnixStream>> {
    Ok(hyper_util::rt::TokioIo::new(
        tokio::net::UnixStream::connect(path).await?,
    ))
}

/// Connects to a CRI named pipe (`\\.\pipe\crimux`).
#[cfg(windows)]
async fn dial_socket(
    path: &std::path::Path,
) -> std::io::Result<hyper_util::rt::TokioIo<tokio::net::windows::named_pipe::NamedPipeClient>> {
    Ok(hyper_util::rt::TokioIo::new(
        tokio::net::windows::named_pipe::ClientOptions::new().open(path)?,
    ))
}
