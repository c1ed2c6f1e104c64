//! Arguments of the `crimux-log` plugin.
//!
//! crimux starts a task with stdout set to
//! `binary:///usr/bin/crimux-log?path=/var/log/pods/..&max-line=16384`. The
//! containerd 1.6 runc shim (`pkg/process/io_util.go`, `NewBinaryCmd`) turns the
//! URI query into arguments as *separate words*, `key value key value ...`, in
//! Go map order (random), values already percent-decoded; a key without `=` gets
//! an empty value. For running the binary by hand, `key=value` in one word is
//! accepted too. Unknown keys are an error, so a typo does not silently drop a
//! setting.
//!
//! crimux itself starts the plugin for a container with stdin and no terminal (the shim
//! drops such a container's stdin when its output goes to a logging binary): then
//! `stdout-fifo <path> stderr-fifo <path>` name FIFOs to read instead of fds 3 and 4,
//! and the plugin detaches into its own session (see `plugin::daemonize`).

use std::ffi::OsString;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::format::DEFAULT_MAX_LINE;

/// Everything the plugin was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginConfig {
    /// `path=`: the CRI log file (required).
    pub path: PathBuf,
    /// `max-line=`: max entry content in bytes; 0 means no limit.
    pub max_line: usize,
    /// `pidfile=`: where to write our pid (atomically) so crimux can signal us.
    pub pidfile: Option<PathBuf>,
    /// `attach=`: unix socket that fans out the raw output as frames.
    pub attach: Option<PathBuf>,
    /// `mkdir=true`: create the log file's parent directories.
    pub create_parent_dirs: bool,
    /// `stdout-fifo=` and `stderr-fifo=` (both or neither): read the container's output
    /// from these FIFOs, not from inherited fds 3 and 4.
    pub fifos: Option<FifoInputs>,
}

/// The FIFOs a detached plugin reads the container's output from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FifoInputs {
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

const KEYS: [&str; 7] = [
    "path",
    "max-line",
    "pidfile",
    "attach",
    "mkdir",
    "stdout-fifo",
    "stderr-fifo",
];

impl PluginConfig {
    /// Parses the program arguments (without argv\[0]).
    pub fn from_args<I>(args: I) -> Result<Self>
    where
        I: IntoIterator<Item = OsString>,
    {
        let mut args = args.into_iter();
        let mut path = None;
        let mut max_line = DEFAULT_MAX_LINE;
        let mut pidfile = None;
        let mut attach = None;
        let mut create_parent_dirs = false;
        let (mut stdout_fifo, mut stderr_fifo) = (None, None);
        while let Some(arg) = args.next() {
            let arg = utf8(arg)?;
            let (key, value) = if KEYS.contains(&arg.as_str()) {
                let value = args.next().ok_or_else(|| {
                    Error::InvalidArgument(format!("{arg} needs a value after it"))
                })?;
                (arg, utf8(value)?)
            } else {
                match arg.split_once('=') {
                    Some((k, v)) if KEYS.contains(&k) => (k.to_string(), v.to_string()),
                    _ => {
                        return Err(Error::InvalidArgument(format!(
                            "unknown argument {arg:?} (known: {})",
                            KEYS.join(", ")
                        )))
                    }
                }
            };
            match key.as_str() {
                "path" => path = Some(non_empty_path(&key, value)?),
                "max-line" => {
                    max_line = value.parse().map_err(|_| {
                        Error::InvalidArgument(format!("max-line={value:?} is not a byte count"))
                    })?
                }
                "pidfile" => pidfile = Some(non_empty_path(&key, value)?),
                "attach" => attach = Some(non_empty_path(&key, value)?),
                "stdout-fifo" => stdout_fifo = Some(non_empty_path(&key, value)?),
                "stderr-fifo" => stderr_fifo = Some(non_empty_path(&key, value)?),
                _ => create_parent_dirs = parse_bool(&value)?,
            }
        }
        let path = path.ok_or_else(|| Error::InvalidArgument("path= is required".into()))?;
        let fifos = match (stdout_fifo, stderr_fifo) {
            (Some(stdout), Some(stderr)) => Some(FifoInputs { stdout, stderr }),
            (None, None) => None,
            _ => {
                return Err(Error::InvalidArgument(
                    "stdout-fifo= and stderr-fifo= go together".into(),
                ))
            }
        };
        Ok(Self {
            path,
            max_line,
            pidfile,
            attach,
            create_parent_dirs,
            fifos,
        })
    }
}

