//! containerd's content store: look blobs up, read them, and stream new ones in.
//!
//! Writes follow containerd's ingest protocol on the bidirectional `Content.Write` stream:
//! STAT (which takes the ref's lock and reports how much an earlier attempt left), WRITE
//! chunks at increasing offsets, then COMMIT with the expected size and digest, which the
//! daemon verifies before the blob becomes visible under its digest.

use std::time::{Duration, Instant};

use bytes::Bytes;
use containerd_client::services::v1::{
    AbortRequest, Info, InfoRequest, ReadContentRequest, UpdateRequest, WriteAction,
    WriteContentRequest, WriteContentResponse,
};
use crimux_core::{Error, Result};
use crimux_registry::BlobStream;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};

use crate::client::{is_already_exists, is_not_found, Daemon};
use crate::labels::Labels;

/// The most we send in one WRITE message.
const CHUNK: usize = 1 << 20;
/// How long we wait for another writer holding the same ingest ref.
const LOCK_WAIT: Duration = Duration::from_secs(600);

/// A blob to store: its digest, size and labels.
pub struct Blob<'a> {
    pub digest: &'a str,
    pub size: u64,
    pub labels: Labels,
}

/// Metadata of a committed blob, if present.
pub async fn info(daemon: &Daemon, digest: &str) -> Result<Option<Info>> {
    let request = daemon.request(
        InfoRequest {
            digest: digest.to_string(),
        },
        None,
    );
    match daemon.content().info(request).await {
        Ok(response) => Ok(response.into_inner().info),
        Err(status) if is_not_found(&status) => Ok(None),
        Err(status) => Err(Error::backend(format!("content info {digest}"), status)),
    }
}

/// Reads a whole blob (manifests and configs; never layers).
pub async fn read(daemon: &Daemon, digest: &str) -> Result<Vec<u8>> {
    let request = daemon.request(
        ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        },
        None,
    );
    let context = || format!("reading content {digest}");
    let mut stream = daemon
        .content()
        .read(request)
        .await
        .map_err(|s| Error::backend(context(), s))?
        .into_inner();
    let mut data = Vec::new();
    while let Some(part) = stream
        .message()
        .await
        .map_err(|s| Error::backend(context(), s))?
    {
        data.extend_from_slice(&part.data);
    }
    Ok(data)
}

/// Sets `labels` on a committed blob, leaving its other labels alone.
pub async fn add_labels(daemon: &Daemon, digest: &str, labels: Labels) -> Result<()> {
    if labels.is_empty() {
        return Ok(());
    }
    let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
    let request = daemon.request(
        UpdateRequest {
            info: Some(Info {
                digest: digest.to_string(),
                labels,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths }),
        },
        None,
    );
    daemon
        .content()
        .update(request)
        .await
        .map_err(|s| Error::backend(format!("labelling content {digest}"), s))?;
    Ok(())
}

