//! Parallel pipelines (one task per input partition, keys routed through a repartition
//! topic) against a brute-force reference and against the same pipeline run as one task:
//! random keyed events over several partitions, each partition out of order within the
//! source's bound, windowed by tumbling and hopping windows.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use weir_log::{Log, Record, TopicConfig};
use weir_stream::{App, Hopping, Pipeline, TestDriver, Topic, Tumbling, Windowed};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Event {
    key: u8,
    value: i64,
    at: i64,
}

const BOUND: i64 = 100;
const SIZE: i64 = 200;
const SLIDE: i64 = 50;

/// Events per partition, in the order they are appended.
type Partitions = Vec<Vec<Event>>;

fn partitions() -> impl Strategy<Value = Partitions> {
    (2usize..=3).prop_flat_map(|n| {
        let one = prop::collection::vec((0u8..6, -50i64..50, 0i64..40, 0..=BOUND), 1..200)
            .prop_map(|steps| {
                let mut base = 0;
                steps
                    .into_iter()
                    .map(|(key, value, step, back)| {
                        base += step;
                        // Never more than BOUND behind the partition's largest time so far.
                        Event {
                            key,
                            value,
                            at: base - back,
                        }
                    })
                    .collect::<Vec<_>>()
            });
        prop::collection::vec(one, n)
    })
}

fn tumbling_count(p: &Pipeline, input: &str, out: &str, repartition: bool) {
    let keyed = p.source::<Event>(source(input)).key_by(|e: &Event| e.key);
    let keyed = if repartition {
        keyed.repartition()
    } else {
        keyed
    };
    keyed
        .window(Tumbling::every(ms(SIZE)))
        .count()
        .sink(Topic::json(out));
}

fn hopping_sum(p: &Pipeline, input: &str, out: &str, repartition: bool) {
    let keyed = p
        .source::<Event>(source(input))
        .filter(|e| e.value != 0)
        .key_by(|e: &Event| e.key);
    let keyed = if repartition {
        keyed.repartition()
    } else {
        keyed
    };
    keyed
        .window(Hopping::of(ms(SIZE), ms(SLIDE)))
        .sum(|e| e.value)
        .sink(Topic::json(out));
}

fn source(topic: &str) -> Topic<Event> {
    Topic::json(topic)
        .event_time(|e: &Event| e.at)
        .out_of_orderness(ms(BOUND))
}

fn ms(n: i64) -> Duration {
    Duration::from_millis(n as u64)
}

/// The final watermark: the smallest of the partitions' largest times less the bound.
fn final_watermark(parts: &[Vec<Event>]) -> i64 {
    parts
        .iter()
        .map(|p| p.iter().map(|e| e.at).max().unwrap() - BOUND)
        .min()
        .unwrap()
}

/// (key, start) -> value of every window closed by the final watermark. No event is late:
/// each partition keeps within the bound, and the watermark never passes a partition's own.
fn reference(parts: &[Vec<Event>], size: i64, slide: i64, sum: bool) -> Vec<Windowed<u8, i64>> {
    let watermark = final_watermark(parts);
    let mut windows: BTreeMap<(u8, i64), (i64, bool)> = BTreeMap::new();
    for e in parts.iter().flatten() {
        if sum && e.value == 0 {
            continue;
        }
        let mut start = e.at.div_euclid(slide) * slide;
        while start + size > e.at {
            if start + size <= watermark {
                let w = windows.entry((e.key, start)).or_default();
                w.0 += if sum { e.value } else { 1 };
                w.1 = true;
            }
            start -= slide;
        }
    }
    windows
        .into_iter()
        .filter(|(_, (_, seen))| *seen)
        .map(|((key, start), (value, _))| Windowed {
            key,
            start,
            end: start + size,
            value,
        })
        .collect()
}

fn read_sorted(log: &Log, topic: &str) -> Vec<Windowed<u8, i64>> {
    let mut out = common::read_json(log, topic);
    out.sort_by_key(|w: &Windowed<u8, i64>| (w.key, w.start));
    out
}

