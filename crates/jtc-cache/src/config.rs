//! `CacheConfig`: which driver, with which settings, read from the environment on request.

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

use crate::{
    ArrayDriver, Cache, DEFAULT_COMPRESSION_THRESHOLD, Error, ErrorKind, FileDriver, Result,
};
#[cfg(feature = "redis")]
use crate::{RedisConfig, RedisDriver};

/// The default folder of the file driver, relative to the working directory.
pub const DEFAULT_FILE_PATH: &str = "storage/framework/cache";

/// Which backend a [`CacheConfig`] builds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DriverKind {
    /// [`FileDriver`]: files in a local folder, no servers. The default.
    #[default]
    File,
    /// [`ArrayDriver`]: this process's memory.
    Array,
    /// `RedisDriver`: a Redis server or Cluster (needs the `redis` feature).
    Redis,
    /// `DatabaseDriver`: a table in SQLite or PostgreSQL (needs the `sqlite` or `postgres`
    /// feature).
    Database,
    /// `MemcachedDriver`: one or more memcached servers (needs the `memcached` feature).
    Memcached,
    /// `DynamoDbDriver`: an Amazon DynamoDB table (needs the `dynamodb` feature).
    DynamoDb,
    /// `ObjectStoreDriver`: S3 or another object store named by `CACHE_OBJECT_STORE_URL`
    /// (needs the `object-store` feature).
    ObjectStore,
}

impl DriverKind {
    /// Every accepted `CACHE_DRIVER` value.
    pub const NAMES: &'static [&'static str] = &[
        "file",
        "array",
        "redis",
        "database",
        "memcached",
        "dynamodb",
        "s3",
    ];

    /// The name used in `CACHE_DRIVER`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Array => "array",
            Self::Redis => "redis",
            Self::Database => "database",
            Self::Memcached => "memcached",
            Self::DynamoDb => "dynamodb",
            Self::ObjectStore => "s3",
        }
    }
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DriverKind {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "file" => Ok(Self::File),
            "array" => Ok(Self::Array),
            "redis" => Ok(Self::Redis),
            "database" => Ok(Self::Database),
            "memcached" => Ok(Self::Memcached),
            "dynamodb" => Ok(Self::DynamoDb),
            "s3" | "object-store" => Ok(Self::ObjectStore),
            _ => Err(ErrorKind::Config {
                variable: "CACHE_DRIVER",
                value: value.to_owned(),
                reason: format!(
                    "unknown cache driver; expected one of: {}",
                    Self::NAMES.join(", ")
                ),
            }
            .into()),
        }
    }
}

