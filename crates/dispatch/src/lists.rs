//! List fan-outs: every backend is asked at once and the answers concatenated (primary
//! first), filtered here.
//!
//! A backend that answers `Unavailable` does not fail the list: its pods and containers
//! are listed from crimux's own records (`routes.rs`, [`crate::routes::LastKnown`]) with
//! their last known state, and the runtime Status carries a condition naming the backend
//! and why it is unreachable. The stats lists leave it out (nothing can be measured). Any
//! other error fails the list, and so does every backend being unavailable. Each
//! successful list also reconciles that backend's routes and records, which is how a
//! backend that was down gets its routes repaired when it is back: records are keyed by
//! id, so nothing is listed twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;

use crimux_core::status::{
    ContainerState, ContainerStats, ContainerSummary, SandboxState, SandboxStats, SandboxSummary,
};
use crimux_core::{Backend, Result};

use crate::dispatcher::Dispatcher;

/// Which sandboxes a list wants; empty fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SandboxFilter {
    /// A full id or an id prefix.
    pub id: String,
    pub state: Option<SandboxState>,
    /// Every pair must be among the sandbox's labels.
    pub labels: BTreeMap<String, String>,
}

/// Which containers a list wants; empty fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerFilter {
    /// A full id or an id prefix.
    pub id: String,
    /// A full sandbox id or a prefix of one.
    pub sandbox_id: String,
    pub state: Option<ContainerState>,
    pub labels: BTreeMap<String, String>,
}

fn labels_match(want: &BTreeMap<String, String>, have: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

impl SandboxFilter {
    pub fn matches(&self, s: &SandboxSummary) -> bool {
        s.id.as_str().starts_with(&self.id)
            && self.state.is_none_or(|st| st == s.state)
            && labels_match(&self.labels, &s.labels)
    }
}

impl ContainerFilter {
    pub fn matches(&self, c: &ContainerSummary) -> bool {
        c.id.as_str().starts_with(&self.id)
            && c.sandbox_id.as_str().starts_with(&self.sandbox_id)
            && self.state.is_none_or(|st| st == c.state)
            && labels_match(&self.labels, &c.labels)
    }
}

/// The backends that answered, with their answers, and those that were unreachable.
struct Answers<T> {
    answered: Vec<(Arc<dyn Backend>, T)>,
    unreachable: Vec<Arc<dyn Backend>>,
}

impl Dispatcher {
    /// Asks every backend concurrently (primary first in the answer); see the module doc.
    async fn ask_each<'a, T, F, Fut>(&'a self, what: &str, call: F) -> Result<Answers<T>>
    where
        F: Fn(Arc<dyn Backend>) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + 'a,
    {
        let targets = self.fan_out();
        let results = join_all(targets.iter().map(|(_, b)| call(b.clone()))).await;
        let mut answers = Answers {
            answered: Vec::with_capacity(results.len()),
            unreachable: Vec::new(),
        };
        let mut unavailable = None;
        for ((_, backend), result) in targets.into_iter().zip(results) {
            match result {
                Ok(v) => answers.answered.push((backend, v)),
                Err(e) if Dispatcher::is_unavailable(&e) => {
                    tracing::warn!(backend = %backend.info().name, error = %e, "{what}: backend unreachable; answering from its records");
                    unavailable.get_or_insert(Dispatcher::unreachable(&backend)(e));
                    answers.unreachable.push(backend);
                }
                Err(e) => return Err(e.context(format_args!("backend {}", backend.info().name))),
            }
        }
        match unavailable {
            Some(e) if answers.answered.is_empty() => Err(e),
            _ => Ok(answers),
        }
    }

    async fn sandboxes_by_backend(&self) -> Result<Answers<Vec<SandboxSummary>>> {
        let answers = self
            .ask_each("list pod sandboxes", |b| async move {
                b.list_pod_sandboxes().await
            })
            .await?;
        for (backend, listed) in &answers.answered {
            self.reconcile_backend(&backend.info().name, Some(listed), None);
        }
        Ok(answers)
    }

    async fn containers_by_backend(&self) -> Result<Answers<Vec<ContainerSummary>>> {
        let answers = self
            .ask_each(
                "list containers",
                |b| async move { b.list_containers().await },
            )
            .await?;
        for (backend, listed) in &answers.answered {
            self.reconcile_backend(&backend.info().name, None, Some(listed));
        }
        Ok(answers)
    }

    /// Every backend's sandboxes; an unreachable backend's from the records.
    pub async fn list_pod_sandboxes(&self, filter: &SandboxFilter) -> Result<Vec<SandboxSummary>> {
        let answers = self.sandboxes_by_backend().await?;
        let recorded: Vec<SandboxSummary> = {
            let routes = self.routes();
            answers
                .unreachable
                .iter()
                .flat_map(|b| routes.table.sandboxes_on(&b.info().name))
                .collect()
        };
        Ok(answers
            .answered
            .into_iter()
            .flat_map(|(_, listed)| listed)
            .chain(recorded)
            .filter(|s| filter.matches(s))
            .collect())
    }

    /// Every backend's containers; an unreachable backend's from the records.
    pub async fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<ContainerSummary>> {
        let answers = self.containers_by_backend().await?;
        let recorded: Vec<ContainerSummary> = {
            let routes = self.routes();
            answers
                .unreachable
                .iter()
                .flat_map(|b| routes.table.containers_on(&b.info().name))
                .collect()
        };
        Ok(answers
            .answered
            .into_iter()
            .flat_map(|(_, listed)| listed)
            .chain(recorded)
            .filter(|c| filter.matches(c))
            .collect())
    }

    /// Stats of every matching container; one that cannot be measured (it vanished, or
    /// its backend cannot say) is left out with a log line.
    pub async fn list_container_stats(
        &self,
        filter: &ContainerFilter,
    ) -> Result<Vec<ContainerStats>> {
        let mut calls = Vec::new();
        for (backend, listed) in self.containers_by_backend().await?.answered {
            for c in listed.into_iter().filter(|c| filter.matches(c)) {
                let backend = backend.clone();
                calls.push(async move { (c.id.clone(), backend.container_stats(&c.id).await) });
            }
        }
        Ok(keep_measured(join_all(calls).await))
    }

    /// Stats of every matching pod sandbox; see [`Dispatcher::list_container_stats`].
    pub async fn list_pod_sandbox_stats(
        &self,
        filter: &SandboxFilter,
    ) -> Result<Vec<SandboxStats>> {
        let mut calls = Vec::new();
        for (backend, listed) in self.sandboxes_by_backend().await?.answered {
            for s in listed.into_iter().filter(|s| filter.matches(s)) {
                let backend = backend.clone();
                calls.push(async move { (s.id.clone(), backend.pod_sandbox_stats(&s.id).await) });
            }
        }
        Ok(keep_measured(join_all(calls).await))
    }
}

fn keep_measured<I: std::fmt::Display, T>(answers: Vec<(I, Result<T>)>) -> Vec<T> {
    answers
        .into_iter()
        .filter_map(|(id, r)| match r {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::debug!(%id, error = %e, "stats skipped");
                None
            }
        })
        .collect()
}
