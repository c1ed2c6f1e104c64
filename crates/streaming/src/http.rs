//! The little HTTP/1.1 this server speaks: read one request head (bounded in size and
//! time), answer errors with a short body and `Connection: close`, and keep any bytes the
//! client sent after the head for the upgraded protocol.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crimux_spdy::upgrade::{parse_request_head, RequestHead};

/// Why a request head could not be read.
#[derive(Debug)]
pub enum HeadError {
    /// The client sent something that is not a request head we accept (400).
    Malformed(String),
    /// The connection ended or timed out first (nothing to answer).
    Gone(String),
}

/// Reads the request head; returns it with the bytes that followed it.
pub async fn read_head<IO: AsyncRead + Unpin>(
    io: &mut IO,
    max_len: usize,
    timeout: Duration,
) -> Result<(RequestHead, BytesMut), HeadError> {
    let read = async {
        let mut buf = BytesMut::with_capacity(2048);
        loop {
            match parse_request_head(&buf, max_len) {
                Ok(Some((head, n))) => {
                    buf.advance(n);
                    return Ok((head, buf));
                }
                Ok(None) => {}
                Err(e) => return Err(HeadError::Malformed(e.to_string())),
            }
            // Read at most what the cap still allows, plus one byte to detect overflow.
            let room = (max_len + 1).saturating_sub(buf.len()).max(1);
            let mut chunk = (&mut *io).take(room as u64);
            match chunk.read_buf(&mut buf).await {
                Ok(0) => {
                    return Err(HeadError::Gone(
                        "connection closed before the request".into(),
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err(HeadError::Gone(format!("read failed: {e}"))),
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| Err(HeadError::Gone("timed out reading the request".into())))
}

/// Writes a complete error response and closes the write side.
pub async fn respond<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    code: u16,
    reason: &str,
    extra_headers: &[(&str, &str)],
    body: &str,
) {
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len() + 1
    );
    for (name, value) in extra_headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.push('\n');
    let write = async {
        io.write_all(out.as_bytes()).await?;
        io.shutdown().await
    };
    // A client that does not read its error answer gets no more than a few seconds.
    if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), write).await {
        tracing::debug!(error = %e, "cannot write HTTP error response");
    }
}

/// An I/O stream that first yields bytes already read past the request head.
pub struct Prefixed<IO> {
    prefix: BytesMut,
    io: IO,
}

impl<IO> Prefixed<IO> {
    pub fn new(prefix: BytesMut, io: IO) -> Self {
        Prefixed { prefix, io }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A query parameter's value (informational only: the token decides what a session gets).
pub fn query_param<'a>(head: &'a RequestHead, name: &str) -> Option<&'a str> {
    head.query()?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn head_then_leftover_bytes() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        b.write_all(b"GET /exec/t?tty=1&input HTTP/1.1\r\nHost: h\r\n\r\nEXTRA")
            .await
            .unwrap();
        let (head, rest) = read_head(&mut a, 1024, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(head.path(), "/exec/t");
        assert_eq!(query_param(&head, "tty"), Some("1"));
        assert_eq!(query_param(&head, "input"), Some(""));
        assert_eq!(query_param(&head, "output"), None);
        assert_eq!(&rest[..], b"EXTRA");
        let mut p = Prefixed::new(rest, a);
        b.write_all(b"MORE").await.unwrap();
        let mut got = [0u8; 9];
        p.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"EXTRAMORE");
    }

    #[tokio::test]
    async fn oversized_slow_and_closed_heads() {
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        b.write_all(&[b'A'; 5000]).await.unwrap();
        assert!(matches!(
            read_head(&mut a, 1024, Duration::from_secs(1)).await,
            Err(HeadError::Malformed(_))
        ));
        let (mut a, _b) = tokio::io::duplex(64);
        assert!(matches!(
            read_head(&mut a, 1024, Duration::from_millis(50)).await,
            Err(HeadError::Gone(_))
        ));
        let (mut a, b) = tokio::io::duplex(64);
        drop(b);
        assert!(matches!(
            read_head(&mut a, 1024, Duration::from_secs(1)).await,
            Err(HeadError::Gone(_))
        ));
    }
}
