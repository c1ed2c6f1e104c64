//! A container's spec, joining its pod's sandbox.

use crimux_core::container::{ContainerSecurity, Mount as CriMount, Resources};
use crimux_core::sandbox::NamespaceMode;
use crimux_core::{Error, Result};
use oci_spec::runtime::Spec;

use super::assemble::{self, strings, LinuxParts, ProcessParts};
use super::process::{
    apparmor, container_args, container_env, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS,
};
use super::{mounts, namespaces, resources, ContainerSpecInput};
use crate::annotations::cri_annotations;
use crate::user::{self, UserRequest};
use crate::{caps, seccomp};

/// The pod files a container gets unless the CRI mounts something at the same path:
/// `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf` (read-only with a read-only rootfs)
/// and `/dev/shm` (the host's with host IPC).
fn pod_mounts(input: &ContainerSpecInput, sec: &ContainerSecurity) -> Vec<CriMount> {
    let f = input.files;
    let mut v = Vec::new();
    for (dest, src) in [
        ("/etc/hostname", f.hostname),
        ("/etc/hosts", f.hosts),
        ("/etc/resolv.conf", f.resolv_conf),
    ] {
        if let Some(src) = src {
            v.push(CriMount {
                container_path: dest.into(),
                host_path: src.into(),
                readonly: sec.readonly_rootfs,
                ..Default::default()
            });
        }
    }
    let shm = if sec.namespace_options.ipc == NamespaceMode::Node {
        Some(mounts::DEV_SHM)
    } else {
        f.shm
    };
    if let Some(shm) = shm {
        v.push(CriMount {
            container_path: mounts::DEV_SHM.into(),
            host_path: shm.into(),
            ..Default::default()
        });
    }
    v
}

/// Builds a container's spec as containerd's CRI plugin does; see the crate's tests for
/// each rule. Privileged containers need a privileged sandbox, and get every capability,
/// every device, writable `/sys`, and no masked paths, seccomp or AppArmor.
pub fn container_spec(input: &ContainerSpecInput) -> Result<Spec> {
    let cfg = input.config;
    let default_sec = ContainerSecurity::default();
    let lx = cfg.linux.as_ref();
    let sec = lx.and_then(|l| l.security.as_ref()).unwrap_or(&default_sec);
    let privileged = sec.privileged;
    if privileged {
        let sandbox_privileged = input
            .sandbox
            .linux
            .as_ref()
            .is_some_and(|l| l.security.privileged);
        if !sandbox_privileged {
            return Err(Error::InvalidArgument(
                "privileged containers need a privileged sandbox".into(),
            ));
        }
    }

    let hostname = if input.sandbox.hostname.is_empty() {
        &input.host.hostname
    } else {
        &input.sandbox.hostname
    };
    let user = user::resolve(
        &UserRequest {
            run_as_user: sec.run_as_user,
            run_as_group: sec.run_as_group,
            run_as_username: &sec.run_as_username,
            image_user: &input.image.user,
            supplemental_groups: &sec.supplemental_groups,
            image_groups: true,
        },
        input.passwd,
        input.group,
    )?;
    let caps = if privileged {
        caps::grantable(input.host.capability_bounding)
    } else {
        match &sec.capabilities {
            Some(c) => caps::apply(
                &caps::DEFAULT,
                &c.add,
                &c.drop,
                &caps::grantable(input.host.capability_bounding),
            )?,
            None => caps::DEFAULT.to_vec(),
        }
    };
    let seccomp = seccomp::for_profile(
        sec.seccomp.as_ref(),
        privileged,
        input.host,
        &caps,
        input.seccomp_localhost,
    )?;
    let cwd = [cfg.working_dir.as_str(), input.image.working_dir.as_str()]
        .into_iter()
        .find(|w| !w.is_empty())
        .unwrap_or("/")
        .to_string();
    let oom = match lx.and_then(|l| l.resources.as_ref()) {
        Some(r) => Some(resources::oom_score_adj(r.oom_score_adj, input.host)?),
        None => None,
    };
    let process = assemble::process(ProcessParts {
        terminal: cfg.tty,
        user,
        args: container_args(cfg, input.image)?,
        env: container_env(cfg, input.image, hostname),
        cwd,
        caps,
        no_new_privileges: sec.no_new_privs,
        apparmor: apparmor(sec.apparmor.as_ref(), privileged, input.host)?,
        oom_score_adj: oom,
    });

    let (mounts, rootfs_propagation) = mounts::container(
        mounts::defaults(privileged, true),
        &cfg.mounts,
        pod_mounts(input, sec),
    )?;

    let rules = resources::device_rules(input.devices, privileged)?;
    let res = match lx.and_then(|l| l.resources.as_ref()) {
        Some(r) => resources::container(r, input.host, rules)?,
        None => resources::container(&Resources::default(), input.host, rules)?,
    };
    let (masked, readonly) = if privileged {
        (vec![], vec![])
    } else {
        let pick = |given: &[String], default: &[&str]| {
            if given.is_empty() {
                strings(default)
            } else {
                given.to_vec()
            }
        };
        (
            pick(&sec.masked_paths, DEFAULT_MASKED_PATHS),
            pick(&sec.readonly_paths, DEFAULT_READONLY_PATHS),
        )
    };
    let linux = assemble::linux(LinuxParts {
        namespaces: namespaces::container(
            &sec.namespace_options,
            input.sandbox_pid,
            input.target_pid,
            input.netns_path,
            input.host.cgroup_v2 && !privileged,
        )?,
        resources: res,
        devices: resources::device_nodes(input.devices, input.host_devices, privileged),
        seccomp,
        sysctl: Default::default(),
        cgroups_path: input
            .sandbox
            .linux
            .as_ref()
            .and_then(|l| super::cgroups_path(&l.cgroup_parent, input.id)),
        rootfs_propagation,
        masked_paths: masked,
        readonly_paths: readonly,
    });
    let ann = cri_annotations(
        input.sandbox_id,
        input.sandbox,
        Some(&cfg.metadata.name),
        input.image_name,
    );
    Ok(assemble::spec(
        process,
        linux,
        mounts,
        None,
        ann,
        sec.readonly_rootfs,
    ))
}
