//! The format of one entry file: a 22-byte header (magic, version, flags, expiry, length,
//! CRC-32), then the value. See the table in the driver's module docs.

use bytes::Bytes;

use crate::{ErrorKind, Result};

const MAGIC: &[u8; 4] = b"jtcF";
const VERSION: u8 = 1;
pub(super) const HEADER_LEN: usize = 22;

/// Whether a file starts like one of ours (only its first bytes need be read).
pub(super) fn is_ours(header: &[u8]) -> bool {
    header.starts_with(MAGIC)
}

pub(super) fn encode_entry(expires_at: Option<u64>, value: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(value.len()).map_err(|_| ErrorKind::Encode {
        key: String::new(),
        source: "a file cache value must be smaller than 4 GiB".into(),
    })?;
    let mut bytes = Vec::with_capacity(HEADER_LEN + value.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[VERSION, 0]);
    bytes.extend_from_slice(&expires_at.unwrap_or(0).to_le_bytes());
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(value).to_le_bytes());
    bytes.extend_from_slice(value);
    Ok(bytes)
}

/// Splits a header into (expiry, value length, CRC), or says what is wrong with it.
pub(super) fn parse_header(header: &[u8]) -> Result<(Option<u64>, usize, u32), &'static str> {
    if header.len() < HEADER_LEN {
        return Err("shorter than its header");
    }
    if &header[0..4] != MAGIC {
        return Err("not a jtc cache file");
    }
    if header[4] != VERSION {
        return Err("written by another format version");
    }
    let field = |range: std::ops::Range<usize>| {
        header[range]
            .iter()
            .rev()
            .fold(0u64, |acc, b| acc << 8 | u64::from(*b))
    };
    let expires_at = Some(field(6..14)).filter(|&at| at != 0);
    Ok((expires_at, field(14..18) as usize, field(18..22) as u32))
}

/// Checks a whole entry file and returns its expiry and value.
pub(super) fn decode_entry(bytes: Vec<u8>) -> Result<(Option<u64>, Bytes), &'static str> {
    let (expires_at, len, crc) = parse_header(&bytes)?;
    if bytes.len() != HEADER_LEN + len {
        return Err("truncated or padded");
    }
    if crc32fast::hash(&bytes[HEADER_LEN..]) != crc {
        return Err("checksum mismatch");
    }
    Ok((expires_at, Bytes::from(bytes).slice(HEADER_LEN..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_files_round_trip_and_reject_damage() {
        let bytes = encode_entry(Some(1234), b"value").unwrap();
        assert_eq!(
            decode_entry(bytes.clone()),
            Ok((Some(1234), Bytes::from_static(b"value")))
        );
        assert_eq!(
            decode_entry(encode_entry(None, b"").unwrap()),
            Ok((None, Bytes::new()))
        );

        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(decode_entry(flipped), Err("checksum mismatch"));
        assert_eq!(
            decode_entry(bytes[..bytes.len() - 1].to_vec()),
            Err("truncated or padded")
        );
        assert_eq!(
            decode_entry(bytes[..10].to_vec()),
            Err("shorter than its header")
        );
        assert_eq!(decode_entry(b"x".repeat(40)), Err("not a jtc cache file"));
    }
}
