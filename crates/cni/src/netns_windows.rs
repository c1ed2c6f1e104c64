//! Windows pod networks: a Host Compute Network (HCN) namespace per pod, as containerd's CRI
//! creates on Windows (`pkg/netns/netns_windows.go` over hcsshim's `hcn` package).
//!
//! On Windows a [`NetNs`]'s "path" is the namespace's GUID: that is what the Windows CNI
//! plugins (`win-bridge`, `win-overlay`, `nat`) get as `CNI_NETNS`, and what the OCI spec
//! names in `windows.network.networkNamespace`. The plugins create the HNS endpoint and add
//! it to the namespace; the namespace itself is created and deleted here, through
//! `computenetwork.dll` ([`crate::hcn`], Windows only).
//!
//! Which kind of namespace a pod gets follows the *backend's* OS ([`NetnsKind`]), not the
//! OS crimux was built for, so the choice is made in platform-neutral code and a kind this
//! build cannot make fails cleanly. The pure parts (GUIDs, the HCN JSON documents, plugin
//! file names) are tested on every host.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crimux_core::{Error, Result};

use crate::netns::NetNs;

/// What kind of network namespace a backend's pods get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetnsKind {
    /// A Linux network namespace pinned to a file (nsfs bind mount).
    Pinned,
    /// A Windows HCN namespace, named by its GUID.
    Hcn,
}

impl NetnsKind {
    /// The kind a backend whose platform OS is `os` (`linux`, `windows`) uses.
    pub fn for_os(os: &str) -> NetnsKind {
        if os.eq_ignore_ascii_case("windows") {
            NetnsKind::Hcn
        } else {
            NetnsKind::Pinned
        }
    }

    /// Whether this build of crimux can create namespaces of this kind.
    pub fn supported(self) -> bool {
        match self {
            NetnsKind::Pinned => cfg!(target_os = "linux"),
            NetnsKind::Hcn => cfg!(windows),
        }
    }
}

/// Creates a pod's network namespace of the given kind: pinned at `dir/name` on Linux, a
/// fresh HCN namespace on Windows (`dir` and `name` are then unused: HCN names it). A kind
/// this build cannot make is FailedPrecondition, naming what it needs.
pub fn create_pod_netns(kind: NetnsKind, dir: &Path, name: &str) -> Result<NetNs> {
    if !kind.supported() {
        return Err(unsupported(kind));
    }
    match kind {
        NetnsKind::Pinned => NetNs::create(dir, name),
        NetnsKind::Hcn => create_hcn(),
    }
}

#[cfg(windows)]
fn create_hcn() -> Result<NetNs> {
    imp::create_hcn()
}

#[cfg(not(windows))]
fn create_hcn() -> Result<NetNs> {
    Err(unsupported(NetnsKind::Hcn))
}

/// The FailedPrecondition a backend gets for a namespace kind this build cannot make.
pub fn unsupported(kind: NetnsKind) -> Error {
    Error::FailedPrecondition(match kind {
        NetnsKind::Hcn => "HCN namespaces need Windows: a backend whose OS is windows must be \
                           served by crimux running on that Windows host"
            .into(),
        NetnsKind::Pinned => "pinned network namespaces need Linux: a Linux backend's pods \
                              must be networked by crimux running on that Linux host"
            .into(),
    })
}

/// A Windows GUID, in the field layout `computenetwork.dll` takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Guid {
    pub data1: u32,
    pub data2: u16,
    pub data3: u16,
    pub data4: [u8; 8],
}

impl Guid {
    pub fn is_nil(&self) -> bool {
        *self == Guid::default()
    }
}

impl fmt::Display for Guid {
    /// Lower-case `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, as hcsshim prints namespace ids.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.data4;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            self.data1, self.data2, self.data3, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
        )
    }
}

impl FromStr for Guid {
    type Err = Error;

