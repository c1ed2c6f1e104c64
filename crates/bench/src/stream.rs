//! The `stream` scenario: what the streaming server costs, against the ExecSync path.
//!
//! In one pod with a sleeping busybox container:
//! - throughput: `head -c BYTES /dev/zero` through an Exec session's stdout (SPDY/3.1 as
//!   kubelet speaks it), from the Exec RPC to the exit status, `--throughput-runs` times;
//! - latency: a 1-byte round trip through an open interactive `cat` session (`--n` times),
//!   next to ExecSync `echo x` and a fresh Exec session running `echo x` (RPC, upgrade,
//!   streams, exit status).
//!
//! The pod is removed whatever happens.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use crimux_streaming::client::{self, ExecOptions, SpdyConfig};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ExecRequest, ExecSyncRequest,
    ImageSpec, LinuxContainerConfig, LinuxPodSandboxConfig, PodSandboxConfig, PodSandboxMetadata,
    PullImageRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
    StopPodSandboxRequest,
};
use tonic::transport::Channel;

use crate::cli::{Cli, StreamArgs};
use crate::stats::Samples;

/// Operation names in the samples table.
pub const THROUGHPUT: &str = "exec-stdout-throughput";
pub const STREAM_RTT: &str = "stream-rtt-1B";
pub const EXEC_SYNC: &str = "ExecSync-echo";
pub const EXEC_STREAM: &str = "Exec+stream-echo";

/// Runs the scenario; the samples table holds every timed operation.
pub async fn run(cli: &Cli, args: &StreamArgs) -> Result<Samples> {
    let endpoint = cli
        .endpoint
        .as_deref()
        .ok_or_else(|| anyhow!("--endpoint is required"))?;
    let channel = crate::cri::connect(endpoint).await?;
    pull(channel.clone(), &cli.image).await?;
    if let Some(pause) = &cli.pause_image {
        pull(channel.clone(), pause).await?;
    }
    let mut rt = RuntimeServiceClient::new(channel);
    let run = format!("{:08x}", rand::random::<u32>());
    let log_dir = std::env::temp_dir().join(format!("crimux-bench-stream-{run}"));
    let pod = pod_config(&run, &log_dir.display().to_string());
    let pod_id = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod.clone()),
            runtime_handler: String::new(),
        })
        .await
        .map_err(|s| anyhow!("RunPodSandbox: {}", s.message()))?
        .into_inner()
        .pod_sandbox_id;
    let result = measure(cli, args, &mut rt, &pod_id, &pod).await;
    let stop = rt
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await;
    let remove = rt
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id,
        })
        .await;
    let _ = std::fs::remove_dir_all(&log_dir);
    let samples = result?;
    stop.map_err(|s| anyhow!("StopPodSandbox: {}", s.message()))?;
    remove.map_err(|s| anyhow!("RemovePodSandbox: {}", s.message()))?;
    Ok(samples)
}

