//! Malformed input is refused with its own error and writes nothing; batches written by an
//! independent Kafka codec (kafka-protocol) are accepted, and the log's batches decode there.

mod common;

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KCompression, Record as KRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType,
};
use weir_log::batch::{self, HEADER_LEN, StoredRecord};
use weir_log::{BatchError, Log, LogError, Record, TopicConfig};

const TOPIC: &str = "input";

/// A log with one topic of one partition holding one good batch, and a small
/// `max.message.bytes` so "too large" is cheap to reach.
fn log_with_one_batch() -> (tempfile::TempDir, Log) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = Log::open_with(dir.path(), common::test_options()).expect("open");
    let config = TopicConfig {
        max_message_bytes: 1_000,
        ..TopicConfig::default()
    };
    log.create_topic(TOPIC, 1, config).wait().expect("create");
    log.append_records(TOPIC, 0, &[Record::keyed(1_000, "k", "first")])
        .wait()
        .expect("first append");
    (dir, log)
}

fn good_batch() -> Vec<u8> {
    batch::encode(&[
        Record::keyed(2_000, "a", "one"),
        Record::keyed(2_001, "b", "two"),
    ])
}

/// Appends `payload` expecting `want`, then checks nothing was written and that a good append
/// still lands right after what was there.
fn refused(log: &Log, payload: Vec<u8>, want: BatchError) {
    let before = log.bounds(TOPIC, 0).expect("bounds");
    let err = log
        .append(TOPIC, 0, Bytes::from(payload))
        .wait()
        .expect_err("malformed batch accepted");
    match err {
        LogError::InvalidBatch(got) => assert_eq!(got, want),
        other => panic!("expected InvalidBatch({want:?}), got {other:?}"),
    }
    assert_eq!(
        log.bounds(TOPIC, 0).expect("bounds"),
        before,
        "bounds moved"
    );
    still_appends(log, before.high_watermark);
}

/// A good append lands at `hw` and reads back.
fn still_appends(log: &Log, hw: i64) {
    let at = log
        .append(TOPIC, 0, Bytes::from(good_batch()))
        .wait()
        .expect("good append after a refused one");
    assert_eq!((at.base_offset, at.last_offset), (hw, hw + 1));
    let records = log
        .read(TOPIC, 0, hw, 1 << 20)
        .expect("read")
        .decode_from(hw)
        .expect("decode");
    let values: Vec<_> = records.iter().map(|r| r.value.clone()).collect();
    assert_eq!(values, [Some("one".into()), Some("two".into())]);
    // Everything stored is still whole and dense.
    common::dump_partition(log, TOPIC, 0);
}

