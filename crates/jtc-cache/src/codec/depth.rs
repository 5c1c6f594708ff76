//! How deeply a value nests, checked before it is written: a value nested deeper than the
//! decoders will read back is refused with a clear error instead of being stored unreadable.

/// How deeply nested (arrays, maps, enum wrappers) a stored value may be when read. Both
/// decoders stop there with an error instead of recursing on: a crafted entry cannot overflow
/// the stack. (`serde_json` has the same limit built in.)
pub(super) const MAX_READ_DEPTH: usize = 128;
/// How deeply nested a value may be when written: below [`MAX_READ_DEPTH`] with a margin, so
/// whatever is written can be read back.
pub(super) const MAX_WRITE_DEPTH: usize = 120;

pub(super) fn too_deep() -> String {
    format!(
        "the value is nested more than {MAX_WRITE_DEPTH} levels deep (arrays, maps, enum \
         variants); the cache reads at most {MAX_READ_DEPTH}, so it could never be read back"
    )
}

/// Whether a MessagePack buffer nests containers more than `limit` deep (`limit` at most
/// [`MAX_WRITE_DEPTH`]). Walks the markers without recursion or allocation; a malformed
/// buffer is left for the decoder to reject.
pub(super) fn msgpack_deeper_than(bytes: &[u8], limit: usize) -> bool {
    // Items still to read in each open container; the outermost "container" holds one value.
    let mut open = [0u64; MAX_WRITE_DEPTH + 1];
    let mut depth = 0usize;
    let mut left: u64 = 1;
    let mut at = 0usize;
    let big_endian = |from: usize, n: usize| -> Option<u64> {
        let raw = bytes.get(from..from + n)?;
        Some(raw.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    };
    loop {
        while left == 0 {
            if depth == 0 {
                return false;
            }
            depth -= 1;
            left = open[depth];
        }
        let Some(&marker) = bytes.get(at) else {
            return false;
        };
        left -= 1;
        at += 1;
        // Payload bytes to skip, and child items, after the marker.
        let (skip, children): (Option<u64>, u64) = match marker {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => continue,
            0xa0..=0xbf => (Some(u64::from(marker & 0x1f)), 0),
            0x80..=0x8f => (Some(0), 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (Some(0), u64::from(marker & 0x0f)),
            0xc4 | 0xd9 => (big_endian(at, 1).map(|n| 1 + n), 0),
            0xc5 | 0xda => (big_endian(at, 2).map(|n| 2 + n), 0),
            0xc6 | 0xdb => (big_endian(at, 4).map(|n| 4 + n), 0),
            0xc7 => (big_endian(at, 1).map(|n| 2 + n), 0),
            0xc8 => (big_endian(at, 2).map(|n| 3 + n), 0),
            0xc9 => (big_endian(at, 4).map(|n| 5 + n), 0),
            0xcc | 0xd0 => (Some(1), 0),
            0xcd | 0xd1 | 0xd4 => (Some(2), 0),
            0xd5 => (Some(3), 0),
            0xca | 0xce | 0xd2 => (Some(4), 0),
            0xd6 => (Some(5), 0),
            0xcb | 0xcf | 0xd3 => (Some(8), 0),
            0xd7 => (Some(9), 0),
            0xd8 => (Some(17), 0),
            0xdc => (Some(2), big_endian(at, 2).unwrap_or(0)),
            0xdd => (Some(4), big_endian(at, 4).unwrap_or(0)),
            0xde => (Some(2), big_endian(at, 2).map_or(0, |n| 2 * n)),
            0xdf => (Some(4), big_endian(at, 4).map_or(0, |n| 2 * n)),
            0xc1 => return false,
        };
        match skip.and_then(|skip| usize::try_from(skip).ok()) {
            Some(skip) if skip <= bytes.len() - at => at += skip,
            _ => return false,
        }
        if children > 0 {
            if depth == limit {
                return true;
            }
            open[depth] = left;
            depth += 1;
            left = children;
        }
    }
}

/// Whether a JSON text nests arrays and objects more than `limit` deep.
pub(super) fn json_deeper_than(bytes: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_depth_walkers_read_every_marker() {
        let value = serde_json::json!({
            "s": "x".repeat(300), "n": [1, -1, 300, -300, 70000, -70000, 5_000_000_000u64,
            -5_000_000_000i64, 1.5, true, null], "deep": [[[[["in"]]]]], "o": {"a": {"b": []}}
        });
        let body = rmp_serde::to_vec_named(&value).unwrap();
        assert!(!msgpack_deeper_than(&body, 7));
        assert!(msgpack_deeper_than(&body, 5));
        let json = serde_json::to_vec(&value).unwrap();
        assert!(!json_deeper_than(&json, 6));
        assert!(json_deeper_than(&json, 5));
        assert!(!json_deeper_than(br#"{"a":"[[[[[[\"]]"}"#, 1));
    }
}