/// Everything needed to build a [`Cache`]: the driver and its settings.
///
/// ```
/// use jtc_cache::{CacheConfig, DriverKind};
///
/// let vars = [("CACHE_DRIVER", "array")];
/// let config = CacheConfig::from_lookup(|name| {
///     vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
/// })?;
/// assert_eq!(config.driver, DriverKind::Array);
///
/// let err = CacheConfig::from_lookup(|_| Some("mongodb".into())).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     r#"invalid CACHE_DRIVER="mongodb": unknown cache driver; expected one of: file, array, redis, database, memcached, dynamodb, s3"#
/// );
/// # Ok::<_, jtc_cache::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// The backend (`CACHE_DRIVER`). Default: `file`.
    pub driver: DriverKind,
    /// The file driver's folder (`CACHE_FILE_PATH`). Default: `storage/framework/cache`.
    pub file_path: PathBuf,
    /// How often the file driver removes expired entries in the background
    /// (`CACHE_FILE_SWEEP_INTERVAL`, whole seconds; `0` turns it off). Default: 60 s.
    pub file_sweep_interval: Duration,
    /// Values whose encoded size is above this many bytes are stored LZ4-compressed
    /// (`CACHE_COMPRESSION_THRESHOLD`; `off` or `none` turns compression off). Default: 1024.
    pub compress_above: Option<usize>,
    /// The Redis driver's settings (`REDIS_*`). Default: [`RedisConfig::default`].
    #[cfg(feature = "redis")]
    pub redis: RedisConfig,
    /// The database driver's settings (`DB_URL` or `DATABASE_URL`, `DB_CACHE_TABLE`,
    /// `DB_CACHE_PREFIX`, `DB_CACHE_UNLOGGED`); `None` unless `CACHE_DRIVER=database`.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub database: Option<crate::DatabaseConfig>,
    /// The memcached driver's settings (`MEMCACHED_SERVERS`, `MEMCACHED_PREFIX`,
    /// `MEMCACHED_TIMEOUT_MS`, `MEMCACHED_NAMESPACE_CHECK_MS`); `None` unless
    /// `CACHE_DRIVER=memcached`.
    #[cfg(feature = "memcached")]
    pub memcached: Option<crate::MemcachedConfig>,
    /// The DynamoDB driver's settings (`DYNAMODB_CACHE_TABLE`, `DYNAMODB_PREFIX`,
    /// `DYNAMODB_ENDPOINT`, `DYNAMODB_TIMEOUT_MS`, `DYNAMODB_GENERATION_CHECK_MS`; region and
    /// credentials from the AWS chain); `None` unless `CACHE_DRIVER=dynamodb`.
    #[cfg(feature = "dynamodb")]
    pub dynamodb: Option<crate::DynamoDbConfig>,
    /// The object store driver's URL (`CACHE_OBJECT_STORE_URL`: `s3://bucket/path`,
    /// `file:///path`, `memory://`; S3 settings from the `AWS_*` variables); `None` unless
    /// `CACHE_DRIVER=s3`.
    #[cfg(feature = "object-store")]
    pub object_store_url: Option<String>,
    /// Where values above [`large_value_threshold`](Self::large_value_threshold) go
    /// (`CACHE_LARGE_VALUES_URL`: an object store URL, as `CACHE_OBJECT_STORE_URL`), in front
    /// of any driver (see `LargeValueTier`; needs the `object-store` feature). Default: `None`,
    /// every value in the driver.
    pub large_values_url: Option<String>,
    /// The size of a value's stored form (encoded, compressed) above which it goes to
    /// `large_values_url` (`CACHE_LARGE_VALUE_THRESHOLD`, bytes). Default:
    /// [`DEFAULT_LARGE_VALUE_THRESHOLD`] (256 KiB).
    pub large_value_threshold: usize,
}

/// Values whose stored form is above this many bytes go to the large-value store, when there
/// is one (`CACHE_LARGE_VALUES_URL`), by default.
pub const DEFAULT_LARGE_VALUE_THRESHOLD: usize = 256 * 1024;

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            driver: DriverKind::default(),
            file_path: PathBuf::from(DEFAULT_FILE_PATH),
            file_sweep_interval: crate::DEFAULT_FILE_SWEEP_INTERVAL,
            compress_above: Some(DEFAULT_COMPRESSION_THRESHOLD),
            #[cfg(feature = "redis")]
            redis: RedisConfig::default(),
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            database: None,
            #[cfg(feature = "memcached")]
            memcached: None,
            #[cfg(feature = "dynamodb")]
            dynamodb: None,
            #[cfg(feature = "object-store")]
            object_store_url: None,
            large_values_url: None,
            large_value_threshold: DEFAULT_LARGE_VALUE_THRESHOLD,
        }
    }
}

