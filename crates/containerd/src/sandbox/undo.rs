//! Rollback of a multi-step operation (kuasar's handler chain, reduced): each step that
//! succeeded pushes the future that undoes it; on a later failure they run newest first.
//! Futures do nothing until polled, so pushing one costs nothing when all goes well.

use std::future::Future;
use std::pin::Pin;

use crimux_core::Result;

type Step<'a> = (
    &'static str,
    Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>,
);

/// The undo steps of one operation so far.
#[derive(Default)]
pub(crate) struct Undo<'a> {
    steps: Vec<Step<'a>>,
}

impl<'a> Undo<'a> {
    /// Records how to undo the step just done (`what` names it in logs).
    pub(crate) fn push(
        &mut self,
        what: &'static str,
        step: impl Future<Output = Result<()>> + Send + 'a,
    ) {
        self.steps.push((what, Box::pin(step)));
    }

    /// Undoes everything, newest first. Every step runs even when an earlier one fails;
    /// failures are logged, since the operation's own error is what the caller reports.
    pub(crate) async fn run(self, sandbox: &str) {
        for (what, step) in self.steps.into_iter().rev() {
            if let Err(e) = step.await {
                tracing::warn!(sandbox, step = what, %e, "rollback step failed");
            } else {
                tracing::debug!(sandbox, step = what, "rolled back");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn steps_run_newest_first_and_all_of_them() {
        let log = Mutex::new(Vec::new());
        let mut undo = Undo::default();
        for name in ["netns", "cni", "object"] {
            let log = &log;
            undo.push(name, async move {
                log.lock().unwrap().push(name);
                if name == "cni" {
                    return Err(crimux_core::Error::Internal("boom".into()));
                }
                Ok(())
            });
        }
        assert!(log.lock().unwrap().is_empty(), "nothing runs before run()");
        undo.run("test").await;
        assert_eq!(*log.lock().unwrap(), ["object", "cni", "netns"]);
    }
}
