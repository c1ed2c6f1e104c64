//! An exec or attach session, whichever transport carries it (SPDY streams or WebSocket
//! channels): stdin to write and half-close, stdout/stderr to read, terminal resizes, and
//! the final status from the error stream, turned into an exit code.

use bytes::Bytes;
use crimux_core::Error;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::spdy::{self, Incoming};
use super::websocket;
use super::Protocol;

/// Where stdin or resize bytes go.
pub(crate) enum Sink {
    Spdy(spdy::Writer),
    Ws(websocket::Writer),
}

impl Sink {
    pub(crate) async fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        match self {
            Sink::Spdy(w) => w.write(data).await,
            Sink::Ws(w) => w.write(data).await,
        }
    }

    pub(crate) async fn close(&mut self) -> Result<(), Error> {
        match self {
            Sink::Spdy(w) => w.close().await,
            Sink::Ws(w) => w.close().await,
        }
    }
}

/// Keeps the transport alive for as long as the session exists; dropping it tears the
/// connection down at once.
pub(crate) enum Transport {
    Spdy(spdy::Connection),
    Ws(websocket::Connection),
}

/// What a finished command produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// A running exec or attach session. Read stdout/stderr while waiting for the status: the
/// transport stalls (on purpose, like client-go) while an unread stream's buffer is full.
/// Dropping the session closes the connection abruptly, as a client that dies would.
pub struct Session {
    protocol: Protocol,
    stdin: Option<Sink>,
    resize: Option<Sink>,
    stdout: Option<Incoming>,
    stderr: Option<Incoming>,
    error: Incoming,
    transport: Transport,
}

impl Session {
    pub(crate) fn new(
        protocol: Protocol,
        stdin: Option<Sink>,
        stdout: Option<Incoming>,
        stderr: Option<Incoming>,
        resize: Option<Sink>,
        error: Incoming,
        transport: Transport,
    ) -> Session {
        Session {
            protocol,
            stdin,
            resize,
            stdout,
            stderr,
            error,
            transport,
        }
    }

    /// The sub-protocol the server picked.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Writes to the process's stdin.
    pub async fn write_stdin(&mut self, data: &[u8]) -> Result<(), Error> {
        match &mut self.stdin {
            Some(sink) => sink.write(data).await,
            None => Err(Error::FailedPrecondition("no stdin stream".into())),
        }
    }

    /// Closes stdin: the process reads EOF. Idempotent.
    pub async fn close_stdin(&mut self) -> Result<(), Error> {
        match &mut self.stdin {
            Some(sink) => sink.close().await,
            None => Ok(()),
        }
    }

    /// Sends a terminal size (tty sessions on protocol v3 and later), as client-go encodes
    /// it: one JSON object per line.
    pub async fn resize(&mut self, width: u16, height: u16) -> Result<(), Error> {
        let Some(sink) = &mut self.resize else {
            return Err(Error::FailedPrecondition(
                "no resize stream (not a tty session, or protocol older than v3)".into(),
            ));
        };
        sink.write(&resize_message(width, height)).await
    }

    /// Takes the stdin sink out of the session, to write it from another future.
    pub(crate) fn take_stdin(&mut self) -> Option<Sink> {
        self.stdin.take()
    }

    /// Takes the resize sink out of the session (see [`resize_message`]).
    pub(crate) fn take_resize(&mut self) -> Option<Sink> {
        self.resize.take()
    }

    /// The next stdout chunk; `Ok(None)` at its end (or when stdout was not requested).
    pub async fn read_stdout(&mut self) -> Result<Option<Bytes>, Error> {
        match &mut self.stdout {
            Some(s) => s.recv().await,
            None => Ok(None),
        }
    }

    /// The next stderr chunk; `Ok(None)` at its end (or when stderr was not requested).
    pub async fn read_stderr(&mut self) -> Result<Option<Bytes>, Error> {
        match &mut self.stderr {
            Some(s) => s.recv().await,
            None => Ok(None),
        }
    }

    /// Takes stdout out of the session, to read it from another task.
    pub fn take_stdout(&mut self) -> Option<Incoming> {
        self.stdout.take()
    }

    /// Takes stderr out of the session, to read it from another task.
    pub fn take_stderr(&mut self) -> Option<Incoming> {
        self.stderr.take()
    }

    /// Reads stdout and stderr to their end and then the status; the exit code (0 on
    /// success). A failure status that is not an exit code is an error.
    pub async fn output(mut self) -> Result<Output, Error> {
        let drain = |s: Option<Incoming>| async move {
            match s {
                Some(mut s) => s.read_to_end().await,
                None => Ok(Vec::new()),
            }
        };
        let (stdout, stderr) = tokio::join!(drain(self.stdout.take()), drain(self.stderr.take()));
        let (stdout, stderr) = (stdout?, stderr?);
        let exit_code = self.wait().await?;
        Ok(Output {
            stdout,
            stderr,
            exit_code,
        })
    }

