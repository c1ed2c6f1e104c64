//! `crimux certs`: mutual-TLS material for a TCP delegate.

use std::process::ExitCode;

use crate::cli::{CertsArgs, GlobalArgs};

pub fn main(global: &GlobalArgs, args: &CertsArgs) -> ExitCode {
    let _ = (global, args);
    crate::fail(1, &"certs is not built yet")
}
