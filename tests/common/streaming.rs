//! Streaming harness: a [`PodEnv`] with one running busybox container, the Exec, Attach and
//! PortForward RPCs that hand out URLs, and the checks the streaming tests share (exec
//! processes left in a container, FIFOs left under crimux's root).

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crimux_streaming::client::{self, ExecOptions, Output};
use k8s_cri::v1::{AttachRequest, ExecRequest, PodSandboxConfig, PortForwardRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::eventually;
use super::runtime::PodEnv;

/// A [`PodEnv`] with busybox pulled.
pub async fn env() -> PodEnv {
    let p = PodEnv::start().await;
    p.env.pull_ok(&p.busybox).await;
    p
}

/// A pod with one long-running busybox container, ready for exec.
pub struct Pod {
    pub id: String,
    pub config: PodSandboxConfig,
    pub container: String,
}

/// Runs a pod named `name` with a container that sleeps for an hour.
pub async fn sleeping_pod(p: &PodEnv, name: &str) -> Pod {
    let config = p.pod_config(name);
    let id = p.run_pod(&config).await;
    let ctr = p.container_config("main", "exec sleep 3600");
    let container = p.create_start(&id, &config, &ctr).await;
    Pod {
        id,
        config,
        container,
    }
}

/// Which streams an Exec or Attach asks for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Streams {
    /// stdin, stdout and stderr, no tty.
    pub const PIPES: Streams = Streams {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    /// stdout and stderr only.
    pub const OUTPUT: Streams = Streams {
        stdin: false,
        stdout: true,
        stderr: true,
        tty: false,
    };
    /// stdin and stdout on a tty.
    pub const TTY: Streams = Streams {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: true,
    };

    /// The client options that open the same streams.
    pub fn options(self) -> ExecOptions {
        ExecOptions {
            stdin: self.stdin,
            stdout: self.stdout,
            stderr: self.stderr,
            tty: self.tty,
            ..Default::default()
        }
    }
}

/// The Exec RPC: the URL, or the RPC's status.
pub async fn exec_url(
    p: &PodEnv,
    container: &str,
    cmd: &[&str],
    s: Streams,
) -> Result<String, tonic::Status> {
    p.rt()
        .await
        .exec(ExecRequest {
            container_id: container.to_string(),
            cmd: cmd.iter().map(|c| c.to_string()).collect(),
            tty: s.tty,
            stdin: s.stdin,
            stdout: s.stdout,
            stderr: s.stderr,
        })
        .await
        .map(|r| r.into_inner().url)
}

/// The Attach RPC.
pub async fn attach_url(p: &PodEnv, container: &str, s: Streams) -> Result<String, tonic::Status> {
    p.rt()
        .await
        .attach(AttachRequest {
            container_id: container.to_string(),
            stdin: s.stdin,
            tty: s.tty,
            stdout: s.stdout,
            stderr: s.stderr,
        })
        .await
        .map(|r| r.into_inner().url)
}

/// The PortForward RPC.
pub async fn port_forward_url(
    p: &PodEnv,
    pod: &str,
    ports: &[i32],
) -> Result<String, tonic::Status> {
    p.rt()
        .await
        .port_forward(PortForwardRequest {
            pod_sandbox_id: pod.to_string(),
            port: ports.to_vec(),
        })
        .await
        .map(|r| r.into_inner().url)
}

/// `GET /index.html` over a forwarded connection; the response, read to its end within 10 s.
pub async fn http_get(fwd: &mut client::Forwarded) -> String {
    fwd.io
        .write_all(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")
        .await
        .expect("write request");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), fwd.io.read_to_end(&mut response))
        .await
        .expect("response within 10 s")
        .expect("read response");
    String::from_utf8_lossy(&response).into_owned()
}

