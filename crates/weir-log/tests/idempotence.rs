//! Idempotent producers: a retried batch is not appended twice, a gap or a stale epoch is
//! refused, and the producer state survives a restart.

use bytes::Bytes;
use weir_log::batch::{self, Record};
use weir_log::{Log, LogError, TopicConfig};

fn idempotent_batch(pid: i64, epoch: i16, seq: i32, n: usize) -> Bytes {
    let recs: Vec<Record> = (0..n)
        .map(|i| Record::value(i as i64, format!("s{}", seq as usize + i)))
        .collect();
    let mut b = batch::encode(&recs);
    batch::set_producer(&mut b, pid, epoch, seq);
    Bytes::from(b)
}

#[test]
fn retries_are_not_duplicated_and_state_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.create_topic("t", 1, TopicConfig::default())
        .wait()
        .unwrap();
    let pid = log.allocate_producer_id().wait().unwrap();
    assert_ne!(
        pid,
        log.allocate_producer_id().wait().unwrap(),
        "producer ids are unique"
    );

    let first = log
        .append("t", 0, idempotent_batch(pid, 0, 0, 3))
        .wait()
        .unwrap();
    assert_eq!(
        (first.base_offset, first.last_offset, first.duplicate),
        (0, 2, false)
    );
    let retry = log
        .append("t", 0, idempotent_batch(pid, 0, 0, 3))
        .wait()
        .unwrap();
    assert_eq!(
        (retry.base_offset, retry.last_offset, retry.duplicate),
        (0, 2, true)
    );
    assert_eq!(
        log.bounds("t", 0).unwrap().high_watermark,
        3,
        "the retry wrote nothing"
    );

    let second = log
        .append("t", 0, idempotent_batch(pid, 0, 3, 2))
        .wait()
        .unwrap();
    assert_eq!((second.base_offset, second.duplicate), (3, false));
    let gap = log
        .append("t", 0, idempotent_batch(pid, 0, 9, 1))
        .wait()
        .unwrap_err();
    assert!(
        matches!(
            gap,
            LogError::OutOfOrderSequence {
                expected: 5,
                got: 9,
                ..
            }
        ),
        "{gap}"
    );
    let fresh_mid_sequence = log
        .append("t", 0, idempotent_batch(pid + 100, 0, 4, 1))
        .wait()
        .unwrap_err();
    assert!(matches!(
        fresh_mid_sequence,
        LogError::OutOfOrderSequence { expected: 0, .. }
    ));
    drop(log);

    let log = Log::open(dir.path()).unwrap();
    let again = log
        .append("t", 0, idempotent_batch(pid, 0, 3, 2))
        .wait()
        .unwrap();
    assert_eq!(
        (again.base_offset, again.duplicate),
        (3, true),
        "state survived the restart"
    );
    let next = log
        .append("t", 0, idempotent_batch(pid, 0, 5, 1))
        .wait()
        .unwrap();
    assert_eq!((next.base_offset, next.duplicate), (5, false));
    let bumped = log
        .append("t", 0, idempotent_batch(pid, 1, 0, 1))
        .wait()
        .unwrap();
    assert_eq!(bumped.base_offset, 6);
    let zombie = log
        .append("t", 0, idempotent_batch(pid, 0, 6, 1))
        .wait()
        .unwrap_err();
    assert!(
        matches!(
            zombie,
            LogError::InvalidProducerEpoch {
                epoch: 0,
                current: 1,
                ..
            }
        ),
        "{zombie}"
    );
    let ids_after_restart = log.allocate_producer_id().wait().unwrap();
    assert!(
        ids_after_restart > pid + 1,
        "ids are not reused after a restart"
    );
    let read = log
        .read("t", 0, 0, 1 << 20)
        .unwrap()
        .decode_from(0)
        .unwrap();
    let values: Vec<_> = read
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(values, ["s0", "s1", "s2", "s3", "s4", "s5", "s0"]);
}

#[test]
fn a_unit_with_a_bad_sequence_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.create_topic("t", 2, TopicConfig::default())
        .wait()
        .unwrap();
    let mut unit = weir_log::Unit::new();
    unit.append_records("t", 1, &[Record::value(1, "plain")]);
    unit.append_batches("t", 0, idempotent_batch(7, 0, 3, 1));
    assert!(log.commit(unit).wait().is_err());
    assert_eq!(log.bounds("t", 1).unwrap().high_watermark, 0);
    assert_eq!(log.bounds("t", 0).unwrap().high_watermark, 0);
}
