//! End to end with a real containerd 1.6: a private daemon (root, state and
//! socket in a tempdir, CRI plugin disabled) runs a busybox task whose stdout
//! URI is `binary://<crimux-log>?path=..`, exactly what crimux will do.
//!
//! Needs root and, on PATH, containerd, ctr, runc, umoci, tar and a static
//! /bin/busybox (Debian: containerd, runc, umoci, busybox-static). It fails
//! loudly when any of them is missing; it never skips.
#![cfg(target_os = "linux")]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crimux_cri_log::{parse_log, Stream, Tag};

const NS: &str = "crimux-log-test";
const IMAGE: &str = "localhost/crimux-log-busybox:test";

struct Daemon {
    child: Child,
    sock: PathBuf,
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (is it installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Daemon {
    fn start(dir: &Path) -> Self {
        let sock = dir.join("containerd.sock");
        let config = format!(
            "version = 2\nroot = {root:?}\nstate = {state:?}\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = {sock:?}\n[ttrpc]\n  address = \"\"\n[debug]\n  address = \"\"\n",
            root = dir.join("root"),
            state = dir.join("state"),
        );
        let config_path = dir.join("config.toml");
        fs::write(&config_path, config).unwrap();
        let log = fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start containerd: {e} (is it installed?)"));
        let daemon = Self { child, sock };
        let start = Instant::now();
        while !daemon.ctr(&["version"]).status.success() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "containerd did not come up: {}",
                fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        daemon
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.sock)
            .args(["--namespace", NS])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run ctr: {e} (is it installed?)"))
    }

    fn ctr_ok(&self, args: &[&str]) -> Output {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Best effort: leave no task, shim or daemon behind.
        let _ = self.ctr(&["tasks", "kill", "-s", "KILL", "c1"]);
        let _ = self.ctr(&["tasks", "delete", "-f", "c1"]);
        let _ = self.ctr(&["containers", "delete", "c1"]);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-layer OCI image holding only /bin/busybox and /bin/sh, as a tarball.
fn busybox_image(dir: &Path) -> PathBuf {
    let layout = dir.join("oci");
    let bundle = dir.join("bundle");
    let image = format!("{}:bb", layout.display());
    run(Command::new("umoci")
        .arg("init")
        .arg("--layout")
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle));
    let bin = bundle.join("rootfs/bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy("/bin/busybox", bin.join("busybox"))
        .unwrap_or_else(|e| panic!("no /bin/busybox ({e}): install busybox-static"));
    std::os::unix::fs::symlink("busybox", bin.join("sh")).unwrap();
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle));
    run(Command::new("umoci").args(["config", "--image", &image, "--config.cmd", "/bin/sh"]));
    let tar = dir.join("image.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    tar
}

#[test]
fn containerd_1_6_shim_runs_crimux_log_as_binary_logger() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let tar = busybox_image(dir.path());
    daemon.ctr_ok(&[
        "images",
        "import",
        "--base-name",
        "localhost/crimux-log-busybox",
        tar.to_str().unwrap(),
    ]);
    daemon.ctr_ok(&["images", "tag", "localhost/crimux-log-busybox:bb", IMAGE]);

    let log = dir.path().join("logs/c1/0.log");
    let pidfile = dir.path().join("c1.pid");
    let uri = format!(
        "binary://{}?path={}&max-line=8&mkdir=true&pidfile={}",
        env!("CARGO_BIN_EXE_crimux-log"),
        log.display(),
        pidfile.display()
    );
    let script = "echo hello; echo err >&2; echo 0123456789abc; printf 'a\\r\\n'; printf partial";
    // Foreground run: ctr waits for the exit, then deletes the task, which is
    // when the shim closes the pipes and SIGTERMs the logger.
    daemon.ctr_ok(&[
        "run",
        "--snapshotter",
        "native",
        "--log-uri",
        &uri,
        IMAGE,
        "c1",
        "/bin/sh",
        "-c",
        script,
    ]);
    let start = Instant::now();
    while pidfile.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "crimux-log did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let data = fs::read(&log).expect("log file written by crimux-log under the shim");
    let entries = parse_log(&data).expect("every line is CRI format");
    let per_stream = |s: Stream| -> Vec<(Tag, String)> {
        entries
            .iter()
            .filter(|e| e.stream == s)
            .map(|e| (e.tag, String::from_utf8_lossy(e.content).into_owned()))
            .collect()
    };
    let full = |t: &str| (Tag::Full, t.to_string());
    let part = |t: &str| (Tag::Partial, t.to_string());
    assert_eq!(
        per_stream(Stream::Stdout),
        vec![
            full("hello"),
            part("01234567"),
            full("89abc"),
            full("a"),
            part("partial")
        ]
    );
    assert_eq!(per_stream(Stream::Stderr), vec![full("err")]);
}
