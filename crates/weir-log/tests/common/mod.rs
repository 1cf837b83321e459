//! Helpers shared by weir-log's integration tests: reading a partition back whole with every
//! batch checked, and a small seeded random source.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use bytes::Bytes;
use weir_log::batch::{self, BatchHeader, StoredRecord};
use weir_log::{Log, LogOptions, PartitionBounds};

/// One partition read back from its log start to its high watermark.
#[derive(Debug)]
pub struct PartitionDump {
    /// The bounds the reads saw.
    pub bounds: PartitionBounds,
    /// Every stored batch, in offset order, each with its header.
    pub batches: Vec<(BatchHeader, Bytes)>,
    /// Every record of those batches, in offset order.
    pub records: Vec<StoredRecord>,
}

/// Splits concatenated stored batches into single batches.
pub fn split_batches(mut bytes: Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let h = BatchHeader::parse(&bytes).expect("a stored batch has a v2 header");
        assert!(
            h.total_len() <= bytes.len(),
            "a stored batch runs past the end of the read"
        );
        out.push(bytes.split_to(h.total_len()));
    }
    out
}

/// Reads a whole partition and checks what every reader relies on: each batch passes
/// `batch::validate` (length, magic, CRC32C), batches are dense from the log start to the
/// high watermark, and each record's offset is its batch's base plus its position.
pub fn dump_partition(log: &Log, topic: &str, partition: i32) -> PartitionDump {
    let bounds = log.bounds(topic, partition).expect("partition exists");
    let mut batches = Vec::new();
    let mut records = Vec::new();
    let mut next = bounds.log_start;
    while next < bounds.high_watermark {
        let fetched = log
            .read(topic, partition, next, 64 << 10)
            .expect("read inside the bounds");
        assert_eq!(fetched.log_start, bounds.log_start, "log start moved");
        assert_eq!(fetched.high_watermark, bounds.high_watermark, "hw moved");
        let got = split_batches(fetched.records);
        assert_eq!(got.len(), fetched.batch_count, "batch_count");
        assert!(!got.is_empty(), "a read below the hw returned no batch");
        for b in got {
            let h = batch::validate(&b, usize::MAX)
                .unwrap_or_else(|e| panic!("stored batch at {next} fails validation: {e}"));
            assert_eq!(h.base_offset, next, "offsets are not dense at {next}");
            let recs = batch::decode(&b).expect("stored batch decodes");
            assert_eq!(recs.len(), h.record_count as usize, "record count");
            for (i, r) in recs.iter().enumerate() {
                assert_eq!(
                    r.offset,
                    next + i as i64,
                    "record offset in batch at {next}"
                );
            }
            next = h.last_offset() + 1;
            records.extend(recs);
            batches.push((h, b));
        }
    }
    assert_eq!(next, bounds.high_watermark, "batches end at the hw");
    PartitionDump {
        bounds,
        batches,
        records,
    }
}

/// Options for tests: no background retention, a small cache.
pub fn test_options() -> LogOptions {
    LogOptions {
        cache_size: 8 << 20,
        retention_check_interval: None,
        ..LogOptions::default()
    }
}

/// SplitMix64: a tiny seeded random source, so a failing run can be repeated from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A source seeded from the clock; the seed is printed so a failure can be replayed.
    pub fn from_clock(name: &str) -> Self {
        let seed = std::env::var("WEIR_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("{name}: WEIR_TEST_SEED={seed}");
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }
}
