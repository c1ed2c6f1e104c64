//! Daemons the tests start: spawned so that they die with the test process, stopped on drop,
//! with their output in a log file that is printed when a test fails.
//!
//! Every child is spawned by one long-lived "spawner" thread with `PR_SET_PDEATHSIG`: the
//! kernel ties that signal to the *thread* that forked the child, so spawning from a test
//! thread (which ends with its test) would kill process-wide daemons such as the shared
//! registries too early. The spawner lives as long as the process, so its children get SIGKILL
//! exactly when the test binary exits, however it exits.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` from the spawner thread, so the child dies with this process.
pub fn spawn(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("daemon-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
                    unsafe {
                        cmd.pre_exec(|| {
                            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                                return Err(std::io::Error::last_os_error());
                            }
                            Ok(())
                        });
                    }
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn the daemon-spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply_tx))
        .expect("daemon-spawner thread is alive");
    reply_rx.recv().expect("daemon-spawner replies")
}

/// A running daemon: stdout and stderr go to `log`; SIGTERM (then SIGKILL) on drop.
pub struct Daemon {
    name: String,
    child: Mutex<Option<Child>>,
    log: PathBuf,
}

impl Daemon {
    /// Starts `program args...` with its output appended to `log`. Panics, pointing at
    /// scripts/test.sh, when the program is not installed: tests never pass by skipping.
    pub fn start(name: &str, program: &str, args: &[&str], log: &Path) -> Daemon {
        let resolved = if program.contains('/') {
            PathBuf::from(program)
        } else {
            which(program).unwrap_or_else(|| {
                panic!("{program} not installed: run scripts/test.sh (it installs the packages)")
            })
        };
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log file handle");
        let path = std::env::var("PATH").unwrap_or_default();
        let mut cmd = Command::new(&resolved);
        cmd.args(args)
            .env("PATH", format!("{path}:/usr/local/sbin:/usr/sbin:/sbin"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let child = spawn(cmd).unwrap_or_else(|e| panic!("start {name} ({program}): {e}"));
        Daemon {
            name: name.to_string(),
            child: Mutex::new(Some(child)),
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Child::id)
            .unwrap_or(0)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the daemon wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics, showing the log, if the daemon has exited.
    pub fn assert_running(&self) {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(child) = guard.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{} exited early ({status}); its log:\n{}",
                    self.name,
                    self.log()
                );
            }
        }
    }

    /// Stops the daemon: SIGTERM, up to 10 s to exit, then SIGKILL. Idempotent.
    pub fn stop(&self) {
        let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Prints the log to stderr (captured by the test harness, shown for failing tests).
    pub fn dump_log(&self) {
        eprintln!(
            "----- {} log ({}) -----\n{}----- end of {} log -----",
            self.name,
            self.log.display(),
            self.log(),
            self.name
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_log();
        }
        self.stop();
    }
}

/// The path of `program` on $PATH (plus the sbin dirs, which a non-login root shell may lack).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file());
    found
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Waits until an HTTP server on 127.0.0.1:`port` answers `GET path` with any status line;
/// returns that status code.
pub fn wait_http(daemon: &Daemon, port: u16, path: &str, timeout: Duration) -> u16 {
    let deadline = Instant::now() + timeout;
    loop {
        daemon.assert_running();
        if let Some(code) = http_status(port, path) {
            return code;
        }
        if Instant::now() > deadline {
            daemon.dump_log();
            panic!("no HTTP answer on 127.0.0.1:{port}{path} within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs a command to completion; panics with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let program = cmd.get_program().to_string_lossy().into_owned();
    if !program.contains('/') && which(&program).is_none() {
        panic!("{program} not installed: run scripts/test.sh (it installs the packages)");
    }
    // Children look programs up on $PATH only; give them the sbin dirs `which` also searches.
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env("PATH", format!("{path}:/usr/local/sbin:/usr/sbin:/sbin"));
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}