/// Stores a blob unless it is already there, fetching its bytes with `open` only when they
/// are needed. Waits out another writer of the same blob. Everything written is held by
/// `lease`.
pub async fn write<F, Fut>(daemon: &Daemon, lease: &str, blob: Blob<'_>, open: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<BlobStream>>,
{
    let reference = format!("crimux-pull-{}", blob.digest);
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    let mut may_resume = true;
    let mut raced = 0;
    loop {
        if info(daemon, blob.digest).await?.is_some() {
            return add_labels(daemon, blob.digest, blob.labels).await;
        }
        match write_once(daemon, lease, &reference, &blob, &open, may_resume).await {
            Ok(()) => return Ok(()),
            Err(Attempt::Exists) if raced < 3 => raced += 1,
            Err(Attempt::Exists) => {
                return Err(Error::Internal(format!(
                    "content store says {} exists but cannot find it",
                    blob.digest
                )))
            }
            Err(Attempt::Locked) if started.elapsed() < LOCK_WAIT => {
                tracing::debug!(
                    digest = blob.digest,
                    "ingest locked by another writer; waiting"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(Attempt::Locked) => {
                return Err(Error::Unavailable(format!(
                    "content {} stayed locked by another writer for {LOCK_WAIT:?}",
                    blob.digest
                )))
            }
            Err(Attempt::BadResume) if may_resume => {
                tracing::info!(
                    digest = blob.digest,
                    "resumed ingest did not verify; restarting"
                );
                may_resume = false;
            }
            Err(Attempt::BadResume) => {
                return Err(Error::InvalidArgument(format!(
                    "blob {} does not match its digest or size",
                    blob.digest
                )))
            }
            Err(Attempt::Failed(e)) => {
                abort(daemon, &reference).await;
                return Err(e);
            }
        }
    }
}

enum Attempt {
    /// The blob appeared (someone else committed it).
    Exists,
    /// Another stream holds the ingest ref.
    Locked,
    /// The commit failed verification after resuming a partial ingest.
    BadResume,
    Failed(Error),
}

async fn write_once<F, Fut>(
    daemon: &Daemon,
    lease: &str,
    reference: &str,
    blob: &Blob<'_>,
    open: &F,
    may_resume: bool,
) -> std::result::Result<(), Attempt>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<BlobStream>>,
{
    let total = i64::try_from(blob.size)
        .map_err(|_| Attempt::Failed(Error::InvalidArgument("blob too large".into())))?;
    let context = || format!("writing content {}", blob.digest);
    let (tx, rx) = mpsc::channel(2);
    let message = |action: WriteAction, offset: i64, data: Vec<u8>| WriteContentRequest {
        action: action as i32,
        r#ref: reference.to_string(),
        total,
        expected: blob.digest.to_string(),
        offset,
        data,
        labels: if action == WriteAction::Commit {
            blob.labels.clone()
        } else {
            Labels::new()
        },
    };
    let send = |m: WriteContentRequest| {
        let tx = tx.clone();
        async move {
            tx.send(m)
                .await
                .map_err(|_| Attempt::Failed(Error::Internal("content write stream closed".into())))
        }
    };
    send(message(WriteAction::Stat, 0, Vec::new())).await?;
    let mut responses = match daemon
        .content()
        .write(daemon.request(ReceiverStream::new(rx), Some(lease)))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(status) => return Err(classify(status, context())),
    };
    let stat = next(&mut responses, blob.digest).await?;
    let mut skip = if may_resume && stat.offset > 0 && stat.offset <= total {
        tracing::debug!(
            digest = blob.digest,
            offset = stat.offset,
            "resuming ingest"
        );
        stat.offset
    } else {
        0
    };
    let mut offset = skip;

    let mut source = open().await.map_err(Attempt::Failed)?;
    let mut first = true;
    while let Some(chunk) = source.next().await {
        let mut chunk: Bytes = chunk.map_err(|e| Attempt::Failed(e.context(context())))?;
        if skip > 0 {
            let n = (skip as usize).min(chunk.len());
            chunk = chunk.slice(n..);
            skip -= n as i64;
        }
        while !chunk.is_empty() {
            let piece = chunk.split_to(chunk.len().min(CHUNK));
            // The first WRITE states its offset: 0 truncates what an earlier attempt left.
            let at = offset;
            send(message(WriteAction::Write, at, piece.to_vec())).await?;
            offset += piece.len() as i64;
            let reply = next(&mut responses, blob.digest).await?;
            if first && reply.offset != offset {
                return Err(Attempt::Failed(Error::Internal(format!(
                    "content store is at offset {} for {}, expected {offset}",
                    reply.offset, blob.digest
                ))));
            }
            first = false;
        }
    }
    if offset != total {
        return Err(Attempt::Failed(Error::InvalidArgument(format!(
            "blob {} is {offset} bytes, its descriptor says {total}",
            blob.digest
        ))));
    }
    send(message(WriteAction::Commit, offset, Vec::new())).await?;
    match responses.message().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Attempt::Failed(Error::Internal(format!(
            "{}: stream ended before commit was confirmed",
            context()
        )))),
        Err(status)
            if status.code() == Code::FailedPrecondition && may_resume && stat.offset > 0 =>
        {
            abort(daemon, reference).await;
            Err(Attempt::BadResume)
        }
        Err(status) => Err(classify(status, context())),
    }
}

async fn next(
    responses: &mut Streaming<WriteContentResponse>,
    digest: &str,
) -> std::result::Result<WriteContentResponse, Attempt> {
    match responses.message().await {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(Attempt::Failed(Error::Internal(format!(
            "writing content {digest}: stream ended early"
        )))),
        Err(status) => Err(classify(status, format!("writing content {digest}"))),
    }
}

fn classify(status: tonic::Status, context: String) -> Attempt {
    if is_already_exists(&status) {
        Attempt::Exists
    } else if status.code() == Code::Unavailable {
        // containerd reports a ref held by another stream as Unavailable ("ref ... locked");
        // a dropped connection is retried the same way, and a daemon that stays down fails
        // the next Info call.
        Attempt::Locked
    } else {
        Attempt::Failed(Error::backend(context, status))
    }
}

/// Drops a failed ingest so it leaves nothing behind; best effort.
async fn abort(daemon: &Daemon, reference: &str) {
    let request = daemon.request(
        AbortRequest {
            r#ref: reference.to_string(),
        },
        None,
    );
    if let Err(status) = daemon.content().abort(request).await {
        if !is_not_found(&status) {
            tracing::debug!(reference, ?status, "aborting ingest failed");
        }
    }
}