/// Exec over SPDY: `input` written to stdin then closed (when given), everything read back.
pub async fn exec_output(
    p: &PodEnv,
    container: &str,
    cmd: &[&str],
    input: Option<&[u8]>,
) -> Output {
    let streams = Streams {
        stdin: input.is_some(),
        ..Streams::OUTPUT
    };
    let url = match exec_url(p, container, cmd, streams).await {
        Ok(url) => url,
        Err(status) => {
            p.env.crimux.dump_log();
            panic!("Exec {cmd:?}: {status:?}");
        }
    };
    let run = async {
        let mut session = client::exec(&url, streams.options()).await?;
        if let Some(input) = input {
            session.write_stdin(input).await?;
            session.close_stdin().await?;
        }
        session.output().await
    };
    // Generous: containerd's runc shim starts one exec at a time per container (it holds
    // its event lock across `runc exec`), so many parallel sessions on a loaded 2-core
    // machine queue for minutes. Speed is measured by the benchmarks, not asserted here.
    match tokio::time::timeout(Duration::from_secs(240), run).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            p.env.crimux.dump_log();
            panic!("exec session {cmd:?} at {url}: {e}");
        }
        Err(_) => {
            p.env.crimux.dump_log();
            panic!("exec session {cmd:?} at {url} did not finish within 240 s");
        }
    }
}

/// Reads stdout until it contains `needle` (or panics after `timeout`); what was read.
pub async fn read_until(session: &mut client::Session, needle: &str, timeout: Duration) -> String {
    let mut seen = String::new();
    let found = tokio::time::timeout(timeout, async {
        while !seen.contains(needle) {
            match session.read_stdout().await {
                Ok(Some(chunk)) => seen.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(None) => return false,
                Err(e) => {
                    seen.push_str(&format!("<error: {e}>"));
                    return false;
                }
            }
        }
        true
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "stdout never showed {needle:?}; got {seen:?}"
    );
    seen
}

/// The command lines of every process in the container (busybox `ps`), via ExecSync.
pub async fn processes(p: &PodEnv, container: &str) -> Vec<String> {
    p.sh(container, "ps -o args")
        .await
        .lines()
        .skip(1)
        .map(|l| l.trim().to_string())
        .collect()
}

/// Waits until no process in the container has `needle` in its command line.
pub async fn assert_no_process(p: &PodEnv, container: &str, needle: &str) {
    eventually(
        &format!("no process running {needle:?}"),
        Duration::from_secs(15),
        || async {
            let ps = processes(p, container).await;
            match ps.iter().find(|l| l.contains(needle)) {
                Some(l) => Err(format!("still running: {l:?} in {ps:?}")),
                None => Ok(()),
            }
        },
    )
    .await;
}

/// Every FIFO under `dir` (recursively, not following symlinks).
pub fn fifos_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                todo.push(e.path());
            } else if ft.is_fifo() {
                found.push(e.path());
            }
        }
    }
    found
}

/// The FIFOs under crimux's root now (a container's own stdio FIFOs may live there).
pub fn root_fifos(p: &PodEnv) -> Vec<PathBuf> {
    let mut all = fifos_under(&p.env.crimux.config().root());
    all.sort();
    all
}

/// Waits until crimux's root holds no FIFO beyond `baseline` (taken before the exec).
pub async fn assert_no_new_fifos(p: &PodEnv, baseline: &[PathBuf]) {
    eventually(
        "no new FIFO under crimux's root",
        Duration::from_secs(15),
        || async {
            let extra: Vec<PathBuf> = root_fifos(p)
                .into_iter()
                .filter(|f| !baseline.contains(f))
                .collect();
            match extra.is_empty() {
                true => Ok(()),
                false => Err(format!("FIFOs left: {extra:?}")),
            }
        },
    )
    .await;
}

/// The exec processes containerd knows for task `container` (ListPids; an exec process
/// shows up with its exec id in the process info, the init process without).
pub async fn task_pids(p: &PodEnv, container: &str) -> usize {
    use containerd_client::services::v1::tasks_client::TasksClient;
    use containerd_client::services::v1::ListPidsRequest;
    TasksClient::new(p.ctrd_channel().await)
        .list_pids(super::runtime::in_ns(ListPidsRequest {
            container_id: container.to_string(),
        }))
        .await
        .map(|r| r.into_inner().processes.len())
        .unwrap_or(0)
}
