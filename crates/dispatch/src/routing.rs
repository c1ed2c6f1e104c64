//! The pure, synchronous half of dispatch: which backend answers a call.
//!
//! The router knows the node's backends only by their [`BackendInfo`] and keeps what it
//! learned from earlier calls (the OS of pulled images, a per-pod OS hint). It never
//! awaits, so the dispatcher can take a decision under a short lock and then call the
//! backend with no lock held.
//!
//! Pod placement, in order: the RuntimeClass handler, the `crimux.io/os` annotation, the
//! OS learned from an image pulled for that pod uid (or from a container refused for its
//! image's OS), then the primary. Containers follow their pod; that mapping lives in the
//! dispatcher's durable route table.
//!
//! An unknown RuntimeClass handler is `NotFound` (the handler named is not among those the
//! node's backends serve; the message lists them), as a missing object would be.

use std::collections::{BTreeMap, HashMap, HashSet};

use crimux_core::{BackendInfo, BackendRole, Error, ImageId, OsNotSupported, Result};

/// Pod annotation naming the OS a pod needs, when it has no RuntimeClass that says so.
pub const OS_ANNOTATION: &str = "crimux.io/os";

/// A backend's position in the dispatcher's list. Only meaningful for the router that
/// handed it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendIdx(pub usize);

/// What the router needs to know of a pod to place it.
#[derive(Clone, Copy, Debug)]
pub struct PodPlacement<'a> {
    pub uid: &'a str,
    /// `namespace/name`, for messages.
    pub name: &'a str,
    /// The RuntimeClass handler; `""` is the default handler.
    pub runtime_handler: &'a str,
    pub annotations: &'a BTreeMap<String, String>,
}

/// Which rule placed a pod; logged, and asserted by tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlacedBy {
    RuntimeHandler,
    Annotation,
    PodHint,
    Primary,
}

/// Backend topology plus what was learned at run time.
///
/// Learned state is in memory only for now: after a restart pods are placed again from
/// their handler and annotation, and image OSes are learned again on the next pull.
#[derive(Debug, Clone)]
pub struct Router {
    backends: Vec<BackendInfo>,
    primary: BackendIdx,
    handlers: HashMap<String, BackendIdx>,
    image_os: HashMap<ImageId, String>,
    pod_os: HashMap<String, String>,
}

