//! The binary's edge: flags, config errors, startup refusals and exit codes. These runs
//! never reach a containerd; serving against a real daemon is the harness's test.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_crimux");

/// A temp dir with a config file, a root and a socket path inside it.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self, text: &str) -> PathBuf {
        let path = self.path("config.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// Runs crimux with `args`, no CRIMUX_* from the environment, and the sandbox's root
    /// and socket unless `args` say otherwise.
    fn run(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        let mut cmd = Command::new(BIN);
        for var in [
            "CRIMUX_CONFIG",
            "CRIMUX_LISTEN",
            "CRIMUX_ROOT",
            "CRIMUX_LOG_LEVEL",
            "CRIMUX_LOG_FILE",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("CRIMUX_ROOT", self.path("root"))
            .env("CRIMUX_LISTEN", self.path("run/crimux.sock"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(args).output().expect("run crimux")
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts exit code 2 and exactly one `crimux: ` line, which contains every needle.
fn assert_startup_error(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("crimux: ")).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {err}");
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "{needle:?} missing from {:?}",
            lines[0]
        );
    }
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

fn unreachable_backend(s: &Sandbox) -> (PathBuf, String) {
    let address = format!("unix://{}", s.path("no-containerd.sock").display());
    let config = s.config(&format!(
        "[[backend]]\nname = \"default\"\naddress = \"{address}\"\n"
    ));
    (config, address)
}

#[test]
fn version_and_help() {
    let s = Sandbox::new();
    let out = s.run(&["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("crimux {}", env!("CARGO_PKG_VERSION"))
    );
    let out = s.run(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--config", "--listen", "--root", "--log-level", "serve"] {
        assert!(help.contains(flag), "{flag} missing from help: {help}");
    }
}

#[test]
fn unknown_config_key_names_the_key() {
    let s = Sandbox::new();
    let config = s.config("lisen = \"/tmp/x.sock\"\n");
    let out = s.run(&["--config", &config.to_string_lossy()], &[]);
    assert_startup_error(
        &out,
        &["unknown field `lisen`", &config.to_string_lossy(), "line 1"],
    );
}

#[test]
fn config_from_env_and_missing_file() {
    let s = Sandbox::new();
    let config =
        s.config("[[backend]]\nname = \"default\"\naddress = \"unix://\"\nsnapshoter = \"x\"\n");
    let out = s.run(&[], &[("CRIMUX_CONFIG", &config)]);
    assert_startup_error(&out, &["unknown field `snapshoter`"]);
    let missing = s.path("missing.toml");
    let out = s.run(&["--config", &missing.to_string_lossy()], &[]);
    assert_startup_error(&out, &[&missing.to_string_lossy(), "cannot read"]);
}

#[test]
fn bad_backend_address_is_refused() {
    let s = Sandbox::new();
    let config = s.config("[[backend]]\nname = \"default\"\naddress = \"http://10.0.0.1:1234\"\n");
    let out = s.run(&["--config", &config.to_string_lossy()], &[]);
    assert_startup_error(
        &out,
        &["backend \"default\"", "http://10.0.0.1:1234", "scheme"],
    );
    let config = s.config("[[backend]]\nname = \"default\"\naddress = \"tcp://10.0.0.1:1234\"\n");
    let out = s.run(&["serve", "--config", &config.to_string_lossy()], &[]);
    assert_startup_error(&out, &["tcp://10.0.0.1:1234", "[backend.tls]"]);
}

#[test]
fn bad_log_level_is_refused() {
    let s = Sandbox::new();
    let (config, _) = unreachable_backend(&s);
    let out = s.run(
        &["--config", &config.to_string_lossy(), "--log-level", "inof"],
        &[],
    );
    assert_startup_error(&out, &["--log-level \"inof\""]);
}

#[test]
fn unreachable_containerd_names_the_address() {
    let s = Sandbox::new();
    let (config, address) = unreachable_backend(&s);
    let out = s.run(&["--config", &config.to_string_lossy()], &[]);
    assert_startup_error(&out, &["backend \"default\"", &address]);
    let root = std::fs::metadata(s.path("root")).expect("root created before connecting");
    assert_eq!(root.permissions().mode() & 0o777, 0o700);
    assert!(
        !s.path("run/crimux.sock").exists(),
        "socket removed after the failed start"
    );
}

/// `--log-file` (for a Windows service, which has no stderr) appends the log there; the
/// startup error line still goes to stderr.
#[test]
fn log_file_receives_the_log() {
    let s = Sandbox::new();
    let (config, address) = unreachable_backend(&s);
    let log = s.path("crimux.log");
    std::fs::write(&log, "earlier line\n").expect("seed log");
    let out = s.run(
        &[
            "--config",
            &config.to_string_lossy(),
            "--log-file",
            &log.to_string_lossy(),
        ],
        &[],
    );
    assert_startup_error(&out, &[&address]);
    let text = std::fs::read_to_string(&log).expect("log file");
    assert!(
        text.starts_with("earlier line\n"),
        "appended, not truncated: {text}"
    );
    assert!(text.contains("crimux starting"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes in a file: {text}"
    );
    assert!(
        !stderr(&out).contains("crimux starting"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn flags_override_the_file() {
    let s = Sandbox::new();
    let address = format!("unix://{}", s.path("no-containerd.sock").display());
    let config = s.config(&format!(
        "listen = \"/nonexistent-dir/x/crimux.sock\"\nroot = \"/nonexistent-dir/root\"\n\
         [[backend]]\nname = \"default\"\naddress = \"{address}\"\n"
    ));
    let listen = s.path("flag.sock");
    let root = s.path("flag-root");
    let out = s.run(
        &[
            "--config",
            &config.to_string_lossy(),
            "--listen",
            &listen.to_string_lossy(),
            "--root",
            &root.to_string_lossy(),
        ],
        &[],
    );
    // It got as far as containerd, so the flag paths were used.
    assert_startup_error(&out, &[&address]);
    assert!(root.is_dir());
    assert!(!Path::new("/nonexistent-dir").exists());
}

#[test]
fn second_instance_on_a_live_socket_is_refused() {
    let s = Sandbox::new();
    let (config, _) = unreachable_backend(&s);
    let socket = s.path("live.sock");
    let _serving = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    let out = s.run(
        &[
            "--config",
            &config.to_string_lossy(),
            "--listen",
            &socket.to_string_lossy(),
        ],
        &[],
    );
    assert_startup_error(
        &out,
        &["another process is serving on", &socket.to_string_lossy()],
    );
    assert!(socket.exists(), "the live socket is left alone");
}

#[test]
fn stale_socket_is_cleared() {
    let s = Sandbox::new();
    let (config, address) = unreachable_backend(&s);
    let socket = s.path("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
    let out = s.run(
        &[
            "--config",
            &config.to_string_lossy(),
            "--listen",
            &socket.to_string_lossy(),
        ],
        &[],
    );
    // Past the socket check: the failure is containerd, not the stale file.
    assert_startup_error(&out, &[&address]);
    assert!(!socket.exists());
}
