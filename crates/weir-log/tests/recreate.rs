//! A topic deleted and created again with fewer partitions while an append to one of its old
//! partitions is in the same commit group: the writer publishes each change to the right
//! incarnation of the topic and stays up.

use weir_log::{Log, Record, TopicConfig};

#[test]
fn recreating_a_topic_with_fewer_partitions_in_one_group_keeps_the_log_serving() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.create_topic("busy", 1, TopicConfig::default())
        .wait()
        .unwrap();
    log.create_topic("t", 4, TopicConfig::default())
        .wait()
        .unwrap();
    for round in 0..20 {
        // Keep the writer busy so the next three requests queue into one group.
        let busy: Vec<_> = (0..200)
            .map(|_| log.append_records("busy", 0, &[Record::value(1, vec![0u8; 1000])]))
            .collect();
        let appended = log.append_records("t", 3, &[Record::value(1, "x")]);
        let deleted = log.delete_topic("t");
        let created = log.create_topic("t", 1, TopicConfig::default());
        appended
            .wait()
            .unwrap_or_else(|e| panic!("round {round}: the append failed: {e}"));
        deleted.wait().unwrap();
        assert_eq!(created.wait().unwrap().partitions, 1, "round {round}");
        for b in busy {
            b.wait().unwrap();
        }
        // The new incarnation serves, and the old one's bounds did not leak into it.
        assert_eq!(
            log.bounds("t", 0).unwrap().high_watermark,
            0,
            "round {round}"
        );
        log.append_records("t", 0, &[Record::value(2, "y")])
            .wait()
            .unwrap();
        log.delete_topic("t").wait().unwrap();
        log.create_topic("t", 4, TopicConfig::default())
            .wait()
            .unwrap();
    }
}