impl Router {
    /// Validates the topology: at least one backend, exactly one primary, unique names,
    /// and each named runtime handler served by one backend only. The default handler
    /// (`""`) is every backend's own and is not routed on.
    pub fn new(backends: Vec<BackendInfo>) -> Result<Router> {
        if backends.is_empty() {
            return Err(Error::InvalidArgument(
                "no backends configured: a node needs one primary backend".into(),
            ));
        }
        let primaries: Vec<&str> = backends
            .iter()
            .filter(|b| b.role == BackendRole::Primary)
            .map(|b| b.name.as_str())
            .collect();
        if primaries.len() != 1 {
            return Err(Error::InvalidArgument(format!(
                "exactly one backend must be primary, found {} ({})",
                primaries.len(),
                primaries.join(", ")
            )));
        }
        let mut names = HashSet::new();
        let mut handlers: HashMap<String, BackendIdx> = HashMap::new();
        let mut primary = BackendIdx(0);
        for (i, b) in backends.iter().enumerate() {
            if b.name.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "backend #{i} has an empty name"
                )));
            }
            if !names.insert(b.name.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "backend name {:?} is used twice",
                    b.name
                )));
            }
            if b.role == BackendRole::Primary {
                primary = BackendIdx(i);
            }
            for h in b.runtime_handlers.iter().filter(|h| !h.is_empty()) {
                if let Some(other) = handlers.insert(h.clone(), BackendIdx(i)) {
                    if other != BackendIdx(i) {
                        return Err(Error::InvalidArgument(format!(
                            "runtime handler {h:?} is served by both backend {:?} and {:?}",
                            backends[other.0].name, b.name
                        )));
                    }
                }
            }
        }
        Ok(Router {
            backends,
            primary,
            handlers,
            image_os: HashMap::new(),
            pod_os: HashMap::new(),
        })
    }

    pub fn backends(&self) -> &[BackendInfo] {
        &self.backends
    }

    pub fn info(&self, idx: BackendIdx) -> &BackendInfo {
        &self.backends[idx.0]
    }

    pub fn primary(&self) -> BackendIdx {
        self.primary
    }

    /// Every backend, primary first then in configuration order: the order in which
    /// fan-out answers are preferred.
    pub fn fan_out_order(&self) -> Vec<BackendIdx> {
        std::iter::once(self.primary)
            .chain(
                (0..self.backends.len())
                    .map(BackendIdx)
                    .filter(|i| *i != self.primary),
            )
            .collect()
    }

    /// The OSes this node's backends run, sorted and deduplicated.
    pub fn node_os(&self) -> Vec<String> {
        let mut os: Vec<String> = self
            .backends
            .iter()
            .map(|b| b.platform.os.clone())
            .collect();
        os.sort();
        os.dedup();
        os
    }

    /// Named runtime handlers served on this node, sorted.
    pub fn runtime_handlers(&self) -> Vec<String> {
        let mut h: Vec<String> = self.handlers.keys().cloned().collect();
        h.sort();
        h
    }

    /// The backend serving a named runtime handler; an unknown one is NotFound listing
    /// the handlers this node serves.
    pub fn backend_for_handler(&self, handler: &str) -> Result<BackendIdx> {
        self.handlers.get(handler).copied().ok_or_else(|| {
            Error::NotFound(format!(
                "no backend serves runtime handler {handler:?} (node serves [{}])",
                self.runtime_handlers().join(", ")
            ))
        })
    }

    /// The backend running `os`, the primary when it does.
    pub fn backend_for_os(&self, os: &str) -> Option<BackendIdx> {
        self.fan_out_order()
            .into_iter()
            .find(|i| self.backends[i.0].platform.os.eq_ignore_ascii_case(os))
    }

    /// Picks the backend a pod runs on; see the module doc for the order of rules.
    pub fn place_pod(&self, pod: &PodPlacement<'_>) -> Result<(BackendIdx, PlacedBy)> {
        let wanted_os = pod
            .annotations
            .get(OS_ANNOTATION)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty());
        if !pod.runtime_handler.is_empty() {
            let idx = self.backend_for_handler(pod.runtime_handler)?;
            let backend = &self.backends[idx.0];
            if let Some(os) = wanted_os {
                if !backend.platform.os.eq_ignore_ascii_case(os) {
                    return Err(Error::InvalidArgument(format!(
                        "pod {}: runtime handler {:?} runs {} on backend {:?}, but annotation \
                         {OS_ANNOTATION} asks for {os}",
                        pod.name, pod.runtime_handler, backend.platform.os, backend.name
                    )));
                }
            }
            return Ok((idx, PlacedBy::RuntimeHandler));
        }
        if let Some(os) = wanted_os {
            return match self.backend_for_os(os) {
                Some(idx) => Ok((idx, PlacedBy::Annotation)),
                None => Err(OsNotSupported {
                    required_os: os.to_ascii_lowercase(),
                    node_os: self.node_os(),
                    image: String::new(),
                    pod: pod.name.to_string(),
                }
                .into()),
            };
        }
        if let Some(idx) = self
            .pod_os
            .get(pod.uid)
            .and_then(|os| self.backend_for_os(os))
        {
            return Ok((idx, PlacedBy::PodHint));
        }
        Ok((self.primary, PlacedBy::Primary))
    }

    /// Records a successful pull: the image's OS per backend that accepted it and, when
    /// exactly one OS accepted and the pull named a pod, that pod's OS hint.
    pub fn record_pull(&mut self, pod_uid: Option<&str>, accepted: &[(BackendIdx, ImageId)]) {
        let mut oses: Vec<String> = Vec::new();
        for (idx, id) in accepted {
            let os = self.backends[idx.0].platform.os.clone();
            if !oses.contains(&os) {
                oses.push(os.clone());
            }
            self.image_os.insert(id.clone(), os);
        }
        if let (Some(uid), [os]) = (pod_uid.filter(|u| !u.is_empty()), oses.as_slice()) {
            self.pod_os.insert(uid.to_string(), os.clone());
        }
    }

    /// Records an image's OS learned other than by a pull through this router (an image
    /// status, a backend's own list).
    pub fn record_image_os(&mut self, id: ImageId, os: &str) {
        self.image_os.insert(id, os.to_string());
    }

    /// The OS of an image seen in a pull, if any.
    pub fn image_os(&self, id: &ImageId) -> Option<&str> {
        self.image_os.get(id).map(String::as_str)
    }

    /// The OS learned for a pod uid from its image pulls.
    pub fn pod_os_hint(&self, pod_uid: &str) -> Option<&str> {
        self.pod_os.get(pod_uid).map(String::as_str)
    }

    /// Records that a pod needs `os`: its next sandbox is placed on a backend running it.
    pub fn hint_pod(&mut self, pod_uid: &str, os: &str) {
        if !pod_uid.is_empty() {
            self.pod_os
                .insert(pod_uid.to_string(), os.to_ascii_lowercase());
        }
    }

    /// Drops what was learned for a pod, once it is removed.
    pub fn forget_pod(&mut self, pod_uid: &str) {
        self.pod_os.remove(pod_uid);
    }
}
