//! `Limit` and `Limits`: what a request may do, written the way Laravel and the `limits`
//! library write it — `Limit::per_minute(60).by(user_id)`, `"10/second;1000/hour"`.

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use jtc_cache::{RateKind, RateRule};

use crate::Algorithm;

/// One rate limit: `max` requests per `window`, counted under a key.
///
/// ```
/// use jtc_throttle::{Algorithm, Limit};
/// use std::time::Duration;
///
/// let per_user = Limit::per_minute(60).by("user:42");
/// let login = Limit::new(5, Duration::from_secs(300)).name("login");
/// let smooth = Limit::per_second(10).burst(20); // a token bucket: 20 at once, 10 a second after
/// assert_eq!(smooth.algorithm_used(), Algorithm::TokenBucket);
/// assert_eq!(per_user.max(), 60);
/// assert_eq!(per_user.key(), Some("user:42"));
/// assert_eq!(login.window(), Duration::from_secs(300));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Limit {
    max: u64,
    window: Duration,
    algorithm: Algorithm,
    burst: Option<u64>,
    key: Option<Arc<str>>,
    name: Option<Arc<str>>,
    /// `Limit::none()`: dropped from any `Limits` it is put in.
    unlimited: bool,
}

impl Limit {
    /// `max` requests per `window` (at least 1 ms).
    ///
    /// ```
    /// use jtc_throttle::Limit;
    /// use std::time::Duration;
    /// let limit = Limit::new(3, Duration::from_millis(1_500));
    /// assert_eq!((limit.max(), limit.window()), (3, Duration::from_millis(1_500)));
    /// ```
    pub fn new(max: u64, window: Duration) -> Self {
        Self {
            max,
            window: window.max(Duration::from_millis(1)),
            algorithm: Algorithm::default(),
            burst: None,
            key: None,
            name: None,
            unlimited: false,
        }
    }

    /// `max` requests per second.
    ///
    /// ```
    /// # use jtc_throttle::Limit; use std::time::Duration;
    /// assert_eq!(Limit::per_second(2).window(), Duration::from_secs(1));
    /// ```
    pub fn per_second(max: u64) -> Self {
        Self::new(max, Duration::from_secs(1))
    }

    /// `max` requests per minute.
    ///
    /// ```
    /// # use jtc_throttle::Limit; use std::time::Duration;
    /// assert_eq!(Limit::per_minute(60).window(), Duration::from_secs(60));
    /// ```
    pub fn per_minute(max: u64) -> Self {
        Self::new(max, Duration::from_secs(60))
    }

    /// `max` requests per hour.
    ///
    /// ```
    /// # use jtc_throttle::Limit; use std::time::Duration;
    /// assert_eq!(Limit::per_hour(1_000).window(), Duration::from_secs(3_600));
    /// ```
    pub fn per_hour(max: u64) -> Self {
        Self::new(max, Duration::from_secs(3_600))
    }

    /// `max` requests per day.
    ///
    /// ```
    /// # use jtc_throttle::Limit; use std::time::Duration;
    /// assert_eq!(Limit::per_day(10_000).window(), Duration::from_secs(86_400));
    /// ```
    pub fn per_day(max: u64) -> Self {
        Self::new(max, Duration::from_secs(86_400))
    }

    /// No limit: a request whose limits are `none()` passes uncounted, without rate-limit
    /// headers (Laravel's `Limit::none()`, for admins or internal callers). Put among other
    /// limits, it is left out.
    ///
    /// ```
    /// use jtc_throttle::{Limit, Limits};
    /// let limits: Limits = Limit::none().into();
    /// assert!(limits.is_unlimited());
    /// let one: Limits = vec![Limit::none(), Limit::per_minute(5)].into();
    /// assert_eq!(one.len(), 1);
    /// ```
    pub fn none() -> Self {
        Self {
            unlimited: true,
            ..Self::new(u64::MAX, Duration::from_secs(1))
        }
    }

    /// Whether this is [`Limit::none`].
    pub fn is_none(&self) -> bool {
        self.unlimited
    }

    /// Counts this limit under `key` (a user id, an API token, an e-mail address) instead of
    /// the default client address and route. Keys are used as given in the store's key
    /// (`throttle:<layer name>:<key>`); they are not logged.
    ///
    /// ```
    /// # use jtc_throttle::Limit;
    /// assert_eq!(Limit::per_minute(5).by("login:ana@example.com").key(), Some("login:ana@example.com"));
    /// ```
    pub fn by(mut self, key: impl Into<String>) -> Self {
        self.key = Some(Arc::from(key.into()));
        self
    }

