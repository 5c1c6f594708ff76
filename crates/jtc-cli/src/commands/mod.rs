//! One module per `jtc cache` command.

mod clear;
mod config;
mod forget;
mod get;
mod prune;
mod stats;
mod table;
mod test;
mod warm;

use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use jtc_cache::{Cache, CacheConfig, DriverKind, FileDriver};

use crate::cli::{CacheCommand, Cli, Command};

pub(crate) async fn run(command: Command) -> anyhow::Result<ExitCode> {
    let Command::Cache(command) = command else {
        unreachable!("completions and man are answered before the cache is configured")
    };
    let config = CacheConfig::from_env()?;
    match command {
        CacheCommand::Test => test::run(&config).await,
        CacheCommand::Config { json } => config::run(&config, json),
        CacheCommand::Clear { tags, force } => clear::run(&config, &tags, force).await,
        CacheCommand::Forget { key } => forget::run(&config, &key).await,
        CacheCommand::Get { key, json } => get::run(&config, &key, json).await,
        CacheCommand::Prune => prune::run(&config).await,
        CacheCommand::Stats { url, json } => stats::run(&config, url.as_deref(), json).await,
        CacheCommand::Table => table::run(&config),
        CacheCommand::Warm {
            file,
            concurrency,
            overwrite,
            once_per,
            json,
        } => {
            let options = warm::Options {
                concurrency: usize::from(concurrency),
                overwrite,
                once_per: once_per.map(std::time::Duration::from_secs),
                json,
            };
            warm::run(&config, &file, &options).await
        }
    }
}

/// `jtc completions <shell>`: the completion script on stdout.
pub(crate) fn completions(shell: clap_complete::Shell) -> ExitCode {
    clap_complete::generate(shell, &mut Cli::command(), "jtc", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// `jtc man`: the manual page (roff) on stdout.
pub(crate) fn man() -> anyhow::Result<ExitCode> {
    clap_mangen::Man::new(Cli::command())
        .render(&mut std::io::stdout())
        .context("failed to write the manual page")?;
    Ok(ExitCode::SUCCESS)
}

/// Opens the configured cache, saying which driver failed to open.
async fn open(config: &CacheConfig) -> anyhow::Result<Cache> {
    config
        .build()
        .await
        .with_context(|| format!("failed to open the {} cache", config.driver))
}

/// The file driver itself, for the commands that report progress over its folders.
fn file_driver(config: &CacheConfig) -> anyhow::Result<Option<FileDriver>> {
    if config.driver != DriverKind::File {
        return Ok(None);
    }
    let driver = FileDriver::new(&config.file_path).context("failed to open the file cache")?;
    Ok(Some(driver))
}
