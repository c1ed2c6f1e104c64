//! Puts a Windows spec together, setting every field: `oci_spec`'s `Default`s carry youki's
//! Linux demo values (`sh`, rlimits, a `linux` section), none of which belong on Windows.

use std::collections::HashMap;

use crimux_core::container::WindowsResources as CriResources;
use crimux_core::sandbox::SandboxConfig;
use crimux_core::{Error, Result};
use oci_spec::runtime::{
    Mount, Process, Spec, User, Windows, WindowsCPUResources, WindowsDevice, WindowsHyperV,
    WindowsMemoryResources, WindowsNetwork, WindowsResources,
};

use super::credential::CredentialSpec;
use super::{annotations, Isolation, CPU_LIMIT_MAX, POD_ANNOTATION_PREFIXES};

pub(super) struct ProcessParts {
    pub terminal: bool,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// The Windows account (`ContainerUser`, `NT AUTHORITY\SYSTEM`); empty leaves the
    /// image's default.
    pub username: String,
}

pub(super) fn process(p: ProcessParts) -> Process {
    let mut user = User::default();
    user.set_uid(0);
    user.set_gid(0);
    user.set_umask(None);
    user.set_additional_gids(None);
    user.set_username((!p.username.is_empty()).then_some(p.username));
    let mut pr = Process::default();
    pr.set_terminal(Some(p.terminal));
    pr.set_console_size(None);
    pr.set_user(user);
    pr.set_args(Some(p.args));
    pr.set_command_line(None);
    pr.set_env(Some(p.env));
    pr.set_cwd(p.cwd.into());
    pr.set_capabilities(None);
    pr.set_rlimits(None);
    pr.set_no_new_privileges(None);
    pr.set_apparmor_profile(None);
    pr.set_oom_score_adj(None);
    pr.set_selinux_label(None);
    pr.set_io_priority(None);
    pr.set_scheduler(None);
    pr.set_exec_cpu_affinity(None);
    pr
}

/// One CRI resource value as the `u16` Windows takes, refusing what it cannot hold (
/// containerd truncates silently, which turns 65537 shares into 1).
fn cpu_limit(what: &str, v: i64) -> Result<Option<u16>> {
    match v {
        0 => Ok(None),
        1..=CPU_LIMIT_MAX => Ok(u16::try_from(v).ok()),
        _ => Err(Error::InvalidArgument(format!(
            "windows resources: {what} {v} is outside 0..={CPU_LIMIT_MAX}"
        ))),
    }
}

fn non_negative(what: &str, v: i64) -> Result<Option<u64>> {
    match u64::try_from(v) {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(Error::InvalidArgument(format!(
            "windows resources: {what} {v} must not be negative"
        ))),
    }
}

/// The CRI's Windows resources as the spec's: cpu count, shares and maximum, and the
/// memory limit; zero means unset. `None` when nothing is set.
pub(super) fn resources(r: &CriResources) -> Result<Option<WindowsResources>> {
    let count = non_negative("cpu_count", r.cpu_count)?;
    let shares = cpu_limit("cpu_shares", r.cpu_shares)?;
    let maximum = cpu_limit("cpu_maximum", r.cpu_maximum)?;
    let limit = non_negative("memory_limit_in_bytes", r.memory_limit_in_bytes)?;
    non_negative("rootfs_size_in_bytes", r.rootfs_size_in_bytes)?;
    let mut out = WindowsResources::default();
    if count.is_some() || shares.is_some() || maximum.is_some() {
        let mut cpu = WindowsCPUResources::default();
        cpu.set_count(count);
        cpu.set_shares(shares);
        cpu.set_maximum(maximum);
        out.set_cpu(Some(cpu));
    }
    if limit.is_some() {
        let mut mem = WindowsMemoryResources::default();
        mem.set_limit(limit);
        out.set_memory(Some(mem));
    }
    let any = count.is_some() || shares.is_some() || maximum.is_some() || limit.is_some();
    Ok(any.then_some(out))
}

/// The pause's resources: the minimum CPU shares, since it only sleeps.
pub(super) fn sandbox_resources() -> WindowsResources {
    let mut cpu = WindowsCPUResources::default();
    cpu.set_shares(Some(super::SANDBOX_CPU_SHARES));
    let mut out = WindowsResources::default();
    out.set_cpu(Some(cpu));
    out
}

pub(super) struct WindowsParts<'a> {
    pub layer_folders: &'a [String],
    pub resources: Option<WindowsResources>,
    pub devices: Vec<WindowsDevice>,
    pub network_namespace: Option<&'a str>,
    pub isolation: Isolation,
    /// The gMSA credential spec, parsed (see `super::credential`).
    pub credential_spec: Option<CredentialSpec>,
}

