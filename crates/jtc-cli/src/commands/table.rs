//! `jtc cache table`: the SQL that creates the database driver's table, for teams that
//! migrate by hand (the driver also creates it on first connect when missing).

use std::process::ExitCode;

use anyhow::{Context, bail};
use jtc_cache::{CacheConfig, DatabaseDriver, DriverKind};

pub(crate) fn run(config: &CacheConfig) -> anyhow::Result<ExitCode> {
    let Some(database) = config
        .database
        .as_ref()
        .filter(|_| config.driver == DriverKind::Database)
    else {
        bail!(
            "`jtc cache table` is for the database driver; set CACHE_DRIVER=database and DB_URL \
             (the driver in use is {})",
            config.driver
        );
    };
    let ddl = DatabaseDriver::ddl(database).context("failed to write the table's SQL")?;
    print!("{ddl}");
    Ok(ExitCode::SUCCESS)
}
