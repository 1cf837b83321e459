//! Model-based property test: random sequences of log operations run against the real log and
//! against a plain in-memory model; every answer of the log must equal the model's.
//!
//! Failures are saved next to this file, in `model.proptest-regressions`, and replayed first.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use weir_log::batch::{self, StoredRecord};
use weir_log::{
    Appended, CommittedOffset, Durability, Log, LogError, LogOptions, PartitionBounds, Record,
    TopicConfig, Unit,
};

/// Topic names; the last is often not created, to exercise unknown topics.
const TOPICS: [&str; 3] = ["t0", "t1", "t2"];
const GROUPS: [&str; 2] = ["g0", "g1"];
/// Partition numbers tried: topics have 1 or 2, so 2 is always unknown.
const PARTITIONS: i32 = 3;
/// Record timestamps are `T0 + 0..10_000`; retention runs at `T0 + 0..15_000`.
const T0: i64 = 1_000_000;

#[derive(Debug, Clone)]
enum Op {
    Create {
        topic: usize,
        partitions: i32,
        retention_ms: i64,
        retention_bytes: i64,
    },
    Append {
        topic: usize,
        partition: i32,
        records: Vec<Record>,
    },
    /// Reads at an offset picked by `at` from just below the log start to just above the hw.
    Read {
        topic: usize,
        partition: i32,
        at: u16,
        max_bytes: usize,
    },
    CommitOffset {
        group: usize,
        topic: usize,
        partition: i32,
        offset: i64,
        metadata: String,
    },
    FetchOffset {
        group: usize,
        topic: usize,
        partition: i32,
    },
    Retention {
        now_ms: i64,
    },
    /// Deletes records before an offset picked by `at` (or all, when `at` is 0).
    DeleteRecords {
        topic: usize,
        partition: i32,
        at: u16,
    },
    DeleteTopic {
        topic: usize,
    },
    /// One atomic unit: appends of one or more batches each, and maybe an offset commit.
    Unit {
        appends: Vec<(usize, i32, Vec<Vec<Record>>)>,
        offset: Option<(usize, usize, i32, i64)>,
    },
    OffsetForTimestamp {
        topic: usize,
        partition: i32,
        timestamp: i64,
    },
    DeleteGroupOffsets {
        group: usize,
    },
    ListGroupOffsets {
        group: usize,
    },
    Reopen,
}

fn record() -> impl Strategy<Value = Record> {
    (
        proptest::option::weighted(0.7, vec(any::<u8>(), 0..8)),
        proptest::option::weighted(0.9, vec(any::<u8>(), 0..40)),
        vec((0..2u8, proptest::option::of(vec(any::<u8>(), 0..4))), 0..2),
        0..10_000i64,
    )
        .prop_map(|(key, value, headers, ts)| Record {
            key: key.map(Bytes::from),
            value: value.map(Bytes::from),
            headers: headers
                .into_iter()
                .map(|(h, v)| (format!("h{h}"), v.map(Bytes::from)))
                .collect(),
            timestamp: T0 + ts,
        })
}

fn topic() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0..2usize, 1 => Just(2usize)]
}

