//! Container calls: a container is created on its sandbox's backend and every later call
//! goes there too.
//!
//! CreateContainer also checks the image's OS (when a pull through this dispatcher taught
//! it) against the sandbox's backend. A mismatch another backend could run is the
//! composite round trip: the pod is hinted to that OS, its sandbox stopped so kubelet sees
//! it NOTREADY and makes a new one, which placement then puts on the right backend.
//!
//! As for sandboxes, [`crimux_core::REQUESTED_CONTAINER_ID`] asks for the container's id
//! (checked, honoured and stripped before the backend sees the config).

use std::sync::Arc;
use std::time::Duration;

use crimux_core::container::{ContainerConfig, Resources, WindowsResources};
use crimux_core::sandbox::SandboxConfig;
use crimux_core::status::{
    ContainerState, ContainerStats, ContainerStatus, ContainerSummary, ExecSyncOutput,
};
use crimux_core::{
    Backend, ContainerId, Error, ImageId, OsNotSupported, PodSandboxId, Result,
    REQUESTED_CONTAINER_ID, REQUESTED_SANDBOX_ID,
};

use crate::dispatcher::Dispatcher;
use crate::routes::SandboxRoute;
use crate::sandboxes::{check_free, new_id, now_ns, requested_id, without};

impl Dispatcher {
    /// Creates a container in a routed sandbox; unknown sandbox → NotFound.
    #[tracing::instrument(skip_all, fields(pod_id = sandbox, container = %config.metadata.name))]
    pub async fn create_container(
        &self,
        sandbox: &str,
        config: &ContainerConfig,
        sandbox_config: &SandboxConfig,
    ) -> Result<ContainerId> {
        let requested = requested_id(&config.annotations, REQUESTED_CONTAINER_ID)?;
        let config = without(
            config,
            |c| &mut c.annotations,
            REQUESTED_CONTAINER_ID,
            requested.is_some(),
        );
        let config = config.as_ref();
        // The pod's config comes along too; a forwarded one may still carry its own request.
        let sandbox_config = without(
            sandbox_config,
            |c| &mut c.annotations,
            REQUESTED_SANDBOX_ID,
            sandbox_config
                .annotations
                .contains_key(REQUESTED_SANDBOX_ID),
        );
        let sandbox_config = sandbox_config.as_ref();
        let (sandbox_id, route, backend) = self.sandbox_route(sandbox)?;
        self.check_image_os(&sandbox_id, &route, &backend, config)
            .await?;
        let id = {
            let mut routes = self.routes();
            let id = match requested {
                Some(id) => {
                    check_free(&routes, &id, REQUESTED_CONTAINER_ID)?;
                    ContainerId(id)
                }
                None => loop {
                    let id = ContainerId(new_id());
                    if !routes.table.containers.contains_key(&id) {
                        break id;
                    }
                },
            };
            // As for sandboxes: listed with this record should the backend become
            // unreachable before its next list.
            let record = ContainerSummary {
                id: id.clone(),
                sandbox_id: sandbox_id.clone(),
                metadata: config.metadata.clone(),
                image: config.image.clone(),
                image_ref: config.image.clone(),
                state: ContainerState::Created,
                created_at: now_ns(),
                labels: config.labels.clone(),
                annotations: config.annotations.clone(),
            };
            routes.commit(|t| {
                t.containers.insert(id.clone(), sandbox_id.clone());
                t.record_container(&record);
            })?;
            routes.pending.insert(id.0.clone());
            id
        };
        let result = backend
            .create_container(&id, &sandbox_id, config, sandbox_config)
            .await
            .map_err(Dispatcher::unreachable(&backend));
        let mut routes = self.routes();
        routes.pending.remove(id.as_str());
        match result {
            Ok(()) => Ok(id),
            Err(e) => {
                routes.commit_lossy(|t| {
                    t.remove_container(&id);
                });
                tracing::warn!(container_id = %id, error = %e, "create container failed; route dropped");
                Err(e)
            }
        }
    }

