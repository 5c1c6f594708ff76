//! The memcached meta protocol on the wire: commands written into a buffer, replies parsed
//! out of one. Only what the driver sends is covered (`mg`, `ms`, `md`, `ma`).
//!
//! Keys reach this file already made safe (`keys.rs`): printable ASCII, no spaces, at most
//! 250 bytes. Values travel as counted data blocks, so their bytes never end a command.

use bytes::{Buf, Bytes, BytesMut};

/// How a reply began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    /// `HD`: done, no value.
    Done,
    /// `VA`: a value follows.
    Value,
    /// `EN`: a get missed.
    Miss,
    /// `NF`: not found.
    NotFound,
    /// `NS`: not stored (an add found the key, a CAS found no item).
    NotStored,
    /// `EX`: the CAS did not match.
    Exists,
}

/// One parsed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reply {
    pub(super) status: Status,
    /// The client flags (`f`), when asked for.
    pub(super) flags: Option<u32>,
    /// The item's CAS value (`c`), when asked for.
    pub(super) cas: Option<u64>,
    /// The item's remaining TTL in seconds, -1 for none (`t`), when asked for.
    pub(super) ttl: Option<i64>,
    /// The value of a `VA` reply.
    pub(super) value: Option<Bytes>,
}

/// What the server refused: `CLIENT_ERROR`, `SERVER_ERROR` or `ERROR`, with its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal(pub(super) String);

impl Refusal {
    /// `ma` on a value that is not a number.
    pub(super) fn is_non_numeric(&self) -> bool {
        self.0.contains("non-numeric")
    }

    /// A value above the server's item size limit (`-I`).
    pub(super) fn is_too_large(&self) -> bool {
        self.0.contains("too large")
    }
}

/// The longest reply line (status and flags) accepted before the stream is deemed broken.
const MAX_LINE: usize = 1024;

/// Parses one reply from the front of `buf`, consuming it; `Ok(None)` when `buf` does not hold
/// a whole reply yet. An `Err` is a broken stream (the connection must be dropped); a refusal
/// is `Ok(Some(Err(..)))` and leaves the stream usable.
pub(super) fn parse(buf: &mut BytesMut) -> Result<Option<Result<Reply, Refusal>>, String> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > MAX_LINE {
            return Err("a reply line longer than 1 KiB".to_owned());
        }
        return Ok(None);
    };
    let line = &buf[..end];
    let (code, rest) = match line.iter().position(|&b| b == b' ') {
        Some(space) => (&line[..space], &line[space + 1..]),
        None => (line, &[][..]),
    };
    let status = match code {
        b"HD" => Status::Done,
        b"VA" => Status::Value,
        b"EN" => Status::Miss,
        b"NF" => Status::NotFound,
        b"NS" => Status::NotStored,
        b"EX" => Status::Exists,
        b"CLIENT_ERROR" | b"SERVER_ERROR" | b"ERROR" => {
            let text = String::from_utf8_lossy(line).into_owned();
            buf.advance(end + 2);
            return Ok(Some(Err(Refusal(text))));
        }
        _ => {
            return Err(format!(
                "unexpected reply {:?}",
                String::from_utf8_lossy(&line[..line.len().min(64)])
            ));
        }
    };
    let mut tokens = rest.split(|&b| b == b' ').filter(|t| !t.is_empty());
    let mut reply = Reply {
        status,
        flags: None,
        cas: None,
        ttl: None,
        value: None,
    };
    let mut size = None;
    if status == Status::Value {
        size = Some(
            tokens
                .next()
                .and_then(number::<usize>)
                .ok_or("a VA reply without a size")?,
        );
    }
    for token in tokens {
        let (flag, arg) = token.split_at(1);
        match flag {
            b"f" => reply.flags = number(arg),
            b"c" => reply.cas = number(arg),
            b"t" => reply.ttl = number(arg),
            _ => {} // flags the driver did not ask for
        }
    }
    let Some(size) = size else {
        buf.advance(end + 2);
        return Ok(Some(Ok(reply)));
    };
    let total = end + 2 + size + 2;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    if &buf[total - 2..total] != b"\r\n" {
        return Err("a value block not ended by CRLF".to_owned());
    }
    buf.advance(end + 2);
    reply.value = Some(buf.split_to(size).freeze());
    buf.advance(2);
    Ok(Some(Ok(reply)))
}

