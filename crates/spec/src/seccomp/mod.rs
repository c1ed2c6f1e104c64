//! Seccomp for containers: crimux's RuntimeDefault profile, Localhost profiles (OCI
//! `LinuxSeccomp` JSON, as containerd reads them) and the choice between them.

mod table;

use crimux_core::container::{ProfileType, SecurityProfile};
use crimux_core::{Error, Result};
use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompOperator,
    LinuxSyscall,
};

use crate::{caps, oci_err, HostInfo};

fn rule(names: &[&str], action: LinuxSeccompAction, args: Vec<LinuxSeccompArg>) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.iter().map(|n| n.to_string()).collect());
    s.set_action(action);
    s.set_args((!args.is_empty()).then_some(args));
    s
}

fn arg(index: usize, value: u64, op: LinuxSeccompOperator) -> Result<LinuxSeccompArg> {
    oci_spec::runtime::LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op)
        .build()
        .map_err(oci_err)
}

fn allow(names: &[&str]) -> LinuxSyscall {
    rule(names, LinuxSeccompAction::ScmpActAllow, vec![])
}

/// crimux's RuntimeDefault profile for a host architecture and a bounding capability set:
/// deny (EPERM) by default, allow the table's syscalls, and the syscalls each held
/// capability unlocks. Without CAP_SYS_ADMIN, `clone` may not create namespaces and
/// `clone3` fails with ENOSYS.
pub fn runtime_default(arch: &str, bounding: &[Capability]) -> Result<LinuxSeccomp> {
    use LinuxSeccompOperator::{
        ScmpCmpEq as Eq, ScmpCmpGt as Gt, ScmpCmpLt as Lt, ScmpCmpMaskedEq as Masked,
    };
    let mut rules = vec![allow(table::ALLOWED)];
    rules.push(rule(
        &["socket"],
        LinuxSeccompAction::ScmpActAllow,
        vec![arg(0, table::AF_ALG, Lt)?],
    ));
    rules.push(rule(
        &["socket"],
        LinuxSeccompAction::ScmpActAllow,
        vec![arg(0, table::AF_ALG + 1, Eq)?],
    ));
    rules.push(rule(
        &["socket"],
        LinuxSeccompAction::ScmpActAllow,
        vec![arg(0, table::AF_VSOCK, Gt)?],
    ));
    for p in table::PERSONALITIES {
        rules.push(rule(
            &["personality"],
            LinuxSeccompAction::ScmpActAllow,
            vec![arg(0, *p, Eq)?],
        ));
    }
    for (arches, names) in table::BY_ARCH {
        if arches.contains(&arch) {
            rules.push(allow(names));
        }
    }
    let held: Vec<String> = bounding.iter().map(|c| caps::name(*c)).collect();
    for (cap, names) in table::BY_CAPABILITY {
        if held.iter().any(|h| h == cap) {
            rules.push(allow(names));
        }
    }
    if !held.iter().any(|h| h == "CAP_SYS_ADMIN") {
        // s390 passes clone's flags second.
        let index: usize = if arch.starts_with("s390") { 1 } else { 0 };
        let flags = oci_spec::runtime::LinuxSeccompArgBuilder::default()
            .index(index)
            .value(table::CLONE_NAMESPACE_FLAGS)
            .value_two(0u64)
            .op(Masked)
            .build()
            .map_err(oci_err)?;
        rules.push(rule(
            &["clone"],
            LinuxSeccompAction::ScmpActAllow,
            vec![flags],
        ));
        let mut clone3 = rule(&["clone3"], LinuxSeccompAction::ScmpActErrno, vec![]);
        clone3.set_errno_ret(Some(table::ENOSYS));
        rules.push(clone3);
    }
    let architectures = table::architectures(arch)
        .iter()
        .map(|a| {
            serde_json::from_value::<Arch>(serde_json::Value::String(a.to_string()))
                .map_err(|e| Error::Internal(format!("seccomp architecture {a}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut s = LinuxSeccomp::default();
    s.set_default_action(LinuxSeccompAction::ScmpActErrno);
    s.set_architectures((!architectures.is_empty()).then_some(architectures));
    s.set_syscalls(Some(rules));
    Ok(s)
}

/// Parses a Localhost profile's contents (OCI `LinuxSeccomp` JSON).
pub fn parse_localhost(json: &str) -> Result<LinuxSeccomp> {
    serde_json::from_str(json)
        .map_err(|e| Error::InvalidArgument(format!("invalid seccomp profile: {e}")))
}

/// The seccomp filter for a process, as containerd chooses it: none when privileged or
/// unset or Unconfined; an error when the host lacks seccomp but a profile is asked for;
/// the default profile for RuntimeDefault; the given contents for Localhost.
pub fn for_profile(
    profile: Option<&SecurityProfile>,
    privileged: bool,
    host: &HostInfo,
    bounding: &[Capability],
    localhost: Option<&str>,
) -> Result<Option<LinuxSeccomp>> {
    if privileged {
        return Ok(None);
    }
    let Some(p) = profile else { return Ok(None) };
    if p.profile_type != ProfileType::Localhost && !p.localhost_ref.is_empty() {
        return Err(Error::InvalidArgument(
            "seccomp localhost_ref may only be set for a Localhost profile".into(),
        ));
    }
    if p.profile_type == ProfileType::Unconfined {
        return Ok(None);
    }
    if !host.has_seccomp {
        return Err(Error::InvalidArgument(
            "seccomp is not supported on this host".into(),
        ));
    }
    match p.profile_type {
        ProfileType::Unconfined => Ok(None),
        ProfileType::RuntimeDefault => runtime_default(&host.arch, bounding).map(Some),
        ProfileType::Localhost => {
            let text = localhost.ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "seccomp profile {:?} was not provided",
                    p.localhost_ref
                ))
            })?;
            parse_localhost(text)
                .map_err(|e| e.context(format!("seccomp profile {:?}", p.localhost_ref)))
                .map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &LinuxSeccomp) -> Vec<String> {
        s.syscalls()
            .iter()
            .flatten()
            .flat_map(|r| r.names().clone())
            .collect()
    }

    #[test]
    fn default_profile_shape() {
        let s = runtime_default("amd64", &caps::DEFAULT).unwrap();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(
            v["architectures"],
            serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        let n = names(&s);
        for allowed in ["read", "execve", "arch_prctl", "chroot", "clone", "clone3"] {
            assert!(n.iter().any(|x| x == allowed), "{allowed}");
        }
        for denied in [
            "mount",
            "unshare",
            "setns",
            "reboot",
            "init_module",
            "bpf",
            "keyctl",
        ] {
            assert!(!n.iter().any(|x| x == denied), "{denied}");
        }
        // clone is only allowed without namespace flags; clone3 returns ENOSYS.
        let clone3 = s
            .syscalls()
            .iter()
            .flatten()
            .find(|r| r.names() == &["clone3"])
            .unwrap();
        assert_eq!(clone3.errno_ret(), Some(38));
        let arm = serde_json::to_value(runtime_default("arm64", &[]).unwrap()).unwrap();
        assert_eq!(
            arm["architectures"],
            serde_json::json!(["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"])
        );
    }

    #[test]
    fn capabilities_unlock_syscalls() {
        let admin =
            runtime_default("amd64", &[Capability::SysAdmin, Capability::SysPtrace]).unwrap();
        let n = names(&admin);
        for allowed in ["mount", "unshare", "setns", "kcmp", "clone3"] {
            assert!(n.iter().any(|x| x == allowed), "{allowed}");
        }
        // With CAP_SYS_ADMIN, clone3 is simply allowed: no ENOSYS rule.
        assert!(admin
            .syscalls()
            .iter()
            .flatten()
            .all(|r| r.errno_ret().is_none()));
    }

    #[test]
    fn profile_choice() {
        let host = HostInfo {
            has_seccomp: true,
            arch: "amd64".into(),
            ..Default::default()
        };
        let prof = |t: ProfileType, r: &str| SecurityProfile {
            profile_type: t,
            localhost_ref: r.into(),
        };
        let rd = prof(ProfileType::RuntimeDefault, "");
        assert!(for_profile(None, false, &host, &[], None)
            .unwrap()
            .is_none());
        assert!(for_profile(Some(&rd), true, &host, &[], None)
            .unwrap()
            .is_none());
        assert!(for_profile(Some(&rd), false, &host, &[], None)
            .unwrap()
            .is_some());
        let unconfined = prof(ProfileType::Unconfined, "");
        assert!(for_profile(Some(&unconfined), false, &host, &[], None)
            .unwrap()
            .is_none());
        let local = prof(ProfileType::Localhost, "/p.json");
        let text = r#"{"defaultAction":"SCMP_ACT_LOG","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#;
        let got = for_profile(Some(&local), false, &host, &[], Some(text))
            .unwrap()
            .unwrap();
        assert_eq!(got.default_action(), LinuxSeccompAction::ScmpActLog);
        let bad = for_profile(Some(&local), false, &host, &[], Some("{nope"));
        assert!(matches!(bad, Err(Error::InvalidArgument(m)) if m.contains("/p.json")));
        assert!(for_profile(Some(&local), false, &host, &[], None).is_err());
        let misplaced = prof(ProfileType::RuntimeDefault, "/x");
        assert!(for_profile(Some(&misplaced), false, &host, &[], None).is_err());
        let no_seccomp = HostInfo {
            has_seccomp: false,
            ..host.clone()
        };
        assert!(for_profile(Some(&rd), false, &no_seccomp, &[], None).is_err());
        assert!(
            for_profile(Some(&unconfined), false, &no_seccomp, &[], None)
                .unwrap()
                .is_none()
        );
    }
}