    /// The algorithm. Default: [`Algorithm::FixedWindow`].
    ///
    /// ```
    /// # use jtc_throttle::{Algorithm, Limit};
    /// let limit = Limit::per_minute(60).algorithm(Algorithm::SlidingWindow);
    /// assert_eq!(limit.algorithm_used(), Algorithm::SlidingWindow);
    /// ```
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// A token bucket that lets `burst` requests through at once (at least 1), refilled at
    /// `max` per window. Sets the algorithm to [`Algorithm::TokenBucket`]: a burst is a
    /// bucket's. Without `burst`, a bucket holds `max` tokens.
    ///
    /// ```
    /// # use jtc_throttle::{Algorithm, Limit};
    /// let limit = Limit::per_second(5).burst(50);
    /// assert_eq!((limit.algorithm_used(), limit.burst_size()), (Algorithm::TokenBucket, 50));
    /// ```
    pub fn burst(mut self, burst: u64) -> Self {
        self.algorithm = Algorithm::TokenBucket;
        self.burst = Some(burst.max(1));
        self
    }

    /// Names the policy in the IETF `RateLimit-Policy` header and in the `on_limited` context.
    /// Default: `<max>-per-<window>` (`60-per-60s`).
    ///
    /// ```
    /// # use jtc_throttle::Limit;
    /// assert_eq!(Limit::per_minute(60).policy_name(), "60-per-60s");
    /// assert_eq!(Limit::per_minute(60).name("api").policy_name(), "api");
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(Arc::from(name.into()));
        self
    }

    /// The requests allowed per window.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The algorithm this limit counts with.
    pub fn algorithm_used(&self) -> Algorithm {
        self.algorithm
    }

    /// A token bucket's size: the burst given, or `max`.
    pub fn burst_size(&self) -> u64 {
        self.burst.unwrap_or(self.max).max(1)
    }

    /// The key given with [`by`](Self::by).
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The policy's name: the one given with [`name`](Self::name), or `<max>-per-<window>`.
    pub fn policy_name(&self) -> String {
        if self.unlimited {
            return "none".to_owned();
        }
        match &self.name {
            Some(name) => name.to_string(),
            None => format!("{}-per-{}", self.max, WindowText(self.window)),
        }
    }

    pub(crate) fn shared_key(&self) -> Option<&Arc<str>> {
        self.key.as_ref()
    }

    pub(crate) fn rule(&self) -> RateRule {
        let kind = match self.algorithm {
            Algorithm::FixedWindow => RateKind::FixedWindow,
            Algorithm::SlidingWindow => RateKind::SlidingWindow,
            Algorithm::TokenBucket => RateKind::TokenBucket {
                burst: self.burst_size(),
            },
        };
        RateRule {
            limit: self.max,
            window: self.window,
            kind,
        }
    }
}

/// A window as people write it: `1s`, `60s`, `1500ms`.
struct WindowText(Duration);

impl fmt::Display for WindowText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.subsec_millis() == 0 {
            write!(f, "{}s", self.0.as_secs())
        } else {
            write!(f, "{}ms", self.0.as_millis())
        }
    }
}

/// The limits one request must pass, all of them: what a [`dynamic`](crate::ThrottleLayer::dynamic)
/// layer's function returns, built from a [`Limit`], a `Vec` or array of them, or a string.
///
/// ```
/// use jtc_throttle::{Limit, Limits};
///
/// let one: Limits = Limit::per_minute(60).into();
/// let two: Limits = vec![Limit::per_second(2), Limit::per_minute(30)].into();
/// let parsed: Limits = "2/second; 30/minute".parse().unwrap();
/// assert_eq!(parsed, two);
/// assert_eq!(one.len(), 1);
/// assert!(Limits::none().is_unlimited());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Limits(Vec<Limit>);

impl Limits {
    /// No limit at all: requests pass uncounted.
    pub fn none() -> Self {
        Self(Vec::new())
    }

    /// Whether there is no limit.
    pub fn is_unlimited(&self) -> bool {
        self.0.is_empty()
    }

    /// How many limits.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no limit (as [`is_unlimited`](Self::is_unlimited)).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The limits, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Limit> {
        self.0.iter()
    }

    /// Adds a limit ([`Limit::none`] adds nothing).
    pub fn and(mut self, limit: Limit) -> Self {
        if !limit.unlimited {
            self.0.push(limit);
        }
        self
    }

    pub(crate) fn as_slice(&self) -> &[Limit] {
        &self.0
    }
}