fn number<T: std::str::FromStr>(digits: &[u8]) -> Option<T> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Appends `mg <key> <flags>`.
pub(super) fn get(out: &mut Vec<u8>, key: &[u8], flags: &str) {
    out.extend_from_slice(b"mg ");
    out.extend_from_slice(key);
    out.push(b' ');
    out.extend_from_slice(flags.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `md <key> [C<cas>]`.
pub(super) fn delete(out: &mut Vec<u8>, key: &[u8], cas: Option<u64>) {
    out.extend_from_slice(b"md ");
    out.extend_from_slice(key);
    if let Some(cas) = cas {
        number_arg(out, "C", cas);
    }
    out.extend_from_slice(b"\r\n");
}

/// How `ms` stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Store whatever is there.
    Set,
    /// Store only if the key is missing (memcached's `add`).
    Add,
}

/// Appends `ms <key> <len> T<ttl> F<flags> [M<mode>] [C<cas>]` and the data block.
pub(super) fn set(
    out: &mut Vec<u8>,
    key: &[u8],
    parts: &[&[u8]],
    exptime: u64,
    flags: u32,
    mode: Mode,
    cas: Option<u64>,
) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.reserve(key.len() + len + 64);
    out.extend_from_slice(b"ms ");
    out.extend_from_slice(key);
    number_arg(out, "", len as u64);
    number_arg(out, "T", exptime);
    number_arg(out, "F", u64::from(flags));
    if mode == Mode::Add {
        out.extend_from_slice(b" ME");
    }
    if let Some(cas) = cas {
        number_arg(out, "C", cas);
    }
    out.extend_from_slice(b"\r\n");
    for part in parts {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `ma <key> D<delta> M<I|D> <flags>`: increments (or decrements) the number at `key`.
pub(super) fn arithmetic(out: &mut Vec<u8>, key: &[u8], delta: u64, up: bool, flags: &str) {
    out.extend_from_slice(b"ma ");
    out.extend_from_slice(key);
    number_arg(out, "D", delta);
    out.extend_from_slice(if up { b" MI" } else { b" MD" });
    if !flags.is_empty() {
        out.push(b' ');
        out.extend_from_slice(flags.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends ` <flag><n>`.
fn number_arg(out: &mut Vec<u8>, flag: &str, n: u64) {
    out.push(b' ');
    out.extend_from_slice(flag.as_bytes());
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Vec<Result<Reply, Refusal>> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(reply) = parse(&mut buf).unwrap() {
            out.push(reply);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        out
    }

    #[test]
    fn replies_parse_with_their_flags_and_values() {
        let replies = parse_all(
            b"VA 5 f1 c42 t-1\r\nhe\r\no\r\nHD c7\r\nEN\r\nNF\r\nNS\r\nEX\r\nVA 0\r\n\r\n",
        );
        let first = replies[0].clone().unwrap();
        assert_eq!(first.status, Status::Value);
        assert_eq!(
            (first.flags, first.cas, first.ttl),
            (Some(1), Some(42), Some(-1))
        );
        assert_eq!(first.value.as_deref(), Some(&b"he\r\no"[..]));
        assert_eq!(replies[1].clone().unwrap().cas, Some(7));
        let statuses: Vec<_> = replies[2..6]
            .iter()
            .map(|r| r.clone().unwrap().status)
            .collect();
        assert_eq!(
            statuses,
            [
                Status::Miss,
                Status::NotFound,
                Status::NotStored,
                Status::Exists
            ]
        );
        assert_eq!(replies[6].clone().unwrap().value.as_deref(), Some(&b""[..]));
    }

    #[test]
    fn a_partial_reply_waits_for_more_bytes() {
        let mut buf = BytesMut::from(&b"VA 10 f0\r\n01234"[..]);
        assert_eq!(parse(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"56789\r\n");
        let reply = parse(&mut buf).unwrap().unwrap().unwrap();
        assert_eq!(reply.value.as_deref(), Some(&b"0123456789"[..]));
    }

    #[test]
    fn refusals_and_broken_streams_are_told_apart() {
        let mut buf = BytesMut::from(
            &b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"[..],
        );
        let refusal = parse(&mut buf).unwrap().unwrap().unwrap_err();
        assert!(refusal.is_non_numeric());
        assert!(parse(&mut BytesMut::from(&b"HELLO\r\n"[..])).is_err());
        assert!(parse(&mut BytesMut::from(&b"VA 3\r\nabcd\r\n"[..])).is_err());
        assert!(parse(&mut BytesMut::from(&[b'x'; 2000][..])).is_err());
    }

    #[test]
    fn commands_are_written_as_the_protocol_expects() {
        let mut out = Vec::new();
        get(&mut out, b"k", "v f c");
        set(&mut out, b"k", &[b"ab", b"c"], 60, 1, Mode::Add, Some(9));
        arithmetic(&mut out, b"k", 5, true, "v");
        delete(&mut out, b"k", None);
        delete(&mut out, b"k", Some(3));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "mg k v f c\r\nms k 3 T60 F1 ME C9\r\nabc\r\nma k D5 MI v\r\nmd k\r\nmd k C3\r\n"
        );
    }
}
