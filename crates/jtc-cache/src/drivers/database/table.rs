//! The cache table: its name (an identifier, validated and quoted, never a value spliced into
//! SQL) and its DDL per database.

use crate::{ErrorKind, Result};

/// The table used when none is named (`DB_CACHE_TABLE`).
pub const DEFAULT_TABLE: &str = "jtc_cache";

/// The SQL dialects the driver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A validated table name, `name` or `schema.name`, ready to splice into SQL quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Table {
    schema: Option<String>,
    name: String,
}

impl Table {
    /// Checks `text` as a table name: letters, digits and `_`, not starting with a digit, at
    /// most 63 bytes per part (PostgreSQL's identifier limit), with at most one `schema.`
    /// part. Anything else is refused, naming `variable` (`DB_CACHE_TABLE`).
    pub(crate) fn parse(text: &str, variable: &'static str) -> Result<Self> {
        let refuse = |reason: &str| -> crate::Error {
            ErrorKind::Config {
                variable,
                value: text.chars().take(80).collect(),
                reason: format!(
                    "{reason}; a table name is letters, digits and `_` (not starting with a \
                     digit, at most 63 bytes), optionally after one `schema.`"
                ),
            }
            .into()
        };
        let parts: Vec<&str> = text.split('.').collect();
        if parts.len() > 2 {
            return Err(refuse("more than one `.`"));
        }
        for part in &parts {
            if part.is_empty() {
                return Err(refuse("an empty name"));
            }
            if part.len() > 63 {
                return Err(refuse("longer than 63 bytes"));
            }
            if part.as_bytes()[0].is_ascii_digit() {
                return Err(refuse("starts with a digit"));
            }
            if !part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(refuse(
                    "holds a character other than a letter, digit or `_`",
                ));
            }
        }
        let (schema, name) = match parts.as_slice() {
            [schema, name] => (Some((*schema).to_owned()), (*name).to_owned()),
            [name] => (None, (*name).to_owned()),
            _ => unreachable!("one or two parts"),
        };
        Ok(Self { schema, name })
    }

    /// The name as SQL: each part double-quoted (the validation leaves no quote to escape).
    pub(crate) fn quoted(&self) -> String {
        match &self.schema {
            Some(schema) => format!("\"{schema}\".\"{}\"", self.name),
            None => format!("\"{}\"", self.name),
        }
    }

    /// An index name derived from the table's (PostgreSQL puts it in the table's schema).
    fn index(&self, suffix: &str) -> String {
        format!(
            "\"{}_{suffix}\"",
            self.name.chars().take(50).collect::<String>()
        )
    }

    /// The statements that create the table and its expiry index when missing (idempotent,
    /// safe when several instances start at once). `unlogged`: PostgreSQL only, see
    /// [`DatabaseConfig::unlogged`](super::DatabaseConfig::unlogged).
    pub(crate) fn ddl(&self, dialect: Dialect, unlogged: bool) -> Vec<String> {
        let table = self.quoted();
        let (bytes, kind) = match dialect {
            Dialect::Sqlite => ("BLOB", ""),
            Dialect::Postgres if unlogged => ("BYTEA", "UNLOGGED "),
            Dialect::Postgres => ("BYTEA", ""),
        };
        vec![
            format!(
                "CREATE {kind}TABLE IF NOT EXISTS {table} (\n    \
                 id {bytes} PRIMARY KEY,\n    \
                 key {bytes} NOT NULL,\n    \
                 value {bytes},\n    \
                 counter BIGINT,\n    \
                 expires_at BIGINT\n)"
            ),
            match (dialect, &self.schema) {
                // SQLite puts the schema on the index and none on its table.
                (Dialect::Sqlite, Some(schema)) => format!(
                    "CREATE INDEX IF NOT EXISTS \"{schema}\".{} ON \"{}\" (expires_at)",
                    self.index("expires_at"),
                    self.name
                ),
                _ => format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {table} (expires_at)",
                    self.index("expires_at")
                ),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_schema_names_are_quoted() {
        let table = Table::parse("jtc_cache", "DB_CACHE_TABLE").unwrap();
        assert_eq!(table.quoted(), "\"jtc_cache\"");
        let table = Table::parse("cache.entries_2", "DB_CACHE_TABLE").unwrap();
        assert_eq!(table.quoted(), "\"cache\".\"entries_2\"");
    }

    #[test]
    fn hostile_names_are_refused_naming_the_variable() {
        for hostile in [
            "",
            "x'; DROP TABLE users; --",
            "a\"b",
            "a.b.c",
            ".a",
            "a.",
            "1abc",
            "spaced name",
            "nul\0byte",
            "caché",
            &"a".repeat(64),
        ] {
            let err = Table::parse(hostile, "DB_CACHE_TABLE").unwrap_err();
            let text = err.to_string();
            assert!(text.contains("DB_CACHE_TABLE"), "{hostile:?}: {text}");
            assert!(
                matches!(err.kind(), ErrorKind::Config { .. }),
                "{hostile:?}"
            );
        }
        assert!(Table::parse(&"a".repeat(63), "DB_CACHE_TABLE").is_ok());
    }

    #[test]
    fn the_ddl_is_idempotent_and_unlogged_only_on_request() {
        let table = Table::parse("jtc_cache", "DB_CACHE_TABLE").unwrap();
        let sqlite = table.ddl(Dialect::Sqlite, true).join(";\n");
        assert!(
            sqlite.contains("CREATE TABLE IF NOT EXISTS \"jtc_cache\""),
            "{sqlite}"
        );
        assert!(sqlite.contains("id BLOB PRIMARY KEY") && !sqlite.contains("UNLOGGED"));
        let pg = table.ddl(Dialect::Postgres, true).join(";\n");
        assert!(pg.contains("CREATE UNLOGGED TABLE IF NOT EXISTS") && pg.contains("BYTEA"));
        assert!(!table.ddl(Dialect::Postgres, false)[0].contains("UNLOGGED"));
    }
}