fn utf8(arg: OsString) -> Result<String> {
    arg.into_string()
        .map_err(|a| Error::InvalidArgument(format!("argument {a:?} is not UTF-8")))
}

fn non_empty_path(key: &str, value: String) -> Result<PathBuf> {
    if value.is_empty() {
        return Err(Error::InvalidArgument(format!("{key}= is empty")));
    }
    Ok(PathBuf::from(value))
}

fn parse_bool(value: &str) -> Result<bool> {
    match value {
        "" | "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        other => Err(Error::InvalidArgument(format!(
            "mkdir={other:?} is not true/false"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<PluginConfig> {
        PluginConfig::from_args(args.iter().map(OsString::from))
    }

    #[test]
    fn containerd_style_pairs_in_any_order() {
        let a = parse(&["max-line", "100", "path", "/l/0.log", "attach", "/r/a.sock"]).unwrap();
        let b = parse(&["attach", "/r/a.sock", "path", "/l/0.log", "max-line", "100"]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.path, PathBuf::from("/l/0.log"));
        assert_eq!(a.max_line, 100);
        assert_eq!(a.attach, Some(PathBuf::from("/r/a.sock")));
        assert_eq!(a.pidfile, None);
        assert!(!a.create_parent_dirs);
        assert_eq!(a.fifos, None);
    }

    #[test]
    fn fifo_inputs_come_in_pairs() {
        let c = parse(&[
            "stderr-fifo",
            "/s/err",
            "path",
            "/l/0.log",
            "stdout-fifo=/s/out",
        ])
        .unwrap();
        assert_eq!(
            c.fifos,
            Some(FifoInputs {
                stdout: PathBuf::from("/s/out"),
                stderr: PathBuf::from("/s/err"),
            })
        );
        for args in [
            &["path=/x", "stdout-fifo=/s/out"][..],
            &["path=/x", "stderr-fifo", "/s/err"],
            &["path=/x", "stdout-fifo", "", "stderr-fifo", "/e"],
        ] {
            assert!(
                matches!(parse(args), Err(Error::InvalidArgument(_))),
                "{args:?}"
            );
        }
    }

    #[test]
    fn key_equals_value_form_and_defaults() {
        let c = parse(&["path=/l/a=b.log", "pidfile=/r/p", "mkdir=true"]).unwrap();
        assert_eq!(c.path, PathBuf::from("/l/a=b.log"));
        assert_eq!(c.pidfile, Some(PathBuf::from("/r/p")));
        assert_eq!(c.max_line, DEFAULT_MAX_LINE);
        assert!(c.create_parent_dirs);
    }

    #[test]
    fn value_that_looks_like_a_key_is_a_value() {
        let c = parse(&["path", "path"]).unwrap();
        assert_eq!(c.path, PathBuf::from("path"));
        // containerd passes `?mkdir` as "mkdir" "".
        let c = parse(&["mkdir", "", "path", "/x"]).unwrap();
        assert!(c.create_parent_dirs);
    }

    #[test]
    fn bad_arguments_are_errors() {
        for args in [
            &[][..],
            &["max-line", "10"],
            &["path"],
            &["path", ""],
            &["path=/x", "max-line=-1"],
            &["path=/x", "colour=red"],
            &["path=/x", "--path=/y"],
            &["path=/x", "mkdir=maybe"],
        ] {
            assert!(
                matches!(parse(args), Err(Error::InvalidArgument(_))),
                "{args:?}"
            );
        }
    }
}
