//! Runs crimux's specs under the real `runc` (needs root, runc and busybox-static): a pause
//! stand-in from `sandbox_spec`, then containers from `container_spec` joining its
//! namespaces, checking what the kernel actually applied.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use crimux_core::container::{Capabilities, ContainerSecurity};
use crimux_spec::linux::PodFiles;

const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "cat", "id", "hostname", "grep", "sleep", "touch", "echo", "pwd",
];

fn runc(args: &[&str]) -> std::process::Output {
    Command::new("runc")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("runc must be installed to run this test: {e}"))
}

/// Deletes a runc container however the test ends.
struct Running(String);
impl Drop for Running {
    fn drop(&mut self) {
        let _ = runc(&["delete", "-f", &self.0]);
    }
}

fn bundle(dir: &Path, spec: &oci_spec::runtime::Spec) {
    let rootfs = dir.join("rootfs");
    for d in ["bin", "etc", "proc", "sys", "dev", "work", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("busybox-static must be installed at /bin/busybox");
    for applet in BUSYBOX_APPLETS {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    std::fs::write(rootfs.join("etc/passwd"), PASSWD).unwrap();
    std::fs::write(rootfs.join("etc/group"), GROUP).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(spec).unwrap(),
    )
    .unwrap();
}

fn host_info() -> crimux_spec::HostInfo {
    let oom = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap();
    crimux_spec::HostInfo {
        min_oom_score_adj: oom.trim().parse().unwrap(),
        cgroup_v2: Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        has_swap_controller: false,
        has_apparmor: false,
        capability_bounding: std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .map(|m| u64::from_str_radix(m.trim(), 16).unwrap()),
        ..host()
    }
}

/// Capability bit numbers, for /proc/<pid>/status masks.
fn mask(bits: &[u32]) -> String {
    format!("{:016x}", bits.iter().fold(0u64, |m, b| m | (1 << b)))
}

#[test]
fn runc_runs_sandbox_and_container_specs() {
    let tmp = tempfile::tempdir().unwrap();
    let id = format!("crimux-spec-test-{}", std::process::id());
    let host = host_info();

    // The sandbox: a sleeping busybox in a fresh network namespace.
    let mut sb = sandbox_config();
    sb.linux.as_mut().unwrap().cgroup_parent.clear();
    let pause = crimux_spec::ImageConfig {
        entrypoint: vec!["/bin/sleep".into(), "300".into()],
        ..Default::default()
    };
    let sb_input = crimux_spec::SandboxSpecInput {
        netns_path: None,
        files: PodFiles::default(),
        ..sandbox_input(&sb, &pause, &host)
    };
    let sb_spec = crimux_spec::sandbox_spec(&sb_input).unwrap();
    let sb_dir = tmp.path().join("sandbox");
    bundle(&sb_dir, &sb_spec);
    let sb_id = format!("{id}-sandbox");
    // Detached, the sandbox keeps its stdio: give it files, not pipes we would wait on.
    let log = tmp.path().join("sandbox.log");
    let status = Command::new("runc")
        .args(["run", "-d", "--bundle", sb_dir.to_str().unwrap(), &sb_id])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(tmp.path().join("sandbox.err")).unwrap())
        .status()
        .expect("runc must be installed to run this test");
    let _sandbox = Running(sb_id.clone());
    let err = std::fs::read_to_string(tmp.path().join("sandbox.err")).unwrap_or_default();
    assert!(status.success(), "runc run sandbox: {err}");
    let state: serde_json::Value =
        serde_json::from_slice(&runc(&["state", &sb_id]).stdout).unwrap();
    assert_eq!(state["status"], "running", "sandbox state: {state}");
    let sandbox_pid = state["pid"].as_u64().expect("sandbox pid") as u32;

    let hosts = tmp.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 crimux-pod-hosts\n").unwrap();
    let image = crimux_spec::ImageConfig {
        env: vec!["FROM_IMAGE=yes".into()],
        working_dir: "/work".into(),
        user: "app".into(),
        ..Default::default()
    };
    let script = "id; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; \
        touch /written 2>/dev/null && echo WRITE=ok || echo WRITE=refused; \
        echo MODE=$MODE FROM_IMAGE=$FROM_IMAGE; echo CWD=$(pwd); echo HOST=$(hostname); cat /etc/hosts";
    let run = |name: &str, security: ContainerSecurity| -> String {
        let mut cfg = container_config();
        cfg.command = vec!["/bin/sh".into(), "-c".into(), script.into()];
        cfg.args.clear();
        cfg.mounts.clear();
        let lx = cfg.linux.as_mut().unwrap();
        lx.resources = None;
        lx.security = Some(security);
        let input = crimux_spec::ContainerSpecInput {
            sandbox_pid,
            netns_path: None,
            files: PodFiles {
                hosts: hosts.to_str(),
                ..Default::default()
            },
            ..container_input(&cfg, &sb, &image, &host)
        };
        let spec = crimux_spec::container_spec(&input).unwrap();
        let dir = tmp.path().join(name);
        bundle(&dir, &spec);
        let cid = format!("{id}-{name}");
        let _c = Running(cid.clone());
        let out = runc(&["run", "--bundle", dir.to_str().unwrap(), &cid]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "runc run {name}: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };

    // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_ADMIN
    // NET_RAW SYS_CHROOT AUDIT_WRITE SETFCAP: the defaults, MKNOD dropped, NET_ADMIN added.
    let bounding = mask(&[0, 1, 3, 4, 5, 6, 7, 8, 10, 12, 13, 18, 29, 31]);
    let caps = Some(Capabilities {
        add: vec!["net_admin".into()],
        drop: vec!["CAP_MKNOD".into()],
        add_ambient: vec![],
    });
    let secure = ContainerSecurity {
        capabilities: caps.clone(),
        supplemental_groups: vec![3000],
        readonly_rootfs: true,
        no_new_privs: true,
        seccomp: container_config().linux.unwrap().security.unwrap().seccomp,
        ..Default::default()
    };
    let out = run("app", secure);
    for want in [
        "uid=1000(app) gid=1000(app) groups=50(staff),1000(app),3000".to_string(),
        format!("CapBnd:\t{bounding}"),
        // A non-root user keeps no effective capabilities across exec.
        "CapEff:\t0000000000000000".to_string(),
        "NoNewPrivs:\t1".to_string(),
        "Seccomp:\t2".to_string(),
        "WRITE=refused".to_string(),
        "MODE=prod FROM_IMAGE=yes".to_string(),
        "CWD=/work".to_string(),
        "HOST=web-pod".to_string(),
        "crimux-pod-hosts".to_string(),
    ] {
        assert!(out.contains(&want), "{want:?} missing from:\n{out}");
    }

    let root = ContainerSecurity {
        capabilities: caps,
        run_as_user: Some(0),
        ..Default::default()
    };
    let out = run("root", root);
    for want in [
        "uid=0(root) gid=0(root)".to_string(),
        format!("CapEff:\t{bounding}"),
        "NoNewPrivs:\t0".to_string(),
        "Seccomp:\t0".to_string(),
        "WRITE=ok".to_string(),
    ] {
        assert!(out.contains(&want), "{want:?} missing from:\n{out}");
    }
}