fn partition() -> impl Strategy<Value = i32> {
    prop_oneof![6 => 0..2i32, 1 => 0..PARTITIONS]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (
            0..TOPICS.len(),
            1..=2i32,
            prop_oneof![Just(-1i64), 0..8_000i64],
            prop_oneof![Just(-1i64), 0..600i64],
        )
            .prop_map(|(topic, partitions, retention_ms, retention_bytes)| Op::Create {
                topic,
                partitions,
                retention_ms,
                retention_bytes,
            }),
        8 => (topic(), partition(), vec(record(), 1..6)).prop_map(|(topic, partition, records)| {
            Op::Append {
                topic,
                partition,
                records,
            }
        }),
        6 => (topic(), partition(), any::<u16>(), 1..400usize).prop_map(
            |(topic, partition, at, max_bytes)| Op::Read {
                topic,
                partition,
                at,
                max_bytes,
            }
        ),
        2 => (0..GROUPS.len(), topic(), partition(), -1..50i64, "[a-z]{0,3}").prop_map(
            |(group, topic, partition, offset, metadata)| Op::CommitOffset {
                group,
                topic,
                partition,
                offset,
                metadata,
            }
        ),
        2 => (0..GROUPS.len(), topic(), partition()).prop_map(|(group, topic, partition)| {
            Op::FetchOffset {
                group,
                topic,
                partition,
            }
        }),
        1 => (0..15_000i64).prop_map(|t| Op::Retention { now_ms: T0 + t }),
        1 => (topic(), partition(), any::<u16>()).prop_map(|(topic, partition, at)| {
            Op::DeleteRecords {
                topic,
                partition,
                at,
            }
        }),
        1 => topic().prop_map(|topic| Op::DeleteTopic { topic }),
        3 => (
            vec((topic(), partition(), vec(vec(record(), 1..4), 1..3)), 1..3),
            proptest::option::of((0..GROUPS.len(), topic(), partition(), 0..50i64)),
        )
            .prop_map(|(appends, offset)| Op::Unit { appends, offset }),
        1 => (topic(), partition(), 0..11_000i64).prop_map(|(topic, partition, t)| {
            Op::OffsetForTimestamp {
                topic,
                partition,
                timestamp: T0 + t,
            }
        }),
        1 => (0..GROUPS.len()).prop_map(|group| Op::DeleteGroupOffsets { group }),
        1 => (0..GROUPS.len()).prop_map(|group| Op::ListGroupOffsets { group }),
        1 => Just(Op::Reopen),
    ]
}

fn durability() -> impl Strategy<Value = Durability> {
    prop_oneof![
        3 => Just(Durability::None),
        1 => Just(Durability::Interval(2)),
        1 => Just(Durability::Fsync),
    ]
}

/// A stored batch as the model keeps it: its records and its bytes with the base offset set.
#[derive(Debug, Clone)]
struct ModelBatch {
    base: i64,
    records: Vec<Record>,
    bytes: Vec<u8>,
    max_timestamp: i64,
}

impl ModelBatch {
    fn last(&self) -> i64 {
        self.base + self.records.len() as i64 - 1
    }
}

#[derive(Debug, Clone, Default)]
struct ModelPartition {
    log_start: i64,
    next: i64,
    batches: VecDeque<ModelBatch>,
}

impl ModelPartition {
    fn bytes(&self) -> u64 {
        self.batches.iter().map(|b| b.bytes.len() as u64).sum()
    }

    fn bounds(&self) -> PartitionBounds {
        PartitionBounds {
            log_start: self.log_start,
            high_watermark: self.next,
            bytes: self.bytes(),
        }
    }

    /// Appends one batch as the log does; returns where it landed.
    fn push(&mut self, records: Vec<Record>) -> Appended {
        let base = self.next;
        let last = base + records.len() as i64 - 1;
        let mut bytes = batch::encode(&records);
        batch::set_base_offset(&mut bytes, base);
        let max_timestamp = records.iter().map(|r| r.timestamp).max().unwrap_or(0);
        self.batches.push_back(ModelBatch {
            base,
            records,
            bytes,
            max_timestamp,
        });
        self.next = last + 1;
        Appended {
            base_offset: base,
            last_offset: last,
            duplicate: false,
        }
    }

    /// Drops batches from the front while `doomed(bytes left, batch)`; the log start follows.
    fn truncate_front(&mut self, mut doomed: impl FnMut(u64, &ModelBatch) -> bool) {
        let mut left = self.bytes();
        while let Some(front) = self.batches.front() {
            if !doomed(left, front) {
                break;
            }
            left -= front.bytes.len() as u64;
            self.batches.pop_front();
        }
        let start = self.batches.front().map_or(self.next, |b| b.base);
        self.log_start = self.log_start.max(start);
    }
}

#[derive(Debug, Clone)]
struct ModelTopic {
    config: TopicConfig,
    parts: Vec<ModelPartition>,
}

/// The plain model: partitions as lists of batches, committed offsets as a map.
#[derive(Debug, Default)]
struct Model {
    topics: BTreeMap<String, ModelTopic>,
    offsets: HashMap<(String, String, i32), CommittedOffset>,
}

/// What the model expects of an operation on one partition.
enum Target<'a> {
    Part(&'a mut ModelPartition),
    UnknownTopic,
    UnknownPartition,
}

impl Model {
    fn part(&mut self, topic: &str, partition: i32) -> Target<'_> {
        match self.topics.get_mut(topic) {
            None => Target::UnknownTopic,
            Some(t) => match usize::try_from(partition)
                .ok()
                .and_then(|p| t.parts.get_mut(p))
            {
                Some(p) => Target::Part(p),
                None => Target::UnknownPartition,
            },
        }
    }
}

