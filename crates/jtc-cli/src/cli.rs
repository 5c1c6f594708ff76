//! The command-line grammar.

use clap::{Parser, Subcommand};

/// jtc: manage the application cache configured by CACHE_DRIVER and friends.
///
/// Settings come from the environment and from a `.env` file in the working directory.
#[derive(Debug, Parser)]
#[command(name = "jtc", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Work with the configured cache.
    #[command(subcommand)]
    Cache(CacheCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum CacheCommand {
    /// Check the cache works: put, get, increment and forget a test key.
    Test,
    /// Show the active driver and its settings (secrets masked).
    Config,
    /// Remove every entry of this cache (other applications' data is left alone).
    Clear,
    /// Remove one key.
    Forget {
        /// The key to remove.
        key: String,
    },
    /// Print the value stored at a key as JSON; exits 1 when the key is not set.
    Get {
        /// The key to read.
        key: String,
    },
    /// Remove expired entries that nobody has read since (file driver).
    Prune,
    /// Show cache counters: a running app's (from its stats endpoint, with --url) or those of
    /// a round trip this command makes on the configured cache.
    Stats {
        /// An app's stats endpoint returning `Cache::stats()` as JSON, e.g.
        /// http://127.0.0.1:3000/_cache/stats (plain http).
        #[arg(long)]
        url: Option<String>,
    },
}
