//! `crimux-bench`: RuntimeService latency percentiles against any CRI endpoint, and the
//! containerd-only floor. See `crimux-bench --help`.

mod cli;
mod cri;
mod floor;
mod stats;
mod stream;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;

use crate::cli::{Cli, Mode};
use crate::stats::{table, Report};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crimux-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: &Cli) -> Result<()> {
    cli.validate()?;
    let started = Instant::now();
    let (target, samples) = match &cli.mode {
        Mode::Floor(args) => (args.containerd.clone(), floor::run(cli, args).await?),
        Mode::Stream(args) => (
            cli.endpoint.clone().unwrap_or_default(),
            stream::run(cli, args).await?,
        ),
        _ => (
            cli.endpoint.clone().unwrap_or_default(),
            cri::run(cli).await?,
        ),
    };
    let wall = started.elapsed();
    println!(
        "{} against {target}: n={} concurrency={} in {:.1} s",
        cli.mode_name(),
        cli.n,
        cli.concurrency,
        wall.as_secs_f64()
    );
    print!("{}", table(&samples));
    if let Some(path) = &cli.json {
        let report = Report::new(
            cli.mode_name(),
            &target,
            (cli.n, cli.concurrency, cli.pods()),
            wall,
            &samples,
        );
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
