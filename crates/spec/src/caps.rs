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

/// Every capability crimux knows. Privileged containers and `add: [ALL]` get those of these
/// that the host can grant: see [`grantable`].
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

/// The kernel's bit number of a capability, as in `/proc/<pid>/status` masks.
fn bit(cap: Capability) -> Option<u32> {
    use Capability::*;
    Some(match cap {
        Chown => 0,
        DacOverride => 1,
        DacReadSearch => 2,
        Fowner => 3,
        Fsetid => 4,
        Kill => 5,
        Setgid => 6,
        Setuid => 7,
        Setpcap => 8,
        LinuxImmutable => 9,
        NetBindService => 10,
        NetBroadcast => 11,
        NetAdmin => 12,
        NetRaw => 13,
        IpcLock => 14,
        IpcOwner => 15,
        SysModule => 16,
        SysRawio => 17,
        SysChroot => 18,
        SysPtrace => 19,
        SysPacct => 20,
        SysAdmin => 21,
        SysBoot => 22,
        SysNice => 23,
        SysResource => 24,
        SysTime => 25,
        SysTtyConfig => 26,
        Mknod => 27,
        Lease => 28,
        AuditWrite => 29,
        AuditControl => 30,
        Setfcap => 31,
        MacOverride => 32,
        MacAdmin => 33,
        Syslog => 34,
        WakeAlarm => 35,
        BlockSuspend => 36,
        AuditRead => 37,
        Perfmon => 38,
        Bpf => 39,
        CheckpointRestore => 40,
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

/// The capabilities of [`ALL`] whose bits are set in `mask` (a `CapBnd` value).
pub fn within(mask: u64) -> Vec<Capability> {
    ALL.iter()
        .copied()
        .filter(|c| bit(*c).is_some_and(|b| mask & (1u64 << b) != 0))
        .collect()
}

/// What "every capability" means on a node whose bounding set is `bounding` (its `CapBnd`
/// mask; `None` when unknown, as for a remote backend): [`ALL`] limited to that set, as
/// containerd limits privileged containers to its current capabilities. Asking runc for a
/// capability outside the caller's bounding set fails the start with EPERM ("unable to apply
/// caps"), which happens when the node itself runs in a container without e.g.
/// CAP_SYS_RESOURCE.
pub fn grantable(bounding: Option<u64>) -> Vec<Capability> {
    match bounding {
        Some(mask) => within(mask),
        None => ALL.to_vec(),
    }
}

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
/// capability of `all` (see [`grantable`]), `drop: [ALL]` then clears them, and the named adds and drops follow in that
/// order (so `drop: [ALL], add: [NET_ADMIN]` leaves exactly NET_ADMIN).
pub fn apply(
    base: &[Capability],
    add: &[String],
    drop: &[String],
    all: &[Capability],
) -> Result<Vec<Capability>> {
    let mut caps: Vec<Capability> = base.to_vec();
    if add.iter().any(|c| is_all(c)) {
        caps = all.to_vec();
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
            let got = apply(&DEFAULT, &s(add), &s(drop), &ALL).unwrap();
            assert_eq!(got, want, "add {add:?} drop {drop:?}");
        }
        assert!(apply(&DEFAULT, &s(&["BOGUS"]), &[], &ALL).is_err());
    }

    #[test]
    fn every_known_capability_has_a_distinct_bit() {
        let mut bits: Vec<u32> = ALL.iter().filter_map(|c| bit(*c)).collect();
        bits.sort_unstable();
        bits.dedup();
        assert_eq!(bits, (0..41).collect::<Vec<u32>>());
    }

    #[test]
    fn mask_limits_the_set() {
        assert_eq!(within(u64::MAX), ALL.to_vec());
        assert_eq!(within(0), vec![]);
        // A node container without CAP_SYS_RESOURCE (bit 24).
        let got = within(0x1fffeffffff);
        assert_eq!(got.len(), 40);
        assert!(!got.contains(&Capability::SysResource));
        assert_eq!(
            within(1 << 21 | 1),
            vec![Capability::Chown, Capability::SysAdmin]
        );
    }

    #[test]
    fn add_all_grants_only_what_the_node_can() {
        let node = grantable(Some(0x1fffeffffff));
        assert_eq!(grantable(None), ALL.to_vec());
        let got = apply(&DEFAULT, &s(&["ALL"]), &[], &node).unwrap();
        assert_eq!(got, node);
        assert!(!got.contains(&Capability::SysResource));
    }

    #[test]
    fn oci_sets_have_no_inheritable_or_ambient() {
        let lc = to_oci(&DEFAULT);
        assert_eq!(lc.bounding().as_ref().unwrap().len(), 14);
        assert_eq!(lc.effective(), lc.permitted());
        assert!(lc.inheritable().is_none() && lc.ambient().is_none());
    }
}
