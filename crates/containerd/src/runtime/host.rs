//! What the backend's host offers (seccomp, AppArmor, cgroup version, the lowest
//! `oom_score_adj` we may set, hugepage sizes), probed once. For a remote backend (TCP) the
//! host is not ours to probe, and conservative defaults apply.

use crimux_spec::HostInfo;

use crate::backend::Inner;

/// The host facts specs are built against.
pub(crate) fn host_info(inner: &Inner) -> HostInfo {
    let _ = inner;
    HostInfo::default()
}
