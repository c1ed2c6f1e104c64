//! containerd image records: the names that keep an image's content alive.
//!
//! One pulled image has up to three records (tag, `repo@digest`, and its id), all pointing
//! at the same target and labelled as crimux's with the image id, so the records of one
//! image can be grouped without reading any content.

use containerd_client::services::v1::{
    CreateImageRequest, DeleteImageRequest, Image as Record, ListImagesRequest, UpdateImageRequest,
};
use containerd_client::types::Descriptor;
use crimux_core::{Error, Result};

use crate::client::{is_already_exists, is_not_found, Daemon};
use crate::labels::{self, Labels, IMAGE_ID, IMAGE_MANAGED, IMAGE_MANAGED_VALUE};

/// Creates the record `name`, or points an existing one at `target`.
pub async fn put(daemon: &Daemon, name: &str, target: &Descriptor, labels: &Labels) -> Result<()> {
    let record = Record {
        name: name.to_string(),
        labels: labels.clone(),
        target: Some(target.clone()),
        ..Default::default()
    };
    let create = daemon.request(
        CreateImageRequest {
            image: Some(record.clone()),
            source_date_epoch: None,
        },
        None,
    );
    match daemon.images().create(create).await {
        Ok(_) => return Ok(()),
        Err(status) if is_already_exists(&status) => {}
        Err(status) => {
            return Err(Error::backend(
                format!("creating image record {name}"),
                status,
            ))
        }
    }
    let update = daemon.request(
        UpdateImageRequest {
            image: Some(record),
            update_mask: None,
            source_date_epoch: None,
        },
        None,
    );
    daemon
        .images()
        .update(update)
        .await
        .map_err(|s| Error::backend(format!("updating image record {name}"), s))?;
    tracing::debug!(name, target = %target.digest, "image record updated");
    Ok(())
}

/// Adds the pin labels to an existing record, leaving its other labels and its target as
/// they are (a field mask of just those two labels, so a concurrent pull's relabelling of
/// the same name is not undone).
pub async fn pin(daemon: &Daemon, record: &Record) -> Result<()> {
    let pinned = labels::pinned_labels();
    let paths = pinned.keys().map(|k| format!("labels.{k}")).collect();
    let update = daemon.request(
        UpdateImageRequest {
            image: Some(Record {
                name: record.name.clone(),
                labels: pinned,
                target: record.target.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths }),
            source_date_epoch: None,
        },
        None,
    );
    daemon
        .images()
        .update(update)
        .await
        .map_err(|s| Error::backend(format!("pinning image record {}", record.name), s))?;
    tracing::debug!(name = %record.name, "image record pinned");
    Ok(())
}

/// Every crimux image record in the namespace.
pub async fn list(daemon: &Daemon) -> Result<Vec<Record>> {
    let request = daemon.request(
        ListImagesRequest {
            filters: vec![format!("labels.\"{IMAGE_MANAGED}\"=={IMAGE_MANAGED_VALUE}")],
        },
        None,
    );
    let images = daemon
        .images()
        .list(request)
        .await
        .map_err(|s| Error::backend("listing images", s))?
        .into_inner()
        .images;
    Ok(images
        .into_iter()
        .filter(|r| image_id(r).is_some())
        .collect())
}

/// The image id a record belongs to.
pub fn image_id(record: &Record) -> Option<&str> {
    record
        .labels
        .get(IMAGE_ID)
        .map(String::as_str)
        .filter(|id| id.starts_with("sha256:"))
}

/// Deletes one record. With `sync`, waits for the collector to free what it held.
pub async fn delete(daemon: &Daemon, name: &str, sync: bool) -> Result<()> {
    let request = daemon.request(
        DeleteImageRequest {
            name: name.to_string(),
            sync,
            target: None,
        },
        None,
    );
    match daemon.images().delete(request).await {
        Ok(_) => Ok(()),
        Err(status) if is_not_found(&status) => Ok(()),
        Err(status) => Err(Error::backend(
            format!("deleting image record {name}"),
            status,
        )),
    }
}
