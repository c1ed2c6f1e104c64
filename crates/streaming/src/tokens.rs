//! The token store: what each streaming URL may do, for one use, for a short while.
//!
//! The Exec/Attach/PortForward RPCs validate a request and store it under a random token;
//! the URL carries only the token. The HTTP side consumes the token once: a second use, an
//! expired token or an unknown one is a 404, as in kubelet's own streaming server. The
//! number of outstanding tokens is capped so that a caller that never connects cannot grow
//! the store without bound.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;

use crimux_core::{ContainerId, Error, ExecSpec, PodSandboxId, Result};

/// Random bytes per token (hex-encoded: twice as many characters).
const TOKEN_BYTES: usize = 24;

/// Which of a session's standard streams the client asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Streams {
    /// The CRI's rules: at least one stream, and a terminal has no separate stderr.
    pub fn validate(&self, rpc: &str) -> Result<()> {
        if !(self.stdin || self.stdout || self.stderr) {
            return Err(Error::InvalidArgument(format!(
                "{rpc}: one of stdin, stdout or stderr must be requested"
            )));
        }
        if self.tty && self.stderr {
            return Err(Error::InvalidArgument(format!(
                "{rpc}: tty and stderr cannot both be requested (a terminal has one output)"
            )));
        }
        Ok(())
    }
}

/// A validated request waiting for its client to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pending {
    Exec {
        container: ContainerId,
        spec: ExecSpec,
        streams: Streams,
    },
    Attach {
        container: ContainerId,
        streams: Streams,
    },
    PortForward {
        sandbox: PodSandboxId,
        /// The ports named in the RPC; informational (clients name ports per stream).
        ports: Vec<u16>,
    },
}

impl Pending {
    /// The URL path segment of this kind of request.
    pub fn kind(&self) -> &'static str {
        match self {
            Pending::Exec { .. } => "exec",
            Pending::Attach { .. } => "attach",
            Pending::PortForward { .. } => "portforward",
        }
    }
}

/// Single-use, expiring tokens.
#[derive(Debug)]
pub struct TokenStore {
    ttl: Duration,
    max: usize,
    entries: Mutex<HashMap<String, (Instant, Pending)>>,
}

impl TokenStore {
    pub fn new(ttl: Duration, max: usize) -> Self {
        TokenStore {
            ttl,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Stores `pending` under a fresh token; ResourceExhausted when `max` are outstanding.
    pub fn insert(&self, pending: Pending) -> Result<String> {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        let token = hex::encode(bytes);
        let now = Instant::now();
        let mut entries = self.lock();
        entries.retain(|_, (expires, _)| *expires > now);
        if entries.len() >= self.max {
            return Err(Error::backend(
                "streaming",
                tonic::Status::resource_exhausted(format!(
                    "maximum number of in-flight streaming requests ({}) exceeded",
                    self.max
                )),
            ));
        }
        entries.insert(token.clone(), (now + self.ttl, pending));
        Ok(token)
    }

    /// Takes the request stored under `token`, if it exists and has not expired.
    pub fn consume(&self, token: &str) -> Option<Pending> {
        let (expires, pending) = self.lock().remove(token)?;
        (expires > Instant::now()).then_some(pending)
    }

    /// Tokens stored and not yet expired.
    pub fn outstanding(&self) -> usize {
        let now = Instant::now();
        self.lock().values().filter(|(e, _)| *e > now).count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Pending)>> {
        // A panic while holding the lock cannot leave the map inconsistent: keep going.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attach() -> Pending {
        Pending::Attach {
            container: "c1".into(),
            streams: Streams {
                stdout: true,
                ..Default::default()
            },
        }
    }

    #[test]
    fn tokens_are_single_use_and_random() {
        let store = TokenStore::new(Duration::from_secs(60), 10);
        let a = store.insert(attach()).unwrap();
        let b = store.insert(attach()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 2 * TOKEN_BYTES);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(store.outstanding(), 2);
        assert_eq!(store.consume(&a), Some(attach()));
        assert_eq!(store.consume(&a), None);
        assert_eq!(store.consume("nope"), None);
        assert_eq!(store.outstanding(), 1);
    }

    #[test]
    fn tokens_expire() {
        let store = TokenStore::new(Duration::from_millis(30), 10);
        let a = store.insert(attach()).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(store.outstanding(), 0);
        assert_eq!(store.consume(&a), None);
    }

    #[test]
    fn outstanding_tokens_are_capped_and_expired_ones_freed() {
        let store = TokenStore::new(Duration::from_millis(50), 3);
        for _ in 0..3 {
            store.insert(attach()).unwrap();
        }
        let err = store.insert(attach()).unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        std::thread::sleep(Duration::from_millis(80));
        store.insert(attach()).unwrap();
    }

    #[test]
    fn stream_rules() {
        let s = |stdin, stdout, stderr, tty| Streams {
            stdin,
            stdout,
            stderr,
            tty,
        };
        assert!(s(false, false, false, false).validate("Exec").is_err());
        assert!(s(false, false, false, true).validate("Exec").is_err());
        let err = s(false, true, true, true).validate("Exec").unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(s(true, false, false, true).validate("Exec").is_ok());
        assert!(s(false, false, true, false).validate("Exec").is_ok());
    }
}
