//! `jtc`: the command line of the jtc cache.
//!
//! Reads the same configuration as the application (`CACHE_DRIVER`, ... from the environment
//! and from `.env` in the working directory) and runs one command against that cache.

mod cli;
mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            output::error(&error);
            output::exit_code(&error)
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        cli::Command::Completions { shell } => return Ok(commands::completions(shell)),
        cli::Command::Man => return commands::man(),
        cli::Command::Cache(_) => {}
    }
    load_dotenv()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(commands::run(cli.command))
}

/// Loads `.env` from the working directory when there is one; a malformed one is an error.
fn load_dotenv() -> anyhow::Result<()> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context("failed to read .env")),
    }
}

/// Warnings (an unreadable entry removed, say) go to stderr; `RUST_LOG` sets the level. The
/// Redis client's own warnings (one per unreachable cluster node) are left out by default:
/// the command's one-line error already says the cache could not be reached.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,redis=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
