//! How entries are stored in memcached items: three formats, told apart by the item's client
//! flags, so that expiry keeps millisecond precision (memcached's own clock ticks once a
//! second) and counters stay one native `ma` command.
//!
//! - [`PLAIN`]: a counter without TTL, the canonical decimal digits of an integer in
//!   `0..2^62`, which memcached's `ma` increments natively.
//! - [`FRAMED`]: everything else: an 8-byte big-endian deadline (Unix milliseconds of the
//!   driver's clock, 0 for none) and the value. The first byte is always 0, so memcached never
//!   takes a framed item for a number and `ma` refuses it.
//! - [`WINDOW`]: a rate-limit counter: one number `2^63 + deadline·2^28 + count`, with the
//!   deadline in milliseconds modulo 2^34. `ma` adds to the count and the reply carries the
//!   window's end, so a hit is one command with millisecond precision.
//!
//! memcached's own TTL is only the upper bound that frees the memory: the deadline rounded up
//! to whole seconds plus one (its clock may tick just after a write).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// Client flags of a plain counter.
pub(super) const PLAIN: u32 = 0;
/// Client flags of a framed value.
pub(super) const FRAMED: u32 = 1;
/// Client flags of a rate-limit window counter.
pub(super) const WINDOW: u32 = 2;

/// Plain counters stay below this, so that an `ma` whose result reaches it is known to have
/// left the plain range (or met a window counter, which is above 2^63).
pub(super) const PLAIN_LIMIT: u64 = 1 << 62;
const WINDOW_BIT: u64 = 1 << 63;
const DEADLINE_BITS: u32 = 34;
const DEADLINE_MASK: u64 = (1 << DEADLINE_BITS) - 1;
const COUNT_BITS: u32 = 28;
/// A window counter reports at most this count: further hits are undone, so the count field
/// never carries into the deadline.
pub(super) const WINDOW_COUNT_LIMIT: u64 = 1 << 27;
/// The longest window a window counter can hold (the deadline is compared modulo 2^34 ms).
pub(super) const MAX_WINDOW: Duration = Duration::from_millis(1 << 32);
/// memcached reads an expiry above 30 days as a Unix time.
const RELATIVE_LIMIT: u64 = 30 * 24 * 3600;

/// An item as read, judged against the driver's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Item {
    /// A live entry: the bytes as the caller stored them (a counter as decimal text) and its
    /// deadline.
    Live {
        value: Bytes,
        deadline: Option<u64>,
        format: u32,
    },
    /// An item memcached still holds whose deadline has passed.
    Dead,
}

/// Decodes an item's `flags` and `data` at `now` (Unix ms).
pub(super) fn decode(flags: u32, data: Bytes, now: u64) -> Item {
    match flags {
        FRAMED if data.len() >= 8 => {
            let mut head = [0; 8];
            head.copy_from_slice(&data[..8]);
            let deadline = u64::from_be_bytes(head);
            if deadline != 0 && deadline <= now {
                return Item::Dead;
            }
            Item::Live {
                value: data.slice(8..),
                deadline: (deadline != 0).then_some(deadline),
                format: FRAMED,
            }
        }
        WINDOW => match parse_u64(&data).and_then(|n| unpack(n, now)) {
            Some((deadline, _)) if deadline <= now => Item::Dead,
            Some((deadline, count)) => Item::Live {
                value: Bytes::from(count.to_string()),
                deadline: Some(deadline),
                format: WINDOW,
            },
            None => Item::Dead,
        },
        // PLAIN, and anything this driver did not write, is the value itself.
        _ => Item::Live {
            value: data,
            deadline: None,
            format: PLAIN,
        },
    }
}

/// How to store `value` until `deadline`: (client flags, bytes to send).
pub(super) fn encode(value: &Bytes, deadline: Option<u64>) -> (u32, [Bytes; 2]) {
    if deadline.is_none() && plain_counter(value).is_some() {
        return (PLAIN, [value.clone(), Bytes::new()]);
    }
    let head = Bytes::copy_from_slice(&deadline.unwrap_or(0).to_be_bytes());
    (FRAMED, [head, value.clone()])
}

/// The value of `bytes` if they are a plain counter's: canonical digits below 2^62.
pub(super) fn plain_counter(bytes: &[u8]) -> Option<u64> {
    let canonical = !bytes.is_empty()
        && bytes.len() <= 19
        && bytes.iter().all(u8::is_ascii_digit)
        && (bytes[0] != b'0' || bytes.len() == 1);
    parse_u64(bytes).filter(|&n| canonical && n < PLAIN_LIMIT)
}