impl CacheConfig {
    /// Reads `CACHE_DRIVER`, `CACHE_FILE_PATH` and the `REDIS_*` variables (see
    /// `RedisConfig`) from the process environment. Unset or empty
    /// variables take their defaults; a wrong value is an [`ErrorKind::Config`] naming the
    /// variable and what it accepts. The library never reads a `.env` file itself.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Like [`from_env`](Self::from_env), with variables from `lookup` (for tests and
    /// for configuration kept elsewhere).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut config = Self::default();
        if let Some(driver) = var("CACHE_DRIVER") {
            config.driver = driver.parse()?;
        }
        if let Some(path) = var("CACHE_FILE_PATH") {
            config.file_path = PathBuf::from(path);
        }
        if let Some(seconds) = var("CACHE_FILE_SWEEP_INTERVAL") {
            config.file_sweep_interval = parse_seconds("CACHE_FILE_SWEEP_INTERVAL", &seconds)?;
        }
        if let Some(threshold) = var("CACHE_COMPRESSION_THRESHOLD") {
            config.compress_above = parse_threshold(&threshold)?;
        }
        config.large_values_url = var("CACHE_LARGE_VALUES_URL");
        if let Some(bytes) = var("CACHE_LARGE_VALUE_THRESHOLD") {
            config.large_value_threshold = bytes.trim().parse().map_err(|_| {
                Error::from(ErrorKind::Config {
                    variable: "CACHE_LARGE_VALUE_THRESHOLD",
                    value: bytes.clone(),
                    reason: "expected a size in bytes (e.g. 262144)".to_owned(),
                })
            })?;
        }
        #[cfg(feature = "redis")]
        if config.driver == DriverKind::Redis {
            config.redis = RedisConfig::from_lookup(&var)?;
        }
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        if config.driver == DriverKind::Database {
            config.database = Some(crate::DatabaseConfig::from_lookup(&var)?);
        }
        #[cfg(feature = "memcached")]
        if config.driver == DriverKind::Memcached {
            config.memcached = Some(crate::MemcachedConfig::from_lookup(&var)?);
        }
        #[cfg(feature = "dynamodb")]
        if config.driver == DriverKind::DynamoDb {
            config.dynamodb = Some(crate::DynamoDbConfig::from_lookup(&var)?);
        }
        #[cfg(feature = "object-store")]
        if config.driver == DriverKind::ObjectStore {
            config.object_store_url = Some(var("CACHE_OBJECT_STORE_URL").ok_or_else(|| {
                Error::from(ErrorKind::Config {
                    variable: "CACHE_OBJECT_STORE_URL",
                    value: String::new(),
                    reason: "CACHE_DRIVER=s3 needs the store's URL, e.g. s3://bucket/cache"
                        .to_owned(),
                })
            })?);
        }
        Ok(config)
    }

    /// Creates the configured driver and returns a [`Cache`] over it.
    pub async fn build(&self) -> Result<Cache> {
        let cache = self.with_large_values(self.build_driver().await?)?;
        Ok(match self.compress_above {
            Some(bytes) => cache.compress_above(bytes),
            None => cache.without_compression(),
        })
    }

    /// `cache` with its large values in the store `CACHE_LARGE_VALUES_URL` names, if any.
    fn with_large_values(&self, cache: Cache) -> Result<Cache> {
        let Some(url) = self.large_values_url.as_deref() else {
            return Ok(cache);
        };
        #[cfg(feature = "object-store")]
        {
            let store = crate::ObjectStoreDriver::from_url_of("CACHE_LARGE_VALUES_URL", url, "")?;
            Ok(cache.large_values(store, self.large_value_threshold))
        }
        #[cfg(not(feature = "object-store"))]
        Err(ErrorKind::Config {
            variable: "CACHE_LARGE_VALUES_URL",
            value: crate::mask_url(url),
            reason: "jtc-cache was built without its `object-store` feature".to_owned(),
        }
        .into())
    }

    async fn build_driver(&self) -> Result<Cache> {
        Ok(match self.driver {
            DriverKind::File => Cache::new(
                FileDriver::builder(&self.file_path)
                    .sweep_interval(self.file_sweep_interval)
                    .build()?,
            ),
            DriverKind::Array => Cache::new(ArrayDriver::new()),
            #[cfg(feature = "redis")]
            DriverKind::Redis => Cache::new(RedisDriver::from_config(&self.redis).await?),
            #[cfg(not(feature = "redis"))]
            DriverKind::Redis => return Err(not_built("redis", "its `redis` feature")),
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            DriverKind::Database => {
                let config = self.database.clone().ok_or_else(|| {
                    Error::from(ErrorKind::Config {
                        variable: "DB_URL",
                        value: String::new(),
                        reason: "the database driver needs a URL".to_owned(),
                    })
                })?;
                Cache::new(crate::DatabaseDriver::from_config(&config).await?)
            }
            #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
            DriverKind::Database => {
                return Err(not_built("database", "its `sqlite` or `postgres` feature"));
            }
            #[cfg(feature = "memcached")]
            DriverKind::Memcached => {
                let config = self
                    .memcached
                    .clone()
                    .unwrap_or_else(|| crate::MemcachedConfig::new("127.0.0.1:11211"));
                Cache::new(crate::MemcachedDriver::from_config(&config).await?)
            }
            #[cfg(not(feature = "memcached"))]
            DriverKind::Memcached => return Err(not_built("memcached", "its `memcached` feature")),
            #[cfg(feature = "dynamodb")]
            DriverKind::DynamoDb => {
                let config = self.dynamodb.clone().unwrap_or_default();
                Cache::new(crate::DynamoDbDriver::from_config(&config).await?)
            }
            #[cfg(not(feature = "dynamodb"))]
            DriverKind::DynamoDb => return Err(not_built("dynamodb", "its `dynamodb` feature")),
            #[cfg(feature = "object-store")]
            DriverKind::ObjectStore => {
                let url = self.object_store_url.as_deref().unwrap_or("memory://");
                Cache::new(crate::ObjectStoreDriver::from_url(url, "").await?)
            }
            #[cfg(not(feature = "object-store"))]
            DriverKind::ObjectStore => return Err(not_built("s3", "its `object-store` feature")),
        })
    }

    /// The active settings as (name, value) rows for display, secrets masked.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let mut rows = vec![("Driver", self.driver.to_string())];
        match self.driver {
            DriverKind::File => {
                rows.push(("File Path", self.file_path.display().to_string()));
                let sweep = match self.file_sweep_interval.as_secs() {
                    0 => "off".to_owned(),
                    seconds => format!("every {seconds} s"),
                };
                rows.push(("Sweep", sweep));
            }
            #[cfg(feature = "redis")]
            DriverKind::Redis => rows.extend(self.redis.describe()),
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            DriverKind::Database => rows.extend(self.database.iter().flat_map(|d| d.describe())),
            #[cfg(feature = "memcached")]
            DriverKind::Memcached => rows.extend(self.memcached.iter().flat_map(|m| m.describe())),
            #[cfg(feature = "dynamodb")]
            DriverKind::DynamoDb => rows.extend(self.dynamodb.iter().flat_map(|d| d.describe())),
            #[cfg(feature = "object-store")]
            DriverKind::ObjectStore => rows.extend(
                self.object_store_url
                    .iter()
                    .map(|url| ("Object Store", crate::mask_url(url))),
            ),
            _ => {}
        }
        let compression = match self.compress_above {
            Some(_) if !cfg!(feature = "compression") => {
                "off (built without `compression`)".to_owned()
            }
            Some(bytes) => format!("lz4 above {bytes} bytes"),
            None => "off".to_owned(),
        };
        rows.push(("Compression", compression));
        if let Some(url) = &self.large_values_url {
            rows.push((
                "Large Values",
                format!(
                    "{} above {} bytes",
                    crate::mask_url(url),
                    self.large_value_threshold
                ),
            ));
        }
        rows
    }
}

