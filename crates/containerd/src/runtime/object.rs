//! containerd container objects: an OCI spec, a runtime, a writable snapshot from an image,
//! labels and crimux's JSON record as an extension.

use std::collections::HashMap;

use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::snapshots::{PrepareSnapshotRequest, RemoveSnapshotRequest};
use containerd_client::services::v1::{
    Container, CreateContainerRequest, DeleteContainerRequest, GetContainerRequest,
    ListContainersRequest, UpdateContainerRequest,
};
use crimux_core::{Error, Result};

use crate::backend::Inner;
use crate::client::is_not_found;
use crate::lease;

/// `type_url` containerd gives an OCI runtime spec stored as JSON.
pub(crate) const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

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

fn spec_any(id: &str, spec: &oci_spec::runtime::Spec) -> Result<prost_types::Any> {
    // Windows specs carry their gMSA credential spec as a string, which `oci_spec` cannot.
    let value = crimux_spec::windows::spec_to_json(spec)
        .map_err(|e| e.context(format!("the spec of {id}")))?;
    Ok(prost_types::Any {
        type_url: SPEC_TYPE_URL.to_string(),
        value,
    })
}

/// Prepares the snapshot and creates the containerd container; rolls the snapshot back if
/// the container cannot be created.
pub(crate) async fn create(inner: &Inner, new: NewObject<'_>) -> Result<()> {
    let snapshot = prepare(inner, new.id, new.chain_id).await?;
    let made = create_prepared(inner, new).await;
    if made.is_err() {
        snapshot.discard(inner).await;
    } else {
        snapshot.keep(inner).await;
    }
    made
}

/// A writable snapshot prepared for a container object that does not exist yet. A lease
/// keeps the collector off it (and expires by itself if crimux dies meanwhile): end it
/// with [`PreparedSnapshot::keep`] once the object exists, or
/// [`PreparedSnapshot::discard`].
pub(crate) struct PreparedSnapshot {
    pub key: String,
    /// The snapshot's mounts (for reading files out of the image before the spec is built).
    pub mounts: Vec<containerd_client::types::Mount>,
    lease: String,
}

impl PreparedSnapshot {
    /// The container object now references the snapshot: the lease can go.
    pub(crate) async fn keep(self, inner: &Inner) {
        if let Err(e) = lease::delete(&inner.daemon, &self.lease, false).await {
            tracing::warn!(backend = %inner.name, key = %self.key, %e, "could not delete a create lease");
        }
    }

    /// Removes the snapshot and the lease.
    pub(crate) async fn discard(self, inner: &Inner) {
        if let Err(e) = remove_snapshot(inner, &self.key).await {
            tracing::warn!(backend = %inner.name, key = %self.key, %e, "rollback: snapshot left behind");
        }
        self.keep(inner).await;
    }
}

/// Prepares snapshot `key` on top of `parent` (an image's top chain id).
pub(crate) async fn prepare(inner: &Inner, key: &str, parent: &str) -> Result<PreparedSnapshot> {
    prepare_labelled(inner, key, parent, HashMap::new()).await
}

/// [`prepare`] with labels for the snapshotter (the Windows scratch size).
pub(crate) async fn prepare_labelled(
    inner: &Inner,
    key: &str,
    parent: &str,
    labels: HashMap<String, String>,
) -> Result<PreparedSnapshot> {
    let lease = lease::create(&inner.daemon).await?;
    let request = inner.daemon.request(
        PrepareSnapshotRequest {
            snapshotter: inner.snapshotter.clone(),
            key: key.to_string(),
            parent: parent.to_string(),
            labels,
        },
        Some(&lease),
    );
    match inner.daemon.snapshots().prepare(request).await {
        Ok(r) => Ok(PreparedSnapshot {
            key: key.to_string(),
            mounts: r.into_inner().mounts,
            lease,
        }),
        Err(s) => {
            if let Err(e) = lease::delete(&inner.daemon, &lease, false).await {
                tracing::warn!(backend = %inner.name, key, %e, "could not delete a create lease");
            }
            let e = Error::backend(format!("preparing snapshot {key}"), s);
            Err(if e.code() == tonic::Code::AlreadyExists {
                Error::AlreadyExists(format!("snapshot {key} exists already"))
            } else {
                e
            })
        }
    }
}

