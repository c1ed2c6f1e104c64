//! Unpacking layers into committed snapshots, one per layer chain.
//!
//! A layer's snapshot is named by its chain id, so images sharing a base share its
//! snapshots, and a snapshot that already exists is simply reused. Each layer is applied
//! into a fresh active snapshot (`Prepare`), by the daemon's diff service (`Apply`), and
//! committed under its chain id (`Commit`); anything that fails is removed again.

use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, Kind, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{AddResourceRequest, ApplyRequest, Resource};
use containerd_client::types::Descriptor;
use crimux_core::{Error, Result};
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::client::{is_already_exists, is_not_found, Daemon};
use crate::labels::{snapshot_resource_type, Labels, SNAPSHOT_REF};

/// The chain ids of a stack of layers: the first is its diff id, each next one is
/// `sha256(parent_chain + " " + diff_id)`, as the OCI image spec defines.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chains: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chains.last() {
            None => diff_id.clone(),
            Some(parent) => {
                let hash = Sha256::digest(format!("{parent} {diff_id}").as_bytes());
                format!("sha256:{}", hex::encode(hash))
            }
        };
        chains.push(next);
    }
    chains
}

/// One layer to unpack: its blob and the digest of its uncompressed tar.
pub struct Layer {
    pub blob: Descriptor,
    pub diff_id: String,
}

/// Unpacks `layers` in order into `snapshotter`; every snapshot touched is held by `lease`.
/// Returns the top chain id (none for an image without layers).
pub async fn unpack(
    daemon: &Daemon,
    lease: &str,
    snapshotter: &str,
    layers: &[Layer],
) -> Result<Option<String>> {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let chains = chain_ids(&diff_ids);
    let mut parent = String::new();
    for (layer, chain) in layers.iter().zip(&chains) {
        if is_committed(daemon, snapshotter, chain).await? {
            hold(daemon, lease, snapshotter, chain).await?;
        } else {
            apply_layer(daemon, lease, snapshotter, layer, chain, &parent).await?;
        }
        parent = chain.clone();
    }
    Ok(chains.last().cloned())
}

async fn is_committed(daemon: &Daemon, snapshotter: &str, name: &str) -> Result<bool> {
    let request = daemon.request(
        StatSnapshotRequest {
            snapshotter: snapshotter.to_string(),
            key: name.to_string(),
        },
        None,
    );
    match daemon.snapshots().stat(request).await {
        Ok(response) => Ok(response
            .into_inner()
            .info
            .is_some_and(|i| i.kind == Kind::Committed as i32)),
        Err(status) if is_not_found(&status) => Ok(false),
        Err(status) => Err(Error::backend(format!("snapshot stat {name}"), status)),
    }
}

/// Adds an existing snapshot to our lease, so the collector keeps it until the image record
/// that will reference it exists.
async fn hold(daemon: &Daemon, lease: &str, snapshotter: &str, name: &str) -> Result<()> {
    let request = daemon.request(
        AddResourceRequest {
            id: lease.to_string(),
            resource: Some(Resource {
                id: name.to_string(),
                r#type: snapshot_resource_type(snapshotter),
            }),
        },
        None,
    );
    daemon
        .leases()
        .add_resource(request)
        .await
        .map_err(|s| Error::backend(format!("leasing snapshot {name}"), s))?;
    Ok(())
}