/// A driver this build of jtc-cache leaves out.
#[allow(dead_code)]
fn not_built(driver: &str, feature: &str) -> Error {
    ErrorKind::Config {
        variable: "CACHE_DRIVER",
        value: driver.to_owned(),
        reason: format!("jtc-cache was built without {feature}"),
    }
    .into()
}

fn parse_threshold(value: &str) -> Result<Option<usize>> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("off") || value.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| {
        ErrorKind::Config {
            variable: "CACHE_COMPRESSION_THRESHOLD",
            value: value.to_owned(),
            reason: "expected a size in bytes (e.g. 1024), or `off`".to_owned(),
        }
        .into()
    })
}

/// Whole milliseconds, `0` included: a driver's `*_MS` setting.
#[cfg(any(feature = "memcached", feature = "dynamodb"))]
pub(crate) fn millis(variable: &'static str, value: &str) -> Result<u64> {
    value.trim().parse().map_err(|_| {
        ErrorKind::Config {
            variable,
            value: value.to_owned(),
            reason: "expected a whole number of milliseconds".to_owned(),
        }
        .into()
    })
}

/// Whole seconds, `0` included (a setting's "off").
fn parse_seconds(variable: &'static str, value: &str) -> Result<Duration> {
    let value = value.trim();
    value.parse().map(Duration::from_secs).map_err(|_| {
        ErrorKind::Config {
            variable,
            value: value.to_owned(),
            reason: "expected whole seconds (e.g. 60), or 0 for off".to_owned(),
        }
        .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_sweep_interval_is_seconds_and_zero_is_off() {
        assert_eq!(
            config(&[]).unwrap().file_sweep_interval,
            Duration::from_secs(60)
        );
        let every_5 = config(&[("CACHE_FILE_SWEEP_INTERVAL", "5")]).unwrap();
        assert_eq!(every_5.file_sweep_interval, Duration::from_secs(5));
        let off = config(&[("CACHE_FILE_SWEEP_INTERVAL", "0")]).unwrap();
        assert_eq!(off.file_sweep_interval, Duration::ZERO);
        assert!(off.describe().contains(&("Sweep", "off".to_owned())));
        let wrong = config(&[("CACHE_FILE_SWEEP_INTERVAL", "1m")]).unwrap_err();
        assert_eq!(
            wrong.to_string(),
            r#"invalid CACHE_FILE_SWEEP_INTERVAL="1m": expected whole seconds (e.g. 60), or 0 for off"#
        );
    }

    fn config(vars: &[(&str, &str)]) -> Result<CacheConfig> {
        CacheConfig::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_to_the_file_driver_in_the_laravel_folder() {
        let config = config(&[]).unwrap();
        assert_eq!(config.driver, DriverKind::File);
        assert_eq!(config.file_path, PathBuf::from("storage/framework/cache"));
        assert_eq!(config, self::config(&[("CACHE_DRIVER", " ")]).unwrap());
    }

    #[test]
    fn driver_names_are_case_insensitive_and_unknown_ones_are_named() {
        assert_eq!(
            config(&[("CACHE_DRIVER", "ARRAY")]).unwrap().driver,
            DriverKind::Array
        );
        let err = config(&[("CACHE_DRIVER", "mongo")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CACHE_DRIVER") && err.contains("mongo"),
            "{err}"
        );
        assert!(err.contains("file, array, redis, database"), "{err}");
    }

    #[test]
    fn large_values_are_off_unless_a_url_is_set_and_the_threshold_is_bytes() {
        let plain = config(&[]).unwrap();
        assert_eq!(plain.large_values_url, None);
        assert_eq!(plain.large_value_threshold, 256 * 1024);
        assert!(
            !plain
                .describe()
                .iter()
                .any(|(name, _)| *name == "Large Values")
        );
        let set = config(&[
            ("CACHE_LARGE_VALUES_URL", "s3://bucket/large"),
            ("CACHE_LARGE_VALUE_THRESHOLD", "1000"),
        ])
        .unwrap();
        assert_eq!(set.large_values_url.as_deref(), Some("s3://bucket/large"));
        assert!(set.describe().contains(&(
            "Large Values",
            "s3://bucket/large above 1000 bytes".to_owned()
        )));
        let err = config(&[("CACHE_LARGE_VALUE_THRESHOLD", "256k")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid CACHE_LARGE_VALUE_THRESHOLD="256k": expected a size in bytes (e.g. 262144)"#
        );
    }

    #[test]
    fn compression_threshold_is_a_size_or_off() {
        assert_eq!(config(&[]).unwrap().compress_above, Some(1024));
        let set = |v| config(&[("CACHE_COMPRESSION_THRESHOLD", v)]);
        assert_eq!(set("4096").unwrap().compress_above, Some(4096));
        assert_eq!(set("OFF").unwrap().compress_above, None);
        let err = set("1kb").unwrap_err().to_string();
        assert!(
            err.contains("CACHE_COMPRESSION_THRESHOLD") && err.contains("`off`"),
            "{err}"
        );
    }
}
