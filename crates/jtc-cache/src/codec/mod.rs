//! How typed values become stored bytes, and back.
//!
//! Two shapes of stored value exist:
//!
//! - **Integers** (any value that serializes as an integer fitting `i64`) are stored as their
//!   plain decimal text: `put("hits", &42, ttl)` stores `b"42"`. That is what `increment` works
//!   on, what Redis `INCRBY` understands and what `redis-cli GET` shows.
//! - **Everything else** is a 4-byte header, `b"jtc"` and a format byte, then the serialized
//!   value. The format byte records the [`Codec`] and its version, so a reader always knows
//!   how an entry was written, whatever codec it is configured with.
//!
//! Large values may also be compressed (LZ4, the `compression` feature): the format byte then
//! carries [`COMPRESSED`] and the body is the compressed serialized value, prefixed by its
//! decompressed length. Readers decompress transparently; a declared length beyond what LZ4
//! could produce from the stored bytes is rejected before anything is allocated.
//!
//! Values are data, never code: nothing here can run anything while decoding.

mod depth;

use serde::{Serialize, de::DeserializeOwned};

use self::depth::{
    MAX_READ_DEPTH, MAX_WRITE_DEPTH, json_deeper_than, msgpack_deeper_than, too_deep,
};

use crate::{
    Error, ErrorKind, Result,
    counter::{format_integer, parse_integer},
};

const MAGIC: &[u8; 3] = b"jtc";
const HEADER_LEN: usize = MAGIC.len() + 1;
const FORMAT_MSGPACK_V1: u8 = 1;
const FORMAT_JSON_V1: u8 = 2;
/// Bytes stored as they were given ([`Cache::put_bytes`](crate::Cache::put_bytes)), no serde.
const FORMAT_BYTES_V1: u8 = 3;
/// Flag on the format byte: the body is LZ4-compressed.
const COMPRESSED: u8 = 0x80;
/// LZ4 cannot expand data by more than this factor (a literal run of 255 bytes per byte).
const LZ4_MAX_RATIO: usize = 255;
/// No decompressed value is larger than this, whatever its header claims: well above any
/// value a cache writes (64 MiB by default), far below what would hurt a process.
const MAX_DECOMPRESSED: usize = 1 << 30;

/// The serde format used to store values that are not plain integers.
///
/// The default, MessagePack, is compact and self-describing: struct fields are written by
/// name, so `#[serde(skip_serializing_if)]`, `flatten` and untagged enums work, and an entry
/// written by a different type fails to decode (a miss) instead of decoding into garbage.
/// JSON is larger but readable with any tool. Both readers are always available: an entry
/// written with one codec is read correctly by a cache configured with the other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Codec {
    /// MessagePack with named fields (`rmp-serde`). The default.
    #[default]
    MessagePack,
    /// JSON (`serde_json`).
    Json,
}

impl Codec {
    /// Encodes `value` into the stored bytes.
    pub(crate) fn encode<T: Serialize + ?Sized>(self, key: &str, value: &T) -> Result<Vec<u8>> {
        let encode_error = |source: Box<dyn std::error::Error + Send + Sync>| -> Error {
            ErrorKind::Encode {
                key: key.to_owned(),
                source,
            }
            .into()
        };
        match self {
            Self::MessagePack => {
                let body = rmp_serde::to_vec_named(value).map_err(|e| encode_error(e.into()))?;
                if let Some(n) = msgpack_integer(&body) {
                    return Ok(format_integer(n));
                }
                if msgpack_deeper_than(&body, MAX_WRITE_DEPTH) {
                    return Err(encode_error(too_deep().into()));
                }
                Ok(with_header(FORMAT_MSGPACK_V1, &body))
            }
            Self::Json => {
                let body = serde_json::to_vec(value).map_err(|e| encode_error(e.into()))?;
                if parse_integer(&body).is_some() {
                    return Ok(body);
                }
                if json_deeper_than(&body, MAX_WRITE_DEPTH) {
                    return Err(encode_error(too_deep().into()));
                }
                Ok(with_header(FORMAT_JSON_V1, &body))
            }
        }
    }
}

