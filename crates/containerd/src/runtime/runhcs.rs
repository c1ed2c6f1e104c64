//! hcsshim runtime options: the operator writes them as a TOML table under a handler whose
//! `runtime_type` is `io.containerd.runhcs.v1` (keys as containerd's Windows config spells
//! them: `SandboxIsolation`, `Debug`, ...); the shim reads the protobuf message
//! `containerd.runhcs.v1.Options` (hcsshim's
//! `cmd/containerd-shim-runhcs-v1/options/runhcs.proto`).

use std::collections::BTreeMap;

use crimux_core::Result;
use serde_json::Value;

use super::options::{self, bad, unsupported, want_bool, want_string};

/// `type_url` the runhcs shim decodes its options from (containerd's `typeurl` names a
/// protobuf message by its full name, as for runc's options).
pub(crate) const RUNHCS_OPTIONS_TYPE_URL: &str = "containerd.runhcs.v1.Options";

/// Where the shim sends its debug output (`Options.DebugType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum DebugType {
    Npipe = 0,
    File = 1,
    Etw = 2,
}

/// How the shim isolates the pod (`Options.SandboxIsolation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum SandboxIsolation {
    Process = 0,
    Hypervisor = 1,
}

/// `containerd.runhcs.v1.Options`, written here from its field numbers.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RunhcsOptions {
    #[prost(bool, tag = "1")]
    pub debug: bool,
    #[prost(enumeration = "DebugType", tag = "2")]
    pub debug_type: i32,
    #[prost(string, tag = "3")]
    pub registry_root: String,
    #[prost(string, tag = "4")]
    pub sandbox_image: String,
    #[prost(string, tag = "5")]
    pub sandbox_platform: String,
    #[prost(enumeration = "SandboxIsolation", tag = "6")]
    pub sandbox_isolation: i32,
    #[prost(string, tag = "7")]
    pub boot_files_root_path: String,
    #[prost(int32, tag = "8")]
    pub vm_processor_count: i32,
    #[prost(int32, tag = "9")]
    pub vm_memory_size_in_mb: i32,
    #[prost(string, tag = "10")]
    pub gpu_vhd_path: String,
    #[prost(bool, tag = "11")]
    pub scale_cpu_limits_to_sandbox: bool,
    #[prost(int32, tag = "12")]
    pub default_container_scratch_size_in_gb: i32,
    #[prost(int32, tag = "13")]
    pub default_vm_scratch_size_in_gb: i32,
    #[prost(bool, tag = "14")]
    pub share_scratch: bool,
    #[prost(string, tag = "15")]
    pub nc_proxy_addr: String,
    #[prost(string, tag = "16")]
    pub log_level: String,
    #[prost(int32, tag = "17")]
    pub io_retry_timeout_in_sec: i32,
    /// A `BTreeMap` so that the encoding is the same every time.
    #[prost(btree_map = "string, string", tag = "18")]
    pub default_container_annotations: BTreeMap<String, String>,
    #[prost(bool, tag = "19")]
    pub no_inherit_host_timezone: bool,
    #[prost(bool, optional, tag = "20")]
    pub scrub_logs: Option<bool>,
}

impl RunhcsOptions {
    /// Whether the options ask for a utility VM per pod.
    pub(crate) fn hypervisor(&self) -> bool {
        self.sandbox_isolation == SandboxIsolation::Hypervisor as i32
    }

    /// Whether every field is at its default: the shim treats such options as absent.
    pub(crate) fn is_empty(&self) -> bool {
        *self == RunhcsOptions::default()
    }
}

/// logrus's levels, which the shim parses `LogLevel` with (refusing anything else).
const LOG_LEVELS: &[&str] = &[
    "trace", "debug", "info", "warn", "warning", "error", "fatal", "panic",
];

/// A non-negative `int32` (counts, sizes, seconds: the shim reads 0 as its default).
fn want_count(key: &str, v: &Value) -> Result<i32> {
    v.as_u64()
        .and_then(|n| i32::try_from(n).ok())
        .ok_or_else(|| bad(key, "a whole number from 0 to 2147483647"))
}

/// An enum given by name (any case) or by number, as containerd's TOML decoding of the
/// Go struct accepts it.
fn want_enum(key: &str, v: &Value, names: &[&str]) -> Result<i32> {
    let index = match v {
        Value::String(s) => names.iter().position(|n| n.eq_ignore_ascii_case(s)),
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n < names.len()),
        _ => None,
    };
    index
        .and_then(|i| i32::try_from(i).ok())
        .ok_or_else(|| bad(key, &format!("one of {} (or its number)", names.join(", "))))
}

fn want_log_level(key: &str, v: &Value) -> Result<String> {
    let level = want_string(key, v)?;
    if LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(&level)) {
        Ok(level)
    } else {
        Err(bad(key, &format!("one of {}", LOG_LEVELS.join(", "))))
    }
}

