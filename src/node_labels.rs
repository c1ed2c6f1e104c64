//! `crimux node-labels`: the labels an operator adds to kubelet's `--node-labels`.

use std::process::ExitCode;

use crate::cli::{GlobalArgs, NodeLabelsArgs};

pub fn main(global: &GlobalArgs, args: &NodeLabelsArgs) -> ExitCode {
    let _ = (global, args);
    crate::fail(1, &"node-labels is not built yet")
}
