//! `jtc cache config`: the active driver and its settings.

use std::process::ExitCode;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use jtc_cache::CacheConfig;

pub(crate) fn run(config: &CacheConfig, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        // One object: `{"driver": "file", "file_path": "...", "compression": "..."}`.
        let object: serde_json::Map<String, serde_json::Value> = config
            .describe()
            .into_iter()
            .map(|(name, value)| (name.to_lowercase().replace(' ', "_"), value.into()))
            .collect();
        println!("{}", serde_json::Value::Object(object));
        return Ok(ExitCode::SUCCESS);
    }
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
