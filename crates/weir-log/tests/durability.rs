//! Every durability setting opens, appends, reads back at once, and keeps everything across a
//! clean close. (What survives a crash is in `crash.rs`.)

mod common;

use weir_log::{Durability, Log, LogOptions, Record, TopicConfig, Unit};

fn records(n: usize, i: usize) -> Vec<Record> {
    (0..n)
        .map(|k| Record::keyed(i as i64, format!("k{k}"), format!("append {i} record {k}")))
        .collect()
}

fn appends_read_back_and_survive_close(durability: Durability) {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = LogOptions {
        durability,
        ..common::test_options()
    };
    let log = Log::open_with(dir.path(), options.clone()).expect("open");
    log.create_topic("d", 2, TopicConfig::default())
        .wait()
        .expect("create");
    let mut want: [Vec<Record>; 2] = Default::default();
    for i in 0..30 {
        let p = (i % 2) as i32;
        let recs = records(1 + i % 4, i);
        let at = log.append_records("d", p, &recs).wait().expect("append");
        let hw = want[p as usize].len() as i64;
        assert_eq!(at.base_offset, hw, "{durability:?}: offset of append {i}");
        // Visible to readers as soon as it is acknowledged.
        let read = log
            .read("d", p, hw, 1 << 20)
            .expect("read")
            .decode_from(hw)
            .expect("decode");
        assert_eq!(
            read.len(),
            recs.len(),
            "{durability:?}: append {i} read back"
        );
        want[p as usize].extend(recs);
    }
    let mut u = Unit::new();
    u.commit_offset(
        "g",
        "d",
        0,
        weir_log::CommittedOffset {
            offset: 3,
            leader_epoch: -1,
            metadata: "m".into(),
            commit_timestamp: 9,
        },
    );
    log.commit(u).wait().expect("commit offset");
    log.sync().wait().expect("sync");
    // Appends after the sync are made durable by the close.
    log.append_records("d", 0, &records(2, 99))
        .wait()
        .expect("append after sync");
    want[0].extend(records(2, 99));
    drop(log);

    let log = Log::open_with(dir.path(), options).expect("reopen");
    for (p, want) in want.iter().enumerate() {
        let dump = common::dump_partition(&log, "d", p as i32);
        let got: Vec<_> = dump
            .records
            .iter()
            .map(|r| (r.key.clone(), r.value.clone(), r.timestamp))
            .collect();
        let want: Vec<_> = want
            .iter()
            .map(|r| (r.key.clone(), r.value.clone(), r.timestamp))
            .collect();
        assert_eq!(got, want, "{durability:?}: partition {p} after reopen");
    }
    let committed = log.committed_offset("g", "d", 0).expect("offset");
    assert_eq!(
        committed.map(|c| (c.offset, c.metadata)),
        Some((3, "m".into()))
    );
}

#[test]
fn interval_durability_appends_and_reopens() {
    appends_read_back_and_survive_close(Durability::Interval(20));
}

#[test]
fn no_fsync_durability_appends_and_reopens() {
    appends_read_back_and_survive_close(Durability::None);
}

#[test]
fn fsync_durability_appends_and_reopens() {
    appends_read_back_and_survive_close(Durability::Fsync);
}
