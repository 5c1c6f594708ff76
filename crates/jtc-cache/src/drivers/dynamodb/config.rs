//! The DynamoDB driver's settings: `DynamoDbConfig`, from code or `DYNAMODB_*` variables.

use std::{fmt, sync::Arc, time::Duration};

use crate::{Clock, ErrorKind, Result, SystemClock};

/// The table unless configured otherwise (`DYNAMODB_CACHE_TABLE`).
pub const DEFAULT_DYNAMODB_TABLE: &str = "jtc_cache";
/// The key prefix unless configured otherwise.
pub(crate) const DEFAULT_PREFIX: &str = "jtc_cache:";
/// The longest prefix.
const MAX_PREFIX: usize = 64;

/// Which table the DynamoDB driver uses and how it behaves. Region, credentials and (unless
/// set here) the endpoint come from the standard AWS chain: `AWS_REGION`,
/// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, profiles, instance and task roles,
/// `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_DYNAMODB`.
///
/// ```
/// use jtc_cache::DynamoDbConfig;
/// use std::time::Duration;
///
/// let config = DynamoDbConfig::new("app_cache")
///     .prefix("shop:")
///     .endpoint("http://127.0.0.1:8000") // a local DynamoDB-compatible server
///     .region("eu-west-1")
///     .timeout(Duration::from_millis(500));
/// assert_eq!(config.table(), "app_cache");
/// ```
#[derive(Clone)]
pub struct DynamoDbConfig {
    pub(super) table: String,
    pub(super) prefix: String,
    pub(super) endpoint: Option<String>,
    pub(super) region: Option<String>,
    /// An access key id and secret given in code instead of the AWS chain's.
    pub(super) credentials: Option<(String, String)>,
    pub(super) timeout: Duration,
    pub(super) generation_check: Duration,
    pub(super) clock: Arc<dyn Clock>,
}

impl fmt::Debug for DynamoDbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoDbConfig")
            .field("table", &self.table)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint.as_deref().map(crate::mask_url))
            .field("region", &self.region)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(id, _)| format!("{id} / ***")),
            )
            .field("timeout", &self.timeout)
            .field("generation_check", &self.generation_check)
            .finish_non_exhaustive()
    }
}

impl PartialEq for DynamoDbConfig {
    /// The same settings (the clock is not compared).
    fn eq(&self, other: &Self) -> bool {
        (
            &self.table,
            &self.prefix,
            &self.endpoint,
            &self.region,
            self.timeout,
            self.generation_check,
        ) == (
            &other.table,
            &other.prefix,
            &other.endpoint,
            &other.region,
            other.timeout,
            other.generation_check,
        )
    }
}

impl Eq for DynamoDbConfig {}

impl Default for DynamoDbConfig {
    fn default() -> Self {
        Self::new(DEFAULT_DYNAMODB_TABLE)
    }
}