/// Creates the containerd container over an already prepared snapshot (`new.id`).
pub(crate) async fn create_prepared(inner: &Inner, new: NewObject<'_>) -> Result<()> {
    let id = new.id;
    let options = super::runc::options_any(new.runtime_type, new.runtime_options_json)?;
    let container = Container {
        id: id.to_string(),
        labels: new.labels,
        image: new.image_name.to_string(),
        runtime: Some(Runtime {
            name: new.runtime_type.to_string(),
            options,
        }),
        spec: Some(spec_any(id, new.spec)?),
        snapshotter: inner.snapshotter.clone(),
        snapshot_key: id.to_string(),
        extensions: extensions(new.extension),
        ..Default::default()
    };
    let request = inner.daemon.request(
        CreateContainerRequest {
            container: Some(container),
        },
        None,
    );
    // Read again by the next list, whatever the outcome (or if this future is dropped).
    let _changed = inner.records.mark_on_drop(id);
    match inner.daemon.containers().create(request).await {
        Ok(_) => {
            tracing::debug!(backend = %inner.name, id, "container object created");
            Ok(())
        }
        Err(s) if s.code() == tonic::Code::AlreadyExists => Err(Error::AlreadyExists(format!(
            "container object {id} exists already"
        ))),
        Err(s) => Err(Error::backend(format!("creating container object {id}"), s)),
    }
}

/// The whole containerd container object. Unknown id: NotFound.
pub(crate) async fn get(inner: &Inner, id: &str) -> Result<Container> {
    let request = inner
        .daemon
        .request(GetContainerRequest { id: id.to_string() }, None);
    match inner.daemon.containers().get(request).await {
        Ok(r) => r
            .into_inner()
            .container
            .ok_or_else(|| Error::NotFound(format!("container object {id} not found"))),
        Err(s) if is_not_found(&s) => {
            Err(Error::NotFound(format!("container object {id} not found")))
        }
        Err(s) => Err(Error::backend(format!("container object {id}"), s)),
    }
}

/// Pod sandbox and container ids become containerd ids and file names: one safe path
/// component (letters, digits, `-_.`, not starting with a dot, dash or underscore).
/// InvalidArgument otherwise, naming the id a `what` (`"container"`, ...).
pub(crate) fn check_id(id: &str, what: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 76
        && !id.starts_with(['.', '-', '_'])
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("bad {what} id {id:?}")))
    }
}

