//! Secrets in connection strings, masked before anything prints them.
//!
//! One function, [`mask_url`], is what every place that shows a URL uses: `Debug` of the
//! configurations, `describe` (and so `jtc cache config`, text and JSON), configuration
//! errors, the CLI's own errors, and logs.

/// What a masked secret reads as.
pub(crate) const MASK: &str = "********";

/// Query parameters whose value is a secret, compared without case; a name containing any of
/// them is masked (`password`, `sslpassword`, `pass`, `pwd`, `client_secret`, `auth_token`,
/// `access_key`...).
const SECRET_PARAMETERS: [&str; 7] = ["pass", "pwd", "secret", "token", "auth", "key", "cred"];

/// A connection string with its secrets replaced by `********`: the password of the user
/// information (`scheme://user:password@host`, or `user:password@host` without a scheme), and
/// the values of query parameters that name a secret (`?password=`, `?pass=`, `?pwd=`,
/// `?secret=`, `?token=`, ...). Everything else is kept, so the result still says which
/// server, database and user were meant. Works on strings that are not valid URLs too: a
/// password holding `/`, `@` or `:` is masked whole (the last `@` before the query ends the
/// user information).
///
/// ```
/// use jtc_cache::mask_url;
/// assert_eq!(
///     mask_url("postgres://app:hun/ter2@db:5432/cache?sslmode=require&password=x"),
///     "postgres://app:********@db:5432/cache?sslmode=require&password=********"
/// );
/// assert_eq!(mask_url("redis+unix:///run/redis.sock?pass=s3cret"), "redis+unix:///run/redis.sock?pass=********");
/// assert_eq!(mask_url("app:s3cret@db/cache"), "app:********@db/cache");
/// assert_eq!(mask_url("redis://cache.internal:6379/0"), "redis://cache.internal:6379/0");
/// ```
pub fn mask_url(url: &str) -> String {
    let (head, fragment) = match url.find('#') {
        Some(at) => url.split_at(at),
        None => (url, ""),
    };
    let (before_query, query) = match head.find('?') {
        Some(at) => (&head[..at], Some(&head[at + 1..])),
        None => (head, None),
    };
    let (scheme, rest) = match before_query.find("://") {
        Some(at) => before_query.split_at(at + 3),
        None => ("", before_query),
    };
    let mut masked = String::with_capacity(url.len() + MASK.len());
    masked.push_str(scheme);
    match rest.rfind('@') {
        Some(at) => {
            let (userinfo, host) = rest.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    masked.push_str(user);
                    masked.push(':');
                    masked.push_str(MASK);
                }
                None => masked.push_str(userinfo),
            }
            masked.push_str(host);
        }
        None => masked.push_str(rest),
    }
    if let Some(query) = query {
        masked.push('?');
        for (index, pair) in query.split('&').enumerate() {
            if index > 0 {
                masked.push('&');
            }
            match pair.split_once('=') {
                Some((name, _)) if is_secret_parameter(name) => {
                    masked.push_str(name);
                    masked.push('=');
                    masked.push_str(MASK);
                }
                _ => masked.push_str(pair),
            }
        }
    }
    masked.push_str(fragment);
    masked
}

fn is_secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMETERS.iter().any(|secret| name.contains(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shape of connection string the drivers and the CLI take: the secret never
    /// survives, the rest does.
    #[test]
    fn secrets_are_masked_in_every_shape() {
        let cases = [
            ("redis://:SECRET@h:6379/0", "redis://:********@h:6379/0"),
            ("redis://user:SECRET@h", "redis://user:********@h"),
            ("rediss://u:SE:CR@ET@h:6380", "rediss://u:********@h:6380"),
            (
                "redis+unix:///x.sock?db=1&pass=SECRET",
                "redis+unix:///x.sock?db=1&pass=********",
            ),
            (
                "unix:///x.sock?password=SECRET",
                "unix:///x.sock?password=********",
            ),
            (
                "postgres://h/db?user=a&password=SECRET",
                "postgres://h/db?user=a&password=********",
            ),
            ("postgres://a:hun/SECRET@h/db", "postgres://a:********@h/db"),
            (
                "postgresql://a:SECRET@h:5432/db?sslmode=require",
                "postgresql://a:********@h:5432/db?sslmode=require",
            ),
            ("app:SECRET@h/db", "app:********@h/db"),
            (
                "sqlite://var/cache.db?mode=rwc",
                "sqlite://var/cache.db?mode=rwc",
            ),
            ("sqlite:cache.db", "sqlite:cache.db"),
            (
                "memcached://u:SECRET@h:11211",
                "memcached://u:********@h:11211",
            ),
            (
                "http://u:SECRET@127.0.0.1:3000/stats",
                "http://u:********@127.0.0.1:3000/stats",
            ),
            (
                "http://h/stats?token=SECRET#top",
                "http://h/stats?token=********#top",
            ),
            (
                "http://h/stats?API_KEY=SECRET&x",
                "http://h/stats?API_KEY=********&x",
            ),
            ("not a url", "not a url"),
            ("", ""),
        ];
        for (url, expected) in cases {
            let masked = mask_url(url);
            assert_eq!(masked, expected, "{url}");
            assert!(!masked.contains("SECRET"), "{url}");
        }
    }
}