fn assert_unknown<T: std::fmt::Debug>(got: Result<T, LogError>, want: &Target<'_>) {
    match (want, got) {
        (Target::UnknownTopic, Err(LogError::UnknownTopic(_))) => {}
        (Target::UnknownPartition, Err(LogError::UnknownPartition { .. })) => {}
        (Target::UnknownTopic, got) => panic!("expected UnknownTopic, got {got:?}"),
        (Target::UnknownPartition, got) => panic!("expected UnknownPartition, got {got:?}"),
        (Target::Part(_), _) => unreachable!("only called for unknown targets"),
    }
}

fn options(durability: Durability) -> LogOptions {
    LogOptions {
        durability,
        ..common::test_options()
    }
}

/// Picks an offset from one below the log start to one above the high watermark.
fn pick_offset(p: &ModelPartition, at: u16) -> i64 {
    let span = p.next - p.log_start + 3;
    p.log_start - 1 + i64::from(at) % span
}

fn check_read(log: &Log, topic: &str, partition: i32, p: &ModelPartition, at: u16, max: usize) {
    let offset = pick_offset(p, at);
    let got = log.read(topic, partition, offset, max);
    if offset < p.log_start || offset > p.next {
        match got {
            Err(LogError::OffsetOutOfRange {
                offset: o,
                log_start,
                high_watermark,
                ..
            }) => assert_eq!(
                (o, log_start, high_watermark),
                (offset, p.log_start, p.next)
            ),
            other => {
                panic!("read at {offset} outside {p:?}: expected OffsetOutOfRange, got {other:?}")
            }
        }
        return;
    }
    let got = got.unwrap_or_else(|e| panic!("read at {offset}: {e}"));
    assert_eq!(
        (got.log_start, got.high_watermark),
        (p.log_start, p.next),
        "bounds of a read"
    );
    // Whole batches from the one holding `offset`; at least one, then while they fit.
    let mut want = Vec::new();
    let mut count = 0;
    for b in p.batches.iter().skip_while(|b| b.last() < offset) {
        if count > 0 && want.len() + b.bytes.len() > max {
            break;
        }
        want.extend_from_slice(&b.bytes);
        count += 1;
        if want.len() >= max {
            break;
        }
    }
    assert_eq!(
        got.batch_count, count,
        "batch count of a read at {offset} max {max}"
    );
    assert_eq!(got.records, want, "bytes of a read at {offset} max {max}");
    let records = got.decode_from(offset).expect("stored batches decode");
    let want: Vec<StoredRecord> = p
        .batches
        .iter()
        .skip_while(|b| b.last() < offset)
        .take(count)
        .flat_map(|b| {
            b.records.iter().enumerate().map(|(i, r)| StoredRecord {
                offset: b.base + i as i64,
                timestamp: r.timestamp,
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r.headers.clone(),
            })
        })
        .filter(|r| r.offset >= offset)
        .collect();
    assert_eq!(records, want, "records of a read at {offset} max {max}");
}

/// Topics, configs and every partition's bounds equal the model's.
fn check_bounds(log: &Log, model: &Model) {
    let topics = log.topics();
    let names: Vec<_> = topics.iter().map(|t| t.name.as_str()).collect();
    let want: Vec<_> = model.topics.keys().map(String::as_str).collect();
    assert_eq!(names, want, "topics");
    for meta in topics {
        let t = &model.topics[&meta.name];
        assert_eq!(meta.config, t.config, "config of {}", meta.name);
        assert_eq!(meta.partitions as usize, t.parts.len());
        for (i, p) in t.parts.iter().enumerate() {
            let got = log.bounds(&meta.name, i as i32).expect("bounds");
            assert_eq!(got, p.bounds(), "bounds of {}-{i}", meta.name);
        }
    }
}

