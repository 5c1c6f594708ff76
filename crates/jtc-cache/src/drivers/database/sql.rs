//! The driver's statements, written once with `$n` parameters and built per dialect and
//! table. Every atomic operation is one statement; keys, values and times only ever travel
//! as bound parameters, and the one identifier spliced in is the validated, quoted table.
//!
//! Rows: `id` (a hash of the storage key: PostgreSQL indexes cannot hold 64 KiB keys),
//! `key` (the storage key's bytes, for `flush` by prefix), `value` (the stored bytes) or
//! `counter` (a counter, held as an integer so that increments are arithmetic), and
//! `expires_at` (Unix ms; NULL: forever). A row whose `expires_at` has passed is absent.

use std::sync::Arc;

use super::table::{Dialect, Table};

/// The statements of one table in one dialect.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) get: Arc<str>,
    pub(crate) get_any: Arc<str>,
    pub(crate) put: Arc<str>,
    pub(crate) add: Arc<str>,
    pub(crate) increment: Arc<str>,
    pub(crate) hit: Arc<str>,
    pub(crate) forget: Arc<str>,
    pub(crate) forget_value: Arc<str>,
    pub(crate) forget_counter: Arc<str>,
    pub(crate) pull: Arc<str>,
    pub(crate) touch: Arc<str>,
    pub(crate) flush_all: Arc<str>,
    pub(crate) flush_prefix: Arc<str>,
    pub(crate) prune: Arc<str>,
    pub(crate) begin_write: Arc<str>,
    pub(crate) placeholder: Arc<str>,
    pub(crate) lock_row: Arc<str>,
    pub(crate) set_row: Arc<str>,
}

/// The row is there and has not expired at `$now` (unqualified columns: SQLite's
/// `RETURNING` cannot name an alias).
fn live(now: &str) -> String {
    format!("(expires_at IS NULL OR expires_at > {now})")
}

/// The existing row `c` of an upsert has expired at `$now`.
fn expired(now: &str) -> String {
    format!("(c.expires_at IS NOT NULL AND c.expires_at <= {now})")
}

