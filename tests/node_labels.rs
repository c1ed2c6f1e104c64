//! `crimux node-labels` run as the real binary: from the configured `os` offline, and by
//! asking a real containerd (started by the harness) when `os` is not configured.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{crimux::binary, Containerd, NS};

/// Runs `crimux node-labels` with `config` (written into `dir`) and `extra` arguments,
/// with no CRIMUX_* from the environment.
fn node_labels(dir: &Path, config: &str, extra: &[&str]) -> Output {
    let path: PathBuf = dir.join("config.toml");
    std::fs::write(&path, config).expect("write config");
    let mut cmd = Command::new(binary());
    for var in [
        "CRIMUX_CONFIG",
        "CRIMUX_LISTEN",
        "CRIMUX_ROOT",
        "CRIMUX_LOG_LEVEL",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("--config")
        .arg(&path)
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--listen")
        .arg(dir.join("crimux.sock"))
        .arg("node-labels")
        .args(extra)
        .output()
        .expect("run crimux node-labels")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn backend(name: &str, address: &str, role: &str, os: Option<&str>) -> String {
    let mut toml = format!(
        "\n[[backend]]\nname = {name:?}\naddress = {address:?}\nnamespace = {NS:?}\nrole = {role:?}\n"
    );
    if let Some(os) = os {
        toml.push_str(&format!("os = {os:?}\n"));
    }
    toml
}

#[test]
fn offline_labels_come_from_the_configured_oses() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing listens on these addresses: offline never connects.
    let config = backend(
        "win",
        "unix:///nonexistent/win.sock",
        "primary",
        Some("windows"),
    ) + &backend(
        "wsl",
        "unix:///nonexistent/wsl.sock",
        "delegate",
        Some("linux"),
    ) + &backend(
        "wsl2",
        "unix:///nonexistent/wsl2.sock",
        "delegate",
        Some("linux"),
    );
    let out = node_labels(dir.path(), &config, &["--offline"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "crimux.io/os.linux=true,crimux.io/os.windows=true\n"
    );
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn offline_without_an_os_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = backend(
        "win",
        "unix:///nonexistent/win.sock",
        "primary",
        Some("windows"),
    ) + &backend("wsl", "unix:///nonexistent/wsl.sock", "delegate", None);
    let out = node_labels(dir.path(), &config, &["--offline"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("crimux: "), "{err}");
    assert!(
        err.contains("\"wsl\"") && err.contains("--offline"),
        "{err}"
    );
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn an_unreachable_containerd_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let address = format!("unix://{}", dir.path().join("nobody.sock").display());
    let config = backend("only", &address, "primary", None);
    let out = node_labels(dir.path(), &config, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("\"only\""), "names the backend: {err}");
}

#[tokio::test]
async fn discovery_asks_containerd_for_its_os() {
    let containerd = Containerd::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The primary is discovered (a Linux containerd); the delegate's os is configured.
    let config = backend("default", &containerd.address(), "primary", None)
        + &backend(
            "win",
            "unix:///nonexistent/win.sock",
            "delegate",
            Some("windows"),
        );
    let run = {
        let dir = dir.path().to_path_buf();
        move || node_labels(&dir, &config, &[])
    };
    let out = tokio::task::spawn_blocking(run).await.expect("join");
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "crimux.io/os.linux=true,crimux.io/os.windows=true\n"
    );

    let only = backend("default", &containerd.address(), "primary", None);
    let dir2 = tempfile::tempdir().expect("tempdir");
    let out = {
        let dir = dir2.path().to_path_buf();
        tokio::task::spawn_blocking(move || node_labels(&dir, &only, &[]))
            .await
            .expect("join")
    };
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "crimux.io/os.linux=true\n");
}
