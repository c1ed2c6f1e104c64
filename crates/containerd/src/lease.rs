//! Leases: containerd's way of keeping half-built things alive.
//!
//! A pull writes content and snapshots that nothing references until the image record is
//! created at the very end; the garbage collector would take them at any moment. Everything
//! a pull creates is therefore held by its own lease. Deleting the lease on success leaves
//! what the image references; deleting it on failure (synchronously) lets the collector take
//! all of it, so a failed pull leaves nothing behind. The lease also expires by itself an
//! hour later, in case crimux dies mid-pull.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_client::services::v1::{AddResourceRequest, CreateRequest, DeleteRequest, Resource};
use crimux_core::{Error, Result};
use crimux_cri_log::Timestamp;
use rand::Rng;

use crate::client::{is_not_found, Daemon};
use crate::labels::{Labels, GC_EXPIRE};

/// How long an abandoned lease outlives its pull.
const EXPIRY: Duration = Duration::from_secs(3600);

/// Creates a pull lease and returns its id.
pub async fn create(daemon: &Daemon) -> Result<String> {
    let id = format!("crimux-pull-{:016x}", rand::rng().random::<u64>());
    let expires = SystemTime::now() + EXPIRY;
    let labels = Labels::from([(GC_EXPIRE.to_string(), rfc3339(expires))]);
    let request = daemon.request(
        CreateRequest {
            id: id.clone(),
            labels,
        },
        None,
    );
    daemon
        .leases()
        .create(request)
        .await
        .map_err(|s| Error::backend("creating pull lease", s))?;
    Ok(id)
}

/// Deletes a lease. With `sync`, waits for the collector to take what only it held.
pub async fn delete(daemon: &Daemon, id: &str, sync: bool) -> Result<()> {
    let request = daemon.request(
        DeleteRequest {
            id: id.to_string(),
            sync,
        },
        None,
    );
    match daemon.leases().delete(request).await {
        Ok(_) => Ok(()),
        Err(status) if is_not_found(&status) => Ok(()),
        Err(status) => Err(Error::backend(format!("deleting lease {id}"), status)),
    }
}

/// Adds a blob someone else wrote to our lease, so it survives until our image record.
pub async fn hold_content(daemon: &Daemon, id: &str, digest: &str) -> Result<()> {
    let request = daemon.request(
        AddResourceRequest {
            id: id.to_string(),
            resource: Some(Resource {
                id: digest.to_string(),
                r#type: "content".to_string(),
            }),
        },
        None,
    );
    daemon
        .leases()
        .add_resource(request)
        .await
        .map_err(|s| Error::backend(format!("leasing content {digest}"), s))?;
    Ok(())
}

/// Formats a time as RFC 3339 in UTC (`2024-01-31T12:00:00Z`), as containerd parses
/// `gc.expire`.
pub fn rfc3339(time: SystemTime) -> String {
    // Whole seconds, so the form has no fraction (what the CRI log format writes too).
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default();
    match Timestamp::from_unix(secs, 0) {
        Some(t) => t.to_string(),
        // Past year 9999: no lease lives that long anyway.
        None => "9999-12-31T23:59:59Z".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_utc() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_706_702_400, "2024-01-31T12:00:00Z"),
            (4_102_444_799, "2099-12-31T23:59:59Z"),
        ];
        for (secs, want) in cases {
            assert_eq!(
                rfc3339(UNIX_EPOCH + Duration::from_secs(secs)),
                want,
                "{secs}"
            );
        }
    }
}
