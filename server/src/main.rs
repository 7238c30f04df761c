//! `safeedit`: the SafeEdit Studio binary. [`cli`] turns each subcommand's flags into a
//! pipeline plan and prints the result; [`web`] serves the app, its API and the job queue.
//! Experiments themselves live in `safeedit-pipeline`; the burn backend is chosen there, by this
//! crate's `cuda` feature.

mod cli;
mod web;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    cli::Cli::parse().run()
}
