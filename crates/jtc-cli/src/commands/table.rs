//! `jtc cache table`: what creates the driver's table, for teams that provision by hand — the
//! SQL of the database driver (which also creates its table on first connect when missing),
//! or the AWS CLI commands of the DynamoDB driver.

use std::process::ExitCode;

use anyhow::{Context, bail};
use jtc_cache::{CacheConfig, DatabaseDriver, DriverKind};

pub(crate) fn run(config: &CacheConfig) -> anyhow::Result<ExitCode> {
    match config.driver {
        DriverKind::Database => {
            let Some(database) = config.database.as_ref() else {
                bail!("`jtc cache table` needs DB_URL for the database driver");
            };
            let ddl = DatabaseDriver::ddl(database).context("failed to write the table's SQL")?;
            print!("{ddl}");
        }
        DriverKind::DynamoDb => {
            let dynamodb = config.dynamodb.clone().unwrap_or_default();
            print!("{}", dynamodb.create_table_commands());
        }
        other => bail!(
            "`jtc cache table` is for the database and DynamoDB drivers; set CACHE_DRIVER=database \
             (with DB_URL) or CACHE_DRIVER=dynamodb (the driver in use is {other})"
        ),
    }
    Ok(ExitCode::SUCCESS)
}
