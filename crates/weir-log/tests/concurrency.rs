//! Concurrent appenders, atomic units committed beside each other, and readers waiting at the
//! end of a partition.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_log::{Appended, BatchError, CommittedOffset, Log, LogError, Record, TopicConfig, Unit};

const TASKS: usize = 8;
const APPENDS_PER_TASK: usize = 40;

fn open() -> (tempfile::TempDir, Log) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = Log::open_with(dir.path(), common::test_options()).expect("open");
    (dir, log)
}

/// Value of record `seq` of task `task`: both can be read back from it.
fn value(task: usize, seq: usize) -> String {
    format!("{task}:{seq}")
}

fn parse_value(v: &[u8]) -> (usize, usize) {
    let s = std::str::from_utf8(v).expect("utf-8 value");
    let (t, n) = s.split_once(':').expect("task:seq");
    (t.parse().expect("task"), n.parse().expect("seq"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_keep_offsets_dense_and_their_order() {
    let (_dir, log) = open();
    // 8 tasks on 3 partitions: three share partition 0, three partition 1, two partition 2.
    log.create_topic("shared", 3, TopicConfig::default())
        .await
        .expect("create");
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let log = log.clone();
            tokio::spawn(async move {
                let partition = (task % 3) as i32;
                let mut seq = 0;
                let mut landed: Vec<(Appended, usize, usize)> = Vec::new();
                for i in 0..APPENDS_PER_TASK {
                    let n = 1 + (task + i) % 5;
                    let records: Vec<_> = (seq..seq + n)
                        .map(|s| Record::value(i as i64, value(task, s)))
                        .collect();
                    let at = log
                        .append_records("shared", partition, &records)
                        .await
                        .expect("append");
                    assert_eq!(at.last_offset - at.base_offset + 1, n as i64);
                    landed.push((at, seq, n));
                    seq += n;
                }
                (task, partition, seq, landed)
            })
        })
        .collect();
    // A reader beside them sees only whole, dense snapshots, and a watermark that only grows.
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (log, done) = (log.clone(), done.clone());
        tokio::spawn(async move {
            let (mut last_hw, mut reads) = (0, 0);
            while !done.load(Ordering::Acquire) {
                let f = log.read("shared", 0, 0, usize::MAX).expect("read");
                assert!(f.high_watermark >= last_hw, "the high watermark went back");
                let mut next = 0;
                for b in common::split_batches(f.records) {
                    let h = weir_log::batch::validate(&b, usize::MAX).expect("whole batch");
                    assert_eq!(h.base_offset, next, "a hole or overlap in a snapshot");
                    next = h.last_offset() + 1;
                }
                assert_eq!(next, f.high_watermark, "a snapshot ends at its hw");
                last_hw = f.high_watermark;
                reads += 1;
                tokio::task::yield_now().await;
            }
            reads
        })
    };
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("task"));
    }
    done.store(true, Ordering::Release);
    assert!(reader.await.expect("reader") > 0, "the reader never read");
    let dumps: Vec<_> = (0..3)
        .map(|p| common::dump_partition(&log, "shared", p))
        .collect();
    let mut total = [0usize; 3];
    for (task, partition, sent, landed) in &results {
        let dump = &dumps[*partition as usize];
        // Where each append said it landed, its records are.
        let mut last_base = -1;
        for (at, seq, n) in landed {
            assert!(
                at.base_offset > last_base,
                "task {task}'s appends went backwards"
            );
            last_base = at.base_offset;
            for k in 0..*n {
                let r = &dump.records[(at.base_offset + k as i64) as usize];
                let got = parse_value(r.value.as_deref().expect("value"));
                assert_eq!(got, (*task, seq + k), "record at {}", r.offset);
            }
        }
        // In offset order, the task's records are exactly 0..sent, in order.
        let seqs: Vec<_> = dump
            .records
            .iter()
            .map(|r| parse_value(r.value.as_deref().expect("value")))
            .filter(|(t, _)| t == task)
            .map(|(_, s)| s)
            .collect();
        assert_eq!(
            seqs,
            (0..*sent).collect::<Vec<_>>(),
            "task {task}'s records"
        );
        total[*partition as usize] += sent;
    }
    for (p, dump) in dumps.iter().enumerate() {
        assert_eq!(dump.records.len(), total[p], "records in partition {p}");
        assert_eq!(dump.bounds.high_watermark, total[p] as i64);
    }
}

fn offset(o: i64) -> CommittedOffset {
    CommittedOffset {
        offset: o,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp: 0,
    }
}

/// A unit of two appends to two partitions, an offset commit and a state put, all tagged
/// `tag` so what lands can be told apart.
fn unit(tag: &str) -> Unit {
    let mut u = Unit::new();
    u.append_records("a", 0, &[Record::value(1, format!("{tag}-a0"))])
        .append_records(
            "a",
            1,
            &[
                Record::value(1, format!("{tag}-a1")),
                Record::value(2, format!("{tag}-a1")),
            ],
        )
        .commit_offset(tag, "a", 0, offset(7))
        .state_put("tbl", tag.as_bytes(), b"v");
    u
}