async fn apply_layer(
    daemon: &Daemon,
    lease: &str,
    snapshotter: &str,
    layer: &Layer,
    chain: &str,
    parent: &str,
) -> Result<()> {
    let key = format!(
        "crimux-extract-{:016x} {chain}",
        rand::rng().random::<u64>()
    );
    let labels = Labels::from([(SNAPSHOT_REF.to_string(), chain.to_string())]);
    let prepare = daemon.request(
        PrepareSnapshotRequest {
            snapshotter: snapshotter.to_string(),
            key: key.clone(),
            parent: parent.to_string(),
            labels,
        },
        Some(lease),
    );
    let mounts = match daemon.snapshots().prepare(prepare).await {
        Ok(reply) => reply.into_inner().mounts,
        // The `containerd.io/snapshot.ref` label makes containerd refuse the prepare when the
        // target chain was committed meanwhile (a concurrent pull of another image sharing
        // this layer): that layer is unpacked, so hold it like one found by Stat.
        Err(status) if is_already_exists(&status) => {
            return hold(daemon, lease, snapshotter, chain).await;
        }
        Err(status) => {
            return Err(Error::backend(
                format!("preparing snapshot for layer {}", layer.blob.digest),
                status,
            ))
        }
    };

    let outcome = apply_and_commit(daemon, lease, snapshotter, layer, chain, &key, mounts).await;
    match outcome {
        Ok(Committed::Ours) => Ok(()),
        Ok(Committed::Theirs) => {
            remove(daemon, snapshotter, &key).await;
            hold(daemon, lease, snapshotter, chain).await
        }
        Err(e) => {
            remove(daemon, snapshotter, &key).await;
            Err(e)
        }
    }
}

enum Committed {
    Ours,
    /// Another unpack committed the same chain first.
    Theirs,
}

async fn apply_and_commit(
    daemon: &Daemon,
    lease: &str,
    snapshotter: &str,
    layer: &Layer,
    chain: &str,
    key: &str,
    mounts: Vec<containerd_client::types::Mount>,
) -> Result<Committed> {
    let apply = daemon.request(
        ApplyRequest {
            diff: Some(layer.blob.clone()),
            mounts,
            ..Default::default()
        },
        Some(lease),
    );
    let applied = daemon
        .diff()
        .apply(apply)
        .await
        .map_err(|s| Error::backend(format!("applying layer {}", layer.blob.digest), s))?
        .into_inner()
        .applied
        .map(|d| d.digest)
        .unwrap_or_default();
    if applied != layer.diff_id {
        return Err(Error::InvalidArgument(format!(
            "layer {} unpacks to {applied}, but the image config says {}",
            layer.blob.digest, layer.diff_id
        )));
    }
    let commit = daemon.request(
        CommitSnapshotRequest {
            snapshotter: snapshotter.to_string(),
            name: chain.to_string(),
            key: key.to_string(),
            labels: Labels::new(),
        },
        Some(lease),
    );
    match daemon.snapshots().commit(commit).await {
        Ok(_) => Ok(Committed::Ours),
        Err(status) if is_already_exists(&status) => Ok(Committed::Theirs),
        Err(status) => Err(Error::backend(
            format!("committing snapshot {chain}"),
            status,
        )),
    }
}

/// Removes an active snapshot; best effort, used on the way out.
async fn remove(daemon: &Daemon, snapshotter: &str, key: &str) {
    let request = daemon.request(
        RemoveSnapshotRequest {
            snapshotter: snapshotter.to_string(),
            key: key.to_string(),
        },
        None,
    );
    if let Err(status) = daemon.snapshots().remove(request).await {
        if !is_not_found(&status) {
            tracing::warn!(key, ?status, "removing snapshot failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        assert!(chain_ids(&[]).is_empty());
        let a =
            "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4".to_string();
        let b =
            "sha256:2f9cd8ce2e1d5fd6b4a1d3d32c4e6d3b5b5a1f4bd2e8e0d8b0f6a3a1e3c0d5a7".to_string();
        let chains = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chains[0], a);
        let want = Sha256::digest(format!("{a} {b}").as_bytes());
        assert_eq!(chains[1], format!("sha256:{}", hex::encode(want)));
        // A third layer chains from the second chain id, not from the diff ids.
        let chains3 = chain_ids(&[a.clone(), b.clone(), a.clone()]);
        let want3 = Sha256::digest(format!("{} {a}", chains[1]).as_bytes());
        assert_eq!(chains3[2], format!("sha256:{}", hex::encode(want3)));
    }

    #[test]
    fn chain_id_matches_a_known_value() {
        // Computed independently: printf 'sha256:0..0 sha256:0..0' | sha256sum
        let x = format!("sha256:{}", "0".repeat(64));
        let chains = chain_ids(&[x.clone(), x]);
        assert_eq!(
            chains[1],
            "sha256:1c549100e455eee76a4725b64270b19d7fa7aea704960d46363fffa8732d51b8"
        );
    }
}
