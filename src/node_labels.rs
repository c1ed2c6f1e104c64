//! `crimux node-labels`: the labels an operator adds to kubelet's `--node-labels`.
//!
//! One `crimux.io/os.<os>=true` per OS the configured backends run, sorted and without
//! duplicates, on one line: `crimux.io/os.linux=true,crimux.io/os.windows=true`. Pods then
//! reach the node by nodeAffinity or a RuntimeClass `scheduling.nodeSelector`, and the
//! refusal a node gives for an OS it lacks names the same label (see manifests/).
//!
//! A backend's OS is its configured `os`; without one, its containerd is asked (the same
//! discovery `crimux serve` does). `--offline` never connects: a backend without `os` is
//! then an error. Errors are one line on stderr and exit code 2.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::{anyhow, Context};

use crimux_core::error::NODE_LABEL_PREFIX;
use crimux_registry::Registry;

use crate::cli::{GlobalArgs, NodeLabelsArgs};
use crate::config::Config;

/// Exit code for a configuration or a backend that cannot say its OS.
const EXIT_FAILURE: u8 = 2;

pub fn main(global: &GlobalArgs, args: &NodeLabelsArgs) -> ExitCode {
    let config = match crate::load_config(global) {
        Ok(config) => config,
        Err(e) => return crate::fail(EXIT_FAILURE, &e),
    };
    let oses = if args.offline {
        configured_oses(&config)
    } else {
        discover(&config)
    };
    match oses {
        Ok(oses) => {
            println!("{}", labels(&oses));
            ExitCode::SUCCESS
        }
        Err(e) => crate::fail(EXIT_FAILURE, &format!("node-labels: {e:#}")),
    }
}

/// The label line for these OSes: sorted, deduplicated, lowercase.
pub fn labels<'a>(oses: impl IntoIterator<Item = &'a String>) -> String {
    oses.into_iter()
        .map(|os| os.trim().to_ascii_lowercase())
        .collect::<BTreeSet<String>>()
        .into_iter()
        .map(|os| format!("{NODE_LABEL_PREFIX}{os}=true"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Every backend's configured `os`; one without is an error naming it.
fn configured_oses(config: &Config) -> anyhow::Result<Vec<String>> {
    config
        .backends
        .iter()
        .map(|b| {
            b.os.clone()
                .filter(|os| !os.trim().is_empty())
                .ok_or_else(|| {
                    anyhow!(
                        "backend {:?} has no `os` in the configuration, and --offline forbids \
                     asking its containerd at {}",
                        b.name,
                        b.address
                    )
                })
        })
        .collect()
}

/// Configured OSes, and the platform of each containerd for backends without one.
fn discover(config: &Config) -> anyhow::Result<Vec<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let registry = Registry::new(Some(&config.registry.config_path)).map_err(|e| {
            anyhow!(
                "registry: config_path {}: {e}",
                config.registry.config_path.display()
            )
        })?;
        let mut oses = Vec::with_capacity(config.backends.len());
        for b in &config.backends {
            match b.os.as_ref().filter(|os| !os.trim().is_empty()) {
                Some(os) => oses.push(os.clone()),
                None => {
                    let backend = crate::serve::connect(config, b, registry.clone()).await?;
                    oses.push(backend.info().platform.os.clone());
                }
            }
        }
        Ok(oses)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_deduplicated_and_lowercase() {
        // (OSes, line)
        let cases: [(&[&str], &str); 4] = [
            (&["linux"], "crimux.io/os.linux=true"),
            (
                &["windows", "linux"],
                "crimux.io/os.linux=true,crimux.io/os.windows=true",
            ),
            (
                &["linux", "Linux", "windows", "linux"],
                "crimux.io/os.linux=true,crimux.io/os.windows=true",
            ),
            (&[], ""),
        ];
        for (oses, want) in cases {
            let oses: Vec<String> = oses.iter().map(|s| s.to_string()).collect();
            assert_eq!(labels(&oses), want, "{oses:?}");
        }
    }
}