/// How far a unit tagged `tag` landed: (records in a-0 and a-1, offset, state).
fn landed(log: &Log, tag: &str) -> (usize, bool, bool) {
    let records = (0..2)
        .flat_map(|p| common::dump_partition(log, "a", p).records)
        .filter(|r| {
            r.value
                .as_deref()
                .is_some_and(|v| v.starts_with(tag.as_bytes()))
        })
        .count();
    let offset = log.committed_offset(tag, "a", 0).expect("offset").is_some();
    let state = log
        .state_get("tbl", tag.as_bytes())
        .expect("state")
        .is_some();
    (records, offset, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_commits_all_or_nothing() {
    let (_dir, log) = open();
    log.create_topic("a", 2, TopicConfig::default())
        .await
        .expect("create");
    log.create_topic("doomed", 1, TopicConfig::default())
        .await
        .expect("create");
    let at = log.commit(unit("first")).await.expect("good unit");
    assert_eq!(
        at,
        [
            Appended {
                base_offset: 0,
                last_offset: 0,
                duplicate: false
            },
            Appended {
                base_offset: 0,
                last_offset: 1,
                duplicate: false
            }
        ]
    );
    assert_eq!(landed(&log, "first"), (3, true, true));

    let mut bad_crc = weir_log::batch::encode(&[Record::value(1, "x")]);
    let end = bad_crc.len() - 1;
    bad_crc[end] ^= 1;
    // Each bad unit is the good one plus one defect. The defects are found on the caller's
    // thread (unknown partition, bad CRC) or in the writer (bad state table name, a topic
    // deleted after the unit was checked).
    type Check = fn(&LogError) -> bool;
    let cases: Vec<(&str, Unit, Check)> = vec![
        (
            "bad-partition",
            {
                let mut u = unit("bad-partition");
                u.append_records("a", 5, &[Record::value(1, "x")]);
                u
            },
            |e| matches!(e, LogError::UnknownPartition { partition: 5, .. }),
        ),
        (
            "bad-crc",
            {
                let mut u = unit("bad-crc");
                u.append_batches("a", 1, Bytes::from(bad_crc));
                u
            },
            |e| matches!(e, LogError::InvalidBatch(BatchError::CrcMismatch { .. })),
        ),
        (
            "bad-table",
            {
                let mut u = unit("bad-table");
                u.state_put("", b"k", b"v");
                u
            },
            |e| matches!(e, LogError::InvalidStateTable(_)),
        ),
        (
            "deleted-topic",
            {
                let mut u = unit("deleted-topic");
                u.append_records("doomed", 0, &[Record::value(1, "x")]);
                u
            },
            |e| matches!(e, LogError::UnknownTopic(t) if t == "doomed"),
        ),
    ];
    for (i, (tag, bad, refused)) in cases.into_iter().enumerate() {
        let before: Vec<_> = (0..2).map(|p| log.bounds("a", p).unwrap()).collect();
        let deleting = (tag == "deleted-topic").then(|| log.delete_topic("doomed"));
        // Queue the bad unit and a good one together, so they likely share a transaction.
        let good_tag = format!("good{i}");
        let bad = log.commit(bad);
        let good = log.commit(unit(&good_tag));
        let (bad, good) = tokio::join!(bad, good);
        if let Some(d) = deleting {
            d.await.expect("delete topic");
        }
        let err = bad.expect_err(tag);
        assert!(refused(&err), "{tag}: unexpected error {err:?}");
        good.unwrap_or_else(|e| panic!("{tag}: the good unit beside it failed: {e}"));
        assert_eq!(
            landed(&log, tag),
            (0, false, false),
            "{tag}: part of it landed"
        );
        assert_eq!(landed(&log, &good_tag), (3, true, true), "{tag}: good unit");
        for p in 0..2 {
            let hw = log.bounds("a", p).unwrap().high_watermark;
            assert_eq!(
                hw,
                before[p as usize].high_watermark + 1 + i64::from(p),
                "{tag}: a-{p}"
            );
        }
    }
}

/// A waker that counts its wake-ups.
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_reader_waiting_at_the_end_is_woken_by_an_append() {
    let (_dir, log) = open();
    log.create_topic("w", 1, TopicConfig::default())
        .wait()
        .expect("create");
    let records = [Record::value(1, "a"), Record::value(2, "b")];
    log.append_records("w", 0, &records).wait().expect("append");

    let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let waker = Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);

    // Below the high watermark it is ready at once.
    let mut below = Box::pin(log.wait_beyond("w", 0, 1));
    assert!(matches!(below.as_mut().poll(&mut cx), Poll::Ready(Ok(2))));

    // At the end it waits, and nothing wakes it while nothing is appended: no polling.
    let mut at_end = Box::pin(log.wait_beyond("w", 0, 2));
    assert!(at_end.as_mut().poll(&mut cx).is_pending());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(counter.0.load(Ordering::SeqCst), 0, "woken with no append");

    let appended = Instant::now();
    log.append_records("w", 0, &records[..1])
        .wait()
        .expect("append");
    // The commit publishes the new high watermark before it acknowledges the append.
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        1,
        "not woken by the append"
    );
    match at_end.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(hw)) => assert_eq!(hw, 3),
        other => panic!("woken but not ready: {other:?}"),
    }
    assert!(appended.elapsed() < Duration::from_secs(5));

    // A waiter on a topic deleted meanwhile is woken with an error.
    let mut orphan = Box::pin(log.wait_beyond("w", 0, 10));
    assert!(orphan.as_mut().poll(&mut cx).is_pending());
    log.delete_topic("w").wait().expect("delete");
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        2,
        "not woken by the delete"
    );
    assert!(matches!(
        orphan.as_mut().poll(&mut cx),
        Poll::Ready(Err(LogError::UnknownTopic(_)))
    ));
    let mut unknown = Box::pin(log.wait_beyond("w", 0, 0));
    assert!(matches!(
        unknown.as_mut().poll(&mut cx),
        Poll::Ready(Err(LogError::UnknownTopic(_)))
    ));
}
