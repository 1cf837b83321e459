//! Kafka RecordBatch v2: a view of the fixed-offset header, validation on arrival, and an
//! encoder/decoder for uncompressed batches.
//!
//! Layout (big-endian): base offset i64 @0, batch length i32 @8 (bytes after this field),
//! partition leader epoch i32 @12, magic i8 @16, CRC32C u32 @17 (over bytes 21..), attributes
//! i16 @21, last offset delta i32 @23, base timestamp i64 @27, max timestamp i64 @35, producer
//! id i64 @43, producer epoch i16 @51, base sequence i32 @53, record count i32 @57, records @61.

use bytes::{Buf, Bytes};

use crate::error::BatchError;

/// Most records a compressed batch may claim per byte of its compressed records.
const MAX_RECORDS_PER_COMPRESSED_BYTE: usize = 256;
/// Fewest bytes one uncompressed record takes.
const MIN_RECORD_LEN: usize = 7;
/// Bytes in a v2 batch header, up to the first record.
pub const HEADER_LEN: usize = 61;
/// Bytes before the batch length field's count starts (base offset + length).
const LOG_OVERHEAD: usize = 12;
const CRC_START: usize = 21;

/// Compression of a batch's records, from the low three bits of its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Records stored as they are.
    None,
    /// gzip.
    Gzip,
    /// Snappy (Xerial framing as Kafka's Java client writes it, or raw).
    Snappy,
    /// LZ4 frame.
    Lz4,
    /// Zstandard.
    Zstd,
    /// A code Kafka does not define; stored as sent.
    Unknown(u8),
}

/// The fixed-offset fields of a v2 record batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the length field; the whole batch is `batch_length + 12` bytes.
    pub batch_length: i32,
    /// Leader epoch the producer saw.
    pub partition_leader_epoch: i32,
    /// Format version: 2.
    pub magic: i8,
    /// CRC32C of the bytes from the attributes to the end.
    pub crc: u32,
    /// Compression (bits 0-2), timestamp type (bit 3), transactional (4), control (5).
    pub attributes: i16,
    /// Offset of the last record relative to the base offset.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl BatchHeader {
    /// Reads the header fields; checks only that the header is there and the magic is 2.
    pub fn parse(b: &[u8]) -> Result<Self, BatchError> {
        if b.len() < HEADER_LEN {
            // The magic sits before the end of the header: report it if it is wrong, since a
            // v0/v1 message set is shorter than a v2 header and "truncated" would mislead.
            if b.len() > 16 && b[16] as i8 != 2 {
                return Err(BatchError::WrongMagic(b[16] as i8));
            }
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                got: b.len(),
            });
        }
        let magic = b[16] as i8;
        if magic != 2 {
            return Err(BatchError::WrongMagic(magic));
        }
        Ok(Self {
            base_offset: i64_at(b, 0),
            batch_length: i32_at(b, 8),
            partition_leader_epoch: i32_at(b, 12),
            magic,
            crc: u32::from_be_bytes(b[17..21].try_into().expect("4 bytes")),
            attributes: i16_at(b, 21),
            last_offset_delta: i32_at(b, 23),
            base_timestamp: i64_at(b, 27),
            max_timestamp: i64_at(b, 35),
            producer_id: i64_at(b, 43),
            producer_epoch: i16_at(b, 51),
            base_sequence: i32_at(b, 53),
            record_count: i32_at(b, 57),
        })
    }

    /// Size of the whole batch in bytes, as its length field says.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Compression of the records.
    pub fn compression(&self) -> Compression {
        match self.attributes & 0x7 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            c => Compression::Unknown(c as u8),
        }
    }

    /// Whether the timestamps are log-append time (else create time).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & 0x8 != 0
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// Whether the batch holds control records (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

