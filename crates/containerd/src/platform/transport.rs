//! The local transports a containerd daemon listens on: unix sockets (Linux) and named
//! pipes (Windows). Each takes an [`Endpoint`] whose URI is a placeholder (the connector
//! ignores it) and returns a lazily connecting channel; a transport the host lacks is a
//! configuration error.

use tonic::transport::{Channel, Endpoint};

use crimux_core::{Error, Result};

/// A channel to the unix socket at `path` (`address` as configured, for errors).
#[cfg(unix)]
pub(crate) fn unix_channel(endpoint: Endpoint, _address: &str, path: String) -> Result<Channel> {
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let path = path.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}

#[cfg(not(unix))]
pub(crate) fn unix_channel(_endpoint: Endpoint, address: &str, _path: String) -> Result<Channel> {
    Err(Error::InvalidArgument(format!(
        "containerd address {address}: unix sockets are not supported on this OS"
    )))
}

/// A channel to the named pipe `path` (`\\.\pipe\...`).
#[cfg(windows)]
pub(crate) fn pipe_channel(endpoint: Endpoint, _address: &str, path: String) -> Result<Channel> {
    use std::time::Duration;
    use tokio::net::windows::named_pipe::ClientOptions;
    // ERROR_PIPE_BUSY: every instance of the pipe is in use; containerd makes more.
    const ERROR_PIPE_BUSY: i32 = 231;
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let path = path.clone();
        async move {
            let mut tries = 0;
            let client = loop {
                match ClientOptions::new().open(&path) {
                    Ok(client) => break client,
                    Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) && tries < 50 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => return Err(e),
                }
            };
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(client))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}

#[cfg(not(windows))]
pub(crate) fn pipe_channel(_endpoint: Endpoint, address: &str, _path: String) -> Result<Channel> {
    Err(Error::InvalidArgument(format!(
        "containerd address {address}: named pipes exist only on Windows"
    )))
}
