//! Command line: the scenario to run and its knobs. Parsing is pure and unit-tested.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};

/// Measures CRI RuntimeService latencies against any CRI endpoint (crimux, or containerd's
/// own CRI plugin for comparison), or the same container cycle straight through containerd's
/// API (`floor`: what no CRI layer can beat).
#[derive(Debug, Parser)]
#[command(name = "crimux-bench", version)]
pub struct Cli {
    /// The CRI socket, e.g. unix:///run/crimux/crimux.sock (all modes but `floor`).
    #[arg(long, global = true, env = "CRIMUX_BENCH_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Also write the percentiles to this file as JSON.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// Cycles (or list iterations) to measure.
    #[arg(long, global = true, default_value_t = 50)]
    pub n: usize,
    /// Cycles run at once.
    #[arg(long, global = true, default_value_t = 1)]
    pub concurrency: usize,
    /// The container image (pulled before timing starts).
    #[arg(
        long,
        global = true,
        default_value = "docker.io/library/busybox:latest"
    )]
    pub image: String,
    /// A pod sandbox image to pull before timing starts, so the first pod does not pay for
    /// it; it must be the one the runtime is configured with.
    #[arg(long, global = true)]
    pub pause_image: Option<String>,
    /// Seconds StopContainer gives the container before SIGKILL (0 = kill at once).
    #[arg(long, global = true, default_value_t = 0)]
    pub stop_timeout: i64,
    /// RuntimeClass handlers the pods are spread over, round-robin (comma-separated; an
    /// empty name is the default handler): `--runtime-handler wsl2` puts every pod on the
    /// backend serving wsl2, `--runtime-handler ,wsl2` half on each.
    #[arg(long = "runtime-handler", global = true, value_delimiter = ',')]
    pub runtime_handlers: Vec<String>,
    #[command(subcommand)]
    pub mode: Mode,
}

#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum Mode {
    /// RunPodSandbox, CreateContainer, StartContainer, StopContainer, RemoveContainer,
    /// StopPodSandbox, RemovePodSandbox, per cycle.
    PodCycle,
    /// Within one pod per worker: CreateContainer, StartContainer, StopContainer,
    /// RemoveContainer, per cycle.
    ContainerCycle,
    /// With --pods M pods present (one container each), ListPodSandbox + ListContainers per
    /// iteration.
    Relist(RelistArgs),
    /// The container cycle through containerd's own API: snapshot + container, task
    /// create/start/kill/wait/delete, container + snapshot removal. The image must already
    /// be pulled and unpacked in the namespace (e.g. by a PullImage through crimux).
    Floor(FloorArgs),
    /// Exec streaming: `head -c --bytes /dev/zero` through exec stdout (MB/s), and a 1-byte
    /// round trip through an open `cat` session next to ExecSync `echo x` (--n each).
    Stream(StreamArgs),
}

#[derive(Debug, Args, PartialEq, Eq)]
pub struct RelistArgs {
    /// Pods present while listing.
    #[arg(long, default_value_t = 20)]
    pub pods: usize,
    /// Only ListContainers per iteration (its throughput), not ListPodSandbox too.
    #[arg(long)]
    pub containers_only: bool,
}

#[derive(Debug, Args, PartialEq, Eq)]
pub struct StreamArgs {
    /// Bytes per throughput run.
    #[arg(long, default_value_t = 104_857_600)]
    pub bytes: u64,
    /// Throughput runs (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub throughput_runs: usize,
    /// The client sends SPDY WINDOW_UPDATEs (kubelet and crictl do not).
    #[arg(long)]
    pub window_updates: bool,
}

#[derive(Debug, Args, PartialEq, Eq)]
pub struct FloorArgs {
    /// containerd's socket, e.g. unix:///run/containerd/containerd.sock.
    #[arg(long)]
    pub containerd: String,
    #[arg(long, default_value = "k8s.io")]
    pub namespace: String,
    #[arg(long, default_value = "overlayfs")]
    pub snapshotter: String,
}

impl Cli {
    /// Checks what clap cannot express: counts are positive, the endpoint is set where needed.
    pub fn validate(&self) -> Result<()> {
        if self.n == 0 {
            bail!("--n must be at least 1");
        }
        if self.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        if self.stop_timeout < 0 {
            bail!("--stop-timeout must not be negative");
        }
        match &self.mode {
            Mode::Floor(f) => {
                socket_path(&f.containerd)?;
            }
            mode => {
                let Some(endpoint) = &self.endpoint else {
                    bail!("--endpoint is required for {}", self.mode_name());
                };
                socket_path(endpoint)?;
                if let Mode::Relist(r) = mode {
                    if r.pods == 0 {
                        bail!("--pods must be at least 1");
                    }
                }
            }
        }
        Ok(())
    }

    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            Mode::PodCycle => "pod-cycle",
            Mode::ContainerCycle => "container-cycle",
            Mode::Relist(_) => "relist",
            Mode::Floor(_) => "floor",
            Mode::Stream(_) => "stream",
        }
    }

    pub fn pods(&self) -> usize {
        match &self.mode {
            Mode::Relist(r) => r.pods,
            _ => 0,
        }
    }
}