pub(super) fn parse_u64(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

/// A window counter's number.
pub(super) fn pack(deadline: u64, count: u64) -> u64 {
    WINDOW_BIT | (deadline & DEADLINE_MASK) << COUNT_BITS | count.min(WINDOW_COUNT_LIMIT)
}

/// The (deadline, count) of a window counter's number, the deadline taken as the time within
/// 2^33 ms of `now` with those low bits; `None` if `n` is not a window counter.
pub(super) fn unpack(n: u64, now: u64) -> Option<(u64, u64)> {
    if n & WINDOW_BIT == 0 || n & (1 << 62) != 0 {
        return None;
    }
    let low = (n >> COUNT_BITS) & DEADLINE_MASK;
    let ahead = low.wrapping_sub(now) & DEADLINE_MASK;
    let deadline = if ahead < 1 << (DEADLINE_BITS - 1) {
        now + ahead
    } else {
        now.saturating_sub((1 << DEADLINE_BITS) - ahead)
    };
    Some((deadline, n & ((1 << COUNT_BITS) - 1)))
}

/// The deadline `ttl` from `now`, in Unix ms (`None`: never).
pub(super) fn deadline(now: u64, ttl: Option<Duration>) -> Option<u64> {
    ttl.map(|ttl| {
        now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .max(now + 1)
    })
}

/// memcached's exptime for an entry with `deadline`, seen at `now` (both of the driver's
/// clock): whole seconds rounded up plus one, as a Unix time beyond 30 days; 0 for none.
pub(super) fn exptime(deadline: Option<u64>, now: u64) -> u64 {
    let Some(deadline) = deadline else {
        return 0;
    };
    let seconds = deadline.saturating_sub(now).div_ceil(1000) + 1;
    if seconds <= RELATIVE_LIMIT {
        return seconds;
    }
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    unix_now + seconds
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_123;

    #[test]
    fn formats_round_trip_and_expire_by_the_millisecond() {
        let value = Bytes::from_static(b"\0hello\r\nflush_all");
        let (flags, [head, body]) = encode(&value, Some(NOW + 5));
        assert_eq!(flags, FRAMED);
        let data = Bytes::from([head, body].concat());
        let live = decode(flags, data.clone(), NOW + 4);
        assert!(
            matches!(live, Item::Live { ref value, deadline: Some(d), .. } if value == &b"\0hello\r\nflush_all"[..] && d == NOW + 5)
        );
        assert_eq!(decode(flags, data, NOW + 5), Item::Dead);
        let (flags, [digits, rest]) = encode(&Bytes::from_static(b"42"), None);
        assert_eq!((flags, &digits[..], rest.len()), (PLAIN, &b"42"[..], 0));
    }

    #[test]
    fn only_canonical_small_integers_are_plain() {
        for plain in ["0", "7", "4611686018427387903"] {
            assert!(plain_counter(plain.as_bytes()).is_some(), "{plain}");
        }
        for other in [
            "",
            "-1",
            "07",
            " 7",
            "7 ",
            "4611686018427387904",
            "18446744073709551615",
            "1.5",
        ] {
            assert!(plain_counter(other.as_bytes()).is_none(), "{other}");
            assert_eq!(encode(&Bytes::from(other), None).0, FRAMED);
        }
        assert_eq!(encode(&Bytes::from_static(b"7"), Some(NOW)).0, FRAMED);
    }

    #[test]
    fn window_counters_carry_their_deadline() {
        for ahead in [1, 999, 60_000, 86_400_000, MAX_WINDOW.as_millis() as u64] {
            let n = pack(NOW + ahead, 3);
            assert!((1 << 63..(1 << 63) + PLAIN_LIMIT).contains(&n));
            assert_eq!(unpack(n, NOW), Some((NOW + ahead, 3)));
            assert_eq!(
                unpack(n + 5, NOW),
                Some((NOW + ahead, 8)),
                "ma adds to the count"
            );
        }
        let n = pack(NOW - 1_500, 9);
        assert_eq!(
            unpack(n, NOW),
            Some((NOW - 1_500, 9)),
            "a deadline just past"
        );
        assert_eq!(unpack(42, NOW), None);
    }

    #[test]
    fn memcached_expiry_outlives_the_deadline() {
        assert_eq!(exptime(None, NOW), 0);
        assert_eq!(exptime(Some(NOW + 1), NOW), 2);
        assert_eq!(exptime(Some(NOW + 1_000), NOW), 2);
        assert_eq!(exptime(Some(NOW + 1_001), NOW), 3);
        let forty_days = exptime(Some(NOW + 40 * 86_400_000), NOW);
        assert!(
            forty_days > 1_700_000_000,
            "absolute beyond 30 days: {forty_days}"
        );
    }
}