/// Checks one whole batch as a producer sent it: length, magic, CRC32C, record count and size.
///
/// `bytes` must be exactly one batch. Nothing is modified.
pub fn validate(bytes: &[u8], max_size: usize) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(bytes)?;
    if h.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return Err(BatchError::Inconsistent(
            "batch length is shorter than the header",
        ));
    }
    if h.total_len() != bytes.len() {
        return Err(BatchError::Truncated {
            needed: h.total_len(),
            got: bytes.len(),
        });
    }
    if bytes.len() > max_size {
        return Err(BatchError::TooLarge {
            size: bytes.len(),
            max: max_size,
        });
    }
    let actual = crc32c::crc32c(&bytes[CRC_START..]);
    if actual != h.crc {
        return Err(BatchError::CrcMismatch {
            expected: h.crc,
            actual,
        });
    }
    if h.record_count <= 0 {
        return Err(BatchError::Empty);
    }
    // A producer's records have consecutive offsets, as Kafka requires: a larger delta would
    // leave a hole in the partition's offsets.
    // An uncompressed record takes at least 7 bytes (length, attributes, timestamp and
    // offset deltas, key and value lengths, header count); a count beyond that is a lie that
    // would make readers allocate for records that are not there.
    // Compressed records are not counted here (no codecs in this crate), but no codec packs
    // more than a few hundred empty records into a byte: a count beyond that is a lie that
    // would make offsets jump by billions.
    let body = bytes.len() - HEADER_LEN;
    let room = match h.compression() {
        Compression::None => body / MIN_RECORD_LEN,
        _ => body.saturating_mul(MAX_RECORDS_PER_COMPRESSED_BYTE),
    };
    if h.record_count as usize > room {
        return Err(BatchError::Inconsistent(
            "record count exceeds what the batch can hold",
        ));
    }
    // Control batches (transaction markers) are the broker's to write; a producer's would
    // advance offsets past records no consumer shows.
    if h.is_control() {
        return Err(BatchError::Inconsistent(
            "control batches are written by the broker, not by producers",
        ));
    }
    if h.last_offset_delta != h.record_count - 1 {
        return Err(BatchError::Inconsistent(
            "last offset delta is not record count - 1",
        ));
    }
    Ok(h)
}

/// Splits a produce payload (one or more concatenated batches) into validated batches.
///
/// Fails on the first bad batch; the caller writes none of them then.
pub fn split_and_validate(
    mut bytes: Bytes,
    max_size: usize,
) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    if bytes.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut out = Vec::with_capacity(1);
    while !bytes.is_empty() {
        if bytes.len() < LOG_OVERHEAD {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                got: bytes.len(),
            });
        }
        let len = i32_at(&bytes, 8);
        if len < 0 {
            return Err(BatchError::Inconsistent("negative batch length"));
        }
        let total = LOG_OVERHEAD + len as usize;
        if total > bytes.len() {
            // Parse first so a v0/v1 message set is reported as such, not as truncation.
            BatchHeader::parse(&bytes)?;
            return Err(BatchError::Truncated {
                needed: total,
                got: bytes.len(),
            });
        }
        let one = bytes.split_to(total);
        let h = validate(&one, max_size)?;
        out.push((h, one));
    }
    Ok(out)
}

/// Writes `base_offset` into a batch's header. The CRC does not cover it.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Marks a batch as an idempotent producer's: sets its producer id, epoch and first
/// sequence, and recomputes the CRC (which covers those fields).
pub fn set_producer(batch: &mut [u8], producer_id: i64, producer_epoch: i16, base_sequence: i32) {
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// One record to append: what a producer hands over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The key, or none.
    pub key: Option<Bytes>,
    /// The value, or none (a tombstone).
    pub value: Option<Bytes>,
    /// Headers in order; a header value may be none.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Create time in milliseconds since the epoch.
    pub timestamp: i64,
}

impl Record {
    /// A record with a value only.
    pub fn value(timestamp: i64, value: impl Into<Bytes>) -> Self {
        Self {
            value: Some(value.into()),
            timestamp,
            ..Self::default()
        }
    }

    /// A record with a key and a value.
    pub fn keyed(timestamp: i64, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Self {
            key: Some(key.into()),
            value: Some(value.into()),
            timestamp,
            ..Self::default()
        }
    }
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn varint_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    (64 - (z | 1).leading_zeros() as usize).div_ceil(7)
}

fn opt_len(b: Option<&[u8]>) -> usize {
    match b {
        Some(b) => varint_len(b.len() as i64) + b.len(),
        None => 1,
    }
}

fn put_opt(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        None => put_varint(out, -1),
    }
}

