//! Cache keys as memcached keys: `<prefix><namespace>:<key>`.
//!
//! memcached keys are at most 250 bytes of printable characters without spaces, and the meta
//! protocol ends a command at `\r\n`. A key made only of printable ASCII (no space, no `#`)
//! that fits goes on the wire as it is; any other key (unicode, spaces,
//! control characters, `\r\n`, NUL, 10 kB) becomes its printable part cut to 40 bytes, `#`,
//! and 32 hex digits of its BLAKE3 hash. So no key can ever add a command, and two keys
//! share a wire key only if their 128-bit hashes collide.
//!
//! The namespace is a version stored on each server under `<prefix>#ns`: `flush` writes new
//! ones, and every entry written under the old ones is out of reach at once (memcached evicts
//! it in time). No other client's key is touched; `flush_all` is never sent. The server of a
//! key is chosen by the key itself, not its wire form, so a version never moves keys.

use std::fmt::Write as _;

/// memcached's longest key.
pub(super) const MAX_KEY: usize = 250;
/// The longest prefix accepted (`MEMCACHED_PREFIX`).
pub(super) const MAX_PREFIX: usize = 64;
/// Readable bytes kept in front of a hashed key.
const READABLE: usize = 40;

/// Whether `byte` may appear in a memcached key as it is.
fn safe(byte: u8) -> bool {
    byte.is_ascii_graphic()
}

/// Why `prefix` cannot start memcached keys, if it cannot.
pub(super) fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() > MAX_PREFIX {
        return Err(format!("longer than {MAX_PREFIX} bytes"));
    }
    if !prefix.bytes().all(safe) {
        return Err("only printable ASCII without spaces is allowed".to_owned());
    }
    Ok(())
}

/// The namespace key of `prefix`.
pub(super) fn namespace_key(prefix: &str) -> Vec<u8> {
    format!("{prefix}#ns").into_bytes()
}

/// The wire key of `key` under `prefix` and namespace `version`.
pub(super) fn wire_key(prefix: &str, version: &str, key: &str) -> Vec<u8> {
    let mut wire = String::with_capacity(prefix.len() + version.len() + 1 + key.len().min(80));
    wire.push_str(prefix);
    wire.push_str(version);
    wire.push(':');
    let fits = wire.len() + key.len() <= MAX_KEY;
    if fits && !key.contains('#') && key.bytes().all(safe) {
        wire.push_str(key);
        return wire.into_bytes();
    }
    wire.extend(
        key.chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '_' })
            .take(READABLE),
    );
    wire.push('#');
    for byte in &blake3::hash(key.as_bytes()).as_bytes()[..16] {
        let _ = write!(wire, "{byte:02x}");
    }
    wire.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_keys_stay_readable() {
        assert_eq!(wire_key("app:", "1a2b", "user:7"), b"app:1a2b:user:7");
    }

    #[test]
    fn hostile_keys_become_safe_distinct_wire_keys() {
        let long = "k".repeat(10_000);
        let hostile = [
            "a\r\nflush_all",
            "a b",
            "ключ",
            "\0",
            "#abc",
            "../etc/passwd\n",
            long.as_str(),
            "",
        ];
        let mut seen = std::collections::HashSet::new();
        for key in hostile {
            let wire = wire_key("app:", "1a2b", key);
            assert!(wire.len() <= MAX_KEY, "{key:?}");
            assert!(wire.iter().all(|&b| safe(b)), "{key:?}: {wire:?}");
            assert!(seen.insert(wire), "{key:?} collided");
        }
        // A readable key never takes the form of a hashed one.
        let hashed = wire_key("app:", "1a2b", "a b");
        let text = std::str::from_utf8(&hashed).unwrap();
        let as_key = &text["app:1a2b:".len()..];
        assert_ne!(wire_key("app:", "1a2b", as_key), hashed);
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(check_prefix("jtc_cache:").is_ok());
        assert!(check_prefix("a b").is_err());
        assert!(check_prefix("é").is_err());
        assert!(check_prefix(&"p".repeat(65)).is_err());
    }
}