/// Appends `parts` to topic `in`, which it creates (kept forever) if it is missing.
async fn append(log: &Log, parts: &[Vec<Event>]) {
    if log.topic("in").is_none() {
        let keep = TopicConfig {
            retention_ms: -1,
            ..TopicConfig::default()
        };
        let n = parts.len() as i32;
        log.create_topic("in", n, keep).await.unwrap();
    }
    for (p, events) in parts.iter().enumerate() {
        let recs: Vec<Record> = events
            .iter()
            .map(|e| Record::value(e.at, serde_json::to_vec(e).unwrap()))
            .collect();
        if !recs.is_empty() {
            log.append_records("in", p as i32, &recs).await.unwrap();
        }
    }
}

async fn run(parts: &Partitions) {
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(dir.path()).unwrap();
    let n = parts.len() as i32;
    append(app.log(), parts).await;
    let metrics = Arc::new(Mutex::new(Vec::new()));
    let seen = metrics.clone();
    app.parallel("tumbling", move |p| {
        seen.lock().unwrap().push(p.metrics());
        tumbling_count(p, "in", "tumbling", true);
    });
    app.parallel("hopping", |p| hopping_sum(p, "in", "hopping", true));
    tumbling_count(&app.pipeline("tumbling-1"), "in", "tumbling-1", false);
    hopping_sum(&app.pipeline("hopping-1"), "in", "hopping-1", false);
    app.run_to_end().await.unwrap();

    let log = app.log();
    let tumbling = read_sorted(log, "tumbling");
    assert_eq!(tumbling, reference(parts, SIZE, SIZE, false));
    assert_eq!(tumbling, read_sorted(log, "tumbling-1"));
    // The tasks count together; what crosses the repartition topic is not counted again.
    let metrics = metrics.lock().unwrap();
    assert!(metrics.iter().all(|m| Arc::ptr_eq(m, &metrics[0])));
    let counted = metrics[0].snapshot();
    let events = parts.iter().map(Vec::len).sum::<usize>() as u64;
    assert_eq!(
        (counted.records_in, counted.records_out),
        (events, tumbling.len() as u64)
    );
    let hopping = read_sorted(log, "hopping");
    assert_eq!(hopping, reference(parts, SIZE, SLIDE, true));
    assert_eq!(hopping, read_sorted(log, "hopping-1"));

    // One task per partition, each reading its own partition of the repartition topic,
    // kept whatever the event times.
    let internal = log.topic("tumbling.repartition-1").unwrap();
    assert_eq!((internal.partitions, internal.config.retention_ms), (n, -1));
    for (p, events) in parts.iter().enumerate() {
        let p = p as i32;
        let committed = log.committed_offset("tumbling", "in", p).unwrap();
        assert_eq!(committed.unwrap().offset, events.len() as i64);
        let end = log
            .bounds("tumbling.repartition-1", p)
            .unwrap()
            .high_watermark;
        let read = log.committed_offset("tumbling", "tumbling.repartition-1", p);
        assert_eq!(read.unwrap().unwrap().offset, end);
        // What was read is purged.
        let start = log.bounds("tumbling.repartition-1", p).unwrap().log_start;
        assert_eq!(start, end);
    }
    assert!(log.topic("tumbling-1.repartition-1").is_none());

    // The test driver runs the same definition as one task.
    let mut driver = TestDriver::new();
    driver.parallel("driven", |p| tumbling_count(p, "in", "driven", true));
    for e in &parts[0] {
        driver.pipe_json("in", e.at, e).unwrap();
    }
    let mut driven: Vec<Windowed<u8, i64>> = driver.read_json("driven");
    driven.sort_by_key(|w| (w.key, w.start));
    assert_eq!(driven, reference(&parts[..1], SIZE, SIZE, false));
}

