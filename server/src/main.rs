//! `safeedit`: the SafeEdit Studio binary. [`cli`] turns each subcommand's flags into a
//! pipeline plan and prints the result; [`web`] serves the app, its API and the job queue.
//! Experiments themselves live in `safeedit-pipeline`; the burn backend is chosen there, by this
//! crate's `cuda` feature.

mod cli;
mod web;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli::Cli::parse().run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // What went wrong, outermost first, on one line: a user's mistake is a message, not
            // a backtrace (`RUST_BACKTRACE` still shows one for a panic).
            eprintln!("error: {}", message_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, outermost first, joined by `: `; a cause whose text its outer
/// message already contains (errors that print their source) is not repeated.
fn message_chain(e: &anyhow::Error) -> String {
    let mut message = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}
