//! The byte form of what the layer stores: lengths and numbers little-endian, fields in a
//! fixed order, read back with every length checked against what is there.
//!
//! A hit reads its response straight out of these bytes: header values and the body are
//! slices of the stored buffer (a reference count each), not copies, and nothing is parsed
//! twice. Entries in any other form (an older layout, a value another program wrote at the
//! key) fail to read and are misses.

use std::ops::Range;

/// The first bytes of an entry: the layout's name and version.
pub(crate) const MAGIC: &[u8; 4] = b"jtH2";

/// Reads the fields of a stored buffer in order; `None` once anything is missing.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    /// Where the reader is: the offset of the next field.
    pub(crate) fn at(&self) -> usize {
        self.at
    }

    /// The range of the next `len` bytes, skipped.
    pub(crate) fn skip(&mut self, len: usize) -> Option<Range<usize>> {
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())?;
        let range = self.at..end;
        self.at = end;
        Some(range)
    }

    /// The next `len` bytes.
    pub(crate) fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let range = self.skip(len)?;
        self.bytes.get(range)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// A field preceded by its `u16` length.
    pub(crate) fn short(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// The range of a field preceded by its `u32` length.
    pub(crate) fn long_range(&mut self) -> Option<Range<usize>> {
        let len = usize::try_from(self.u32()?).ok()?;
        self.skip(len)
    }

    /// Whether every byte was read.
    pub(crate) fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }
}

/// Appends fields in the order [`Reader`] reads them.
pub(crate) trait Writer {
    /// A field preceded by its `u16` length; `None` when it is longer than that can say.
    fn put_short(&mut self, field: &[u8]) -> Option<()>;
    /// A field preceded by its `u32` length; `None` when it is longer than that can say.
    fn put_long(&mut self, field: &[u8]) -> Option<()>;
}

impl Writer for Vec<u8> {
    fn put_short(&mut self, field: &[u8]) -> Option<()> {
        self.extend_from_slice(&u16::try_from(field.len()).ok()?.to_le_bytes());
        self.extend_from_slice(field);
        Some(())
    }

    fn put_long(&mut self, field: &[u8]) -> Option<()> {
        self.extend_from_slice(&u32::try_from(field.len()).ok()?.to_le_bytes());
        self.extend_from_slice(field);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_back_in_order_and_a_short_buffer_reads_nothing() {
        let mut bytes = Vec::new();
        bytes.push(7);
        bytes.extend_from_slice(&300u16.to_le_bytes());
        bytes.put_short(b"name").unwrap();
        bytes.put_long(b"value").unwrap();
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        let mut reader = Reader::new(&bytes);
        assert_eq!(reader.u8(), Some(7));
        assert_eq!(reader.u16(), Some(300));
        assert_eq!(reader.short(), Some(&b"name"[..]));
        let value = reader.long_range().unwrap();
        assert_eq!(&bytes[value], b"value");
        assert_eq!(reader.u64(), Some(u64::MAX));
        assert!(reader.is_done());
        assert_eq!(reader.u8(), None);

        for cut in 0..bytes.len() {
            let mut reader = Reader::new(&bytes[..cut]);
            let read = (|| {
                reader.u8()?;
                reader.u16()?;
                reader.short()?;
                reader.long_range()?;
                reader.u64()
            })();
            assert_eq!(read, None, "cut at {cut}");
        }
        // A length that claims more than there is, even one that would overflow an offset.
        let mut reader = Reader::new(&[0xff, 0xff, 0xff, 0xff, 1]);
        assert_eq!(reader.long_range(), None);
        assert_eq!(Vec::new().put_short(&vec![0; 70_000]), None);
    }
}
