//! The command-line grammar.

use clap::{Parser, Subcommand};

/// jtc: manage the application cache configured by CACHE_DRIVER and friends.
///
/// Settings come from the environment and from a `.env` file in the working directory.
///
/// Exit codes: 0 success; 1 not found (`get`, `forget` of a key that is not set), declined
/// (`clear` answered no) or some entries not warmed (`warm`); 2 usage or configuration error; 3 the cache backend is unreachable
/// or failed.
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
    /// Print a shell completion script: `jtc completions bash > /etc/bash_completion.d/jtc`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `jtc man > /usr/local/share/man/man1/jtc.1`.
    Man,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CacheCommand {
    /// Check the cache works: put, get, increment and forget a test key.
    Test,
    /// Show the active driver and its settings (secrets masked).
    Config {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove every entry of this cache (other applications' data is left alone), or with
    /// --tags the entries of those tags. On a terminal it asks first, unless --force.
    Clear {
        /// Flush only these tags (comma separated): `--tags users,posts`.
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        force: bool,
    },
    /// Remove one key; exits 1 when it was not set.
    Forget {
        /// The key to remove.
        key: String,
    },
    /// Print the value stored at a key as JSON; exits 1 when the key is not set.
    Get {
        /// The key to read.
        key: String,
        /// Print the value as one line of JSON, and nothing else.
        #[arg(long)]
        json: bool,
    },
    /// Remove expired entries that nobody has read since (file and database drivers).
    Prune,
    /// Fill the cache from a file of entries, one JSON object per line:
    /// {"key": "config:app", "value": {...}, "ttl": 3600} (ttl in seconds, null for no expiry).
    /// Entries already present are skipped unless --overwrite. Exits 1 when some entries
    /// failed (a malformed line is reported with its number; the others still load).
    Warm {
        /// The entries file; `-` reads standard input.
        #[arg(long, value_name = "PATH")]
        file: String,
        /// How many entries are written at once.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
        concurrency: u16,
        /// Rewrite entries that are already present.
        #[arg(long)]
        overwrite: bool,
        /// Across machines warming the same cache at once: each entry is written by one of
        /// them, at most once per this many seconds (a lock per entry in the cache).
        #[arg(long, value_name = "SECONDS")]
        once_per: Option<u64>,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print what creates the driver's table, for tables provisioned by hand: the SQL of the
    /// database driver (CACHE_DRIVER=database; it also creates the table itself when missing),
    /// or the `aws dynamodb` commands of the DynamoDB driver (CACHE_DRIVER=dynamodb).
    Table,
    /// Show cache counters: a running app's (from its stats endpoint, with --url), or without
    /// --url those of a round trip this command makes itself (a live check of the driver).
    Stats {
        /// An app's stats endpoint returning `Cache::stats()` as JSON, e.g.
        /// http://127.0.0.1:3000/_cache/stats (plain http).
        #[arg(long)]
        url: Option<String>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}
