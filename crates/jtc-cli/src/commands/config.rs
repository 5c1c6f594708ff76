//! `jtc cache config`: the active driver and its settings.

use std::process::ExitCode;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use jtc_cache::CacheConfig;

pub(crate) fn run(config: &CacheConfig) -> anyhow::Result<ExitCode> {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(["Setting", "Value"]);
    for (name, value) in config.describe() {
        table.add_row([name.to_owned(), value]);
    }
    println!("Cache Configuration");
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}
