//! containerd container objects: an OCI spec, a runtime, a writable snapshot from an image,
//! labels and crimux's JSON record as an extension.

use std::collections::HashMap;

use crimux_core::Result;

use crate::backend::Inner;

/// What to create. The snapshot `key` is the container id; its parent is the image's top
/// chain id.
pub(crate) struct NewObject<'a> {
    pub id: &'a str,
    pub image_name: &'a str,
    /// The image's top chain id (snapshot parent).
    pub chain_id: &'a str,
    pub spec: &'a oci_spec::runtime::Spec,
    /// containerd runtime type (`io.containerd.runc.v2`) and its options as JSON (may be "").
    pub runtime_type: &'a str,
    pub runtime_options_json: &'a str,
    pub labels: HashMap<String, String>,
    /// Extension key, type_url and JSON bytes of crimux's own record.
    pub extension: (&'a str, &'a str, Vec<u8>),
}

/// Prepares the snapshot and creates the containerd container; rolls the snapshot back if
/// the container cannot be created.
pub(crate) async fn create(inner: &Inner, new: NewObject<'_>) -> Result<()> {
    let _ = (inner, new.id);
    Err(crimux_core::Error::Unimplemented("container objects are being built".into()))
}

/// A container object's labels and the JSON of one extension. Unknown id: NotFound.
pub(crate) async fn load(
    inner: &Inner,
    id: &str,
    extension: &str,
) -> Result<(HashMap<String, String>, Vec<u8>)> {
    let _ = (inner, id, extension);
    Err(crimux_core::Error::Unimplemented("container objects are being built".into()))
}

/// Ids of container objects whose labels match every `key=value` given.
pub(crate) async fn list(inner: &Inner, labels: &[(&str, &str)]) -> Result<Vec<String>> {
    let _ = (inner, labels);
    Err(crimux_core::Error::Unimplemented("container objects are being built".into()))
}

/// Replaces the record extension (and the spec when given) of an existing object.
pub(crate) async fn update(
    inner: &Inner,
    id: &str,
    extension: (&str, &str, Vec<u8>),
    spec: Option<&oci_spec::runtime::Spec>,
) -> Result<()> {
    let _ = (inner, id, extension, spec);
    Err(crimux_core::Error::Unimplemented("container objects are being built".into()))
}

/// Deletes the container object and its snapshot; absent ones are fine.
pub(crate) async fn remove(inner: &Inner, id: &str) -> Result<()> {
    let _ = (inner, id);
    Err(crimux_core::Error::Unimplemented("container objects are being built".into()))
}