impl Statements {
    pub(crate) fn new(table: &Table, dialect: Dialect) -> Self {
        let t = table.quoted();
        let columns = "(id, key, value, counter, expires_at)";
        let set_all = "key = excluded.key, value = excluded.value, counter = excluded.counter, \
                       expires_at = excluded.expires_at";
        let sql = |text: String| dialect_params(&text, dialect);
        Self {
            // get: $1 id, $2 now
            get: sql(format!(
                "SELECT value, counter FROM {t} WHERE id = $1 AND {}",
                live("$2")
            )),
            // get_any (expired or not): $1 id
            get_any: sql(format!(
                "SELECT value, counter, expires_at FROM {t} WHERE id = $1"
            )),
            // put: $1 id, $2 key, $3 value, $4 counter, $5 expires_at
            put: sql(format!(
                "INSERT INTO {t} {columns} VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET {set_all}"
            )),
            // add: put's, $6 now; a row back when stored (new, or over an expired one)
            add: sql(format!(
                "INSERT INTO {t} AS c {columns} VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET {set_all} WHERE {} RETURNING 1",
                expired("$6")
            )),
            // increment: $1 id, $2 key, $3 by, $4 now, $5 lowest, $6 highest counter that
            // `by` can be added to; no row back: a live value that is not a counter, or an
            // overflow
            increment: sql(format!(
                "INSERT INTO {t} AS c {columns} VALUES ($1, $2, NULL, $3, NULL) \
                 ON CONFLICT (id) DO UPDATE SET value = NULL, \
                 counter = CASE WHEN {exp} THEN $3 ELSE c.counter + $3 END, \
                 expires_at = CASE WHEN {exp} THEN NULL ELSE c.expires_at END \
                 WHERE {exp} OR (c.value IS NULL AND c.counter BETWEEN $5 AND $6) \
                 RETURNING counter",
                exp = expired("$4")
            )),
            // hit: $1 id, $2 key, $3 by, $4 expires_at of a new window, $5 now. A missing,
            // expired or non-counter row starts a window; a counter keeps its expiry.
            hit: sql(format!(
                "INSERT INTO {t} AS c {columns} VALUES ($1, $2, NULL, $3, $4) \
                 ON CONFLICT (id) DO UPDATE SET value = NULL, \
                 counter = CASE WHEN {fresh} THEN $3 ELSE c.counter + $3 END, \
                 expires_at = CASE WHEN {fresh} OR c.expires_at IS NULL THEN $4 \
                 ELSE c.expires_at END \
                 RETURNING counter, expires_at",
                fresh = format!(
                    "({} OR c.value IS NOT NULL OR c.counter IS NULL)",
                    expired("$5")
                )
            )),
            // forget: $1 id, $2 now; a row back when one was there, saying whether it lived
            forget: sql(format!(
                "DELETE FROM {t} WHERE id = $1 \
                 RETURNING CAST(CASE WHEN {} THEN 1 ELSE 0 END AS BIGINT)",
                live("$2")
            )),
            // forget_value / forget_counter: $1 id, $2 now, $3 the expected value / counter
            forget_value: sql(format!(
                "DELETE FROM {t} WHERE id = $1 AND {} AND value = $3",
                live("$2")
            )),
            forget_counter: sql(format!(
                "DELETE FROM {t} WHERE id = $1 AND {} AND value IS NULL AND counter = $3",
                live("$2")
            )),
            // pull: $1 id
            pull: sql(format!(
                "DELETE FROM {t} WHERE id = $1 RETURNING value, counter, expires_at"
            )),
            // touch: $1 id, $2 now, $3 new expires_at
            touch: sql(format!(
                "UPDATE {t} SET expires_at = $3 WHERE id = $1 AND {}",
                live("$2")
            )),
            // flush_all, flush_prefix: $1 prefix, $2 its length
            flush_all: sql(format!("DELETE FROM {t}")),
            flush_prefix: sql(format!("DELETE FROM {t} WHERE substr(key, 1, $2) = $1")),
            // prune: $1 now
            prune: sql(format!(
                "DELETE FROM {t} WHERE expires_at IS NOT NULL AND expires_at <= $1"
            )),
            // begin_write: a transaction that writes (SQLite takes its write lock now, so
            // that two readers never both wait to upgrade)
            begin_write: sql(match dialect {
                Dialect::Sqlite => "BEGIN IMMEDIATE".to_owned(),
                Dialect::Postgres => "BEGIN".to_owned(),
            }),
            // placeholder: $1 id, $2 key; an expired empty row when none is there, for
            // lock_row to lock
            placeholder: sql(format!(
                "INSERT INTO {t} {columns} VALUES ($1, $2, NULL, NULL, 0) \
                 ON CONFLICT (id) DO NOTHING"
            )),
            // lock_row: $1 id
            lock_row: sql(match dialect {
                Dialect::Sqlite => {
                    format!("SELECT value, counter, expires_at FROM {t} WHERE id = $1")
                }
                Dialect::Postgres => {
                    format!("SELECT value, counter, expires_at FROM {t} WHERE id = $1 FOR UPDATE")
                }
            }),
            // set_row: $1 id, $2 key, $3 value, $4 expires_at
            set_row: sql(format!(
                "UPDATE {t} SET key = $2, value = $3, counter = NULL, expires_at = $4 WHERE id = $1"
            )),
        }
    }
}

/// PostgreSQL takes `$1`; SQLite takes `?1` (its own `$name` parameters are named, bound in
/// order of first appearance).
fn dialect_params(sql: &str, dialect: Dialect) -> Arc<str> {
    match dialect {
        Dialect::Postgres => Arc::from(sql),
        Dialect::Sqlite => Arc::from(sql.replace('$', "?")),
    }
}