fn want_string_map(key: &str, v: &Value) -> Result<BTreeMap<String, String>> {
    let Value::Object(map) = v else {
        return Err(bad(key, "a table of strings"));
    };
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            _ => Err(bad(&format!("{key}.{k}"), "a string")),
        })
        .collect()
}

fn set(o: &mut RunhcsOptions, norm: &str, key: &str, v: &Value) -> Result<()> {
    match norm {
        "debug" => o.debug = want_bool(key, v)?,
        "debugtype" => o.debug_type = want_enum(key, v, &["NPIPE", "FILE", "ETW"])?,
        "registryroot" => o.registry_root = want_string(key, v)?,
        "sandboximage" => o.sandbox_image = want_string(key, v)?,
        "sandboxplatform" => o.sandbox_platform = want_string(key, v)?,
        "sandboxisolation" => {
            o.sandbox_isolation = want_enum(key, v, &["PROCESS", "HYPERVISOR"])?;
        }
        "bootfilesrootpath" => o.boot_files_root_path = want_string(key, v)?,
        "vmprocessorcount" => o.vm_processor_count = want_count(key, v)?,
        "vmmemorysizeinmb" => o.vm_memory_size_in_mb = want_count(key, v)?,
        "gpuvhdpath" => o.gpu_vhd_path = want_string(key, v)?,
        "scalecpulimitstosandbox" => o.scale_cpu_limits_to_sandbox = want_bool(key, v)?,
        "defaultcontainerscratchsizeingb" => {
            o.default_container_scratch_size_in_gb = want_count(key, v)?;
        }
        "defaultvmscratchsizeingb" => o.default_vm_scratch_size_in_gb = want_count(key, v)?,
        "sharescratch" => o.share_scratch = want_bool(key, v)?,
        "ncproxyaddr" => o.nc_proxy_addr = want_string(key, v)?,
        "loglevel" => o.log_level = want_log_level(key, v)?,
        "ioretrytimeoutinsec" => o.io_retry_timeout_in_sec = want_count(key, v)?,
        "defaultcontainerannotations" => {
            o.default_container_annotations = want_string_map(key, v)?;
        }
        "noinherithosttimezone" => o.no_inherit_host_timezone = want_bool(key, v)?,
        "scrublogs" => o.scrub_logs = Some(want_bool(key, v)?),
        _ => return Err(unsupported("runhcs", key)),
    }
    Ok(())
}

/// Parses the operator's options for an hcsshim runtime. Unknown keys and mistyped values
/// are InvalidArgument naming the key.
pub(crate) fn parse(json: &str) -> Result<RunhcsOptions> {
    options::parse(json, set)
}

/// The options of a handler, `None` when it has none (empty text or an empty table).
pub(crate) fn parse_optional(json: &str) -> Result<Option<RunhcsOptions>> {
    if options::absent(json) {
        return Ok(None);
    }
    parse(json).map(Some)
}