async fn measure(
    cli: &Cli,
    args: &StreamArgs,
    rt: &mut RuntimeServiceClient<Channel>,
    pod_id: &str,
    pod: &PodSandboxConfig,
) -> Result<Samples> {
    let id = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod_id.to_string(),
            config: Some(container_config(&cli.image)),
            sandbox_config: Some(pod.clone()),
        })
        .await
        .map_err(|s| anyhow!("CreateContainer: {}", s.message()))?
        .into_inner()
        .container_id;
    rt.start_container(StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .map_err(|s| anyhow!("StartContainer: {}", s.message()))?;
    let spdy = SpdyConfig {
        window_updates: args.window_updates,
    };
    let mut s = Samples::default();

    let mut rates = Vec::new();
    for _ in 0..args.throughput_runs {
        let took = throughput(rt, &id, args.bytes, spdy).await?;
        s.record(THROUGHPUT, took);
        rates.push(args.bytes as f64 / 1e6 / took.as_secs_f64().max(f64::EPSILON));
    }
    rates.sort_by(f64::total_cmp);
    if let Some(median) = rates.get(rates.len() / 2) {
        eprintln!(
            "crimux-bench: exec stdout throughput of {} bytes: median {median:.1} MB/s \
             (runs: {})",
            args.bytes,
            rates
                .iter()
                .map(|r| format!("{r:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let url = exec_url(rt, &id, &["cat"], true, false).await?;
    let opts = ExecOptions {
        stdin: true,
        stdout: true,
        stderr: false,
        spdy,
        ..Default::default()
    };
    let mut session = within(30, "cat session", client::exec(&url, opts)).await?;
    for _ in 0..cli.n {
        let start = Instant::now();
        session.write_stdin(b"x").await?;
        match within(10, "echo of 1 byte", session.read_stdout()).await? {
            Some(chunk) if chunk.as_ref() == b"x" => {}
            other => bail!("cat echoed {other:?} instead of one byte"),
        }
        s.record(STREAM_RTT, start.elapsed());
    }
    session.close_stdin().await?;
    let code = within(30, "cat exit after stdin closed", session.wait()).await?;
    if code != 0 {
        bail!("cat exited {code}");
    }

    for _ in 0..cli.n {
        let start = Instant::now();
        let out = rt
            .exec_sync(ExecSyncRequest {
                container_id: id.clone(),
                cmd: vec!["echo".into(), "x".into()],
                timeout: 30,
            })
            .await
            .map_err(|s| anyhow!("ExecSync: {}", s.message()))?
            .into_inner();
        s.record(EXEC_SYNC, start.elapsed());
        if out.stdout != b"x\n" || out.exit_code != 0 {
            bail!("ExecSync echo x: {:?} exit {}", out.stdout, out.exit_code);
        }
    }

    for _ in 0..cli.n {
        let start = Instant::now();
        let url = exec_url(rt, &id, &["echo", "x"], false, true).await?;
        let opts = ExecOptions {
            spdy,
            ..Default::default()
        };
        let out = within(30, "Exec echo x", async {
            client::exec(&url, opts).await?.output().await
        })
        .await?;
        s.record(EXEC_STREAM, start.elapsed());
        if out.stdout != b"x\n" || out.exit_code != 0 {
            bail!("Exec echo x: {:?} exit {}", out.stdout, out.exit_code);
        }
    }
    Ok(s)
}

/// One `head -c bytes /dev/zero` through exec stdout, timed from the Exec RPC to the exit.
async fn throughput(
    rt: &mut RuntimeServiceClient<Channel>,
    id: &str,
    bytes: u64,
    spdy: SpdyConfig,
) -> Result<Duration> {
    let start = Instant::now();
    let count = bytes.to_string();
    let url = exec_url(rt, id, &["head", "-c", &count, "/dev/zero"], false, false).await?;
    let opts = ExecOptions {
        stdout: true,
        stderr: false,
        spdy,
        ..Default::default()
    };
    let (got, code) = within(600, "throughput run", async {
        let mut session = client::exec(&url, opts).await?;
        let mut got = 0u64;
        while let Some(chunk) = session.read_stdout().await? {
            got += chunk.len() as u64;
        }
        Ok((got, session.wait().await?))
    })
    .await?;
    let took = start.elapsed();
    if got != bytes || code != 0 {
        bail!("head -c {bytes}: {got} bytes, exit {code}");
    }
    Ok(took)
}

/// `fut`, or an error naming `what` after `secs` seconds: a stuck session fails the run.
async fn within<T>(
    secs: u64,
    what: &str,
    fut: impl std::future::Future<Output = std::result::Result<T, crimux_core::Error>>,
) -> Result<T> {
    Ok(tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .map_err(|_| anyhow!("{what}: no progress within {secs} s"))??)
}

async fn exec_url(
    rt: &mut RuntimeServiceClient<Channel>,
    id: &str,
    cmd: &[&str],
    stdin: bool,
    stderr: bool,
) -> Result<String> {
    Ok(rt
        .exec(ExecRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|c| c.to_string()).collect(),
            tty: false,
            stdin,
            stdout: true,
            stderr,
        })
        .await
        .map_err(|s| anyhow!("Exec {cmd:?}: {}", s.message()))?
        .into_inner()
        .url)
}

async fn pull(channel: Channel, image: &str) -> Result<()> {
    ImageServiceClient::new(channel)
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow!("PullImage {image}: {}", s.message()))?;
    Ok(())
}

fn pod_config(run: &str, log_dir: &str) -> PodSandboxConfig {
    let name = format!("bench-stream-{run}");
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.clone(),
            uid: format!("{run}-stream"),
            namespace: "crimux-bench".to_string(),
            attempt: 0,
        }),
        hostname: name,
        log_directory: log_dir.to_string(),
        labels: HashMap::from([("crimux-bench".to_string(), run.to_string())]),
        linux: Some(LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

fn container_config(image: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "stream".to_string(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.to_string(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "3600".into()],
        log_path: "stream.log".to_string(),
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Mode, StreamArgs};

    #[test]
    fn stream_arguments() {
        let cli = Cli::try_parse_from(["crimux-bench", "--endpoint", "/s", "--n", "9", "stream"])
            .expect("parse");
        cli.validate().expect("valid");
        assert_eq!(cli.mode_name(), "stream");
        assert_eq!(
            cli.mode,
            Mode::Stream(StreamArgs {
                bytes: 104_857_600,
                throughput_runs: 5,
                window_updates: false
            })
        );
        let cli = Cli::try_parse_from([
            "crimux-bench",
            "stream",
            "--bytes",
            "1000",
            "--throughput-runs",
            "2",
            "--window-updates",
        ])
        .expect("parse");
        assert!(cli.validate().is_err(), "stream needs --endpoint");
        assert!(matches!(
            cli.mode,
            Mode::Stream(StreamArgs {
                bytes: 1000,
                throughput_runs: 2,
                window_updates: true
            })
        ));
    }
}
