//! Runs the built `crimux-log` exactly as the containerd 1.6 runc shim does:
//! pipes on fds 3 (stdout) and 4 (stderr), the write end of a ready pipe on fd
//! 5, an environment of only CONTAINER_ID/CONTAINER_NAMESPACE, and the URI
//! query as separate `key value` arguments.
#![cfg(unix)]

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crimux_cri_log::attach::FrameDecoder;
use crimux_cri_log::{assemble_lines, parse_log, Stream, Tag};

const WAIT: Duration = Duration::from_secs(15);

/// A pipe whose both ends are close-on-exec and numbered above 10, so the
/// `dup2` onto 3..=5 in the child never collides with them.
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let high = |fd: i32| {
        // SAFETY: fd is an open descriptor we just created and own.
        let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
        assert!(new >= 10);
        // SAFETY: both descriptors are open and owned only here.
        unsafe {
            libc::close(fd);
            OwnedFd::from_raw_fd(new)
        }
    };
    (high(fds[0]), high(fds[1]))
}

struct Plugin {
    child: Child,
    stdout: Option<File>,
    stderr: Option<File>,
    ready: File,
}

fn spawn(args: &[&str]) -> Plugin {
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let (ready_r, ready_w) = pipe();
    let (a, b, c) = (out_r.as_raw_fd(), err_r.as_raw_fd(), ready_w.as_raw_fd());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crimux-log"));
    cmd.args(args)
        .env_clear()
        .env("CONTAINER_ID", "c0ffee")
        .env("CONTAINER_NAMESPACE", "crimux-test")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe dup2 calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for (from, to) in [(a, 3), (b, 4), (c, 5)] {
                if libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn crimux-log");
    // Our copies of the child's ends go away, like the shim's after start.
    drop((out_r, err_r, ready_w));
    Plugin {
        child,
        stdout: Some(File::from(out_w)),
        stderr: Some(File::from(err_w)),
        ready: File::from(ready_r),
    }
}

impl Plugin {
    /// Blocks until fd 5 is closed by the plugin (EOF on our end), as the shim does.
    fn wait_ready(&mut self) {
        let mut pfd = libc::pollfd {
            fd: self.ready.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, WAIT.as_millis() as i32) };
        assert_eq!(n, 1, "ready pipe not closed within {WAIT:?}");
        let mut buf = [0u8; 1];
        assert_eq!(
            self.ready.read(&mut buf).unwrap(),
            0,
            "ready pipe: want EOF"
        );
    }

    fn write(&mut self, stream: Stream, data: &[u8]) {
        let f = match stream {
            Stream::Stdout => self.stdout.as_mut(),
            Stream::Stderr => self.stderr.as_mut(),
        };
        f.expect("stream already closed").write_all(data).unwrap();
    }

    fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Closes both streams (the container exited) and waits for the exit.
    fn finish(mut self) -> (ExitStatus, String) {
        self.stdout.take();
        self.stderr.take();
        self.wait()
    }

    fn wait(mut self) -> (ExitStatus, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > WAIT {
                let _ = self.child.kill();
                panic!("crimux-log did not exit within {WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status, err)
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (stream, tag, content) of every entry in the file.
fn entries(path: &Path) -> Vec<(Stream, Tag, String)> {
    let data = fs::read(path).unwrap_or_default();
    parse_log(&data)
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
        .into_iter()
        .map(|e| {
            (
                e.stream,
                e.tag,
                String::from_utf8_lossy(e.content).into_owned(),
            )
        })
        .collect()
}

fn entry(stream: Stream, tag: Tag, content: &str) -> (Stream, Tag, String) {
    (stream, tag, content.to_string())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn logs_rotates_attaches_and_exits_like_under_the_shim() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pods/ns_pod_uid/ctr/0.log");
    let pidfile = dir.path().join("run/log.pid");
    let sock = dir.path().join("attach.sock");
    fs::create_dir_all(pidfile.parent().unwrap()).unwrap();
    // containerd passes `?path=..&max-line=8&...` as separate words.
    let mut p = spawn(&[
        "max-line",
        "8",
        "path",
        s(&log),
        "mkdir",
        "true",
        "pidfile",
        s(&pidfile),
        "attach",
        s(&sock),
    ]);
    p.wait_ready();
    // Everything is set up by the time the shim may start the container.
    assert!(log.exists());
    assert_eq!(
        fs::read_to_string(&pidfile).unwrap().trim(),
        p.child.id().to_string()
    );
    let mut client = UnixStream::connect(&sock).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    // Give the plugin a moment to register the client before output flows.
    std::thread::sleep(Duration::from_millis(500));

    p.write(Stream::Stdout, b"hello\n");
    wait_for("first entry", || entries(&log).len() == 1);
    p.write(Stream::Stderr, b"oops\r\n");
    wait_for("second entry", || entries(&log).len() == 2);
    p.write(Stream::Stdout, b"0123456789ab\n\npart");
    wait_for("split entries", || entries(&log).len() == 5);
    assert_eq!(
        entries(&log),
        vec![
            entry(Stream::Stdout, Tag::Full, "hello"),
            entry(Stream::Stderr, Tag::Full, "oops"),
            entry(Stream::Stdout, Tag::Partial, "01234567"),
            entry(Stream::Stdout, Tag::Full, "89ab"),
            entry(Stream::Stdout, Tag::Full, ""),
        ]
    );

    // kubelet rotation: rename, then ReopenContainerLog -> SIGUSR1.
    let rotated = log.with_extension("log.20261128-100000");
    fs::rename(&log, &rotated).unwrap();
    p.signal(libc::SIGUSR1);
    wait_for("reopened log file", || log.exists());
    p.write(Stream::Stdout, b"-end\n");
    p.write(Stream::Stderr, b"bye");
    wait_for("entry in the new file", || !entries(&log).is_empty());

    let (status, stderr) = p.finish();
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert_eq!(
        entries(&rotated).len(),
        5,
        "nothing after rotation in the old file"
    );
    assert_eq!(
        entries(&log),
        vec![
            entry(Stream::Stdout, Tag::Full, "part-end"),
            entry(Stream::Stderr, Tag::Partial, "bye"),
        ]
    );
    assert!(!pidfile.exists(), "pidfile removed on exit");
    assert!(!sock.exists(), "attach socket removed on exit");

    // The attach client got the raw bytes, per stream, then EOF.
    let mut wire = Vec::new();
    client.read_to_end(&mut wire).unwrap();
    let mut dec = FrameDecoder::new();
    dec.extend(&wire);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while let Some((stream, data)) = dec.next_frame().unwrap() {
        match stream {
            Stream::Stdout => out.extend_from_slice(&data),
            Stream::Stderr => err.extend_from_slice(&data),
        }
    }
    assert_eq!(dec.pending(), 0);
    assert_eq!(out, b"hello\n0123456789ab\n\npart-end\n");
    assert_eq!(err, b"oops\r\nbye");
}

#[test]
fn sigterm_drains_then_exits_even_if_a_writer_lingers() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("0.log");
    let mut p = spawn(&["path", s(&log)]);
    p.wait_ready();
    p.write(Stream::Stdout, b"line\nunfinished");
    wait_for("first entry", || entries(&log).len() == 1);
    // The shim closes its ends and sends SIGTERM; here the "container" keeps
    // its write ends open, so EOF never comes and the grace period ends it.
    let started = Instant::now();
    p.signal(libc::SIGTERM);
    let keep = (p.stdout.take(), p.stderr.take());
    let (status, stderr) = p.wait();
    drop(keep);
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        entries(&log),
        vec![
            entry(Stream::Stdout, Tag::Full, "line"),
            entry(Stream::Stdout, Tag::Partial, "unfinished"),
        ]
    );
}

#[test]
fn setup_errors_exit_nonzero_and_still_release_the_shim() {
    let dir = tempfile::tempdir().unwrap();
    let missing_dir = dir.path().join("no/such/dir/0.log");
    let cases: [(Vec<&str>, i32, &str); 3] = [
        (vec!["max-line", "8"], 2, "path= is required"),
        (vec!["path", s(&missing_dir)], 1, "open log file"),
        (
            vec!["path", s(&missing_dir), "colour", "red"],
            2,
            "unknown argument",
        ),
    ];
    for (args, code, msg) in cases {
        let mut p = spawn(&args);
        p.wait_ready();
        let (status, stderr) = p.finish();
        assert_eq!(status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(msg), "{args:?}: {stderr}");
    }
    assert!(!missing_dir.exists());
}

#[test]
fn a_stuck_attach_client_never_blocks_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("0.log");
    let sock = dir.path().join("a.sock");
    let mut p = spawn(&["path", s(&log), "attach", s(&sock)]);
    p.wait_ready();
    // Connected, but never reads.
    let stuck = UnixStream::connect(&sock).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let line = vec![b'z'; 1023];
    let mut chunk = Vec::new();
    for _ in 0..64 {
        chunk.extend_from_slice(&line);
        chunk.push(b'\n');
    }
    // 16 MiB through a client whose socket buffer holds a few hundred KiB.
    for _ in 0..256 {
        p.write(Stream::Stdout, &chunk);
    }
    let (status, stderr) = p.finish();
    assert!(status.success(), "exit {status:?}: {stderr}");
    let data = fs::read(&log).unwrap();
    let all = parse_log(&data).unwrap();
    let lines = assemble_lines(&all);
    assert_eq!(lines.len(), 256 * 64);
    assert!(lines.iter().all(|l| l.complete && l.content == line));
    drop(stuck);
}

#[test]
fn help_needs_no_descriptors() {
    let out = Command::new(env!("CARGO_BIN_EXE_crimux-log"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("fd 3"));
    let _unused: Option<PathBuf> = None;
}