/// The options as the `Runtime.options` of a container object.
pub(crate) fn options_any(json: &str) -> Result<prost_types::Any> {
    Ok(prost_types::Any {
        type_url: RUNHCS_OPTIONS_TYPE_URL.to_string(),
        value: prost::Message::encode_to_vec(&parse(json)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_it_encodes() {
        let json = r#"{
            "Debug": true, "DebugType": "etw", "RegistryRoot": "Software\\runhcs",
            "SandboxImage": "mcr.microsoft.com/oss/kubernetes/pause:3.10",
            "SandboxPlatform": "windows/amd64", "SandboxIsolation": "HYPERVISOR",
            "BootFilesRootPath": "C:\\ContainerPlat\\LinuxBootFiles",
            "VmProcessorCount": 4, "vm_memory_size_in_mb": 4096,
            "DefaultContainerScratchSizeInGb": 30, "DefaultVmScratchSizeInGb": 10,
            "ShareScratch": true, "LogLevel": "warn", "GPUVHDPath": "C:\\gpu.vhdx",
            "ScaleCpuLimitsToSandbox": true, "NCProxyAddr": "\\\\.\\pipe\\ncproxy",
            "IoRetryTimeoutInSec": 30, "NoInheritHostTimezone": true, "ScrubLogs": false,
            "DefaultContainerAnnotations": {"io.microsoft.container.processor.count": "2"}
        }"#;
        let any = options_any(json).expect("options");
        assert_eq!(any.type_url, "containerd.runhcs.v1.Options");
        let o: RunhcsOptions = prost::Message::decode(&any.value[..]).expect("decode");
        assert!(o.debug && o.share_scratch && o.scale_cpu_limits_to_sandbox);
        assert_eq!(o.debug_type, DebugType::Etw as i32);
        assert_eq!(o.registry_root, r"Software\runhcs");
        assert_eq!(
            o.sandbox_image,
            "mcr.microsoft.com/oss/kubernetes/pause:3.10"
        );
        assert_eq!(o.sandbox_platform, "windows/amd64");
        assert!(o.hypervisor());
        assert_eq!(o.boot_files_root_path, r"C:\ContainerPlat\LinuxBootFiles");
        assert_eq!((o.vm_processor_count, o.vm_memory_size_in_mb), (4, 4096));
        assert_eq!(o.default_container_scratch_size_in_gb, 30);
        assert_eq!(o.default_vm_scratch_size_in_gb, 10);
        assert_eq!(o.log_level, "warn");
        assert_eq!(o.gpu_vhd_path, r"C:\gpu.vhdx");
        assert_eq!(o.nc_proxy_addr, r"\\.\pipe\ncproxy");
        assert_eq!(o.io_retry_timeout_in_sec, 30);
        assert!(o.no_inherit_host_timezone);
        assert_eq!(o.scrub_logs, Some(false));
        assert_eq!(
            o.default_container_annotations["io.microsoft.container.processor.count"],
            "2"
        );
    }

    #[test]
    fn wire_bytes_follow_the_field_numbers() {
        // field 6 (varint) = 1, then field 8 (varint) = 2, as Go's encoder writes them.
        let any = options_any(r#"{"SandboxIsolation":1,"VmProcessorCount":2}"#).expect("opts");
        assert_eq!(any.value, [6 << 3, 1, 8 << 3, 2]);
        // field 18 (a two-byte key: 18 << 3 | 2 = 146 as a varint), one map entry: a
        // nested message of key (1) and value (2).
        let any = options_any(r#"{"DefaultContainerAnnotations":{"a":"b"}}"#).expect("opts");
        assert_eq!(
            any.value,
            [0x92, 0x01, 6, 1 << 3 | 2, 1, b'a', 2 << 3 | 2, 1, b'b']
        );
        // An explicit `ScrubLogs = false` is still sent (field 20 is `optional`): key
        // 20 << 3 = 160 as a varint, then 0.
        let any = options_any(r#"{"ScrubLogs":false}"#).expect("opts");
        assert_eq!(any.value, [0xa0, 0x01, 0]);
    }

    #[test]
    fn enums_by_name_or_number() {
        for (json, hyperv) in [
            (r#"{"SandboxIsolation":"hypervisor"}"#, true),
            (r#"{"SandboxIsolation":"HYPERVISOR"}"#, true),
            (r#"{"sandbox_isolation":1}"#, true),
            (r#"{"SandboxIsolation":"PROCESS"}"#, false),
            (r#"{"SandboxIsolation":0}"#, false),
        ] {
            assert_eq!(parse(json).expect(json).hypervisor(), hyperv, "{json}");
        }
        assert_eq!(
            parse(r#"{"DebugType":"File"}"#).expect("file").debug_type,
            DebugType::File as i32
        );
        assert!(parse_optional("").expect("empty").is_none());
        assert!(parse_optional(" {} ").expect("empty").is_none());
        assert!(parse(r#"{"SandboxIsolation":"PROCESS"}"#)
            .expect("process")
            .is_empty());
    }

    #[test]
    fn refuses_unknown_or_mistyped_options_naming_the_key() {
        for (json, key) in [
            (r#"{"Nope":1}"#, "Nope"),
            (r#"{"Debug":"yes"}"#, "Debug"),
            (r#"{"DebugType":"syslog"}"#, "DebugType"),
            (r#"{"SandboxIsolation":2}"#, "SandboxIsolation"),
            (r#"{"SandboxIsolation":true}"#, "SandboxIsolation"),
            (r#"{"VmProcessorCount":-1}"#, "VmProcessorCount"),
            (r#"{"VmMemorySizeInMb":2147483648}"#, "VmMemorySizeInMb"),
            (r#"{"VmMemorySizeInMb":1.5}"#, "VmMemorySizeInMb"),
            (r#"{"LogLevel":"loud"}"#, "LogLevel"),
            (r#"{"RegistryRoot":3}"#, "RegistryRoot"),
            (
                r#"{"DefaultContainerAnnotations":{"a":1}}"#,
                "DefaultContainerAnnotations.a",
            ),
            (
                r#"{"DefaultContainerAnnotations":"a=b"}"#,
                "DefaultContainerAnnotations",
            ),
        ] {
            let err = parse(json).expect_err(json);
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{json}");
            assert!(err.to_string().contains(key), "{json}: {err}");
        }
        for json in ["[1]", "nope"] {
            let err = parse(json).expect_err(json);
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{json}");
        }
    }
}