fn fix_crc(b: &mut [u8]) {
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn bad_crc_is_refused() {
    let (_dir, log) = log_with_one_batch();
    let mut b = good_batch();
    let last = b.len() - 1;
    b[last] ^= 0x55;
    let expected = u32::from_be_bytes(b[17..21].try_into().unwrap());
    let actual = crc32c::crc32c(&b[21..]);
    refused(&log, b, BatchError::CrcMismatch { expected, actual });
}

#[test]
fn wrong_magic_is_refused() {
    let (_dir, log) = log_with_one_batch();
    let mut b = good_batch();
    b[16] = 1;
    refused(&log, b, BatchError::WrongMagic(1));
}

#[test]
fn truncated_batch_is_refused() {
    let (_dir, log) = log_with_one_batch();
    let b = good_batch();
    let full = b.len();
    refused(
        &log,
        b[..full - 3].to_vec(),
        BatchError::Truncated {
            needed: full,
            got: full - 3,
        },
    );
    // Cut inside the header as well.
    refused(
        &log,
        b[..30].to_vec(),
        BatchError::Truncated {
            needed: HEADER_LEN,
            got: 30,
        },
    );
}

#[test]
fn empty_batch_is_refused() {
    let (_dir, log) = log_with_one_batch();
    // A header alone, with record count 0 and a valid CRC: well-formed but empty.
    let mut b = vec![0u8; HEADER_LEN];
    b[8..12].copy_from_slice(&((HEADER_LEN - 12) as i32).to_be_bytes());
    b[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    b[16] = 2;
    b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    fix_crc(&mut b);
    assert_eq!(
        batch::validate(&b, usize::MAX),
        Err(BatchError::Empty),
        "the hand-built batch must fail only for being empty"
    );
    refused(&log, b, BatchError::Empty);
    // No bytes at all, and no records, are empty too.
    refused(&log, Vec::new(), BatchError::Empty);
    let before = log.bounds(TOPIC, 0).unwrap();
    let err = log.append_records(TOPIC, 0, &[]).wait().unwrap_err();
    assert!(
        matches!(err, LogError::InvalidBatch(BatchError::Empty)),
        "{err:?}"
    );
    assert_eq!(log.bounds(TOPIC, 0).unwrap(), before);
}

#[test]
fn inconsistent_header_is_refused() {
    let (_dir, log) = log_with_one_batch();
    // Two records, but a last offset delta that claims 1 or 6: a Kafka broker refuses both
    // ("inconsistent batch offset range"); storing the second would leave a hole in offsets.
    for delta in [0i32, 5] {
        let mut b = good_batch();
        b[23..27].copy_from_slice(&delta.to_be_bytes());
        fix_crc(&mut b);
        let before = log.bounds(TOPIC, 0).unwrap();
        let err = log.append(TOPIC, 0, Bytes::from(b)).wait().unwrap_err();
        assert!(
            matches!(err, LogError::InvalidBatch(BatchError::Inconsistent(_))),
            "last offset delta {delta}: {err:?}"
        );
        assert_eq!(log.bounds(TOPIC, 0).unwrap(), before);
        still_appends(&log, before.high_watermark);
    }
    // A negative length field, and one that ends the batch inside its own header.
    let mut b = good_batch();
    b[8..12].copy_from_slice(&(-1i32).to_be_bytes());
    refused(&log, b, BatchError::Inconsistent("negative batch length"));
    let mut b = good_batch();
    b[8..12].copy_from_slice(&10i32.to_be_bytes());
    refused(
        &log,
        b,
        BatchError::Truncated {
            needed: HEADER_LEN,
            got: 22,
        },
    );
}

#[test]
fn batch_over_max_message_bytes_is_refused() {
    let (_dir, log) = log_with_one_batch();
    let b = batch::encode(&[Record::value(3_000, vec![7u8; 1_200])]);
    let size = b.len();
    refused(&log, b, BatchError::TooLarge { size, max: 1_000 });
}

#[test]
fn one_bad_batch_refuses_the_whole_payload() {
    let (_dir, log) = log_with_one_batch();
    let mut bad = good_batch();
    bad[16] = 0;
    let mut payload = good_batch();
    payload.extend_from_slice(&bad);
    refused(&log, payload, BatchError::WrongMagic(0));
}

#[test]
fn invalid_topic_names_are_refused() {
    let (_dir, log) = log_with_one_batch();
    let long = "x".repeat(250);
    for name in ["", ".", "..", "a b", "a/b", "é", long.as_str()] {
        let err = log
            .create_topic(name, 1, TopicConfig::default())
            .wait()
            .expect_err("bad name accepted");
        assert!(
            matches!(&err, LogError::InvalidTopicName { name: n, .. } if n == name),
            "{name:?}: {err:?}"
        );
    }
    assert_eq!(log.topics().len(), 1, "a refused topic was created");
    // Partition counts outside 1..=100000.
    for n in [0, -1, 100_001] {
        let err = log
            .create_topic("fine-name", n, TopicConfig::default())
            .wait()
            .expect_err("bad partition count accepted");
        assert!(matches!(err, LogError::InvalidPartitions(_)), "{err:?}");
    }
    let err = log
        .create_topic(TOPIC, 1, TopicConfig::default())
        .wait()
        .expect_err("duplicate topic accepted");
    assert!(matches!(err, LogError::TopicExists(_)), "{err:?}");
    assert_eq!(log.topics().len(), 1);
    still_appends(&log, 1);
}

#[test]
fn unknown_topic_or_partition_is_refused() {
    let (_dir, log) = log_with_one_batch();
    let err = log
        .append("nope", 0, Bytes::from(good_batch()))
        .wait()
        .unwrap_err();
    assert!(
        matches!(&err, LogError::UnknownTopic(t) if t == "nope"),
        "{err:?}"
    );
    for p in [1, -1, i32::MAX] {
        let err = log
            .append(TOPIC, p, Bytes::from(good_batch()))
            .wait()
            .unwrap_err();
        assert!(
            matches!(&err, LogError::UnknownPartition { partition, .. } if *partition == p),
            "{p}: {err:?}"
        );
        assert!(matches!(
            log.read(TOPIC, p, 0, 100),
            Err(LogError::UnknownPartition { .. })
        ));
    }
    assert!(matches!(
        log.read("nope", 0, 0, 100),
        Err(LogError::UnknownTopic(_))
    ));
    assert_eq!(log.bounds(TOPIC, 0).unwrap().high_watermark, 1);
    still_appends(&log, 1);
}

#[test]
fn compact_cleanup_policy_is_refused() {
    for policy in ["compact", "compact,delete", "delete,compact"] {
        let err = TopicConfig::from_pairs([("cleanup.policy", policy)]).unwrap_err();
        match &err {
            LogError::InvalidConfig { key, value, reason } => {
                assert_eq!((key.as_str(), value.as_str()), ("cleanup.policy", policy));
                assert!(reason.contains("cleanup.policy=delete"), "{reason}");
            }
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }
    let c = TopicConfig::from_pairs([("cleanup.policy", "delete")]).unwrap();
    assert_eq!(c.cleanup_policy, weir_log::CleanupPolicy::Delete);
}

/// Records as kafka-protocol models them: sequence numbers follow offsets so they share a batch.
fn kafka_records() -> Vec<KRecord> {
    (0..4i64)
        .map(|i| {
            let mut headers = IndexMap::new();
            headers.insert(
                StrBytes::from_static_str("h"),
                Some(Bytes::from(vec![i as u8])),
            );
            if i % 2 == 0 {
                headers.insert(StrBytes::from_static_str("none"), None);
            }
            KRecord {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: i as i32 - 1,
                timestamp: 5_000 + 10 * i - if i == 2 { 40 } else { 0 },
                key: (i != 1).then(|| Bytes::from(format!("key-{i}"))),
                value: (i != 3).then(|| Bytes::from(format!("value-{i}").repeat(i as usize + 1))),
                headers,
            }
        })
        .collect()
}

/// A kafka-protocol record in weir-log's terms, at `offset`.
fn as_stored(k: &KRecord, offset: i64) -> StoredRecord {
    StoredRecord {
        offset,
        timestamp: k.timestamp,
        key: k.key.clone(),
        value: k.value.clone(),
        headers: k
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect(),
    }
}

#[test]
fn accepts_batches_from_kafka_protocol() {
    let (_dir, log) = log_with_one_batch();
    let krecs = kafka_records();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: KCompression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &krecs, &options).expect("kafka-protocol encodes");
    let at = log
        .append(TOPIC, 0, buf.freeze())
        .wait()
        .expect("weir-log accepts a kafka-protocol batch");
    assert_eq!((at.base_offset, at.last_offset), (1, 4));
    let got = log
        .read(TOPIC, 0, 1, 1 << 20)
        .unwrap()
        .decode_from(1)
        .unwrap();
    assert_eq!(got.len(), krecs.len());
    for (k, w) in krecs.iter().zip(&got) {
        // The log put the batch at offset 1, after the first one.
        assert_eq!(w, &as_stored(k, k.offset + 1));
    }
    common::dump_partition(&log, TOPIC, 0);
}

#[test]
fn kafka_protocol_decodes_what_weir_log_writes() {
    let (_dir, log) = log_with_one_batch();
    let recs = vec![
        Record {
            headers: vec![
                ("trace".into(), Some(Bytes::from("t1"))),
                ("n".into(), None),
            ],
            ..Record::keyed(9_000, "k1", "v1")
        },
        Record::value(8_990, "no key"),
        Record {
            key: Some(Bytes::from("tombstone")),
            value: None,
            headers: Vec::new(),
            timestamp: 9_010,
        },
    ];
    let check = |bytes: Bytes, base: i64| {
        let set = RecordBatchDecoder::decode(&mut bytes.clone()).expect("kafka-protocol decodes");
        assert_eq!(set.version, 2);
        assert_eq!(set.compression, KCompression::None);
        assert_eq!(set.records.len(), recs.len());
        for (i, (k, r)) in set.records.iter().zip(&recs).enumerate() {
            let want = StoredRecord {
                offset: base + i as i64,
                timestamp: r.timestamp,
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r.headers.clone(),
            };
            assert_eq!(as_stored(k, k.offset), want);
        }
    };
    // As encoded, and as stored (with the base offset the log assigned).
    check(Bytes::from(batch::encode(&recs)), 0);
    let at = log.append_records(TOPIC, 0, &recs).wait().unwrap();
    assert_eq!(at.base_offset, 1);
    let stored = log.read(TOPIC, 0, 1, 1 << 20).unwrap();
    assert_eq!(stored.batch_count, 1);
    check(stored.records, 1);
}

#[test]
fn a_log_open_elsewhere_is_refused_with_a_reason() {
    let (dir, log) = log_with_one_batch();
    let err = Log::open(dir.path()).expect_err("the same log opened twice");
    assert!(
        matches!(&err, LogError::Storage(m) if m.contains("already open")),
        "{err:?}"
    );
    // The first handle is unharmed.
    still_appends(&log, 1);
}

#[test]
fn a_group_id_too_long_for_its_key_is_refused_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let log = weir_log::Log::open(dir.path()).unwrap();
    let long = "g".repeat(70_000);
    let at = weir_log::CommittedOffset {
        offset: 1,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp: 0,
    };
    let mut unit = weir_log::Unit::new();
    unit.commit_offset(&long, "t", 0, at);
    let e = log.commit(unit).wait().unwrap_err();
    assert!(matches!(e, weir_log::LogError::InvalidGroup(70_000)), "{e}");
    assert!(
        log.groups_with_offsets().unwrap().is_empty(),
        "nothing was written"
    );
}
