//! Container calls: a container is created on its sandbox's backend and every later call
//! goes there too.
//!
//! CreateContainer also checks the image's OS (when a pull through this dispatcher taught
//! it) against the sandbox's backend. A mismatch another backend could run is the
//! composite round trip: the pod is hinted to that OS, its sandbox stopped so kubelet sees
//! it NOTREADY and makes a new one, which placement then puts on the right backend.

use std::sync::Arc;
use std::time::Duration;

use crimux_core::container::{ContainerConfig, Resources, WindowsResources};
use crimux_core::sandbox::SandboxConfig;
use crimux_core::status::{ContainerStats, ContainerStatus, ExecSyncOutput};
use crimux_core::{Backend, ContainerId, Error, ImageId, OsNotSupported, PodSandboxId, Result};

use crate::dispatcher::Dispatcher;
use crate::routes::SandboxRoute;
use crate::sandboxes::new_id;

impl Dispatcher {
    /// Creates a container in a routed sandbox; unknown sandbox → NotFound.
    #[tracing::instrument(skip_all, fields(pod_id = sandbox, container = %config.metadata.name))]
    pub async fn create_container(
        &self,
        sandbox: &str,
        config: &ContainerConfig,
        sandbox_config: &SandboxConfig,
    ) -> Result<ContainerId> {
        let (sandbox_id, route, backend) = self.sandbox_route(sandbox)?;
        self.check_image_os(&sandbox_id, &route, &backend, config)
            .await?;
        let id = {
            let mut routes = self.routes();
            let id = loop {
                let id = ContainerId(new_id());
                if !routes.table.containers.contains_key(&id) {
                    break id;
                }
            };
            routes.commit(|t| {
                t.containers.insert(id.clone(), sandbox_id.clone());
            })?;
            routes.pending.insert(id.0.clone());
            id
        };
        let result = backend
            .create_container(&id, &sandbox_id, config, sandbox_config)
            .await;
        let mut routes = self.routes();
        routes.pending.remove(id.as_str());
        match result {
            Ok(()) => Ok(id),
            Err(e) => {
                routes.commit_lossy(|t| {
                    t.containers.remove(&id);
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
        let Some(image_os) = self.image_os(&ImageId(config.image.clone())) else {
            return Ok(());
        };
        let here = &backend.info().platform.os;
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

    pub async fn start_container(&self, given: &str) -> Result<()> {
        let (id, _, backend) = self.container_route(given)?;
        backend.start_container(&id).await
    }

    pub async fn stop_container(&self, given: &str, timeout: Duration) -> Result<()> {
        let (id, _, backend) = self.container_route(given)?;
        backend.stop_container(&id, timeout).await
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
            Err(e) => return Err(e),
        }
        self.routes().commit_lossy(|t| {
            t.containers.remove(&id);
        });
        Ok(())
    }

    pub async fn container_status(&self, given: &str, verbose: bool) -> Result<ContainerStatus> {
        let (id, _, backend) = self.container_route(given)?;
        backend.container_status(&id, verbose).await
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
    }

    pub async fn reopen_container_log(&self, given: &str) -> Result<()> {
        let (id, _, backend) = self.container_route(given)?;
        backend.reopen_container_log(&id).await
    }

    pub async fn exec_sync(
        &self,
        given: &str,
        cmd: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecSyncOutput> {
        let (id, _, backend) = self.container_route(given)?;
        backend.exec_sync(&id, cmd, timeout).await
    }

    pub async fn container_stats(&self, given: &str) -> Result<ContainerStats> {
        let (id, _, backend) = self.container_route(given)?;
        backend.container_stats(&id).await
    }
}
