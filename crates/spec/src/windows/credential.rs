//! gMSA credential specs (`windows.credentialSpec`) and the spec's JSON as hcsshim reads it.
//!
//! containerd's CRI puts the CRI's `credential_spec` *string* into the OCI spec, and
//! hcsshim uses the field only when it is a JSON string (it type-asserts `.(string)` and
//! silently runs the container without its domain identity otherwise). `oci_spec` models
//! the field as a JSON object, so crimux holds the parsed credential spec there and turns
//! it into its string form when the spec is encoded for containerd ([`spec_to_json`]), and
//! back when a stored spec is read ([`spec_from_json`]).

use std::collections::HashMap;

use crimux_core::{Error, Result};
use oci_spec::runtime::Spec;
use serde_json::Value;

/// `oci_spec`'s type of `windows.credentialSpec`.
pub(super) type CredentialSpec = HashMap<String, Option<Value>>;

const POINTER: &str = "/windows/credentialSpec";

/// The CRI's credential spec as the spec holds it: `None` when empty; a JSON object
/// otherwise, anything else is InvalidArgument.
pub(super) fn parse(cs: &str) -> Result<Option<CredentialSpec>> {
    if cs.trim().is_empty() {
        return Ok(None);
    }
    match serde_json::from_str::<Value>(cs) {
        Ok(Value::Object(map)) => Ok(Some(map.into_iter().map(|(k, v)| (k, Some(v))).collect())),
        Ok(_) => Err(Error::InvalidArgument(
            "windows credential_spec must be a JSON object (a gMSA credential spec)".into(),
        )),
        Err(e) => Err(Error::InvalidArgument(format!(
            "windows credential_spec is not JSON: {e}"
        ))),
    }
}

/// The spec as the JSON containerd stores and hands to the shim: as `serde_json` writes
/// it, except that a credential spec becomes a JSON string. Specs without one (every
/// Linux spec) are unchanged.
pub fn spec_to_json(spec: &Spec) -> Result<Vec<u8>> {
    let encode = |e: serde_json::Error| Error::Internal(format!("encoding a runtime spec: {e}"));
    let mut v = serde_json::to_value(spec).map_err(encode)?;
    if let Some(cs) = v.pointer_mut(POINTER) {
        if cs.is_object() {
            *cs = Value::String(serde_json::to_string(cs).map_err(encode)?);
        }
    }
    serde_json::to_vec(&v).map_err(encode)
}

/// A stored spec read back: the inverse of [`spec_to_json`], also reading specs that
/// containerd's own CRI wrote (credential spec as a string).
pub fn spec_from_json(bytes: &[u8]) -> Result<Spec> {
    let decode = |e: serde_json::Error| Error::Internal(format!("decoding a runtime spec: {e}"));
    let mut v: Value = serde_json::from_slice(bytes).map_err(decode)?;
    if let Some(cs) = v.pointer_mut(POINTER) {
        if let Value::String(s) = cs {
            *cs = serde_json::from_str(s).map_err(decode)?;
        }
    }
    serde_json::from_value(v).map_err(decode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::Windows;

    const GMSA: &str = r#"{"CmsPlugins":["ActiveDirectory"],"DomainJoinConfig":{"Sid":"S-1-5-21-1","MachineAccountName":"webapp01","Guid":"244818ae-87ca-4fcd-92ec-e79e5252348a","DnsTreeName":"contoso.com","DnsName":"contoso.com","NetBiosName":"CONTOSO"},"ActiveDirectoryConfig":{"GroupManagedServiceAccounts":[{"Name":"webapp01","Scope":"contoso.com"}]}}"#;

    fn with_credential_spec(cs: &str) -> Spec {
        let mut w = Windows::default();
        w.set_credential_spec(parse(cs).expect("credential spec"));
        let mut s = Spec::default();
        s.set_windows(Some(w));
        s
    }

    #[test]
    fn the_credential_spec_travels_as_a_string() {
        let spec = with_credential_spec(GMSA);
        let bytes = spec_to_json(&spec).expect("encode");
        let v: Value = serde_json::from_slice(&bytes).expect("JSON");
        let Some(Value::String(s)) = v.pointer(POINTER) else {
            panic!("credentialSpec is not a string: {v}");
        };
        // Same document (keys may be reordered).
        assert_eq!(
            serde_json::from_str::<Value>(s).expect("inner JSON"),
            serde_json::from_str::<Value>(GMSA).expect("GMSA")
        );
        assert_eq!(spec_from_json(&bytes).expect("decode"), spec);
    }

    #[test]
    fn specs_without_one_are_unchanged() {
        let spec = Spec::default();
        let bytes = spec_to_json(&spec).expect("encode");
        assert_eq!(
            serde_json::from_slice::<Value>(&bytes).expect("JSON"),
            serde_json::to_value(&spec).expect("value")
        );
        assert_eq!(spec_from_json(&bytes).expect("decode"), spec);
        assert_eq!(parse("").expect("empty"), None);
    }

    #[test]
    fn invalid_credential_specs_are_refused() {
        for bad in ["{", "not json", r#"["a"]"#, r#""ActiveDirectory""#, "42"] {
            let err = parse(bad).expect_err(bad);
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad}: {err}");
        }
    }
}
