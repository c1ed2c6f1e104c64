//! Running one CNI plugin binary once: the `CNI_*` environment, the config on stdin, the
//! result or the spec's error object on stdout, and a deadline.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crimux_core::{Error, Result};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::config::join_paths;

/// The spec's verbs crimux uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Add,
    Del,
    Check,
}

impl Command {
    fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
        }
    }
}

/// CNI error code 11: "try again later"; the only one that means the caller may retry.
const CODE_TRY_AGAIN_LATER: u64 = 11;

/// The runtime-side `CNI_*` variables, the same for every plugin of one list run.
#[derive(Clone, Debug)]
pub(crate) struct Invocation<'a> {
    pub command: Command,
    pub container_id: &'a str,
    /// Empty when the namespace is gone (allowed for DEL).
    pub netns: &'a str,
    pub ifname: &'a str,
    pub args: &'a str,
    pub bin_dirs: &'a [PathBuf],
    pub timeout: Duration,
}

/// The first `bin_dirs` entry holding an executable file named `plugin` (on Windows,
/// `plugin.exe` first).
pub(crate) fn find_plugin(bin_dirs: &[PathBuf], plugin: &str) -> Option<PathBuf> {
    let names = crate::netns_windows::plugin_file_names(plugin, cfg!(windows));
    bin_dirs
        .iter()
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Windows has no execute bit: any file will do (libcni does the same).
#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// Runs `plugin` with `config` on stdin. Returns the parsed stdout, `None` when it is empty
/// (DEL and CHECK print nothing on success).
pub(crate) async fn run(
    inv: &Invocation<'_>,
    plugin: &str,
    config: &[u8],
) -> Result<Option<Value>> {
    let verb = inv.command.as_str();
    let binary = find_plugin(inv.bin_dirs, plugin).ok_or_else(|| {
        Error::FailedPrecondition(format!(
            "CNI plugin {plugin:?} not found in any of [{}]",
            join_paths(inv.bin_dirs)
        ))
    })?;
    let cni_path = std::env::join_paths(inv.bin_dirs)
        .map_err(|e| Error::InvalidArgument(format!("CNI bin dirs: {e}")))?;
    tracing::debug!(
        plugin,
        command = verb,
        container_id = inv.container_id,
        "running CNI plugin"
    );
    let mut child = tokio::process::Command::new(&binary)
        .env("CNI_COMMAND", verb)
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", inv.netns)
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_ARGS", inv.args)
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Internal(format!("start CNI plugin {}: {e}", binary.display())))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| Error::Internal("CNI plugin stdin missing".into()))?;
    let input = config.to_vec();
    // Written concurrently with reading the output, so a large config cannot deadlock.
    let writer = tokio::spawn(async move {
        let res = stdin.write_all(&input).await;
        drop(stdin);
        res
    });
    let output = tokio::time::timeout(inv.timeout, child.wait_with_output())
        .await
        .map_err(|_| {
            Error::DeadlineExceeded(format!(
                "CNI plugin {plugin} {verb} did not finish within {:?}",
                inv.timeout
            ))
        })?
        .map_err(|e| Error::Internal(format!("wait for CNI plugin {plugin}: {e}")))?;
    if let Ok(Err(e)) = writer.await {
        tracing::debug!(plugin, error = %e, "CNI plugin did not read all of its config");
    }
    let stdout: Option<Value> = if output.stdout.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice(&output.stdout).ok()
    };
    if !output.status.success() {
        return Err(plugin_error(
            plugin,
            verb,
            stdout.as_ref(),
            &output.stderr,
            output.status,
        ));
    }
    if stdout.is_none() && !output.stdout.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::Internal(format!(
            "CNI plugin {plugin} {verb} printed something that is not JSON: {}",
            String::from_utf8_lossy(&output.stdout).trim()
        )));
    }
    Ok(stdout)
}

/// Builds an error from the spec's `{"code", "msg", "details"}` object, falling back to
/// stderr for plugins that print nothing useful.
fn plugin_error(
    plugin: &str,
    verb: &str,
    stdout: Option<&Value>,
    stderr: &[u8],
    status: std::process::ExitStatus,
) -> Error {
    let code = stdout.and_then(|v| v.get("code")).and_then(Value::as_u64);
    let text = |k: &str| {
        stdout
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let (msg, details) = (text("msg"), text("details"));
    let mut message = format!("CNI plugin {plugin} {verb} failed");
    if let Some(code) = code {
        message.push_str(&format!(" (code {code})"));
    }
    if !msg.is_empty() {
        message.push_str(&format!(": {msg}"));
    }
    if !details.is_empty() {
        message.push_str(&format!(": {details}"));
    }
    if msg.is_empty() {
        let stderr = String::from_utf8_lossy(stderr);
        let stderr = stderr.trim();
        if stderr.is_empty() {
            message.push_str(&format!(": {status}"));
        } else {
            message.push_str(&format!(": {stderr}"));
        }
    }
    if code == Some(CODE_TRY_AGAIN_LATER) {
        Error::Unavailable(message)
    } else {
        Error::Internal(message)
    }
}
