//! Exec and attach over SPDY/3.1, as client-go's remotecommand executor does it: upgrade
//! offering the channel protocols, then open the error stream first and stdin, stdout,
//! stderr (not with a tty) and resize (tty, v3 and later), each waiting for its reply.

use crimux_core::Error;
use crimux_spdy::Headers;

use super::http::{dial, upgrade_spdy, Target};
use super::session::{Session, Sink, Transport};
use super::spdy::{self, Connection, Incoming};
use super::Protocol;

/// The header naming a stream's role.
pub const STREAM_TYPE: &str = "streamType";

/// What a session asks for. Mirrors the flags of the Exec/Attach request (the server holds
/// the real ones; these decide which streams the client opens).
#[derive(Clone, Debug)]
pub struct ExecOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    /// Offered in preference order; empty means v4, v3, v2, channel.k8s.io over SPDY.
    pub protocols: Vec<Protocol>,
    /// SPDY knobs (WINDOW_UPDATEs); ignored over WebSocket.
    pub spdy: spdy::Config,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            stdin: false,
            stdout: true,
            stderr: true,
            tty: false,
            protocols: Vec::new(),
            spdy: spdy::Config::default(),
        }
    }
}

impl ExecOptions {
    /// The protocols to offer over SPDY (v5 is WebSocket-only and never offered here).
    fn spdy_protocols(&self) -> Vec<Protocol> {
        if self.protocols.is_empty() {
            return vec![Protocol::V4, Protocol::V3, Protocol::V2, Protocol::V1];
        }
        self.protocols
            .iter()
            .copied()
            .filter(|p| *p != Protocol::V5)
            .collect()
    }
}

/// Starts an exec session at the URL the Exec RPC returned.
pub async fn exec(url: &str, opts: ExecOptions) -> Result<Session, Error> {
    start(url, &opts).await
}

/// Starts an attach session at the URL the Attach RPC returned (same wire protocol).
pub async fn attach(url: &str, opts: ExecOptions) -> Result<Session, Error> {
    start(url, &opts).await
}

async fn start(url: &str, opts: &ExecOptions) -> Result<Session, Error> {
    let target = Target::parse(url)?;
    let offered = opts.spdy_protocols();
    if offered.is_empty() {
        return Err(Error::InvalidArgument(
            "no SPDY protocol offered (v5 is WebSocket-only)".into(),
        ));
    }
    let names: Vec<&str> = offered.iter().map(|p| p.name()).collect();
    let mut io = dial(&target).await?;
    let (picked, leftover) = upgrade_spdy(&mut io, &target, &names).await?;
    // client-go falls back to the unversioned protocol when the server names none.
    let protocol = if picked.is_empty() {
        Protocol::V1
    } else {
        Protocol::from_name(&picked)
            .ok_or_else(|| Error::Internal(format!("server picked unknown protocol {picked:?}")))?
    };
    let conn = Connection::start(io, leftover, opts.spdy)?;
    let open = |kind: &'static str| {
        let conn = &conn;
        async move {
            let mut headers = Headers::new();
            headers.insert(STREAM_TYPE, kind);
            conn.open(headers).await
        }
    };
    let error = open("error").await?;
    let stdin = match opts.stdin {
        true => Some(open("stdin").await?),
        false => None,
    };
    let stdout = match opts.stdout {
        true => Some(open("stdout").await?),
        false => None,
    };
    let stderr = match opts.stderr && !opts.tty {
        true => Some(open("stderr").await?),
        false => None,
    };
    let resize = match opts.tty && protocol.has_resize() {
        true => Some(open("resize").await?),
        false => None,
    };
    let incoming = |s: Option<spdy::Stream>| s.map(|s| s.incoming);
    let sink = |s: Option<spdy::Stream>| s.map(|s| Sink::Spdy(s.writer));
    let error_in: Incoming = error.incoming;
    Ok(Session::new(
        protocol,
        sink(stdin),
        incoming(stdout),
        incoming(stderr),
        sink(resize),
        error_in,
        Transport::Spdy(conn),
    ))
}