fn run(durability: Durability, ops: Vec<Op>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = Log::open_with(dir.path(), options(durability)).expect("open");
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Create {
                topic,
                partitions,
                retention_ms,
                retention_bytes,
            } => {
                let name = TOPICS[topic];
                let config = TopicConfig {
                    retention_ms,
                    retention_bytes,
                    ..TopicConfig::default()
                };
                let got = log.create_topic(name, partitions, config.clone()).wait();
                if model.topics.contains_key(name) {
                    assert!(matches!(got, Err(LogError::TopicExists(_))), "{got:?}");
                } else {
                    let meta = got.expect("create topic");
                    assert_eq!((meta.partitions, &meta.config), (partitions, &config));
                    let parts = vec![ModelPartition::default(); partitions as usize];
                    model
                        .topics
                        .insert(name.to_string(), ModelTopic { config, parts });
                }
            }
            Op::Append {
                topic,
                partition,
                records,
            } => {
                let got = log
                    .append_records(TOPICS[topic], partition, &records)
                    .wait();
                match model.part(TOPICS[topic], partition) {
                    Target::Part(p) => assert_eq!(got.expect("append"), p.push(records)),
                    unknown => assert_unknown(got, &unknown),
                }
            }
            Op::Read {
                topic,
                partition,
                at,
                max_bytes,
            } => match model.part(TOPICS[topic], partition) {
                Target::Part(p) => check_read(&log, TOPICS[topic], partition, p, at, max_bytes),
                unknown => {
                    assert_unknown(log.read(TOPICS[topic], partition, 0, max_bytes), &unknown)
                }
            },
            Op::CommitOffset {
                group,
                topic,
                partition,
                offset,
                metadata,
            } => {
                let committed = CommittedOffset {
                    offset,
                    leader_epoch: -1,
                    metadata,
                    commit_timestamp: T0,
                };
                let mut unit = Unit::new();
                unit.commit_offset(GROUPS[group], TOPICS[topic], partition, committed.clone());
                let appended = log.commit(unit).wait().expect("commit offset");
                assert!(appended.is_empty());
                model.offsets.insert(
                    (GROUPS[group].into(), TOPICS[topic].into(), partition),
                    committed,
                );
            }
            Op::FetchOffset {
                group,
                topic,
                partition,
            } => {
                let got = log
                    .committed_offset(GROUPS[group], TOPICS[topic], partition)
                    .expect("fetch offset");
                let key = (
                    GROUPS[group].to_string(),
                    TOPICS[topic].to_string(),
                    partition,
                );
                assert_eq!(got.as_ref(), model.offsets.get(&key), "offset of {key:?}");
            }
            Op::Retention { now_ms } => {
                let got = log.enforce_retention(now_ms).wait().expect("retention");
                let mut shrunk = 0;
                for t in model.topics.values_mut() {
                    let (ms, max_bytes) = (t.config.retention_ms, t.config.retention_bytes);
                    if ms < 0 && max_bytes < 0 {
                        continue;
                    }
                    let cutoff = if ms < 0 { i64::MIN } else { now_ms - ms };
                    for p in &mut t.parts {
                        let before = p.log_start;
                        p.truncate_front(|left, b| {
                            b.max_timestamp < cutoff || (max_bytes >= 0 && left > max_bytes as u64)
                        });
                        shrunk += u64::from(p.log_start > before);
                    }
                }
                assert_eq!(got, shrunk, "partitions shrunk by retention at {now_ms}");
            }
            Op::DeleteRecords {
                topic,
                partition,
                at,
            } => match model.part(TOPICS[topic], partition) {
                Target::Part(p) => {
                    let before = if at == 0 { -1 } else { pick_offset(p, at) };
                    let got = log.delete_records(TOPICS[topic], partition, before).wait();
                    let before = if before < 0 { p.next } else { before };
                    if before > p.next {
                        assert!(
                            matches!(got, Err(LogError::OffsetOutOfRange { .. })),
                            "delete before {before} above hw {}: {got:?}",
                            p.next
                        );
                    } else {
                        p.truncate_front(|_, b| b.last() < before);
                        assert_eq!(got.expect("delete records"), p.log_start);
                    }
                }
                unknown => {
                    let got = log.delete_records(TOPICS[topic], partition, -1).wait();
                    assert_unknown(got, &unknown);
                }
            },
            Op::DeleteTopic { topic } => {
                let got = log.delete_topic(TOPICS[topic]).wait();
                if model.topics.remove(TOPICS[topic]).is_some() {
                    got.expect("delete topic");
                } else {
                    assert!(matches!(got, Err(LogError::UnknownTopic(_))), "{got:?}");
                }
            }
            Op::Unit { appends, offset } => {
                let mut unit = Unit::new();
                for (topic, partition, batches) in &appends {
                    let payload: Vec<u8> = batches.iter().flat_map(|b| batch::encode(b)).collect();
                    unit.append_batches(TOPICS[*topic], *partition, Bytes::from(payload));
                }
                let committed = offset.map(|(group, topic, partition, o)| {
                    let c = CommittedOffset {
                        offset: o,
                        leader_epoch: 3,
                        metadata: String::new(),
                        commit_timestamp: T0,
                    };
                    unit.commit_offset(GROUPS[group], TOPICS[topic], partition, c.clone());
                    (
                        (
                            GROUPS[group].to_string(),
                            TOPICS[topic].to_string(),
                            partition,
                        ),
                        c,
                    )
                });
                let got = log.commit(unit).wait();
                // The first append to a missing topic or partition refuses the whole unit.
                let missing =
                    appends
                        .iter()
                        .find_map(|(t, p, _)| match model.part(TOPICS[*t], *p) {
                            Target::Part(_) => None,
                            Target::UnknownTopic => Some(Target::UnknownTopic),
                            Target::UnknownPartition => Some(Target::UnknownPartition),
                        });
                if let Some(missing) = missing {
                    assert_unknown(got, &missing);
                } else {
                    let mut want = Vec::new();
                    for (topic, partition, batches) in appends {
                        let Target::Part(p) = model.part(TOPICS[topic], partition) else {
                            unreachable!("checked above")
                        };
                        let landed: Vec<_> = batches.into_iter().map(|b| p.push(b)).collect();
                        want.push(Appended {
                            base_offset: landed[0].base_offset,
                            last_offset: landed[landed.len() - 1].last_offset,
                            duplicate: false,
                        });
                    }
                    assert_eq!(got.expect("unit"), want, "where the unit's appends landed");
                    if let Some((key, c)) = committed {
                        model.offsets.insert(key, c);
                    }
                }
            }
            Op::OffsetForTimestamp {
                topic,
                partition,
                timestamp,
            } => {
                let got = log.offset_for_timestamp(TOPICS[topic], partition, timestamp);
                match model.part(TOPICS[topic], partition) {
                    Target::Part(p) => {
                        let want = p
                            .batches
                            .iter()
                            .find(|b| b.max_timestamp >= timestamp)
                            .map(|b| (b.base, b.max_timestamp));
                        assert_eq!(got.expect("offset for timestamp"), want, "at {timestamp}");
                    }
                    unknown => assert_unknown(got, &unknown),
                }
            }
            Op::DeleteGroupOffsets { group } => {
                let mut unit = Unit::new();
                unit.delete_group_offsets(GROUPS[group]);
                log.commit(unit).wait().expect("delete group offsets");
                model.offsets.retain(|(g, _, _), _| g != GROUPS[group]);
            }
            Op::ListGroupOffsets { group } => {
                let got = log.group_offsets(GROUPS[group]).expect("group offsets");
                // Sorted as stored: by topic, then partition as an unsigned number.
                let mut want: Vec<_> = model
                    .offsets
                    .iter()
                    .filter(|((g, _, _), _)| g == GROUPS[group])
                    .map(|((_, t, p), c)| (t.clone(), *p, c.clone()))
                    .collect();
                want.sort_by_key(|(t, p, _)| (t.clone(), *p as u32));
                assert_eq!(got, want, "offsets of {}", GROUPS[group]);
                let groups: BTreeSet<_> = model.offsets.keys().map(|(g, _, _)| g.clone()).collect();
                let got = log.groups_with_offsets().expect("groups");
                assert_eq!(got, groups.into_iter().collect::<Vec<_>>());
            }
            Op::Reopen => {
                drop(log);
                log = Log::open_with(dir.path(), options(durability)).expect("reopen");
            }
        }
        check_bounds(&log, &model);
    }
    // Everything the model holds is stored, whole, dense and with the model's content.
    for (name, t) in &model.topics {
        for (i, p) in t.parts.iter().enumerate() {
            let dump = common::dump_partition(&log, name, i as i32);
            let want: usize = p.batches.iter().map(|b| b.records.len()).sum();
            assert_eq!(dump.records.len(), want, "records of {name}-{i}");
            check_read(&log, name, i as i32, p, 1, usize::MAX);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 160,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_matches_model(durability in durability(), ops in vec(op(), 1..60)) {
        run(durability, ops);
    }
}
