//! The quickstart: `cargo run --release --example quickstart`
//!
//! Creates a topic in `./weir-data`, appends 1,000,000 records in batches of 1,000 with fsync
//! durability, reads them all back, and prints what it did and how fast. `RUST_LOG` filters
//! the log's own messages (e.g. `RUST_LOG=weir_log=debug`).

mod common;

use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use weir::log::{Log, Record, TopicConfig};

const TOPIC: &str = "quickstart";
const RECORDS: usize = 1_000_000;
const BATCH: usize = 1_000;

fn main() -> anyhow::Result<()> {
    common::init_logging();
    let dir = std::path::Path::new("weir-data");
    let log = Log::open(dir).with_context(|| format!("opening the log in {}", dir.display()))?;
    if log.topic(TOPIC).is_none() {
        log.create_topic(TOPIC, 1, TopicConfig::default()).wait()?;
        println!("created topic {TOPIC:?} in {}", dir.display());
    }
    let start_offset = log.bounds(TOPIC, 0)?.high_watermark;

    let value = Bytes::from(vec![b'x'; 100]);
    let t = Instant::now();
    let mut first = None;
    for b in 0..RECORDS / BATCH {
        let records: Vec<Record> = (0..BATCH)
            .map(|i| {
                Record::keyed(
                    1_700_000_000_000 + (b * BATCH + i) as i64,
                    format!("key-{i}"),
                    value.clone(),
                )
            })
            .collect();
        let at = log.append_records(TOPIC, 0, &records).wait()?;
        first.get_or_insert(at.base_offset);
    }
    let appended = t.elapsed();
    println!(
        "appended {RECORDS} records of 100 bytes in batches of {BATCH} (fsync each commit): {:.2} s, {:.0} records/s",
        appended.as_secs_f64(),
        RECORDS as f64 / appended.as_secs_f64()
    );

    let t = Instant::now();
    let mut offset = start_offset;
    let mut read = 0usize;
    let hw = log.bounds(TOPIC, 0)?.high_watermark;
    while offset < hw {
        let f = log.read(TOPIC, 0, offset, 4 << 20)?;
        let records = f.decode_from(offset)?;
        read += records.len();
        offset = records
            .last()
            .map(|r| r.offset + 1)
            .context("read returned no records")?;
    }
    let took = t.elapsed();
    println!(
        "read back {read} records from offset {start_offset}: {:.2} s, {:.0} records/s",
        took.as_secs_f64(),
        read as f64 / took.as_secs_f64()
    );
    let b = log.bounds(TOPIC, 0)?;
    println!(
        "{TOPIC}-0 now holds offsets {}..{} ({:.1} MB); run it again to append more",
        b.log_start,
        b.high_watermark,
        b.bytes as f64 / 1e6
    );
    anyhow::ensure!(read == RECORDS, "read {read} records, expected {RECORDS}");
    Ok(())
}
