//! Runs the built `crimux-log` in detached mode, as crimux does for a container with stdin
//! and no terminal: `stdout-fifo`/`stderr-fifo` name FIFOs, the process started exits once
//! the detached logger is ready, and the logger lives on in its own session.
#![cfg(target_os = "linux")]

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crimux_cri_log::{parse_log, Stream};

const WAIT: Duration = Duration::from_secs(15);

fn mkfifo(path: &Path) {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Setup {
    _dir: tempfile::TempDir,
    log: PathBuf,
    pidfile: PathBuf,
    sock: PathBuf,
    out: PathBuf,
    err: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (log, pidfile, sock, out, err) =
        (p("0.log"), p("log.pid"), p("a.sock"), p("out"), p("err"));
    mkfifo(&out);
    mkfifo(&err);
    Setup {
        _dir: dir,
        log,
        pidfile,
        sock,
        out,
        err,
    }
}

fn launch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crimux-log"))
        .args(args)
        .env_clear()
        .env("CONTAINER_ID", "c0ffee")
        .output()
        .expect("run crimux-log")
}

/// Field `n` (1-based, after the command name) of /proc/<pid>/stat.
fn stat_field(pid: i32, n: usize) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(n - 3).map(str::to_string)
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT, "{what} within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn writer(path: &Path) -> File {
    OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open FIFO for writing")
}

#[test]
fn detaches_logs_both_fifos_reopens_and_exits_at_their_end() {
    let t = setup();
    let out = launch(&[
        "path",
        s(&t.log),
        "pidfile",
        s(&t.pidfile),
        "attach",
        s(&t.sock),
        "stdout-fifo",
        s(&t.out),
        "stderr-fifo",
        s(&t.err),
    ]);
    assert!(out.status.success(), "{out:?}");
    // Ready means: pidfile written and attach socket bound before the launcher returned.
    let pid: i32 = fs::read_to_string(&t.pidfile)
        .expect("pidfile")
        .trim()
        .parse()
        .expect("pid");
    assert!(t.sock.exists());
    // Its own session, and not our child.
    assert_eq!(stat_field(pid, 6), Some(pid.to_string()), "session leader");
    assert_ne!(stat_field(pid, 4), Some(std::process::id().to_string()));

    let (mut o, mut e) = (writer(&t.out), writer(&t.err));
    o.write_all(b"hello\n").unwrap();
    e.write_all(b"oops\n").unwrap();
    wait_for("both lines logged", || {
        let data = fs::read(&t.log).unwrap_or_default();
        parse_log(&data).map(|v| v.len() == 2).unwrap_or(false)
    });
    // SIGUSR1 reopens after a rotation.
    let rotated = t.log.with_extension("1");
    fs::rename(&t.log, &rotated).unwrap();
    // SAFETY: kill(2) on the pid the logger wrote.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGUSR1) }, 0);
    wait_for("reopened", || t.log.exists());
    o.write_all(b"after\n").unwrap();
    wait_for("line in the new file", || {
        fs::read_to_string(&t.log)
            .unwrap_or_default()
            .contains("stdout F after")
    });
    let old = fs::read(&rotated).unwrap();
    let old = parse_log(&old).unwrap();
    assert_eq!(old[0].stream, Stream::Stdout);
    assert_eq!(old[1].stream, Stream::Stderr);

    // Both writers gone: the logger exits and removes its pidfile and socket.
    drop((o, e));
    wait_for("logger gone", || {
        !t.pidfile.exists() && stat_field(pid, 3).is_none_or(|state| state == "Z")
    });
    assert!(!t.sock.exists());
}

#[test]
fn setup_failures_reach_the_launcher_and_leave_nothing() {
    let t = setup();
    let missing_log = t.out.with_file_name("no/such/0.log");
    let missing_fifo = t.out.with_file_name("nope");
    let cases: [(Vec<&str>, &str); 3] = [
        (
            vec![
                "path",
                s(&missing_log),
                "pidfile",
                s(&t.pidfile),
                "stdout-fifo",
                s(&t.out),
                "stderr-fifo",
                s(&t.err),
            ],
            "open log file",
        ),
        (
            vec![
                "path",
                s(&t.log),
                "pidfile",
                s(&t.pidfile),
                "stdout-fifo",
                s(&t.out),
                "stderr-fifo",
                s(&missing_fifo),
            ],
            "open FIFO",
        ),
        (
            vec!["path", s(&t.log), "stdout-fifo", s(&t.out)],
            "go together",
        ),
    ];
    for (args, message) in cases {
        let out = launch(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!t.pidfile.exists(), "{args:?}");
    }
}