/// Two batch runs, half of each partition's events in each: the second goes on from the
/// first's state and watermarks, and the two together write what one run would.
async fn restart(parts: &Partitions) {
    let dir = tempfile::tempdir().unwrap();
    let halves: (Partitions, Partitions) = parts
        .iter()
        .map(|p| {
            let (a, b) = p.split_at(p.len() / 2);
            (a.to_vec(), b.to_vec())
        })
        .unzip();
    for half in [halves.0, halves.1] {
        let app = App::open(dir.path()).unwrap();
        append(app.log(), &half).await;
        app.parallel("tumbling", |p| tumbling_count(p, "in", "tumbling", true));
        app.run_to_end().await.unwrap();
    }
    let log = Log::open(dir.path()).unwrap();
    assert_eq!(
        read_sorted(&log, "tumbling"),
        reference(parts, SIZE, SIZE, false)
    );
}

/// Runs `f` on a two-thread runtime (a proptest case is a plain function).
fn on_runtime(f: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn parallel_windows_go_on_across_restarts(parts in partitions()) {
        on_runtime(restart(&parts));
    }

    #[test]
    fn parallel_windows_equal_the_reference_and_a_single_task_run(parts in partitions()) {
        on_runtime(run(&parts));
    }
}

/// The error of a batch run of the parallel pipeline `build` over an empty two-partition
/// topic `in`.
async fn refusal(build: impl Fn(&Pipeline) + Send + Sync + 'static) -> String {
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(dir.path()).unwrap();
    app.log()
        .create_topic("in", 2, TopicConfig::default())
        .await
        .unwrap();
    app.parallel("refused", build);
    app.run_to_end().await.unwrap_err().to_string()
}

#[tokio::test]
async fn a_second_repartition_is_refused_in_a_parallel_pipeline() {
    let err = refusal(|p| {
        p.source::<Event>(source("in"))
            .key_by(|e: &Event| e.key)
            .repartition()
            .window(Tumbling::every(ms(SIZE)))
            .count()
            .key_by(|w: &Windowed<u8, u64>| w.key % 2)
            .repartition()
            .window(Tumbling::every(ms(2 * SIZE)))
            .sum(|w| w.value as i64)
            .sink(Topic::json("out"));
    })
    .await;
    assert!(err.contains("repartitions twice"), "{err}");
}

#[tokio::test]
async fn a_window_after_key_by_without_repartition_is_refused_in_a_parallel_pipeline() {
    let err = refusal(|p| tumbling_count(p, "in", "out", false)).await;
    assert!(err.contains(".repartition()"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_partition_stops_holding_back_the_other_tasks_windows() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(dir.path()).unwrap();
    let keep = TopicConfig {
        retention_ms: -1,
        ..TopicConfig::default()
    };
    app.log().create_topic("in", 2, keep).await.unwrap();
    // Partition 1 stays empty: its task tells the others it is idle after the timeout.
    let events: Vec<Event> = (0..100)
        .map(|i| Event {
            key: (i % 3) as u8,
            value: 1,
            at: i * 10,
        })
        .collect();
    let recs: Vec<Record> = (events.iter())
        .map(|e| Record::value(e.at, serde_json::to_vec(e).unwrap()))
        .collect();
    app.log().append_records("in", 0, &recs).await.unwrap();
    app.parallel("idle", |p| {
        tumbling_count(&p.clone().idle_timeout(ms(50)), "in", "idle", true);
    });
    let want = reference(&[events], SIZE, SIZE, false);
    assert!(!want.is_empty());
    let (log, expected) = (app.log().clone(), want.clone());
    let closed = async move {
        while log.topic("idle").is_none() || read_sorted(&log, "idle") != expected {
            tokio::time::sleep(ms(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), app.run_until(closed))
        .await
        .expect("the windows never closed: the idle partition's task held them back")
        .unwrap();
    assert_eq!(read_sorted(app.log(), "idle"), want);
}
