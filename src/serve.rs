//! `crimux serve`: wire config → registry → backends → dispatcher → CRI server and
//! streaming server, serve until SIGTERM/SIGINT.
//!
//! Startup problems are the operator's to fix (bad config, containerd down, socket in
//! use): they end the process with exit code 2 and one line naming the culprit.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crimux_containerd::{
    ContainerdBackend, ContainerdConfig, RuntimeHandler, RuntimeOptions, TlsConfig,
    DEFAULT_RUNTIME_TYPE, DEFAULT_SNAPSHOTTER,
};
use crimux_core::Backend;
use crimux_cri::forward::{CriBackend, CriBackendConfig, ForwardedHandler, PathMapping};
use crimux_cri::CriServer;
use crimux_dispatch::Dispatcher;
use crimux_registry::Registry;
use crimux_streaming::{Server as StreamingServer, ServerOptions, TlsFiles};

use crate::config::{BackendConfig, BackendKind, Config, PodNetwork, StreamingConfig};
use crate::platform::{self, CriListener};

/// Upper bound on reaching one backend (a containerd, or the crimux a `cri` backend
/// forwards to) at start, beyond the backend's own timeouts.
const CONNECT_DEADLINE: Duration = Duration::from_secs(60);

/// Why serving ended badly, and with which exit code.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

fn startup(error: anyhow::Error) -> Failure {
    Failure { code: 2, error }
}

pub async fn run(config: Config) -> Result<(), Failure> {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %config.listen,
        root = %config.root.display(),
        backends = config.backends.len(),
        "crimux starting"
    );
    let shutdown = platform::shutdown_signal()
        .context("cannot watch stop signals")
        .map_err(startup)?;
    platform::create_private_dir(&config.root)
        .with_context(|| format!("root: cannot create {}", config.root.display()))
        .map_err(startup)?;

    let registry = Registry::new(Some(&config.registry.config_path))
        .map_err(|e| {
            anyhow!(
                "registry: config_path {}: {e}",
                config.registry.config_path.display()
            )
        })
        .map_err(startup)?;

    // Claim the socket first: a second crimux must stop before touching containerd.
    let listener = CriListener::bind(&config.listen).map_err(startup)?;

    let mut backends: Vec<Arc<dyn Backend>> = Vec::with_capacity(config.backends.len());
    for b in &config.backends {
        let backend = connect(&config, b, registry.clone())
            .await
            .map_err(startup)?;
        backends.push(backend);
    }
    // Routes live under the root; reconciling with the backends repairs a lost file.
    let dispatcher = Dispatcher::new(backends, Some(config.root.clone()))
        .map_err(|e| anyhow!("backend: {e}"))
        .map_err(startup)?;
    dispatcher.reconcile().await;
    let dispatcher = Arc::new(dispatcher);
    // Exec/Attach/PortForward sessions run on the dispatcher, which routes each to the
    // pod's backend.
    let streaming = StreamingServer::bind(streaming_options(&config.streaming), dispatcher.clone())
        .await
        .map_err(|e| anyhow!("{e}"))
        .map_err(startup)?;
    tracing::info!(url = %streaming.base_url(), "streaming server ready");
    let server = CriServer::new(dispatcher).with_streaming(streaming.clone());

    let served = listener.serve(server, shutdown).await;
    // Open exec/attach/port-forward sessions end with the CRI server.
    streaming.shutdown().await;
    served.map_err(|error| Failure { code: 1, error })?;
    tracing::info!("crimux stopped");
    Ok(())
}

/// The streaming server's options from `[streaming]`; limits and timeouts keep their
/// defaults (4 h idle, 30 s to open streams, 1 min tokens, 1024 outstanding).
fn streaming_options(config: &StreamingConfig) -> ServerOptions {
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    ServerOptions {
        address: config.address.clone(),
        port: config.port,
        tls,
        ..ServerOptions::default()
    }
}

/// Connects one configured backend of either kind, within [`CONNECT_DEADLINE`]; errors
/// name the backend and its address.
pub(crate) async fn connect(
    config: &Config,
    b: &BackendConfig,
    registry: Registry,
) -> anyhow::Result<Arc<dyn Backend>> {
    match b.kind {
        BackendKind::Containerd => connect_containerd(config, b, registry).await,
        BackendKind::Cri => connect_cri(config, b).await,
    }
}

/// The mutual-TLS files of `[backend.tls]`, as the transport wants them.
fn tls_of(b: &BackendConfig) -> Option<TlsConfig> {
    b.tls.as_ref().map(|t| TlsConfig {
        ca: t.ca.clone(),
        cert: t.cert.clone(),
        key: t.key.clone(),
        server_name: t.server_name.clone(),
    })
}

