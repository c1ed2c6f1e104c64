//! The binary itself: help text, and clear errors (exit code 1, one line) for endpoints
//! that do not answer. Runs against nothing; the real runs are in the README commands.

use std::process::Command;

fn bench(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_crimux-bench"))
        .args(args)
        .env_remove("CRIMUX_BENCH_ENDPOINT")
        .output()
        .expect("run crimux-bench");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_names_every_mode() {
    let (code, stdout, _) = bench(&["--help"]);
    assert_eq!(code, 0);
    for mode in [
        "pod-cycle",
        "container-cycle",
        "relist",
        "floor",
        "--endpoint",
        "--json",
    ] {
        assert!(stdout.contains(mode), "--help lacks {mode}:\n{stdout}");
    }
    let (code, stdout, _) = bench(&["relist", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--pods"), "{stdout}");
}

#[test]
fn unreachable_endpoints_fail_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = format!("unix://{}/none.sock", dir.path().display());
    // A socket file nobody listens on.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    let stale = format!("unix://{}", stale.display());
    for args in [
        vec!["--endpoint", missing.as_str(), "pod-cycle", "--n", "1"],
        vec!["--endpoint", stale.as_str(), "relist"],
        vec!["floor", "--containerd", missing.as_str()],
    ] {
        let (code, stdout, stderr) = bench(&args);
        assert_eq!(code, 1, "{args:?}: {stdout}{stderr}");
        assert!(stderr.starts_with("crimux-bench: "), "{args:?}: {stderr}");
        assert!(stderr.contains("connect"), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
}

#[test]
fn bad_arguments_are_usage_errors() {
    let (code, _, stderr) = bench(&["pod-cycle"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--endpoint is required"), "{stderr}");
    let (code, _, stderr) = bench(&["--endpoint", "tcp://127.0.0.1:1", "pod-cycle"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("only unix://"), "{stderr}");
    let (code, _, stderr) = bench(&["--endpoint", "/x.sock", "--n", "x", "pod-cycle"]);
    assert_eq!(code, 2, "clap usage errors exit 2: {stderr}");
}
