//! Do a piece of work once for everyone who asks for it at the same time.
//!
//! Pulls and blob downloads are keyed (by normalised reference, by digest); a second caller
//! with the same key waits for the first one's result instead of repeating the work. The work
//! runs in its own task, so a caller that gives up (a CRI client timing out) neither cancels
//! it for the others nor interrupts its cleanup half way.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use crimux_core::{Error, Result};
use futures::future::{BoxFuture, FutureExt, Shared};

use crate::client::clone_error;

type Outcome<V> = std::result::Result<V, Arc<Error>>;
type Running<V> = Shared<BoxFuture<'static, Outcome<V>>>;

/// Work in flight, by key.
pub struct SingleFlight<V: Clone + Send + Sync + 'static> {
    inflight: Arc<Mutex<HashMap<String, Running<V>>>>,
}

impl<V: Clone + Send + Sync + 'static> Default for SingleFlight<V> {
    fn default() -> Self {
        SingleFlight {
            inflight: Arc::default(),
        }
    }
}

impl<V: Clone + Send + Sync + 'static> SingleFlight<V> {
    /// Runs `work` unless work for `key` is already running, and returns its result either
    /// way. `work` is only polled when this call starts it.
    pub async fn run<F>(&self, key: &str, work: F) -> Result<V>
    where
        F: Future<Output = Result<V>> + Send + 'static,
    {
        let shared = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            match inflight.get(key) {
                Some(running) => running.clone(),
                None => {
                    let map = Arc::clone(&self.inflight);
                    let owned_key = key.to_string();
                    let task = tokio::spawn(async move {
                        let outcome = work.await.map_err(Arc::new);
                        map.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&owned_key);
                        outcome
                    });
                    let fut: BoxFuture<'static, Outcome<V>> = async move {
                        task.await.unwrap_or_else(|join| {
                            Err(Arc::new(Error::Internal(format!("work panicked: {join}"))))
                        })
                    }
                    .boxed();
                    let shared = fut.shared();
                    inflight.insert(key.to_string(), shared.clone());
                    shared
                }
            }
        };
        shared.await.map_err(|e| clone_error(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let flight = Arc::new(SingleFlight::<usize>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut callers = Vec::new();
        for _ in 0..5 {
            let flight = Arc::clone(&flight);
            let runs = Arc::clone(&runs);
            callers.push(tokio::spawn(async move {
                flight
                    .run("k", async move {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok(runs.fetch_add(1, Ordering::SeqCst))
                    })
                    .await
            }));
        }
        for caller in callers {
            assert_eq!(caller.await.expect("join").expect("result"), 0);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Once finished, the key runs again.
        let again = flight.run("k", async { Ok(7) }).await.expect("second run");
        assert_eq!(again, 7);
    }

    #[tokio::test]
    async fn errors_reach_every_waiter_with_their_code() {
        let flight = Arc::new(SingleFlight::<()>::default());
        let a = {
            let flight = Arc::clone(&flight);
            tokio::spawn(async move {
                flight
                    .run("k", async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Err(Error::NotFound("gone".into()))
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let b = flight.run("k", async { Ok(()) }).await;
        let a = a.await.expect("join");
        for r in [a, b] {
            assert_eq!(r.expect_err("shared failure").code(), tonic::Code::NotFound);
        }
    }
}