/// Decodes stored bytes into a `T`, whichever codec wrote them.
///
/// The error is only for the log line: to callers an undecodable entry is a miss.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    if let Some(body) = bytes.strip_prefix(MAGIC.as_slice()) {
        let (&format, body) = body.split_first().ok_or("truncated header")?;
        let body = if format & COMPRESSED == 0 {
            std::borrow::Cow::Borrowed(body)
        } else {
            std::borrow::Cow::Owned(decompress(body)?)
        };
        return match format & !COMPRESSED {
            FORMAT_MSGPACK_V1 => {
                let mut decoder = rmp_serde::Deserializer::from_read_ref(body.as_ref());
                decoder.set_max_depth(MAX_READ_DEPTH);
                T::deserialize(&mut decoder).map_err(|e| e.to_string())
            }
            FORMAT_JSON_V1 => serde_json::from_slice(&body).map_err(|e| e.to_string()),
            FORMAT_BYTES_V1 => {
                let bytes =
                    serde::de::value::BytesDeserializer::<serde::de::value::Error>::new(&body);
                T::deserialize(bytes).map_err(|e| e.to_string())
            }
            other => Err(format!("unknown value format {other}")),
        };
    }
    match parse_integer(bytes) {
        Some(n) => T::deserialize(IntegerDeserializer(n)).map_err(|e| e.to_string()),
        None => Err("neither an integer nor a jtc header".to_owned()),
    }
}

/// Compresses an encoded value whose size is above `threshold`, when that makes it smaller.
/// Counters and values already compressed are returned as they are.
#[cfg(feature = "compression")]
pub(crate) fn compress(encoded: Vec<u8>, threshold: usize) -> Vec<u8> {
    if encoded.len() <= threshold || encoded.len() <= HEADER_LEN || !encoded.starts_with(MAGIC) {
        return encoded;
    }
    let format = encoded[MAGIC.len()];
    if format & COMPRESSED != 0 {
        return encoded;
    }
    let body = &encoded[HEADER_LEN..];
    let Ok(length) = u32::try_from(body.len()) else {
        return encoded;
    };
    let packed = lz4_flex::block::compress(body);
    if packed.len() + 4 >= body.len() {
        return encoded;
    }
    let mut out = Vec::with_capacity(HEADER_LEN + 4 + packed.len());
    out.extend_from_slice(MAGIC);
    out.push(format | COMPRESSED);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&packed);
    out
}

#[cfg(feature = "compression")]
fn decompress(body: &[u8]) -> Result<Vec<u8>, String> {
    let (length, packed) = body
        .split_first_chunk::<4>()
        .ok_or("truncated compressed value")?;
    let length = usize::try_from(u32::from_le_bytes(*length)).map_err(|e| e.to_string())?;
    if length > packed.len().saturating_mul(LZ4_MAX_RATIO) || length > MAX_DECOMPRESSED {
        return Err(format!(
            "compressed value claims {length} bytes from {} stored bytes",
            packed.len()
        ));
    }
    lz4_flex::block::decompress(packed, length).map_err(|e| e.to_string())
}

#[cfg(not(feature = "compression"))]
fn decompress(_body: &[u8]) -> Result<Vec<u8>, String> {
    let _ = (LZ4_MAX_RATIO, MAX_DECOMPRESSED);
    Err("the value is compressed and this build lacks the `compression` feature".to_owned())
}

/// The stored form of `bytes` given to [`Cache::put_bytes`](crate::Cache::put_bytes).
pub(crate) fn bytes_entry(bytes: &[u8]) -> Vec<u8> {
    with_header(FORMAT_BYTES_V1, bytes)
}

/// The bytes [`bytes_entry`] stored in `stored`: `stored` itself past its header, not a copy
/// (decompressed when the cache compressed them). An entry of another form is an error (for
/// the log).
///
/// Taken by value and advanced past the header rather than sliced: a slice of bytes a driver
/// read into its own buffer (Redis's reply) makes that buffer shared, an allocation and two
/// reference counts per read.
pub(crate) fn bytes_of(stored: bytes::Bytes) -> Result<bytes::Bytes, String> {
    let format = match stored.strip_prefix(MAGIC.as_slice()) {
        Some(rest) => *rest.first().ok_or("truncated header")?,
        None => return Err("not bytes stored by put_bytes (an integer)".to_owned()),
    };
    if format & !COMPRESSED != FORMAT_BYTES_V1 {
        return Err(format!(
            "not bytes stored by put_bytes (value format {format})"
        ));
    }
    if format & COMPRESSED == 0 {
        let mut stored = stored;
        bytes::Buf::advance(&mut stored, HEADER_LEN);
        Ok(stored)
    } else {
        decompress(&stored[HEADER_LEN..]).map(bytes::Bytes::from)
    }
}

