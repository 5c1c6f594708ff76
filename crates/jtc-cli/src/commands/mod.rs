//! One module per `jtc cache` command.

mod clear;
mod config;
mod forget;
mod get;
mod prune;
mod stats;
mod test;

use std::process::ExitCode;

use anyhow::Context;
use jtc_cache::{Cache, CacheConfig, DriverKind, FileDriver};

use crate::cli::{CacheCommand, Command};

pub(crate) async fn run(command: Command) -> anyhow::Result<ExitCode> {
    let Command::Cache(command) = command;
    let config = CacheConfig::from_env()?;
    match command {
        CacheCommand::Test => test::run(&config).await,
        CacheCommand::Config => config::run(&config),
        CacheCommand::Clear => clear::run(&config).await,
        CacheCommand::Forget { key } => forget::run(&config, &key).await,
        CacheCommand::Get { key } => get::run(&config, &key).await,
        CacheCommand::Prune => prune::run(&config).await,
        CacheCommand::Stats { url } => stats::run(&config, url.as_deref()).await,
    }
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
