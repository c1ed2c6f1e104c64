//! The CRI named pipe on Windows (`\\.\pipe\crimux`), for kubelet and crictl.
//!
//! A named pipe has no listening socket: every client takes one *instance*, so one
//! instance must always be waiting. The first instance is created with
//! `FILE_FLAG_FIRST_PIPE_INSTANCE`, so a second crimux on the same name fails at bind
//! instead of sharing kubelet's connections with the running one. Every instance carries
//! a security descriptor that admits only Administrators and SYSTEM (`PIPE_SDDL`): the
//! CRI is root on the node.

use std::ffi::c_void;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::windows::named_pipe::{ClientOptions, NamedPipeServer, ServerOptions};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use windows_sys::Win32::Foundation::{LocalFree, ERROR_ACCESS_DENIED, ERROR_PIPE_BUSY};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;

use crimux_cri::CriServer;

use super::pipe_name::{PipeName, PIPE_SDDL};
use crate::authority::AuthorityFix;

/// Wait after failing to create the next instance (handles exhausted, ...), so the accept
/// loop neither spins nor dies.
const RETRY: Duration = Duration::from_millis(200);

/// A bound CRI pipe: the first instance exists, so the name is ours until drop.
pub struct CriListener {
    pipe: PipeName,
    security: SecurityDescriptor,
    first: Option<NamedPipeServer>,
}

impl CriListener {
    /// Claims `listen` (`npipe:////./pipe/crimux` or `\\.\pipe\crimux`); refuses when
    /// another process already serves that pipe.
    pub fn bind(listen: &str) -> anyhow::Result<CriListener> {
        let pipe = PipeName::parse(listen).map_err(|e| anyhow!("listen: {e}"))?;
        let security = SecurityDescriptor::from_sddl(PIPE_SDDL)?;
        refuse_if_served(&pipe)?;
        let first = create(&pipe, &security, true).map_err(|e| {
            if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) {
                anyhow!(
                    "cannot listen on {}: already in use (another crimux, or another program, \
                     serves this pipe)",
                    pipe.endpoint()
                )
            } else {
                anyhow!("cannot listen on {}: {e}", pipe.endpoint())
            }
        })?;
        Ok(CriListener {
            pipe,
            security,
            first: Some(first),
        })
    }

    /// The address clients use, for logs.
    pub fn endpoint(&self) -> String {
        self.pipe.endpoint()
    }

    /// Serves until `shutdown` resolves, then lets in-flight calls finish. The pipe goes
    /// away with its last instance.
    pub async fn serve(
        mut self,
        server: CriServer,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let first = self
            .first
            .take()
            .ok_or_else(|| anyhow!("{} is already being served", self.endpoint()))?;
        let endpoint = self.endpoint();
        let (tx, rx) = mpsc::channel::<std::io::Result<AuthorityFix<PipeConn>>>(1);
        let accept = tokio::spawn(accept_loop(self.pipe, self.security, first, tx));
        tracing::info!("serving CRI on {endpoint}");
        // Clients that send the pipe path as `:authority` are let in (see authority.rs).
        let served = server
            .serve(ReceiverStream::new(rx), shutdown)
            .await
            .with_context(|| format!("serving CRI on {endpoint}"));
        accept.abort();
        served
    }
}

/// Probes the pipe as a client first: if anyone serves it (an instance answers, or every
/// instance is busy, or it exists but is not ours to open), it is in use. This gives the
/// same clear refusal where `FILE_FLAG_FIRST_PIPE_INSTANCE` is not enforced (Wine), and
/// the flag still closes the race between two crimux starting at once.
fn refuse_if_served(pipe: &PipeName) -> anyhow::Result<()> {
    match ClientOptions::new().open(pipe.path()) {
        Ok(_probe) => bail!(
            "cannot listen on {}: already in use (another crimux serves this pipe)",
            pipe.endpoint()
        ),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(code) if code == ERROR_PIPE_BUSY as i32 || code == ERROR_ACCESS_DENIED as i32
            ) =>
        {
            bail!(
                "cannot listen on {}: already in use (it exists and {e})",
                pipe.endpoint()
            )
        }
        Err(_) => Ok(()),
    }
}

/// Waits for a client on the pending instance, creates the next pending instance, and
/// hands the connected one to tonic. Ends when tonic stops taking connections.
async fn accept_loop(
    pipe: PipeName,
    security: SecurityDescriptor,
    mut pending: NamedPipeServer,
    tx: mpsc::Sender<std::io::Result<AuthorityFix<PipeConn>>>,
) {
    loop {
        let connected = tokio::select! {
            r = pending.connect() => r,
            _ = tx.closed() => return,
        };
        let next = loop {
            match create(&pipe, &security, false) {
                Ok(next) => break next,
                Err(e) => {
                    tracing::warn!(pipe = %pipe, error = %e, "cannot create the next pipe instance");
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY) => {}
                        _ = tx.closed() => return,
                    }
                }
            }
        };
        let conn = std::mem::replace(&mut pending, next);
        match connected {
            Ok(()) => {
                if tx
                    .send(Ok(AuthorityFix::new(PipeConn(conn))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // A client that gave up between open and connect: its instance is dropped.
            Err(e) => tracing::debug!(pipe = %pipe, error = %e, "pipe client went away"),
        }
    }
}

/// One pipe instance with the listener's security descriptor.
fn create(
    pipe: &PipeName,
    security: &SecurityDescriptor,
    first: bool,
) -> std::io::Result<NamedPipeServer> {
    let mut attributes = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: security.0,
        bInheritHandle: 0,
    };
    let mut options = ServerOptions::new();
    options
        .first_pipe_instance(first)
        .reject_remote_clients(true);
    // SAFETY: `attributes` is a valid SECURITY_ATTRIBUTES whose descriptor `security` owns
    // and keeps alive for this call; CreateNamedPipeW copies what it needs.
    let created = unsafe {
        options.create_with_security_attributes_raw(
            pipe.path(),
            (&mut attributes as *mut SECURITY_ATTRIBUTES).cast::<c_void>(),
        )
    };
    match created {
        Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32) => Err(std::io::Error::new(
            e.kind(),
            format!("every instance of {pipe} is in use: {e}"),
        )),
        other => other,
    }
}

/// A self-relative security descriptor made from SDDL; freed with `LocalFree`.
struct SecurityDescriptor(*mut c_void);

// SAFETY: the descriptor is heap memory owned by this value alone and never mutated after
// creation; Windows only reads it.
unsafe impl Send for SecurityDescriptor {}
// SAFETY: as above: shared access is read-only.
unsafe impl Sync for SecurityDescriptor {}

impl SecurityDescriptor {
    fn from_sddl(sddl: &str) -> anyhow::Result<SecurityDescriptor> {
        let wide: Vec<u16> = sddl.encode_utf16().chain(std::iter::once(0)).collect();
        let mut descriptor: *mut c_void = std::ptr::null_mut();
        // SAFETY: `wide` is NUL-terminated UTF-16; `descriptor` receives a LocalAlloc'd
        // pointer that Drop frees; the size output is optional.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                wide.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 || descriptor.is_null() {
            bail!(
                "cannot build the pipe's security descriptor {sddl:?}: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(SecurityDescriptor(descriptor))
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: the pointer came from ConvertStringSecurityDescriptorToSecurityDescriptorW
        // and is freed exactly once.
        unsafe {
            LocalFree(self.0);
        }
    }
}

/// A connected pipe instance, as tonic wants it (`Connected`, no peer address).
struct PipeConn(NamedPipeServer);

impl Connected for PipeConn {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for PipeConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PipeConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