    /// Waits for the status (discarding any unread output) and closes the connection
    /// politely; the exit code.
    pub async fn wait(mut self) -> Result<i32, Error> {
        let discard = |s: Option<Incoming>| async move {
            if let Some(mut s) = s {
                while let Ok(Some(_)) = s.recv().await {}
            }
        };
        let stdout = self.stdout.take();
        let stderr = self.stderr.take();
        let (_, _, status) =
            tokio::join!(discard(stdout), discard(stderr), self.error.read_to_end());
        let status = status?;
        let code = decode_status(self.protocol, &status);
        match &self.transport {
            Transport::Spdy(conn) => conn.close().await,
            Transport::Ws(conn) => conn.close().await,
        }
        code
    }
}

/// One terminal size as client-go encodes it on the resize stream: a JSON object and a
/// newline.
pub(crate) fn resize_message(width: u16, height: u16) -> Vec<u8> {
    let mut json = serde_json::json!({ "Width": width, "Height": height }).to_string();
    json.push('\n');
    json.into_bytes()
}

/// `metav1.Status`, the fields the exit code is read from.
#[derive(Debug, Default, Deserialize)]
struct Status {
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    details: Option<Details>,
}

#[derive(Debug, Default, Deserialize)]
struct Details {
    #[serde(default)]
    causes: Vec<Cause>,
}

#[derive(Debug, Default, Deserialize)]
struct Cause {
    /// `metav1.StatusCause.Type`, spelled `reason` on the wire.
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

/// Interprets what the error stream carried, as client-go does: empty means success; v4
/// and later carry a JSON `Status` (`NonZeroExitCode` with an `ExitCode` cause gives the
/// code); older protocols carry plain text, always an error.
pub fn decode_status(protocol: Protocol, message: &[u8]) -> Result<i32, Error> {
    if message.is_empty() {
        return Ok(0);
    }
    if !protocol.has_json_status() {
        return Err(Error::Internal(format!(
            "error executing remote command: {}",
            String::from_utf8_lossy(message)
        )));
    }
    let status: Status = serde_json::from_slice(message).map_err(|e| {
        Error::Internal(format!(
            "error stream carried no Status ({e}): {}",
            String::from_utf8_lossy(message)
        ))
    })?;
    match status.status.as_str() {
        "Success" => return Ok(0),
        "Failure" => {}
        other => {
            return Err(Error::Internal(format!(
                "error stream Status has status {other:?}"
            )))
        }
    }
    if status.reason == "NonZeroExitCode" {
        let causes = status.details.map(|d| d.causes).unwrap_or_default();
        let code = causes
            .iter()
            .find(|c| c.reason == "ExitCode")
            .ok_or_else(|| {
                Error::Internal(format!(
                    "NonZeroExitCode without an ExitCode cause: {}",
                    status.message
                ))
            })?;
        return code.message.trim().parse::<i32>().map_err(|_| {
            Error::Internal(format!("ExitCode cause {:?} is not a number", code.message))
        });
    }
    let msg = format!("{} ({})", status.message, status.reason);
    Err(match status.reason.as_str() {
        "NotFound" => Error::NotFound(msg),
        "BadRequest" | "Invalid" => Error::InvalidArgument(msg),
        "Forbidden" => Error::PermissionDenied(msg),
        _ => Error::Internal(msg),
    })
}

/// An incoming side fed by a channel (for transports other than SPDY).
pub(crate) fn channel_incoming() -> (mpsc::Sender<Result<Bytes, Error>>, Incoming) {
    let (tx, rx) = mpsc::channel(16);
    (tx, Incoming::from_channel(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let v4 = Protocol::V4;
        assert_eq!(decode_status(v4, b"").expect("empty"), 0);
        assert_eq!(
            decode_status(v4, br#"{"metadata":{},"status":"Success"}"#).expect("ok"),
            0
        );
        let exit42 = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: 42","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"42"}]}}"#;
        assert_eq!(decode_status(v4, exit42).expect("exit"), 42);
        assert_eq!(decode_status(Protocol::V5, exit42).expect("exit"), 42);
        let not_found =
            br#"{"status":"Failure","message":"no such container","reason":"NotFound"}"#;
        assert!(
            matches!(decode_status(v4, not_found), Err(Error::NotFound(m)) if m.contains("no such"))
        );
        let no_cause =
            br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[]}}"#;
        assert!(decode_status(v4, no_cause).is_err());
        let bad_code = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"x"}]}}"#;
        assert!(decode_status(v4, bad_code).is_err());
        assert!(decode_status(v4, b"not json").is_err());
        assert!(matches!(
            decode_status(Protocol::V3, b"oops"),
            Err(Error::Internal(m)) if m.contains("oops")
        ));
    }
}