/// The socket path of a `unix://` endpoint (a bare absolute path is accepted too).
pub fn socket_path(endpoint: &str) -> Result<PathBuf> {
    let path = match endpoint.strip_prefix("unix://") {
        Some(path) => path,
        None if endpoint.starts_with('/') => endpoint,
        None => bail!("endpoint {endpoint:?}: only unix:// sockets are supported"),
    };
    if !path.starts_with('/') {
        bail!("endpoint {endpoint:?}: the socket path must be absolute");
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli> {
        let cli = Cli::try_parse_from(std::iter::once("crimux-bench").chain(args.iter().copied()))?;
        cli.validate()?;
        Ok(cli)
    }

    #[test]
    fn modes_and_defaults() {
        let cli = parse(&["--endpoint", "unix:///run/c.sock", "pod-cycle"]).expect("parse");
        assert_eq!(cli.mode, Mode::PodCycle);
        assert_eq!((cli.n, cli.concurrency, cli.stop_timeout), (50, 1, 0));
        assert_eq!(cli.image, "docker.io/library/busybox:latest");
        assert_eq!(cli.mode_name(), "pod-cycle");

        // Global options go before or after the mode.
        let cli = parse(&[
            "container-cycle",
            "--endpoint",
            "/run/c.sock",
            "--n",
            "7",
            "--concurrency",
            "3",
            "--json",
            "/tmp/o.json",
            "--image",
            "reg/busybox:1",
            "--pause-image",
            "reg/pause:1",
        ])
        .expect("parse");
        assert_eq!(cli.mode, Mode::ContainerCycle);
        assert_eq!((cli.n, cli.concurrency), (7, 3));
        assert_eq!(cli.json, Some(PathBuf::from("/tmp/o.json")));
        assert_eq!(cli.pause_image.as_deref(), Some("reg/pause:1"));

        let cli = parse(&["--endpoint", "unix:///s", "relist", "--pods", "5"]).expect("parse");
        assert_eq!(
            cli.mode,
            Mode::Relist(RelistArgs {
                pods: 5,
                containers_only: false
            })
        );
        assert!(cli.runtime_handlers.is_empty());
        assert_eq!(cli.pods(), 5);
        let cli = parse(&[
            "--endpoint",
            "unix:///s",
            "--runtime-handler",
            ",wsl2",
            "relist",
            "--containers-only",
        ])
        .expect("parse");
        assert_eq!(cli.runtime_handlers, vec![String::new(), "wsl2".into()]);
        assert!(matches!(
            cli.mode,
            Mode::Relist(RelistArgs {
                containers_only: true,
                ..
            })
        ));

        let cli = parse(&[
            "floor",
            "--containerd",
            "unix:///c.sock",
            "--namespace",
            "ns",
        ])
        .expect("parse");
        assert_eq!(
            cli.mode,
            Mode::Floor(FloorArgs {
                containerd: "unix:///c.sock".into(),
                namespace: "ns".into(),
                snapshotter: "overlayfs".into(),
            })
        );
    }

    #[test]
    fn bad_arguments() {
        let cases: &[(&[&str], &str)] = &[
            (&["pod-cycle"], "--endpoint is required"),
            (
                &["--endpoint", "tcp://1.2.3.4:5", "pod-cycle"],
                "only unix://",
            ),
            (
                &["--endpoint", "unix://rel.sock", "pod-cycle"],
                "must be absolute",
            ),
            (
                &["--endpoint", "/s", "--n", "0", "pod-cycle"],
                "--n must be at least 1",
            ),
            (
                &["--endpoint", "/s", "--concurrency", "0", "relist"],
                "--concurrency",
            ),
            (&["--endpoint", "/s", "relist", "--pods", "0"], "--pods"),
            (
                &["--endpoint", "/s", "--n", "many", "pod-cycle"],
                "invalid value",
            ),
            (&["--endpoint", "/s", "bogus"], "unrecognized subcommand"),
            (&["floor"], "--containerd"),
            (&[], "Usage"),
        ];
        for (args, want) in cases {
            let err = parse(args).expect_err(&format!("{args:?} parsed"));
            assert!(err.to_string().contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn socket_paths() {
        assert_eq!(
            socket_path("unix:///a/b.sock").expect("ok"),
            PathBuf::from("/a/b.sock")
        );
        assert_eq!(
            socket_path("/a/b.sock").expect("ok"),
            PathBuf::from("/a/b.sock")
        );
        assert!(socket_path("npipe:////./pipe/x").is_err());
    }
}