/// A `kind = "cri"` backend: a channel to the other crimux (unix socket, or TCP through
/// its mutual-TLS relay), then the forwarding backend, which checks it answers CRI.
async fn connect_cri(config: &Config, b: &BackendConfig) -> anyhow::Result<Arc<dyn Backend>> {
    let at = format!("backend {:?}", b.name);
    let tls = tls_of(b);
    let channel = crimux_containerd::connect::channel(&b.address, tls.as_ref(), b.insecure)
        .map_err(|e| anyhow!("{at}: crimux at {}: {e}", b.address))?;
    let forward = CriBackendConfig {
        name: b.name.clone(),
        role: config.role_of(b),
        os: b.os.clone(),
        arch: b.arch.clone(),
        runtime_handlers: b
            .runtime_handlers
            .iter()
            .map(|h| ForwardedHandler {
                name: h.name.clone(),
                remote: h.remote.clone().unwrap_or_default(),
            })
            .collect(),
        path_map: b
            .path_map
            .iter()
            .map(|m| PathMapping {
                host: m.host.trim().to_string(),
                backend: m.backend.trim().to_string(),
            })
            .collect(),
    };
    let connected = tokio::time::timeout(CONNECT_DEADLINE, CriBackend::connect(forward, channel))
        .await
        .map_err(|_| {
            anyhow!(
                "{at}: cannot reach crimux at {}: no answer within {CONNECT_DEADLINE:?}",
                b.address
            )
        })?;
    let e = match connected {
        Ok(backend) => return Ok(backend),
        Err(e) => e,
    };
    // The forwarding backend's message names the backend already: said once, up front.
    let message = e.to_string();
    let detail = message
        .strip_prefix(&format!("backend {}: ", b.name))
        .unwrap_or(&message);
    if e.code() == tonic::Code::Unavailable {
        let detail = detail
            .strip_prefix("cannot reach the crimux it forwards to: ")
            .unwrap_or(detail);
        return Err(anyhow!(
            "{at}: cannot reach crimux at {}: {detail}",
            b.address
        ));
    }
    Err(anyhow!("{at}: crimux at {}: {detail}", b.address))
}

async fn connect_containerd(
    config: &Config,
    b: &BackendConfig,
    registry: Registry,
) -> anyhow::Result<Arc<dyn Backend>> {
    let containerd = ContainerdConfig {
        name: b.name.clone(),
        address: b.address.clone(),
        namespace: b.namespace().to_string(),
        role: config.role_of(b),
        os: b.os.clone(),
        arch: b.arch.clone(),
        runtime_handlers: b.runtime_handlers.iter().map(|h| h.name.clone()).collect(),
        tls: tls_of(b),
        insecure: b.insecure,
        snapshotter: b
            .snapshotter
            .clone()
            .unwrap_or_else(|| DEFAULT_SNAPSHOTTER.to_string()),
        runtime: runtime_options(config, b),
    };
    let at = format!("backend {:?}", b.name);
    let connected = tokio::time::timeout(
        CONNECT_DEADLINE,
        ContainerdBackend::connect(containerd, registry),
    )
    .await
    .map_err(|_| {
        anyhow!(
            "{at}: cannot reach containerd at {}: no answer within {CONNECT_DEADLINE:?}",
            b.address
        )
    })?;
    match connected {
        Ok(backend) => Ok(backend),
        // The backend's own message usually names the address already.
        Err(e) if e.to_string().contains(&b.address) => Err(anyhow!("{at}: {e}")),
        Err(e) if e.code() == tonic::Code::Unavailable => Err(anyhow!(
            "{at}: cannot reach containerd at {}: {e}",
            b.address
        )),
        Err(e) => Err(anyhow!("{at}: containerd at {}: {e}", b.address)),
    }
}

/// What the backend needs to run pods: its state directory under crimux's root, the pause
/// image, CNI, the log plugin next to this binary, and its runtime handlers.
fn runtime_options(config: &Config, b: &BackendConfig) -> RuntimeOptions {
    let log_plugin = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("crimux-log")))
        .unwrap_or_else(|| "crimux-log".into());
    let mut handlers: Vec<RuntimeHandler> = b
        .runtime_handlers
        .iter()
        .map(|h| RuntimeHandler {
            name: h.name.clone(),
            runtime_type: if h.runtime_type.is_empty() {
                DEFAULT_RUNTIME_TYPE.to_string()
            } else {
                h.runtime_type.clone()
            },
            options_json: serde_json::to_string(&h.options).unwrap_or_default(),
        })
        .collect();
    if !handlers.iter().any(|h| h.name.is_empty()) {
        handlers.push(RuntimeHandler {
            name: String::new(),
            runtime_type: DEFAULT_RUNTIME_TYPE.to_string(),
            options_json: String::new(),
        });
    }
    RuntimeOptions {
        state_dir: config.root.join("backends").join(&b.name),
        sandbox_image: config.sandbox_image.clone(),
        cni_conf_dir: config.cni.conf_dir.clone(),
        cni_bin_dirs: config.cni.bin_dirs.clone(),
        log_plugin,
        handlers,
        node_network_ip: match b.pod_network() {
            PodNetwork::Host => b.node_ip,
            PodNetwork::Cni => None,
        },
    }
}
