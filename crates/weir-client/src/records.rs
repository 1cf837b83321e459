//! Record batches on the wire (sans-io): encoding what a producer sends and
//! decoding what a fetch returns, compressed or not.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, Record,
    RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// A record as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic it was read from.
    pub topic: Arc<str>,
    /// Partition it was read from.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp in ms since the epoch (creation or log-append time).
    pub timestamp: i64,
    /// Its key.
    pub key: Option<Bytes>,
    /// Its value.
    pub value: Option<Bytes>,
    /// Its headers, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// One record to put in a batch.
#[derive(Debug, Clone, Default)]
pub(crate) struct PendingRecord {
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

impl PendingRecord {
    /// Rough encoded size, used to decide when a batch is full.
    pub fn approx_size(&self) -> usize {
        16 + self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| 4 + k.len() + v.as_ref().map_or(0, Bytes::len))
                .sum::<usize>()
    }
}

/// The idempotent producer's identity and a batch's first sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sequenced {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

/// Encodes `records` as one v2 record batch with base offset 0; `sequenced` for an
/// idempotent producer.
pub(crate) fn encode_batch(
    records: Vec<PendingRecord>,
    compression: Compression,
    sequenced: Option<Sequenced>,
) -> Result<Bytes, String> {
    let (producer_id, producer_epoch, base_sequence) = match sequenced {
        Some(s) => (s.producer_id, s.producer_epoch, s.base_sequence),
        // The encoder keeps records in one batch only while offset - sequence stays
        // constant; base sequence comes out as NO_SEQUENCE (-1).
        None => (NO_PRODUCER_ID, NO_PRODUCER_EPOCH, NO_SEQUENCE),
    };
    let records: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: base_sequence.wrapping_add(i as i32),
            timestamp: r.timestamp,
            key: r.key,
            value: r.value,
            headers: r
                .headers
                .into_iter()
                .map(|(k, v)| (StrBytes::from_string(k), v))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let size: usize = records
        .iter()
        .map(|r| 24 + r.key.as_ref().map_or(0, Bytes::len) + r.value.as_ref().map_or(0, Bytes::len))
        .sum();
    let mut buf = BytesMut::with_capacity(61 + size);
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

/// Decodes every complete batch in `data` (a fetch's record set), skipping
/// control records and records before `from`. A truncated batch at the end,
/// which brokers may send when a size limit cuts it, is ignored. Returns the
/// offset after the last complete batch, if there was one.
pub(crate) fn decode_records(
    topic: &Arc<str>,
    partition: i32,
    mut data: Bytes,
    from: i64,
    out: &mut Vec<ConsumerRecord>,
) -> Result<Option<i64>, String> {
    const LOG_OVERHEAD: usize = 12;
    let mut next = None;
    while data.len() >= LOG_OVERHEAD {
        let len = i32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let Ok(len) = usize::try_from(len) else {
            return Err(format!("negative batch length {len}"));
        };
        if data.len() < LOG_OVERHEAD + len {
            break;
        }
        let mut batch = data.split_to(LOG_OVERHEAD + len);
        if batch.len() < 61 {
            return Err(format!(
                "record batch of {} bytes is too short",
                batch.len()
            ));
        }
        if batch[16] != 2 {
            return Err(format!(
                "record batch magic {} is not supported (only v2)",
                batch[16]
            ));
        }
        let base = i64::from_be_bytes(batch[..8].try_into().unwrap_or_default());
        let last_delta = i32::from_be_bytes(batch[23..27].try_into().unwrap_or_default());
        next = Some(base + i64::from(last_delta) + 1);
        let set = RecordBatchDecoder::decode(&mut batch).map_err(|e| e.to_string())?;
        for r in set.records {
            if r.control || r.offset < from {
                continue;
            }
            out.push(ConsumerRecord {
                topic: topic.clone(),
                partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            });
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Arc<str> {
        Arc::from("t")
    }

    fn sample(n: usize) -> Vec<PendingRecord> {
        (0..n)
            .map(|i| PendingRecord {
                timestamp: 1_700_000_000_000 + i as i64,
                key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(vec![i as u8; i * 7])),
                headers: vec![("h".into(), Some(Bytes::from_static(b"v")))],
            })
            .collect()
    }

    #[test]
    fn every_compression_round_trips() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let input = sample(50);
            let bytes = encode_batch(input.clone(), c, None).unwrap();
            let mut out = Vec::new();
            assert_eq!(
                decode_records(&t(), 3, bytes, 0, &mut out).unwrap(),
                Some(50)
            );
            assert_eq!(out.len(), 50, "{c:?}");
            for (i, (a, b)) in input.iter().zip(&out).enumerate() {
                assert_eq!(b.offset, i as i64);
                assert_eq!(b.partition, 3);
                assert_eq!(
                    (&a.key, &a.value, a.timestamp),
                    (&b.key, &b.value, b.timestamp)
                );
                assert_eq!(a.headers, b.headers);
            }
        }
    }

    #[test]
    fn records_before_the_fetch_offset_are_skipped() {
        let bytes = encode_batch(sample(10), Compression::None, None).unwrap();
        let mut out = Vec::new();
        decode_records(&t(), 0, bytes, 7, &mut out).unwrap();
        assert_eq!(out.iter().map(|r| r.offset).collect::<Vec<_>>(), [7, 8, 9]);
    }

    #[test]
    fn truncated_trailing_batch_is_ignored() {
        let one = encode_batch(sample(3), Compression::None, None).unwrap();
        let mut two = BytesMut::from(&one[..]);
        two.extend_from_slice(&one[..one.len() - 5]);
        let mut out = Vec::new();
        assert_eq!(
            decode_records(&t(), 0, two.freeze(), 0, &mut out).unwrap(),
            Some(3)
        );
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn corrupt_batch_is_an_error_not_a_panic() {
        let bytes = encode_batch(sample(3), Compression::Lz4, None).unwrap();
        let mut bad = BytesMut::from(&bytes[..]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let mut out = Vec::new();
        assert!(decode_records(&t(), 0, bad.freeze(), 0, &mut out).is_err());
    }

    #[test]
    fn sequenced_batch_carries_producer_id_epoch_and_base_sequence() {
        let seq = Sequenced {
            producer_id: 42,
            producer_epoch: 3,
            base_sequence: 17,
        };
        let bytes = encode_batch(sample(5), Compression::None, Some(seq)).unwrap();
        assert_eq!(i64::from_be_bytes(bytes[43..51].try_into().unwrap()), 42);
        assert_eq!(i16::from_be_bytes(bytes[51..53].try_into().unwrap()), 3);
        assert_eq!(i32::from_be_bytes(bytes[53..57].try_into().unwrap()), 17);
        let plain = encode_batch(sample(5), Compression::None, None).unwrap();
        assert_eq!(i64::from_be_bytes(plain[43..51].try_into().unwrap()), -1);
        assert_eq!(i32::from_be_bytes(plain[53..57].try_into().unwrap()), -1);
    }

    #[test]
    fn encoded_batch_passes_weir_log_validation_shape() {
        // The v2 header: base offset 0, magic 2, record count at byte 57.
        let bytes = encode_batch(sample(4), Compression::Zstd, None).unwrap();
        assert_eq!(&bytes[..8], &[0; 8]);
        assert_eq!(bytes[16], 2);
        assert_eq!(i32::from_be_bytes(bytes[57..61].try_into().unwrap()), 4);
        assert_eq!(i16::from_be_bytes(bytes[21..23].try_into().unwrap()) & 7, 4);
    }
}