    /// Accepts the 36-character form, with or without braces, in either case.
    fn from_str(s: &str) -> Result<Guid> {
        let bad = || Error::InvalidArgument(format!("{s:?} is not a GUID"));
        let t = s
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or(s);
        let groups: Vec<&str> = t.split('-').collect();
        let lens = [8, 4, 4, 4, 12];
        if groups.len() != 5
            || groups
                .iter()
                .zip(lens)
                .any(|(g, n)| g.len() != n || !g.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(bad());
        }
        let hex = |g: &str| u64::from_str_radix(g, 16).map_err(|_| bad());
        let mut data4 = [0u8; 8];
        let tail = format!("{}{}", groups[3], groups[4]);
        for (i, b) in data4.iter_mut().enumerate() {
            *b = u8::from_str_radix(&tail[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Guid {
            data1: u32::try_from(hex(groups[0])?).map_err(|_| bad())?,
            data2: u16::try_from(hex(groups[1])?).map_err(|_| bad())?,
            data3: u16::try_from(hex(groups[2])?).map_err(|_| bad())?,
            data4,
        })
    }
}

/// The settings of a new pod namespace: HCN schema 2.0, a host namespace (hcsshim's
/// `NewNamespace(NamespaceTypeHost)`). HCN chooses the id.
pub fn namespace_settings() -> String {
    serde_json::json!({
        "SchemaVersion": {"Major": 2, "Minor": 0},
        "Type": "Host",
    })
    .to_string()
}

/// The query that returns a namespace's properties (hcsshim's `defaultQuery`).
pub fn namespace_query() -> String {
    serde_json::json!({
        "SchemaVersion": {"Major": 2, "Minor": 0},
        "Flags": 0,
    })
    .to_string()
}

/// The namespace id in a properties document (`{"ID": "...", ...}`).
pub fn namespace_id_from_properties(json: &str) -> Result<Guid> {
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| Error::Internal(format!("HCN namespace properties are not JSON: {e}")))?;
    let id = v
        .get("ID")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| Error::Internal(format!("HCN namespace properties have no ID: {json}")))?;
    id.parse()
        .map_err(|e: Error| Error::Internal(format!("HCN namespace id: {e}")))
}

/// `HRESULT_FROM_WIN32(ERROR_NOT_FOUND)`: HCN's "no such namespace".
pub const HRESULT_NOT_FOUND: u32 = 0x8007_0490;

/// Whether an HCN call failed because the namespace does not exist.
pub fn is_not_found(hresult: i32) -> bool {
    hresult as u32 == HRESULT_NOT_FOUND
}

/// An HCN failure as crimux's error: the call, the HRESULT in hex and HCN's error record.
pub fn hcn_error(call: &str, hresult: i32, record: &str) -> Error {
    let msg = format!(
        "{call} failed: HRESULT {:#010x}{}{}",
        hresult as u32,
        if record.is_empty() { "" } else { ": " },
        record.trim()
    );
    if is_not_found(hresult) {
        Error::NotFound(msg)
    } else {
        Error::Internal(msg)
    }
}

/// The file names a CNI plugin of type `plugin` may have: on Windows libcni also looks
/// for `<type>.exe` (the plugins are `win-bridge.exe`, `win-overlay.exe`, `nat.exe`).
pub fn plugin_file_names(plugin: &str, windows: bool) -> Vec<String> {
    if windows && !plugin.to_ascii_lowercase().ends_with(".exe") {
        vec![format!("{plugin}.exe"), plugin.to_string()]
    } else {
        vec![plugin.to_string()]
    }
}

/// The Windows side of [`NetNs`]: the "path" is the HCN namespace's GUID.
#[cfg(windows)]
pub(crate) mod imp {
    use std::path::{Path, PathBuf};

    use crimux_core::{Error, Result};

    use super::{unsupported, Guid, NetnsKind};
    use crate::netns::NetNs;

