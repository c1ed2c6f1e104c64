//! runc v2 runtime options: the operator writes them as a TOML table (rendered to JSON in
//! crimux's config, keys as containerd spells them: `BinaryName`, `SystemdCgroup`, ...);
//! the shim reads the protobuf message `containerd.runc.v1.Options`.

use crimux_core::{Error, Result};
use serde_json::Value;

use super::options::{self, bad, unsupported, want_bool, want_string};

/// `type_url` the runc shim decodes its options from.
pub(crate) const RUNC_OPTIONS_TYPE_URL: &str = "containerd.runc.v1.Options";
/// Runtime types whose options are runc's (`io.containerd.runc.v2`).
const RUNC_PREFIX: &str = "io.containerd.runc.";
/// Runtime types whose options are hcsshim's (`io.containerd.runhcs.v1`).
const RUNHCS_PREFIX: &str = "io.containerd.runhcs.";

/// `containerd.runc.v1.Options`, written here from its field numbers.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RuncOptions {
    #[prost(bool, tag = "1")]
    pub no_pivot_root: bool,
    #[prost(bool, tag = "2")]
    pub no_new_keyring: bool,
    #[prost(string, tag = "3")]
    pub shim_cgroup: String,
    #[prost(uint32, tag = "4")]
    pub io_uid: u32,
    #[prost(uint32, tag = "5")]
    pub io_gid: u32,
    #[prost(string, tag = "6")]
    pub binary_name: String,
    #[prost(string, tag = "7")]
    pub root: String,
    #[prost(bool, tag = "9")]
    pub systemd_cgroup: bool,
    #[prost(string, tag = "10")]
    pub criu_image_path: String,
    #[prost(string, tag = "11")]
    pub criu_work_path: String,
}

fn want_u32(key: &str, v: &Value) -> Result<u32> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| bad(key, "a uid/gid"))
}

fn set(o: &mut RuncOptions, norm: &str, key: &str, v: &Value) -> Result<()> {
    match norm {
        "nopivotroot" => o.no_pivot_root = want_bool(key, v)?,
        "nonewkeyring" => o.no_new_keyring = want_bool(key, v)?,
        "shimcgroup" => o.shim_cgroup = want_string(key, v)?,
        "iouid" => o.io_uid = want_u32(key, v)?,
        "iogid" => o.io_gid = want_u32(key, v)?,
        "binaryname" => o.binary_name = want_string(key, v)?,
        "root" => o.root = want_string(key, v)?,
        "systemdcgroup" => o.systemd_cgroup = want_bool(key, v)?,
        "criuimagepath" => o.criu_image_path = want_string(key, v)?,
        "criuworkpath" => o.criu_work_path = want_string(key, v)?,
        _ => return Err(unsupported("runc", key)),
    }
    Ok(())
}

/// Parses the operator's options for a runc runtime.
pub(crate) fn parse(json: &str) -> Result<RuncOptions> {
    options::parse(json, set)
}

/// The `Runtime.options` of a container object: `None` without options; runc options
/// (`containerd.runc.v1.Options`) or hcsshim's (`containerd.runhcs.v1.Options`, see
/// [`super::runhcs`]) encoded for the shim; options for other runtimes are refused, since
/// crimux cannot encode them.
pub(crate) fn options_any(runtime_type: &str, json: &str) -> Result<Option<prost_types::Any>> {
    if options::absent(json) {
        return Ok(None);
    }
    if runtime_type.starts_with(RUNHCS_PREFIX) {
        return super::runhcs::options_any(json).map(Some);
    }
    if !runtime_type.starts_with(RUNC_PREFIX) {
        return Err(Error::InvalidArgument(format!(
            "runtime options for {runtime_type} are not supported"
        )));
    }
    let options = parse(json)?;
    Ok(Some(prost_types::Any {
        type_url: RUNC_OPTIONS_TYPE_URL.to_string(),
        value: prost::Message::encode_to_vec(&options),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_runc_options() {
        assert_eq!(
            options_any("io.containerd.runc.v2", "").expect("empty"),
            None
        );
        let any = options_any(
            "io.containerd.runc.v2",
            r#"{"BinaryName":"/usr/bin/crun","SystemdCgroup":true}"#,
        )
        .expect("options")
        .expect("some");
        assert_eq!(any.type_url, RUNC_OPTIONS_TYPE_URL);
        let back: RuncOptions = prost::Message::decode(&any.value[..]).expect("decode");
        assert_eq!(back.binary_name, "/usr/bin/crun");
        assert!(back.systemd_cgroup);
        // field 6 (string) then field 9 (varint), as containerd's Go encoder writes them.
        assert_eq!(any.value[0], 6 << 3 | 2);
    }

    #[test]
    fn runhcs_handlers_get_runhcs_options() {
        let any = options_any(
            "io.containerd.runhcs.v1",
            r#"{"SandboxIsolation":"HYPERVISOR"}"#,
        )
        .expect("options")
        .expect("some");
        assert_eq!(any.type_url, "containerd.runhcs.v1.Options");
        assert_eq!(any.value, [6 << 3, 1]);
        assert_eq!(
            options_any("io.containerd.runhcs.v1", "{}").expect("empty"),
            None
        );
    }

    #[test]
    fn refuses_unknown_or_mistyped_options() {
        for (rt, json) in [
            ("io.containerd.runc.v2", r#"{"Nope":1}"#),
            ("io.containerd.runc.v2", r#"{"SystemdCgroup":"yes"}"#),
            ("io.containerd.runc.v2", "[1]"),
            ("io.containerd.runhcs.v1", r#"{"SystemdCgroup":true}"#),
            ("io.containerd.kata.v2", r#"{"Debug":true}"#),
        ] {
            let err = options_any(rt, json).expect_err(json);
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{json}");
        }
    }
}
