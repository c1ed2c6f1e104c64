//! Linux capability names as the CRI gives them, and the sets containers start from.

use crimux_core::{Error, Result};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

/// containerd's default set: what an unprivileged container gets without `add`/`drop`.
pub const DEFAULT: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability crimux knows; privileged containers and `add: [ALL]` get these.
pub const ALL: [Capability; 41] = [
    Capability::AuditControl,
    Capability::AuditRead,
    Capability::AuditWrite,
    Capability::BlockSuspend,
    Capability::Bpf,
    Capability::CheckpointRestore,
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::Kill,
    Capability::Lease,
    Capability::LinuxImmutable,
    Capability::MacAdmin,
    Capability::MacOverride,
    Capability::Mknod,
    Capability::NetAdmin,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetRaw,
    Capability::Perfmon,
    Capability::Setgid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::Setuid,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysChroot,
    Capability::SysModule,
    Capability::SysNice,
    Capability::SysPacct,
    Capability::SysPtrace,
    Capability::SysRawio,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Syslog,
    Capability::WakeAlarm,
];

/// Parses a capability name with or without the `CAP_` prefix, in any case.
pub fn parse(name: &str) -> Result<Capability> {
    serde_json::from_value(serde_json::Value::String(name.trim().to_string()))
        .map_err(|_| Error::InvalidArgument(format!("unknown capability {name:?}")))
}

/// The kernel's name of a capability (`CAP_NET_ADMIN`).
pub fn name(cap: Capability) -> String {
    match serde_json::to_value(cap) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("CAP_{cap}"),
    }
}

fn is_all(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("ALL")
}

/// Applies CRI `add`/`drop` to `base`, as containerd does: `add: [ALL]` first grants every
/// capability, `drop: [ALL]` then clears them, and the named adds and drops follow in that
/// order (so `drop: [ALL], add: [NET_ADMIN]` leaves exactly NET_ADMIN).
pub fn apply(base: &[Capability], add: &[String], drop: &[String]) -> Result<Vec<Capability>> {
    let mut caps: Vec<Capability> = base.to_vec();
    if add.iter().any(|c| is_all(c)) {
        caps = ALL.to_vec();
    }
    if drop.iter().any(|c| is_all(c)) {
        caps.clear();
    }
    for c in add.iter().filter(|c| !is_all(c)) {
        let c = parse(c)?;
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    for c in drop.iter().filter(|c| !is_all(c)) {
        let c = parse(c)?;
        caps.retain(|have| *have != c);
    }
    Ok(caps)
}

/// The process capabilities for a set: bounding, effective and permitted; no inheritable
/// or ambient ones (containerd drops ambient capabilities too).
pub fn to_oci(caps: &[Capability]) -> LinuxCapabilities {
    let set: Capabilities = caps.iter().copied().collect();
    let mut lc = LinuxCapabilities::default();
    lc.set_bounding(Some(set.clone()));
    lc.set_effective(Some(set.clone()));
    lc.set_permitted(Some(set));
    lc.set_inheritable(None);
    lc.set_ambient(None);
    lc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_with_and_without_prefix() {
        for n in ["NET_ADMIN", "CAP_NET_ADMIN", "net_admin", "cap_net_admin"] {
            assert_eq!(parse(n).unwrap(), Capability::NetAdmin, "{n}");
        }
        assert!(matches!(parse("NOPE"), Err(Error::InvalidArgument(_))));
        assert_eq!(name(Capability::SysAdmin), "CAP_SYS_ADMIN");
        assert_eq!(name(Capability::Syslog), "CAP_SYSLOG");
    }

    #[test]
    fn add_and_drop_rules() {
        type Case<'a> = (&'a [&'a str], &'a [&'a str], Vec<Capability>);
        let cases: Vec<Case> = vec![
            (&[], &[], DEFAULT.to_vec()),
            (&["ALL"], &[], ALL.to_vec()),
            (&[], &["ALL"], vec![]),
            (&["NET_ADMIN"], &["ALL"], vec![Capability::NetAdmin]),
            (
                &["all"],
                &["CAP_SYS_ADMIN"],
                ALL.iter()
                    .copied()
                    .filter(|c| *c != Capability::SysAdmin)
                    .collect(),
            ),
            (&["CAP_SYS_TIME"], &["KILL", "cap_chown"], {
                let mut v: Vec<_> = DEFAULT
                    .iter()
                    .copied()
                    .filter(|c| *c != Capability::Kill && *c != Capability::Chown)
                    .collect();
                v.push(Capability::SysTime);
                v
            }),
            // Adding a capability already present does not duplicate it.
            (&["CHOWN"], &[], DEFAULT.to_vec()),
        ];
        for (add, drop, want) in cases {
            let got = apply(&DEFAULT, &s(add), &s(drop)).unwrap();
            assert_eq!(got, want, "add {add:?} drop {drop:?}");
        }
        assert!(apply(&DEFAULT, &s(&["BOGUS"]), &[]).is_err());
    }

    #[test]
    fn oci_sets_have_no_inheritable_or_ambient() {
        let lc = to_oci(&DEFAULT);
        assert_eq!(lc.bounding().as_ref().unwrap().len(), 14);
        assert_eq!(lc.effective(), lc.permitted());
        assert!(lc.inheritable().is_none() && lc.ambient().is_none());
    }
}
