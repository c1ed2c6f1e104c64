//! The pod sandbox's spec: the pause process that holds the pod's namespaces.

use crimux_core::sandbox::{LinuxSandboxConfig, NamespaceMode};
use crimux_core::{Error, Result};
use oci_spec::runtime::Spec;

use super::assemble::{self, strings, LinuxParts, ProcessParts};
use super::process::{merge_env, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS};
use super::{
    mounts, namespaces, resources, SandboxSpecInput, SANDBOX_CPU_SHARES, SANDBOX_OOM_SCORE_ADJ,
};
use crate::annotations::{self, cri_annotations};
use crate::user::{self, UserRequest};
use crate::{caps, seccomp};

/// Builds the pause's spec as containerd's CRI plugin does: the image's argv, a read-only
/// rootfs, no new privileges, the default capabilities, oom_score_adj -998 (raised to the
/// host's floor), 2 CPU shares, new namespaces except those shared with the node, the
/// pod's sysctls, and the pod's `/dev/shm` and `resolv.conf`.
pub fn sandbox_spec(input: &SandboxSpecInput) -> Result<Spec> {
    let cfg = input.config;
    let default_linux = LinuxSandboxConfig::default();
    let lx = cfg.linux.as_ref().unwrap_or(&default_linux);
    let sec = &lx.security;
    let ns_opts = &sec.namespace_options;
    let host_net = ns_opts.network == NamespaceMode::Node;
    let host_ipc = ns_opts.ipc == NamespaceMode::Node;

    let args: Vec<String> = input
        .image
        .entrypoint
        .iter()
        .chain(&input.image.cmd)
        .cloned()
        .collect();
    if args.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "sandbox image {:?} has no entrypoint or cmd",
            input.image_name
        )));
    }
    let mut env = Vec::new();
    merge_env(&mut env, &input.image.env);
    let user = user::resolve(
        &UserRequest {
            run_as_user: sec.run_as_user,
            run_as_group: sec.run_as_group,
            image_user: &input.image.user,
            supplemental_groups: &sec.supplemental_groups,
            ..Default::default()
        },
        input.passwd,
        input.group,
    )?;
    let caps = caps::DEFAULT.to_vec();
    let seccomp = seccomp::for_profile(
        sec.seccomp.as_ref(),
        sec.privileged,
        input.host,
        &caps,
        input.seccomp_localhost,
    )?;
    let cwd = match input.image.working_dir.as_str() {
        "" => "/".to_string(),
        w => w.to_string(),
    };
    let process = assemble::process(ProcessParts {
        terminal: false,
        user,
        args,
        env,
        cwd,
        caps,
        no_new_privileges: true,
        apparmor: None,
        oom_score_adj: Some(resources::oom_score_adj(SANDBOX_OOM_SCORE_ADJ, input.host)?),
    });

    let mut mounts = mounts::defaults(false, false);
    let shm = if host_ipc {
        Some(mounts::DEV_SHM)
    } else {
        input.files.shm
    };
    if let Some(shm) = shm {
        mounts.retain(|m| m.destination().to_string_lossy() != mounts::DEV_SHM);
        mounts.push(mounts::sandbox_bind(mounts::DEV_SHM, shm));
    }
    if let Some(resolv) = input.files.resolv_conf {
        mounts.push(mounts::sandbox_bind("/etc/resolv.conf", resolv));
    }

    let mut res = oci_spec::runtime::LinuxResources::default();
    res.set_devices(Some(resources::device_rules(&[], false)?));
    let mut cpu = oci_spec::runtime::LinuxCpu::default();
    cpu.set_shares(Some(SANDBOX_CPU_SHARES));
    res.set_cpu(Some(cpu));

    let linux = assemble::linux(LinuxParts {
        namespaces: namespaces::sandbox(ns_opts, input.netns_path)?,
        resources: res,
        devices: vec![],
        seccomp,
        sysctl: namespaces::validate_sysctls(&lx.sysctls, ns_opts)?,
        cgroups_path: super::cgroups_path(&lx.cgroup_parent, input.id),
        rootfs_propagation: None,
        masked_paths: strings(DEFAULT_MASKED_PATHS),
        readonly_paths: strings(DEFAULT_READONLY_PATHS),
    });

    let mut ann = cri_annotations(input.id, cfg, None, input.image_name);
    if let Some(r) = &lx.resources {
        ann.insert(
            annotations::SANDBOX_CPU_PERIOD.into(),
            r.cpu_period.to_string(),
        );
        ann.insert(
            annotations::SANDBOX_CPU_QUOTA.into(),
            r.cpu_quota.to_string(),
        );
        ann.insert(
            annotations::SANDBOX_CPU_SHARES.into(),
            r.cpu_shares.to_string(),
        );
        ann.insert(
            annotations::SANDBOX_MEMORY.into(),
            r.memory_limit_in_bytes.to_string(),
        );
    }
    // A hostname needs the pod's own UTS namespace; with host network it is the node's.
    let hostname = (!host_net && !cfg.hostname.is_empty()).then(|| cfg.hostname.clone());
    Ok(assemble::spec(process, linux, mounts, hostname, ann, true))
}
