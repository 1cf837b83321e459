//! Retention runs in the background on its own clock, deleting whole batches by age and by
//! size and advancing the log start; reads below it are out of range.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir_log::{Log, LogError, LogOptions, Record, TopicConfig, batch};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Waits (up to 10 s) until the partition's log start reaches `want`.
fn wait_for_log_start(log: &Log, topic: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let start = log.bounds(topic, 0).expect("bounds").log_start;
        if start == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: log start is {start}, background retention never moved it to {want}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn background_retention_deletes_by_age_and_size() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = LogOptions {
        retention_check_interval: Some(Duration::from_millis(50)),
        ..common::test_options()
    };
    let log = Log::open_with(dir.path(), options).expect("open");
    let by_age = TopicConfig {
        retention_ms: 60_000,
        ..TopicConfig::default()
    };
    let now = now_ms();
    let hour_ago = now - 3_600_000;
    let old = [
        Record::value(hour_ago, "old"),
        Record::value(hour_ago, "old"),
    ];
    let fresh = [Record::value(now, "fresh")];
    let batch_size = batch::encode(&fresh).len() as i64;
    let by_size = TopicConfig {
        retention_bytes: 2 * batch_size,
        ..TopicConfig::default()
    };
    log.create_topic("by-age", 1, by_age)
        .wait()
        .expect("create");
    log.create_topic("by-size", 1, by_size)
        .wait()
        .expect("create");
    log.create_topic("kept", 1, TopicConfig::default())
        .wait()
        .expect("create");
    for topic in ["by-age", "kept"] {
        log.append_records(topic, 0, &old).wait().expect("append");
        log.append_records(topic, 0, &fresh).wait().expect("append");
    }
    for _ in 0..5 {
        log.append_records("by-size", 0, &fresh)
            .wait()
            .expect("append");
    }

    // The old batch (offsets 0-1) goes; the fresh one stays.
    wait_for_log_start(&log, "by-age", 2);
    // Five equal batches, room for two: the first three go.
    wait_for_log_start(&log, "by-size", 3);
    let b = log.bounds("by-size", 0).unwrap();
    assert_eq!((b.high_watermark, b.bytes), (5, 2 * batch_size as u64));

    match log.read("by-age", 0, 1, 1 << 20) {
        Err(LogError::OffsetOutOfRange {
            log_start: 2,
            high_watermark: 3,
            ..
        }) => {}
        other => panic!("read below the log start: {other:?}"),
    }
    let left = common::dump_partition(&log, "by-age", 0);
    let values: Vec<_> = left.records.iter().map(|r| r.value.clone()).collect();
    assert_eq!(values, [Some("fresh".into())]);

    // Kafka's default retention (7 days) keeps an hour-old batch.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(log.bounds("kept", 0).unwrap().log_start, 0);
    assert_eq!(common::dump_partition(&log, "kept", 0).records.len(), 3);

    // The new log start is durable.
    drop(log);
    let log = Log::open_with(dir.path(), common::test_options()).expect("reopen");
    assert_eq!(log.bounds("by-age", 0).unwrap().log_start, 2);
    assert_eq!(log.bounds("by-size", 0).unwrap().log_start, 3);
}