fn with_header(format: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.push(format);
    out.extend_from_slice(body);
    out
}

/// The integer a MessagePack buffer holds, if it holds exactly one integer fitting `i64`.
fn msgpack_integer(body: &[u8]) -> Option<i64> {
    let expected_len = match *body.first()? {
        0x00..=0x7f | 0xe0..=0xff => 1,
        0xcc | 0xd0 => 2,
        0xcd | 0xd1 => 3,
        0xce | 0xd2 => 5,
        0xcf | 0xd3 => 9,
        _ => return None,
    };
    if body.len() != expected_len {
        return None;
    }
    rmp_serde::from_slice::<i64>(body).ok()
}

/// Feeds a stored integer to any `Deserialize` type that accepts one: the integer types,
/// floats, `Option`s and newtypes around them.
struct IntegerDeserializer(i64);

impl<'de> serde::Deserializer<'de> for IntegerDeserializer {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_i64(self.0)
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_some(self)
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, Self::Error> {
        v.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct User {
        id: u32,
        name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        email: Option<String>,
    }

    #[test]
    fn integers_are_stored_as_plain_decimal_text() {
        for codec in [Codec::MessagePack, Codec::Json] {
            assert_eq!(codec.encode("k", &42u8).unwrap(), b"42");
            assert_eq!(codec.encode("k", &-7i64).unwrap(), b"-7");
            assert_eq!(
                codec.encode("k", &i64::MIN).unwrap(),
                b"-9223372036854775808"
            );
            assert_eq!(codec.encode("k", &Some(5)).unwrap(), b"5");
            // Beyond i64 a number is no counter; it keeps the header.
            assert!(codec.encode("k", &u64::MAX).unwrap().starts_with(MAGIC));
        }
    }

    #[test]
    fn plain_integers_decode_into_any_numeric_type() {
        assert_eq!(decode::<i64>(b"42"), Ok(42));
        assert_eq!(decode::<u8>(b"42"), Ok(42));
        assert_eq!(decode::<f64>(b"-3"), Ok(-3.0));
        assert_eq!(decode::<Option<i32>>(b"9"), Ok(Some(9)));
        assert!(decode::<u8>(b"-1").is_err());
        assert!(decode::<String>(b"42").is_err());
    }

    #[test]
    fn structs_round_trip_through_both_codecs_and_are_read_by_either() {
        let user = User {
            id: 1,
            name: "Ana".into(),
            email: None,
        };
        for codec in [Codec::MessagePack, Codec::Json] {
            let bytes = codec.encode("k", &user).unwrap();
            assert_eq!(decode::<User>(&bytes).unwrap(), user);
        }
    }

    #[test]
    fn garbage_and_foreign_types_fail_to_decode() {
        let bytes = Codec::MessagePack.encode("k", &"text").unwrap();
        assert!(decode::<User>(&bytes).is_err());
        assert!(decode::<User>(b"jtc").is_err());
        assert!(decode::<User>(b"jtc\x09abc").is_err());
        assert!(decode::<User>(b"\xff\xfe").is_err());
        let mut truncated = Codec::MessagePack
            .encode(
                "k",
                &User {
                    id: 1,
                    name: "Ana".into(),
                    email: Some("a@b".into()),
                },
            )
            .unwrap();
        truncated.truncate(truncated.len() - 3);
        assert!(decode::<User>(&truncated).is_err());
    }

    #[cfg(feature = "compression")]
    #[test]
    fn large_values_compress_and_read_back_transparently() {
        let text = "the same sentence, again and again. ".repeat(100);
        for codec in [Codec::MessagePack, Codec::Json] {
            let plain = codec.encode("k", &text).unwrap();
            let packed = compress(plain.clone(), 1024);
            assert!(
                packed.len() * 4 < plain.len(),
                "{} vs {}",
                packed.len(),
                plain.len()
            );
            assert_eq!(packed[MAGIC.len()] & COMPRESSED, COMPRESSED);
            assert_eq!(decode::<String>(&packed).unwrap(), text);
            // Below the threshold, or a counter: untouched.
            assert_eq!(compress(plain.clone(), plain.len()), plain);
            assert_eq!(compress(b"12345".to_vec(), 0), b"12345");
        }
    }

    /// Random bytes as one MessagePack binary, not an array of small integers.
    #[cfg(feature = "compression")]
    fn serde_bytes_like(bytes: &[u8]) -> String {
        bytes.iter().map(|b| char::from(b'!' + b % 90)).collect()
    }

    #[cfg(feature = "compression")]
    #[test]
    fn incompressible_values_stay_as_they_are() {
        let mut noise = vec![0u8; 4096];
        blake3::Hasher::new().finalize_xof().fill(&mut noise);
        let plain = Codec::MessagePack
            .encode("k", &serde_bytes_like(&noise))
            .unwrap();
        assert_eq!(compress(plain.clone(), 16), plain);
    }

    #[cfg(feature = "compression")]
    #[test]
    fn damaged_compressed_values_are_errors_not_allocations() {
        let text = "abc".repeat(2000);
        let packed = compress(Codec::MessagePack.encode("k", &text).unwrap(), 0);
        // A length far beyond what the stored bytes could expand to.
        let mut bomb = packed.clone();
        bomb[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode::<String>(&bomb).unwrap_err().contains("claims"));
        // Truncated and flipped bodies fail cleanly.
        assert!(decode::<String>(&packed[..packed.len() - 3]).is_err());
        assert!(decode::<String>(&packed[..HEADER_LEN + 2]).is_err());
        let mut flipped = packed;
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        let _ = decode::<String>(&flipped);
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Nest {
        Leaf,
        Pair(Box<Nest>, Box<Nest>),
        List(Vec<Nest>),
        Map(std::collections::BTreeMap<String, Nest>),
    }

    fn nested(depth: usize, wrap: impl Fn(Nest) -> Nest) -> Nest {
        (0..depth).fold(Nest::Leaf, |inner, _| wrap(inner))
    }

    #[test]
    fn values_too_deep_to_read_back_are_refused_when_written() {
        let shapes: [fn(Nest) -> Nest; 3] = [
            |n| Nest::Pair(Box::new(n), Box::new(Nest::Leaf)),
            |n| Nest::List(vec![n]),
            |n| Nest::Map([("k".to_owned(), n)].into()),
        ];
        for codec in [Codec::MessagePack, Codec::Json] {
            for wrap in shapes {
                for depth in [1, 10, 30, 59, 60, 61, 100, 119, 120, 121, 200, 400] {
                    let value = nested(depth, wrap);
                    match codec.encode("k", &value) {
                        Ok(bytes) => assert_eq!(
                            decode::<Nest>(&bytes).as_ref(),
                            Ok(&value),
                            "{codec:?} at depth {depth}: written, so it must read back"
                        ),
                        Err(err) => assert!(
                            matches!(err.kind(), ErrorKind::Encode { source, .. } if source.to_string().contains("nested")),
                            "{err:?}"
                        ),
                    }
                }
            }
            assert!(
                codec
                    .encode("k", &nested(10, |n| Nest::List(vec![n])))
                    .is_ok()
            );
            assert!(
                codec
                    .encode("k", &nested(500, |n| Nest::List(vec![n])))
                    .is_err()
            );
        }
    }

    #[test]
    fn crafted_deep_entries_are_errors_not_stack_overflows() {
        for depth in [200, 100_000] {
            let mut msgpack = b"jtc\x01".to_vec();
            msgpack.extend(std::iter::repeat_n(0x91, depth));
            msgpack.push(0xc0);
            assert!(decode::<Nest>(&msgpack).is_err());
            assert!(decode::<serde_json::Value>(&msgpack).is_err());
            let mut json = b"jtc\x02".to_vec();
            json.extend(std::iter::repeat_n(b'[', depth));
            assert!(decode::<serde_json::Value>(&json).is_err());
        }
    }
}