pub(super) fn windows(p: WindowsParts) -> Windows {
    let mut w = Windows::default();
    w.set_layer_folders((!p.layer_folders.is_empty()).then(|| p.layer_folders.to_vec()));
    w.set_devices((!p.devices.is_empty()).then_some(p.devices));
    w.set_resources(p.resources);
    w.set_credential_spec(p.credential_spec);
    w.set_servicing(None);
    w.set_ignore_flushes_during_boot(None);
    // An empty `hyperv` object is what tells hcsshim to run the pod in a utility VM (its
    // shim does the same when the handler's options say SandboxIsolation = HYPERVISOR).
    w.set_hyperv((p.isolation == Isolation::HyperV).then(WindowsHyperV::default));
    w.set_network(p.network_namespace.map(|ns| {
        let mut n = WindowsNetwork::default();
        n.set_network_namespace(Some(ns.to_string()));
        n
    }));
    w
}

/// The Windows annotations of every spec of a pod: HostProcess or not, and the pod's
/// hcsshim annotations that apply to its isolation.
pub(super) fn windows_annotations(
    into: &mut HashMap<String, String>,
    sandbox: &SandboxConfig,
    isolation: Isolation,
) {
    let hpc = super::host_process(sandbox);
    into.insert(annotations::HOST_PROCESS.into(), hpc.to_string());
    for (key, value) in &sandbox.annotations {
        let allowed = POD_ANNOTATION_PREFIXES.iter().any(|(p, hyperv, hpc_only)| {
            key.starts_with(p) && (!hyperv || isolation == Isolation::HyperV) && (!hpc_only || hpc)
        });
        if allowed {
            into.insert(key.clone(), value.clone());
        }
    }
}

pub(super) fn spec(
    process: Process,
    windows: Windows,
    mounts: Vec<Mount>,
    hostname: Option<String>,
    annotations: HashMap<String, String>,
) -> Spec {
    let mut s = Spec::default();
    s.set_version(crate::linux::OCI_VERSION.to_string());
    // No root: hcsshim builds the rootfs from the layers (and refuses a read-only one).
    s.set_root(None);
    s.set_mounts(Some(mounts));
    s.set_process(Some(process));
    s.set_hostname(hostname.filter(|h| !h.is_empty()));
    s.set_domainname(None);
    s.set_hooks(None);
    s.set_annotations(Some(annotations));
    s.set_linux(None);
    s.set_solaris(None);
    s.set_windows(Some(windows));
    s.set_vm(None);
    s.set_zos(None);
    s.set_uid_mappings(None);
    s.set_gid_mappings(None);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_checked_and_zero_is_unset() {
        assert_eq!(resources(&CriResources::default()).unwrap(), None);
        let r = resources(&CriResources {
            cpu_count: 2,
            cpu_shares: 0,
            cpu_maximum: 5000,
            memory_limit_in_bytes: 1 << 30,
            rootfs_size_in_bytes: 0,
        })
        .unwrap()
        .unwrap();
        assert_eq!(
            serde_json::to_value(r).unwrap(),
            serde_json::json!({"cpu": {"count": 2, "maximum": 5000}, "memory": {"limit": 1u64 << 30}})
        );
        for bad in [
            CriResources {
                cpu_shares: 10_001,
                ..Default::default()
            },
            CriResources {
                cpu_maximum: -1,
                ..Default::default()
            },
            CriResources {
                cpu_count: -2,
                ..Default::default()
            },
            CriResources {
                memory_limit_in_bytes: -1,
                ..Default::default()
            },
        ] {
            assert!(
                matches!(resources(&bad), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn annotations_follow_isolation_and_host_process() {
        let mut sb = SandboxConfig::default();
        sb.annotations.insert(
            "io.microsoft.virtualmachine.computetopology.processor.count".into(),
            "2".into(),
        );
        sb.annotations
            .insert(annotations::HOST_PROCESS_INHERIT_USER.into(), "true".into());
        sb.annotations.insert("other".into(), "x".into());
        let mut a = HashMap::new();
        windows_annotations(&mut a, &sb, Isolation::Process);
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[annotations::HOST_PROCESS], "false");
        let mut a = HashMap::new();
        windows_annotations(&mut a, &sb, Isolation::HyperV);
        assert_eq!(a.len(), 2, "{a:?}");
        sb.windows = Some(crimux_core::sandbox::WindowsSandboxConfig {
            host_process: true,
            ..Default::default()
        });
        let mut a = HashMap::new();
        windows_annotations(&mut a, &sb, Isolation::Process);
        assert_eq!(a[annotations::HOST_PROCESS], "true");
        assert_eq!(a[annotations::HOST_PROCESS_INHERIT_USER], "true");
    }
}