    /// The namespace GUID a "path" holds; anything else is a pinned Linux namespace,
    /// which this build cannot handle.
    fn guid_of(path: &Path) -> Result<Guid> {
        path.to_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| unsupported(NetnsKind::Pinned))
    }

    /// `NetNs::create` makes pinned namespaces, which Windows has not: HCN namespaces are
    /// asked for by kind ([`super::create_pod_netns`]), so that a Linux backend's pod never
    /// gets one by accident.
    pub(crate) fn create(_dir: &Path, _name: &str) -> Result<NetNs> {
        Err(unsupported(NetnsKind::Pinned))
    }

    pub(crate) fn create_hcn() -> Result<NetNs> {
        let id = crate::hcn::create_namespace(&super::namespace_settings())?;
        tracing::debug!(namespace = %id, "created HCN namespace");
        Ok(NetNs::from_path(PathBuf::from(id.to_string())))
    }

    pub(crate) fn open(path: &Path) -> Result<NetNs> {
        let id = guid_of(path)?;
        if crate::hcn::namespace_exists(&id)? {
            Ok(NetNs::from_path(path.to_path_buf()))
        } else {
            Err(Error::NotFound(format!(
                "HCN namespace {id} does not exist"
            )))
        }
    }

    /// Idempotent, as containerd's `Remove`: a namespace that is gone is fine.
    pub(crate) fn remove(path: &Path) -> Result<()> {
        if path.as_os_str().is_empty() {
            return Ok(());
        }
        let id = guid_of(path)?;
        crate::hcn::delete_namespace(&id)?;
        tracing::debug!(namespace = %id, "removed HCN namespace");
        Ok(())
    }

    pub(crate) fn run_in<F, T>(_ns: &NetNs, _f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        Err(Error::Unimplemented(
            "running code inside an HCN namespace is not supported".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_backend_os() {
        assert_eq!(NetnsKind::for_os("windows"), NetnsKind::Hcn);
        assert_eq!(NetnsKind::for_os("Windows"), NetnsKind::Hcn);
        assert_eq!(NetnsKind::for_os("linux"), NetnsKind::Pinned);
        assert_eq!(NetnsKind::Hcn.supported(), cfg!(windows));
        assert_eq!(NetnsKind::Pinned.supported(), cfg!(target_os = "linux"));
    }

    #[cfg(not(windows))]
    #[test]
    fn hcn_namespaces_need_windows() {
        let dir = tempfile::tempdir().unwrap();
        let err = create_pod_netns(NetnsKind::Hcn, dir.path(), "s1").unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
        assert!(
            err.to_string().contains("HCN namespaces need Windows"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn guids_round_trip() {
        let s = "5f0a6b3e-29c1-4b8e-9b7a-2d5c3e4f6a10";
        let g: Guid = s.parse().unwrap();
        assert_eq!(g.data1, 0x5f0a_6b3e);
        assert_eq!(g.data2, 0x29c1);
        assert_eq!(g.data3, 0x4b8e);
        assert_eq!(g.data4, [0x9b, 0x7a, 0x2d, 0x5c, 0x3e, 0x4f, 0x6a, 0x10]);
        assert_eq!(g.to_string(), s);
        let braced: Guid = "{5F0A6B3E-29C1-4B8E-9B7A-2D5C3E4F6A10}".parse().unwrap();
        assert_eq!(braced, g);
        assert!(!g.is_nil());
        assert!(Guid::default().is_nil());
        assert_eq!(
            Guid::default().to_string(),
            "00000000-0000-0000-0000-000000000000"
        );
        for bad in [
            "",
            "5f0a6b3e29c14b8e9b7a2d5c3e4f6a10",
            "5f0a6b3e-29c1-4b8e-9b7a-2d5c3e4f6a1",
            "5f0a6b3e-29c1-4b8e-9b7a-2d5c3e4f6a1g",
            "{5f0a6b3e-29c1-4b8e-9b7a-2d5c3e4f6a10",
            "/run/netns/cni-1",
        ] {
            assert!(bad.parse::<Guid>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hcn_documents() {
        let v: serde_json::Value = serde_json::from_str(&namespace_settings()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"SchemaVersion": {"Major": 2, "Minor": 0}, "Type": "Host"})
        );
        let q: serde_json::Value = serde_json::from_str(&namespace_query()).unwrap();
        assert_eq!(q["Flags"], 0);
        let id = namespace_id_from_properties(
            r#"{"ID":"5F0A6B3E-29C1-4B8E-9B7A-2D5C3E4F6A10","NamespaceId":7,"Type":"Host",
                "SchemaVersion":{"Major":2,"Minor":0}}"#,
        )
        .unwrap();
        assert_eq!(id.to_string(), "5f0a6b3e-29c1-4b8e-9b7a-2d5c3e4f6a10");
        for bad in ["", "{}", r#"{"ID":"nope"}"#, "[1]"] {
            assert!(namespace_id_from_properties(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hcn_errors_are_classified() {
        let e = hcn_error(
            "HcnOpenNamespace",
            HRESULT_NOT_FOUND as i32,
            " Element not found. ",
        );
        assert!(matches!(e, Error::NotFound(_)), "{e}");
        assert!(
            e.to_string().contains("0x80070490: Element not found."),
            "{e}"
        );
        let e = hcn_error("HcnCreateNamespace", 0x8007_0005_u32 as i32, "");
        assert!(matches!(e, Error::Internal(_)), "{e}");
        assert!(e.to_string().ends_with("HRESULT 0x80070005"), "{e}");
    }

    #[cfg(any(target_os = "linux", windows))]
    #[test]
    fn dns_is_a_capability_only_when_asked_for() {
        use crimux_core::sandbox::{DnsConfig, SandboxMetadata};
        let mut req = crate::AttachRequest::new(
            crimux_core::PodSandboxId("s1".into()),
            "5f0a6b3e-29c1-4b8e-9b7a-2d5c3e4f6a10".into(),
            SandboxMetadata::default(),
        );
        assert!(crate::attach::capability_args(&req).unwrap().is_empty());
        req.dns = Some(DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["default.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        });
        let caps = crate::attach::capability_args(&req).unwrap();
        assert_eq!(
            caps["dns"],
            serde_json::json!({"servers": ["10.96.0.10"],
                "searches": ["default.svc.cluster.local"], "options": ["ndots:5"]})
        );
    }

    #[test]
    fn windows_plugins_are_exe_files() {
        assert_eq!(plugin_file_names("bridge", false), ["bridge"]);
        assert_eq!(
            plugin_file_names("win-bridge", true),
            ["win-bridge.exe", "win-bridge"]
        );
        assert_eq!(plugin_file_names("nat.exe", true), ["nat.exe"]);
    }
}