/// Builds one uncompressed v2 batch a record at a time, writing each straight into the
/// batch's bytes (no intermediate [`Record`]). Base offset 0, no producer id.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    out: Vec<u8>,
    count: i32,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// An empty batch; its base timestamp is its first record's.
    pub fn new() -> Self {
        let mut out = Vec::with_capacity(4096);
        out.resize(HEADER_LEN, 0);
        Self {
            out,
            count: 0,
            base_timestamp: None,
            max_timestamp: i64::MIN,
        }
    }

    /// An empty batch whose timestamp deltas count from `base_timestamp`.
    pub fn with_base_timestamp(base_timestamp: i64) -> Self {
        Self {
            base_timestamp: Some(base_timestamp),
            ..Self::new()
        }
    }

    /// Appends one record.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(String, Option<Bytes>)],
    ) {
        let base = *self.base_timestamp.get_or_insert(timestamp);
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let ts_delta = timestamp.wrapping_sub(base);
        let i = i64::from(self.count);
        let mut len = 1 + varint_len(ts_delta) + varint_len(i);
        len += opt_len(key) + opt_len(value) + varint_len(headers.len() as i64);
        for (k, v) in headers {
            len += varint_len(k.len() as i64) + k.len() + opt_len(v.as_deref());
        }
        let out = &mut self.out;
        put_varint(out, len as i64);
        out.push(0);
        put_varint(out, ts_delta);
        put_varint(out, i);
        put_opt(out, key);
        put_opt(out, value);
        put_varint(out, headers.len() as i64);
        for (k, v) in headers {
            put_varint(out, k.len() as i64);
            out.extend_from_slice(k.as_bytes());
            put_opt(out, v.as_deref());
        }
        self.count += 1;
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the batch so far.
    pub fn size(&self) -> usize {
        self.out.len()
    }

    /// The finished batch. Panics if it is empty: an empty batch is not a batch.
    pub fn finish(self) -> Vec<u8> {
        assert!(self.count > 0, "a batch needs at least one record");
        let mut out = self.out;
        let batch_length = (out.len() - LOG_OVERHEAD) as i32;
        out[8..12].copy_from_slice(&batch_length.to_be_bytes());
        out[12..16].copy_from_slice(&(-1i32).to_be_bytes());
        out[16] = 2;
        // attributes 0: no compression, create time
        out[23..27].copy_from_slice(&(self.count - 1).to_be_bytes());
        out[27..35].copy_from_slice(&self.base_timestamp.unwrap_or(0).to_be_bytes());
        out[35..43].copy_from_slice(&self.max_timestamp.to_be_bytes());
        out[43..51].copy_from_slice(&(-1i64).to_be_bytes());
        out[51..53].copy_from_slice(&(-1i16).to_be_bytes());
        out[53..57].copy_from_slice(&(-1i32).to_be_bytes());
        out[57..61].copy_from_slice(&self.count.to_be_bytes());
        let crc = crc32c::crc32c(&out[CRC_START..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        out
    }
}

/// Encodes records as one uncompressed v2 batch with base offset 0 and no producer id.
///
/// Panics if `records` is empty: an empty batch is not a batch.
pub fn encode(records: &[Record]) -> Vec<u8> {
    assert!(!records.is_empty(), "a batch needs at least one record");
    let base_ts = records.iter().map(|r| r.timestamp).min().unwrap_or(0);
    let mut b = BatchBuilder::with_base_timestamp(base_ts);
    for r in records {
        b.push(
            r.timestamp,
            r.key.as_deref(),
            r.value.as_deref(),
            &r.headers,
        );
    }
    b.finish()
}

/// A record read back from a stored batch, with its absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The record's offset in its partition.
    pub offset: i64,
    /// Timestamp in milliseconds since the epoch.
    pub timestamp: i64,
    /// The key, or none.
    pub key: Option<Bytes>,
    /// The value, or none.
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

fn get_varint(b: &mut Bytes) -> Result<i64, BatchError> {
    let mut z: u64 = 0;
    for shift in (0..64).step_by(7) {
        if !b.has_remaining() {
            return Err(BatchError::Inconsistent("record ends inside a varint"));
        }
        let byte = b.get_u8();
        z |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    Err(BatchError::Inconsistent("varint longer than 10 bytes"))
}

fn get_opt(b: &mut Bytes) -> Result<Option<Bytes>, BatchError> {
    let len = get_varint(b)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if len > b.remaining() {
        return Err(BatchError::Inconsistent(
            "record field longer than the batch",
        ));
    }
    Ok(Some(b.split_to(len)))
}

/// Decodes the records of one stored, uncompressed batch without copying keys and values.
///
/// Compressed batches need a codec this crate does not carry: they give
/// `BatchError::Inconsistent`. Control batches yield no records.
pub fn decode(batch: &Bytes) -> Result<Vec<StoredRecord>, BatchError> {
    let h = BatchHeader::parse(batch)?;
    if h.total_len() > batch.len() {
        return Err(BatchError::Truncated {
            needed: h.total_len(),
            got: batch.len(),
        });
    }
    if h.compression() != Compression::None {
        return Err(BatchError::Inconsistent(
            "compressed batch: decode it with a Kafka codec",
        ));
    }
    if h.is_control() {
        return Ok(Vec::new());
    }
    let mut b = batch.slice(HEADER_LEN..h.total_len());
    let room = h.total_len().saturating_sub(HEADER_LEN) / MIN_RECORD_LEN;
    let mut out = Vec::with_capacity((h.record_count.max(0) as usize).min(room));
    for _ in 0..h.record_count {
        let len = get_varint(&mut b)?;
        if len < 0 || len as usize > b.remaining() {
            return Err(BatchError::Inconsistent("record length beyond the batch"));
        }
        let mut r = b.split_to(len as usize);
        if !r.has_remaining() {
            return Err(BatchError::Inconsistent("empty record"));
        }
        r.advance(1); // attributes
        let ts_delta = get_varint(&mut r)?;
        let off_delta = get_varint(&mut r)?;
        let key = get_opt(&mut r)?;
        let value = get_opt(&mut r)?;
        let n = get_varint(&mut r)?;
        let mut headers = Vec::with_capacity(n.clamp(0, 64) as usize);
        for _ in 0..n.max(0) {
            let k = get_opt(&mut r)?.unwrap_or_default();
            let k = String::from_utf8(k.to_vec())
                .map_err(|_| BatchError::Inconsistent("header key is not UTF-8"))?;
            headers.push((k, get_opt(&mut r)?));
        }
        let timestamp = if h.is_log_append_time() {
            h.max_timestamp
        } else {
            h.base_timestamp.wrapping_add(ts_delta)
        };
        out.push(StoredRecord {
            offset: h.base_offset.wrapping_add(off_delta),
            timestamp,
            key,
            value,
            headers,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_len_matches_encoding() {
        for v in [
            0i64,
            1,
            -1,
            63,
            64,
            -65,
            300,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            assert_eq!(get_varint(&mut Bytes::from(out)).unwrap(), v);
        }
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let recs = vec![
            Record::keyed(1000, "k1", "v1"),
            Record {
                headers: vec![("h".into(), Some(Bytes::from("x"))), ("n".into(), None)],
                ..Record::value(990, "v2")
            },
            Record {
                key: None,
                value: None,
                headers: vec![],
                timestamp: 1010,
            },
        ];
        let b = Bytes::from(encode(&recs));
        let h = validate(&b, usize::MAX).unwrap();
        assert_eq!(h.record_count, 3);
        assert_eq!(h.base_timestamp, 990);
        assert_eq!(h.max_timestamp, 1010);
        let back = decode(&b).unwrap();
        assert_eq!(back.len(), 3);
        for (i, (r, s)) in recs.iter().zip(&back).enumerate() {
            assert_eq!(s.offset, i as i64);
            assert_eq!(
                (&r.key, &r.value, &r.headers, r.timestamp),
                (&s.key, &s.value, &s.headers, s.timestamp)
            );
        }
    }

    #[test]
    fn builder_takes_records_out_of_time_order() {
        let mut b = BatchBuilder::new();
        b.push(1000, Some(b"k"), Some(b"a"), &[]);
        b.push(900, None, Some(b"b"), &[("h".into(), None)]);
        let bytes = Bytes::from(b.finish());
        let h = validate(&bytes, usize::MAX).unwrap();
        assert_eq!((h.base_timestamp, h.max_timestamp), (1000, 1000));
        let back = decode(&bytes).unwrap();
        assert_eq!(back[1].timestamp, 900);
        assert_eq!(back[1].headers, vec![("h".to_string(), None)]);
        assert_eq!(back[0].key.as_deref(), Some(&b"k"[..]));
    }

    #[test]
    fn a_record_count_beyond_the_bytes_is_refused_and_not_allocated() {
        let mut b = encode(&[Record::value(1, "x")]);
        b[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        b[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate(&b, usize::MAX),
            Err(BatchError::Inconsistent(_))
        ));
        // A reader handed such bytes anyway fails on the missing records, without a huge
        // allocation first.
        assert!(decode(&Bytes::from(b)).is_err());
    }

    fn with_header(mut b: Vec<u8>, attributes: i16, count: i32, last_delta: i32) -> Vec<u8> {
        b[21..23].copy_from_slice(&attributes.to_be_bytes());
        b[23..27].copy_from_slice(&last_delta.to_be_bytes());
        b[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn a_producers_control_batch_is_refused() {
        // A control batch claiming a billion offsets would leave a hole no consumer shows.
        let b = with_header(encode(&[Record::value(1, "x")]), 0x20, 1, 1_000_000_000);
        let e = validate(&b, usize::MAX).unwrap_err();
        assert!(
            matches!(e, BatchError::Inconsistent(m) if m.contains("control")),
            "{e}"
        );
    }

    #[test]
    fn a_compressed_batch_cannot_claim_billions_of_records() {
        let b = with_header(encode(&[Record::value(1, "x")]), 1, i32::MAX, i32::MAX - 1);
        assert!(matches!(
            validate(&b, usize::MAX),
            Err(BatchError::Inconsistent(_))
        ));
        // A plausible compressed count passes the header checks.
        let ok = with_header(encode(&[Record::value(1, "x")]), 1, 100, 99);
        assert_eq!(validate(&ok, usize::MAX).unwrap().record_count, 100);
    }

    #[test]
    fn crc_ignores_base_offset() {
        let mut b = encode(&[Record::value(1, "x")]);
        set_base_offset(&mut b, 12345);
        let h = validate(&b, usize::MAX).unwrap();
        assert_eq!(h.base_offset, 12345);
    }
}
