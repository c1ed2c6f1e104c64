//! What runc's and hcsshim's runtime options share: the operator's TOML table arrives as
//! JSON, keys are matched whatever their spelling (`BinaryName`, `binary_name` and
//! `binaryname` name one field, as containerd's TOML decoding of the Go structs allows),
//! and a mistyped value is InvalidArgument naming the key.

use crimux_core::{Error, Result};
use serde_json::Value;

/// Whether `json` holds no options (empty text or an empty table): nothing to encode.
pub(crate) fn absent(json: &str) -> bool {
    json.trim().is_empty() || json.trim() == "{}"
}

/// Parses the table in `json` into a `T`, calling `set(options, normalised key, key,
/// value)` for each entry (`set` refuses keys it does not know).
pub(crate) fn parse<T: Default>(
    json: &str,
    set: impl Fn(&mut T, &str, &str, &Value) -> Result<()>,
) -> Result<T> {
    let value: Value = serde_json::from_str(json)
        .map_err(|e| Error::InvalidArgument(format!("runtime options are not JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(Error::InvalidArgument(
            "runtime options must be a table".into(),
        ));
    };
    let mut options = T::default();
    for (key, v) in &map {
        let norm: String = key
            .chars()
            .filter(|c| *c != '_')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        set(&mut options, &norm, key, v)?;
    }
    Ok(options)
}

/// The error for option `key` not being `what` (`"a boolean"`).
pub(crate) fn bad(key: &str, what: &str) -> Error {
    Error::InvalidArgument(format!("runtime option {key} must be {what}"))
}

/// The error for an option `kind`'s shim does not have (`kind`: `runc`, `runhcs`).
pub(crate) fn unsupported(kind: &str, key: &str) -> Error {
    Error::InvalidArgument(format!("unsupported {kind} runtime option {key:?}"))
}

pub(crate) fn want_bool(key: &str, v: &Value) -> Result<bool> {
    v.as_bool().ok_or_else(|| bad(key, "a boolean"))
}

pub(crate) fn want_string(key: &str, v: &Value) -> Result<String> {
    v.as_str()
        .map(String::from)
        .ok_or_else(|| bad(key, "a string"))
}