    /// Refuses a container whose image (by what a pull taught) needs another OS than its
    /// sandbox's backend runs; see the module doc.
    async fn check_image_os(
        &self,
        sandbox_id: &PodSandboxId,
        route: &SandboxRoute,
        backend: &Arc<dyn Backend>,
        config: &ContainerConfig,
    ) -> Result<()> {
        let here = &backend.info().platform.os;
        let Some(image_os) = self.learn_image_os(backend, &config.image).await else {
            return Ok(());
        };
        if here.eq_ignore_ascii_case(&image_os) {
            return Ok(());
        }
        let pod = format!("{}/{}", route.namespace, route.name);
        let elsewhere = {
            let mut router = self.router();
            let found = router.backend_for_os(&image_os).is_some();
            if found {
                router.hint_pod(&route.uid, &image_os);
            }
            found
        };
        if !elsewhere {
            return Err(OsNotSupported {
                required_os: image_os,
                node_os: self.node_os(),
                image: config.image.clone(),
                pod,
            }
            .into());
        }
        tracing::warn!(pod_id = %sandbox_id, %pod, image_os, backend_os = %here, "container image needs another backend: stopping the sandbox so it is recreated there");
        if let Err(e) = backend.stop_pod_sandbox(sandbox_id).await {
            tracing::warn!(pod_id = %sandbox_id, error = %e, "cannot stop the misplaced sandbox");
        }
        Err(Error::FailedPrecondition(format!(
            "container {:?} of pod {pod}: image {} is for {image_os}, but the pod's sandbox runs \
             on backend {:?} ({here}); the sandbox was stopped so that kubelet recreates the pod \
             on a {image_os} backend",
            config.metadata.name,
            config.image,
            backend.info().name
        )))
    }

    /// The OS of the image a container names: as a pull taught it (by image id), else
    /// (after a restart, or an image pulled behind crimux's back) the OS of the first
    /// backend whose store has it, the sandbox's own backend first (an image it holds is
    /// one it runs). `None` when no
    /// reachable backend has it: the backend's own create then reports the missing image.
    async fn learn_image_os(&self, backend: &Arc<dyn Backend>, image: &str) -> Option<String> {
        let id = ImageId(image.to_string());
        if let Some(os) = self.image_os(&id) {
            return Some(os);
        }
        let here = backend.info().name.clone();
        let others = self
            .fan_out()
            .into_iter()
            .filter(|(_, b)| b.info().name != here)
            .map(|(_, b)| b);
        for b in std::iter::once(backend.clone()).chain(others) {
            match b.image_status(image).await {
                Ok(Some(found)) => {
                    let os = b.info().platform.os.clone();
                    // Not cached: a tag may name a different image in each store.
                    tracing::debug!(image, backend = %b.info().name, %os, image_os = %found.platform.os, "image OS from a backend's store");
                    return Some(os);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(image, backend = %b.info().name, error = %e, "image status failed while learning its OS")
                }
            }
        }
        None
    }

    pub async fn start_container(&self, given: &str) -> Result<()> {
        let (id, _, backend) = self.container_route(given)?;
        backend
            .start_container(&id)
            .await
            .map_err(Dispatcher::unreachable(&backend))
    }

    pub async fn stop_container(&self, given: &str, timeout: Duration) -> Result<()> {
        let (id, _, backend) = self.container_route(given)?;
        backend
            .stop_container(&id, timeout)
            .await
            .map_err(Dispatcher::unreachable(&backend))
    }

    /// Removes the container and its route. An unknown id succeeds.
    pub async fn remove_container(&self, given: &str) -> Result<()> {
        let (id, _, backend) = match self.container_route(given) {
            Err(e) if e.is_not_found() => {
                tracing::debug!(
                    container_id = given,
                    "remove of an unknown container: nothing to do"
                );
                return Ok(());
            }
            other => other?,
        };
        match backend.remove_container(&id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(Dispatcher::unreachable(&backend)(e)),
        }
        self.routes().commit_lossy(|t| {
            t.remove_container(&id);
        });
        Ok(())
    }

    /// An unreachable backend's container is Unavailable, naming the backend. What is
    /// learned is kept as the last known state.
    pub async fn container_status(&self, given: &str, verbose: bool) -> Result<ContainerStatus> {
        let (id, _, backend) = self.container_route(given)?;
        let status = backend
            .container_status(&id, verbose)
            .await
            .map_err(Dispatcher::unreachable(&backend))?;
        self.remember(&[], &[&status.summary]);
        Ok(status)
    }

    pub async fn update_container_resources(
        &self,
        given: &str,
        linux: Option<&Resources>,
        windows: Option<&WindowsResources>,
    ) -> Result<()> {
        let (id, _, backend) = self.container_route(given)?;
        backend
            .update_container_resources(&id, linux, windows)
            .await
            .map_err(Dispatcher::unreachable(&backend))
    }

    pub async fn reopen_container_log(&self, given: &str) -> Result<()> {
        let (id, _, backend) = self.container_route(given)?;
        backend
            .reopen_container_log(&id)
            .await
            .map_err(Dispatcher::unreachable(&backend))
    }

    pub async fn exec_sync(
        &self,
        given: &str,
        cmd: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecSyncOutput> {
        let (id, _, backend) = self.container_route(given)?;
        backend
            .exec_sync(&id, cmd, timeout)
            .await
            .map_err(Dispatcher::unreachable(&backend))
    }

    pub async fn container_stats(&self, given: &str) -> Result<ContainerStats> {
        let (id, _, backend) = self.container_route(given)?;
        backend
            .container_stats(&id)
            .await
            .map_err(Dispatcher::unreachable(&backend))
    }
}