impl DynamoDbConfig {
    /// The settings for `table`, the rest at their defaults.
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            endpoint: None,
            region: None,
            credentials: None,
            timeout: Duration::from_secs(1),
            generation_check: Duration::from_secs(1),
            clock: Arc::new(SystemClock),
        }
    }

    /// What every key is stored under (default `jtc_cache:`; at most 64 bytes). Caches with
    /// different prefixes share a table without seeing each other's entries, and `flush`
    /// empties only its own prefix.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The endpoint to send requests to (`http://127.0.0.1:8000` for a local server) instead
    /// of the one the AWS chain gives.
    #[must_use]
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The region, instead of the one the AWS chain gives (`us-east-1` when it gives none).
    #[must_use]
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// An access key id and secret to sign with instead of the AWS chain's credentials: for
    /// a local DynamoDB-compatible server (which accepts any), or keys the application keeps
    /// in its own secret store. The secret is never shown (`Debug` masks it).
    #[must_use]
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.credentials = Some((access_key_id.into(), secret_access_key.into()));
        self
    }

    /// How long one call may take, the SDK's retries included (default 1 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How old the generation this process holds may get before it is read again (default
    /// 1 s): a `flush` by another process reaches this one within that time; this process's
    /// own `flush` is seen at once. `Duration::ZERO` reads it before every call (one more
    /// request per call).
    #[must_use]
    pub fn generation_check(mut self, every: Duration) -> Self {
        self.generation_check = every;
        self
    }

    /// The clock that decides expiry (default: the system's). Instances sharing a table need
    /// clocks in step.
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Reads `DYNAMODB_CACHE_TABLE`, `DYNAMODB_PREFIX`, `DYNAMODB_ENDPOINT`,
    /// `DYNAMODB_TIMEOUT_MS` and `DYNAMODB_GENERATION_CHECK_MS`.
    pub(crate) fn from_lookup(var: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let mut config = Self::new(
            var("DYNAMODB_CACHE_TABLE").unwrap_or_else(|| DEFAULT_DYNAMODB_TABLE.to_owned()),
        );
        if let Some(prefix) = var("DYNAMODB_PREFIX") {
            config.prefix = prefix;
        }
        config.endpoint = var("DYNAMODB_ENDPOINT");
        if let Some(ms) = var("DYNAMODB_TIMEOUT_MS") {
            config.timeout =
                Duration::from_millis(crate::config::millis("DYNAMODB_TIMEOUT_MS", &ms)?);
        }
        if let Some(ms) = var("DYNAMODB_GENERATION_CHECK_MS") {
            config.generation_check =
                Duration::from_millis(crate::config::millis("DYNAMODB_GENERATION_CHECK_MS", &ms)?);
        }
        config.check()?;
        Ok(config)
    }

    /// The settings checked: a table name DynamoDB accepts, a usable prefix and timeout.
    pub(super) fn check(&self) -> Result<()> {
        let invalid = |variable: &'static str, value: &str, reason: &str| -> crate::Error {
            ErrorKind::Config {
                variable,
                value: value.to_owned(),
                reason: reason.to_owned(),
            }
            .into()
        };
        let table_ok = (3..=255).contains(&self.table.len())
            && self
                .table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !table_ok {
            return Err(invalid(
                "DYNAMODB_CACHE_TABLE",
                &self.table,
                "a DynamoDB table name is 3 to 255 characters of a-z, A-Z, 0-9, `_`, `-` and `.`",
            ));
        }
        if self.prefix.len() > MAX_PREFIX || self.prefix.chars().any(char::is_control) {
            return Err(invalid(
                "DYNAMODB_PREFIX",
                &self.prefix,
                "at most 64 bytes, no control characters",
            ));
        }
        if self.timeout.is_zero() {
            return Err(invalid(
                "DYNAMODB_TIMEOUT_MS",
                "0",
                "a zero timeout fails every call; expected 1 or more milliseconds",
            ));
        }
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(invalid(
                "DYNAMODB_ENDPOINT",
                endpoint,
                "expected an http:// or https:// URL",
            ));
        }
        Ok(())
    }

    pub(crate) fn describe(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Table", self.table.clone()),
            ("Prefix", self.prefix.clone()),
            (
                "Endpoint",
                self.endpoint.as_deref().map_or_else(
                    || {
                        "from the AWS chain (AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL)"
                            .to_owned()
                    },
                    crate::mask_url,
                ),
            ),
            (
                "Region",
                self.region
                    .clone()
                    .unwrap_or_else(|| "from the AWS chain (AWS_REGION, profile)".to_owned()),
            ),
            ("Timeout", format!("{} ms", self.timeout.as_millis())),
            (
                "Generation Check",
                format!("{} ms", self.generation_check.as_millis()),
            ),
        ]
    }

    /// The AWS CLI commands that create this table as
    /// [`DynamoDbDriver::create_table`](crate::DynamoDbDriver::create_table) does: on-demand
    /// billing, hash key `key`, DynamoDB's own TTL on `ttl` (clean-up only: expiry is decided
    /// on read).
    pub fn create_table_commands(&self) -> String {
        let table = &self.table;
        format!(
            "aws dynamodb create-table --table-name {table} \\\n    \
             --attribute-definitions AttributeName=key,AttributeType=S \\\n    \
             --key-schema AttributeName=key,KeyType=HASH \\\n    \
             --billing-mode PAY_PER_REQUEST\n\
             aws dynamodb wait table-exists --table-name {table}\n\
             aws dynamodb update-time-to-live --table-name {table} \\\n    \
             --time-to-live-specification Enabled=true,AttributeName=ttl\n"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> Result<DynamoDbConfig> {
        DynamoDbConfig::from_lookup(&|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_and_variables() {
        let config = lookup(&[]).unwrap();
        assert_eq!(config, DynamoDbConfig::new("jtc_cache"));
        let config = lookup(&[
            ("DYNAMODB_CACHE_TABLE", "t-1"),
            ("DYNAMODB_PREFIX", "p:"),
            ("DYNAMODB_ENDPOINT", "http://127.0.0.1:9"),
            ("DYNAMODB_TIMEOUT_MS", "250"),
            ("DYNAMODB_GENERATION_CHECK_MS", "0"),
        ])
        .unwrap();
        assert_eq!(
            config,
            DynamoDbConfig::new("t-1")
                .prefix("p:")
                .endpoint("http://127.0.0.1:9")
                .timeout(Duration::from_millis(250))
                .generation_check(Duration::ZERO)
        );
    }

    #[test]
    fn bad_settings_name_their_variable() {
        for (vars, variable) in [
            (
                &[("DYNAMODB_CACHE_TABLE", "a b")][..],
                "DYNAMODB_CACHE_TABLE",
            ),
            (&[("DYNAMODB_CACHE_TABLE", "ab")], "DYNAMODB_CACHE_TABLE"),
            (&[("DYNAMODB_PREFIX", &"p".repeat(65))], "DYNAMODB_PREFIX"),
            (&[("DYNAMODB_TIMEOUT_MS", "0")], "DYNAMODB_TIMEOUT_MS"),
            (&[("DYNAMODB_TIMEOUT_MS", "soon")], "DYNAMODB_TIMEOUT_MS"),
            (
                &[("DYNAMODB_ENDPOINT", "127.0.0.1:8000")],
                "DYNAMODB_ENDPOINT",
            ),
            (
                &[("DYNAMODB_GENERATION_CHECK_MS", "-1")],
                "DYNAMODB_GENERATION_CHECK_MS",
            ),
        ] {
            let err = lookup(vars).unwrap_err();
            assert!(err.to_string().contains(variable), "{err}");
        }
    }

    #[test]
    fn secrets_are_never_shown() {
        let config = DynamoDbConfig::new("t_1")
            .endpoint("https://user:secret@ddb.example")
            .credentials("AKIDEXAMPLE", "wJalrXUtnFEMI");
        let shown = format!("{config:?} {:?}", config.describe());
        assert!(!shown.contains("secret"), "{shown}");
        assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
        assert!(shown.contains("AKIDEXAMPLE / ***"), "{shown}");
    }
}