impl<'a> IntoIterator for &'a Limits {
    type Item = &'a Limit;
    type IntoIter = std::slice::Iter<'a, Limit>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl From<Limit> for Limits {
    fn from(limit: Limit) -> Self {
        Self::from_iter([limit])
    }
}

impl From<Vec<Limit>> for Limits {
    fn from(mut limits: Vec<Limit>) -> Self {
        limits.retain(|l| !l.unlimited);
        Self(limits)
    }
}

impl<const N: usize> From<[Limit; N]> for Limits {
    fn from(limits: [Limit; N]) -> Self {
        Self::from_iter(limits)
    }
}

impl FromIterator<Limit> for Limits {
    fn from_iter<I: IntoIterator<Item = Limit>>(iter: I) -> Self {
        Self(iter.into_iter().filter(|l| !l.unlimited).collect())
    }
}

/// Limits written as text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid rate limit {text:?}: {reason} (write it like \"10/second\", \"1000 per hour\" or \"5/15 minutes\", several separated by ';')"
)]
pub struct ParseLimitError {
    text: String,
    reason: &'static str,
}

impl FromStr for Limits {
    type Err = ParseLimitError;

    /// Reads `"10/second;1000/hour"`: limits separated by `;` or `,`, each `<max>/<unit>`,
    /// `<max> per <unit>` or `<max>/<n> <units>`; units `second`, `minute`, `hour`, `day`
    /// (singular, plural, or `s`/`sec`, `m`/`min`, `h`/`hr`, `d`). Empty text is an error;
    /// write `Limits::none()` for no limit.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let limits = text
            .split([';', ','])
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| part.parse::<Limit>())
            .collect::<Result<Vec<_>, _>>()?;
        if limits.is_empty() {
            return Err(ParseLimitError {
                text: text.to_owned(),
                reason: "no limit given",
            });
        }
        Ok(Self(limits))
    }
}

impl FromStr for Limit {
    type Err = ParseLimitError;

    /// Reads one limit: `10/second`, `10 per second`, `5/15 minutes`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason| ParseLimitError {
            text: text.to_owned(),
            reason,
        };
        let lower = text.trim().to_ascii_lowercase();
        let (max, per) = lower
            .split_once('/')
            .or_else(|| lower.split_once(" per "))
            .ok_or_else(|| fail("expected '/' or 'per' between the count and the window"))?;
        let max: u64 = max
            .trim()
            .parse()
            .map_err(|_| fail("the count is not a whole number"))?;
        let per = per.trim();
        let split = per.find(|c: char| !c.is_ascii_digit()).unwrap_or(per.len());
        let (count, unit) = per.split_at(split);
        let count: u64 = if count.is_empty() {
            1
        } else {
            count
                .parse()
                .map_err(|_| fail("the window's count is not a whole number"))?
        };
        let unit_secs = match unit.trim() {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3_600,
            "d" | "day" | "days" => 86_400,
            _ => return Err(fail("unknown unit; use second, minute, hour or day")),
        };
        if count == 0 {
            return Err(fail("the window is zero"));
        }
        let secs = count
            .checked_mul(unit_secs)
            .ok_or_else(|| fail("the window is too long"))?;
        Ok(Self::new(max, Duration::from_secs(secs)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_people_write() {
        let limits: Limits = "10/second; 1000 per hour, 5/15 minutes ,3/d"
            .parse()
            .unwrap();
        let got: Vec<(u64, u64)> = limits
            .iter()
            .map(|l| (l.max(), l.window().as_secs()))
            .collect();
        assert_eq!(got, [(10, 1), (1000, 3600), (5, 900), (3, 86_400)]);
        assert_eq!("7/MINUTE".parse::<Limit>().unwrap(), Limit::per_minute(7));
    }

    #[test]
    fn bad_text_is_a_clear_error() {
        for bad in [
            "",
            ";",
            "ten/second",
            "10/fortnight",
            "10 second",
            "10/0 seconds",
            "-1/s",
        ] {
            let error = bad.parse::<Limits>().unwrap_err().to_string();
            assert!(error.contains("invalid rate limit"), "{bad}: {error}");
        }
        let huge = format!("1/{} days", u64::MAX);
        assert!(huge.parse::<Limits>().is_err());
    }

    #[test]
    fn default_policy_names_say_the_limit() {
        assert_eq!(Limit::per_second(2).policy_name(), "2-per-1s");
        assert_eq!(
            Limit::new(3, Duration::from_millis(1_500)).policy_name(),
            "3-per-1500ms"
        );
    }
}