/// AlreadyExists when a container object `id` exists, whoever made it (pod sandboxes and
/// containers share containerd's ids), naming it as `what` (`"pod sandbox"`, ...).
pub(crate) async fn check_absent(inner: &Inner, id: &str, what: &str) -> Result<()> {
    match get(inner, id).await {
        Ok(_) => Err(Error::AlreadyExists(format!("{what} {id} exists already"))),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// The OCI spec stored on an object.
pub(crate) fn spec_of(c: &Container) -> Result<oci_spec::runtime::Spec> {
    let any = c
        .spec
        .as_ref()
        .ok_or_else(|| Error::Internal(format!("container object {} has no spec", c.id)))?;
    crimux_spec::windows::spec_from_json(&any.value)
        .map_err(|e| e.context(format!("spec of container object {}", c.id)))
}

/// A container object's labels and the JSON of one extension. Unknown id: NotFound.
pub(crate) async fn load(
    inner: &Inner,
    id: &str,
    extension: &str,
) -> Result<(HashMap<String, String>, Vec<u8>)> {
    let c = get(inner, id).await?;
    let ext = c
        .extensions
        .get(extension)
        .map(|a| a.value.clone())
        .ok_or_else(|| {
            Error::NotFound(format!("container object {id} has no {extension} record"))
        })?;
    Ok((c.labels, ext))
}

/// The `extensions` map of an object carrying one record: (key, type_url, JSON).
fn extensions((key, type_url, value): (&str, &str, Vec<u8>)) -> HashMap<String, prost_types::Any> {
    HashMap::from([(
        key.to_string(),
        prost_types::Any {
            type_url: type_url.to_string(),
            value,
        },
    )])
}

fn label_filter(labels: &[(&str, &str)]) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("labels.{k:?}=={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whole container objects whose labels match every `key=value` of any one of `any_of`
/// (containerd ORs filters); every object when `any_of` is empty or holds an empty set.
pub(crate) async fn list_objects(
    inner: &Inner,
    any_of: &[&[(&str, &str)]],
) -> Result<Vec<Container>> {
    let filters = if any_of.iter().any(|labels| labels.is_empty()) {
        Vec::new()
    } else {
        any_of.iter().map(|labels| label_filter(labels)).collect()
    };
    let request = inner
        .daemon
        .request(ListContainersRequest { filters }, None);
    Ok(inner
        .daemon
        .containers()
        .list(request)
        .await
        .map_err(|s| Error::backend("listing container objects", s))?
        .into_inner()
        .containers)
}

/// Ids of container objects whose labels match every `key=value` given.
pub(crate) async fn list(inner: &Inner, labels: &[(&str, &str)]) -> Result<Vec<String>> {
    Ok(list_objects(inner, &[labels])
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect())
}

/// Replaces the record extension (and the spec when given) of an existing object.
pub(crate) async fn update(
    inner: &Inner,
    id: &str,
    extension: (&str, &str, Vec<u8>),
    spec: Option<&oci_spec::runtime::Spec>,
) -> Result<()> {
    let mut paths = vec![format!("extensions.{}", extension.0)];
    let mut container = Container {
        id: id.to_string(),
        extensions: extensions(extension),
        ..Default::default()
    };
    if let Some(spec) = spec {
        container.spec = Some(spec_any(id, spec)?);
        paths.push("spec".to_string());
    }
    let request = inner.daemon.request(
        UpdateContainerRequest {
            container: Some(container),
            update_mask: Some(prost_types::FieldMask { paths }),
        },
        None,
    );
    let _changed = inner.records.mark_on_drop(id);
    match inner.daemon.containers().update(request).await {
        Ok(_) => Ok(()),
        Err(s) if is_not_found(&s) => {
            Err(Error::NotFound(format!("container object {id} not found")))
        }
        Err(s) => Err(Error::backend(format!("updating container object {id}"), s)),
    }
}

async fn remove_snapshot(inner: &Inner, id: &str) -> Result<()> {
    let request = inner.daemon.request(
        RemoveSnapshotRequest {
            snapshotter: inner.snapshotter.clone(),
            key: id.to_string(),
        },
        None,
    );
    match inner.daemon.snapshots().remove(request).await {
        Ok(_) => Ok(()),
        Err(s) if is_not_found(&s) => Ok(()),
        Err(s) => Err(Error::backend(format!("removing snapshot {id}"), s)),
    }
}

/// Deletes the container object and its snapshot; absent ones are fine.
pub(crate) async fn remove(inner: &Inner, id: &str) -> Result<()> {
    let request = inner
        .daemon
        .request(DeleteContainerRequest { id: id.to_string() }, None);
    let _changed = inner.records.mark_on_drop(id);
    match inner.daemon.containers().delete(request).await {
        Ok(_) => {}
        Err(s) if is_not_found(&s) => {}
        Err(s) => return Err(Error::backend(format!("deleting container object {id}"), s)),
    }
    remove_snapshot(inner, id).await?;
    tracing::debug!(backend = %inner.name, id, "container object removed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_safe_path_component() {
        assert!(check_id(&"a".repeat(64), "container").is_ok());
        assert!(check_id("a-b_c.1", "container").is_ok());
        for bad in ["", "..", "a/b", ".x", "-x", "x y", &"a".repeat(77)] {
            let err = check_id(bad, "pod sandbox").expect_err(bad);
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn label_filters_quote_keys() {
        assert_eq!(
            label_filter(&[
                ("crimux.io/kind", "container"),
                ("crimux.io/sandbox-id", "ab")
            ]),
            r#"labels."crimux.io/kind"==container,labels."crimux.io/sandbox-id"==ab"#
        );
    }
}
