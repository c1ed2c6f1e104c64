//! Puts a spec together from its parts, setting every field: `oci_spec`'s `Default`s
//! carry youki's demo values (`sh`, `TERM=xterm`, rlimits), none of which belong here.

use std::collections::HashMap;

use oci_spec::runtime::{
    Capability, Linux, LinuxDevice, LinuxNamespace, LinuxResources, LinuxSeccomp, Mount, Process,
    Root, Spec, User,
};

use crate::caps;
use crate::user::ResolvedUser;

pub(super) struct ProcessParts {
    pub terminal: bool,
    pub user: ResolvedUser,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub caps: Vec<Capability>,
    pub no_new_privileges: bool,
    pub apparmor: Option<String>,
    pub oom_score_adj: Option<i32>,
}

pub(super) fn process(p: ProcessParts) -> Process {
    let mut user = User::default();
    user.set_uid(p.user.uid);
    user.set_gid(p.user.gid);
    user.set_additional_gids(Some(p.user.additional_gids));
    user.set_umask(None);
    user.set_username(None);
    let mut pr = Process::default();
    pr.set_terminal(Some(p.terminal));
    pr.set_console_size(None);
    pr.set_user(user);
    pr.set_args(Some(p.args));
    pr.set_command_line(None);
    pr.set_env(Some(p.env));
    pr.set_cwd(p.cwd.into());
    pr.set_capabilities(Some(caps::to_oci(&p.caps)));
    pr.set_rlimits(None);
    pr.set_no_new_privileges(Some(p.no_new_privileges));
    pr.set_apparmor_profile(p.apparmor);
    pr.set_oom_score_adj(p.oom_score_adj);
    pr.set_selinux_label(None);
    pr.set_io_priority(None);
    pr.set_scheduler(None);
    pr.set_exec_cpu_affinity(None);
    pr
}

pub(super) struct LinuxParts {
    pub namespaces: Vec<LinuxNamespace>,
    pub resources: LinuxResources,
    pub devices: Vec<LinuxDevice>,
    pub seccomp: Option<LinuxSeccomp>,
    pub sysctl: HashMap<String, String>,
    pub cgroups_path: Option<String>,
    pub rootfs_propagation: Option<String>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
}

pub(super) fn linux(p: LinuxParts) -> Linux {
    let mut l = Linux::default();
    l.set_net_devices(None);
    l.set_uid_mappings(None);
    l.set_gid_mappings(None);
    l.set_sysctl((!p.sysctl.is_empty()).then_some(p.sysctl));
    l.set_resources(Some(p.resources));
    l.set_cgroups_path(p.cgroups_path.map(Into::into));
    l.set_namespaces(Some(p.namespaces));
    l.set_devices((!p.devices.is_empty()).then_some(p.devices));
    l.set_seccomp(p.seccomp);
    l.set_rootfs_propagation(p.rootfs_propagation);
    l.set_masked_paths((!p.masked_paths.is_empty()).then_some(p.masked_paths));
    l.set_readonly_paths((!p.readonly_paths.is_empty()).then_some(p.readonly_paths));
    l.set_mount_label(None);
    l.set_intel_rdt(None);
    l.set_memory_policy(None);
    l.set_personality(None);
    l.set_time_offsets(None);
    l
}

pub(super) fn spec(
    process: Process,
    linux: Linux,
    mounts: Vec<Mount>,
    hostname: Option<String>,
    annotations: HashMap<String, String>,
    readonly_rootfs: bool,
) -> Spec {
    let mut root = Root::default();
    root.set_path("rootfs".into());
    root.set_readonly(Some(readonly_rootfs));
    let mut s = Spec::default();
    s.set_version(super::OCI_VERSION.to_string());
    s.set_root(Some(root));
    s.set_mounts(Some(mounts));
    s.set_process(Some(process));
    s.set_hostname(hostname);
    s.set_domainname(None);
    s.set_hooks(None);
    s.set_annotations(Some(annotations));
    s.set_linux(Some(linux));
    s.set_solaris(None);
    s.set_windows(None);
    s.set_vm(None);
    s.set_zos(None);
    s.set_uid_mappings(None);
    s.set_gid_mappings(None);
    s
}

pub(super) fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
