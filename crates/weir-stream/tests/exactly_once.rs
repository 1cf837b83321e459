//! Exactly-once under crashes: a child process (this test binary, re-invoked) runs a
//! counting pipeline over 200,000 records; the parent SIGKILLs it at random moments, at
//! least 20 times, restarting it each time; the final output must equal what an
//! uninterrupted run writes, record for record. If a child gets through all input before
//! its kill, the parent appends 30,000 more records so that later kills still land mid-run.
//! The same again with the input in two partitions and the pipeline run as two tasks that
//! exchange keys through a repartition topic.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir_log::{Log, Record, TopicConfig};
use weir_stream::{App, Pipeline, Topic, Tumbling, Windowed};

const CHILD_ENV: &str = "WEIR_STREAM_CRASH_CHILD_DIR";
/// Set in the child to the input's partition count; above 1 it runs the parallel pipeline.
const PARTITIONS_ENV: &str = "WEIR_STREAM_CRASH_CHILD_PARTITIONS";
const INPUTS: i64 = 200_000;
const KEYS: i64 = 97;
/// Event time step between inputs, in ms.
const STEP: i64 = 2;
const WINDOW: i64 = 1_000;

/// The pipeline under test (the child runs it): one task, or one per input partition.
fn define(app: &App, partitions: i32) {
    let build = |p: &Pipeline| {
        p.clone()
            .checkpoint_records(1_000)
            .checkpoint_interval(Duration::from_millis(20))
            .source::<i64>(Topic::json("in"))
            .key_by(|k| *k)
            .repartition()
            .window(Tumbling::every(Duration::from_millis(WINDOW as u64)))
            .count()
            .sink(Topic::json("out"));
    };
    if partitions > 1 {
        app.parallel("counter", build);
    } else {
        build(&app.pipeline("counter"));
    }
}

/// Not a test on its own: the child process the crash test starts and kills.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let app = App::open(&dir).unwrap();
        let partitions = std::env::var(PARTITIONS_ENV).map_or(1, |p| p.parse().unwrap());
        define(&app, partitions);
        app.run_to_end().await.unwrap();
    });
}

fn expected(inputs: i64, partitions: i64) -> Vec<Windowed<i64, u64>> {
    // Input `i` is in partition `i % partitions`. The watermark stops at the smallest of
    // the partitions' last event times: the window holding it stays open.
    let last_time = (inputs - partitions) * STEP;
    let closed = last_time / WINDOW;
    let mut out = Vec::new();
    for w in 0..closed {
        let mut counts = vec![0u64; KEYS as usize];
        for i in (w * WINDOW / STEP)..((w + 1) * WINDOW / STEP) {
            counts[(i % KEYS) as usize] += 1;
        }
        for (k, n) in counts.into_iter().enumerate() {
            if n > 0 {
                out.push(Windowed {
                    key: k as i64,
                    start: w * WINDOW,
                    end: (w + 1) * WINDOW,
                    value: n,
                });
            }
        }
    }
    out
}

fn append(log: &Log, from: i64, to: i64, partitions: i64) {
    for chunk in (from..to).collect::<Vec<_>>().chunks(5_000) {
        for p in 0..partitions {
            let recs: Vec<Record> = chunk
                .iter()
                .filter(|i| *i % partitions == p)
                .map(|i| Record::value(i * STEP, (i % KEYS).to_string()))
                .collect();
            log.append_records("in", p as i32, &recs).wait().unwrap();
        }
    }
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

#[test]
fn sigkilled_pipeline_restarts_to_exactly_the_uninterrupted_output() {
    crash_test(1);
}

#[test]
fn sigkilled_parallel_pipeline_restarts_to_exactly_the_uninterrupted_output() {
    crash_test(2);
}

fn crash_test(partitions: i64) {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path()).unwrap();
        let keep = TopicConfig {
            retention_ms: -1,
            ..TopicConfig::default()
        };
        log.create_topic("in", partitions as i32, keep.clone())
            .wait()
            .unwrap();
        log.create_topic("out", 1, keep).wait().unwrap();
        append(&log, 0, INPUTS, partitions);
    }
    let mut inputs = INPUTS;
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("kill schedule seed {seed}");
    let mut rng = XorShift(seed);
    let exe = std::env::current_exe().unwrap();
    let child = || {
        Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env(PARTITIONS_ENV, partitions.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut kills = 0;
    let mut progress = Vec::new();
    let mut finished_early = 0;
    while kills < 20 {
        let mut c = child();
        std::thread::sleep(Duration::from_millis(10 + rng.next(200)));
        if c.try_wait().unwrap().is_some() {
            finished_early += 1;
            assert!(
                finished_early < 50,
                "the child keeps finishing before it can be killed"
            );
            let log = Log::open(dir.path()).unwrap();
            append(&log, inputs, inputs + 30_000, partitions);
            inputs += 30_000;
            continue;
        }
        c.kill().unwrap(); // SIGKILL on Unix
        c.wait().unwrap();
        kills += 1;
        let log = Log::open(dir.path()).unwrap();
        let at = log.committed_offset("counter", "in", 0).unwrap();
        progress.push((at.map_or(0, |c| c.offset), inputs));
    }
    println!("committed input offset after each kill: {progress:?}");
    assert!(
        progress.iter().filter(|(o, n)| (1..*n).contains(o)).count() >= 3,
        "too few kills landed mid-run: {progress:?}"
    );
    let last_run = Instant::now();
    let status = child().wait().unwrap();
    println!("the last run took {:?}", last_run.elapsed());
    assert!(
        status.success(),
        "the final, uninterrupted run failed: {status}"
    );

    let log = Log::open(dir.path()).unwrap();
    let mut out: Vec<Windowed<i64, u64>> = common::read_json(&log, "out");
    if partitions > 1 {
        // Tasks commit in their own order; each window's result is there once.
        out.sort_by_key(|w| (w.start, w.key));
    }
    let want = expected(inputs, partitions);
    assert_eq!(out.len(), want.len(), "duplicate or missing windows");
    assert!(out == want, "output differs from an uninterrupted run");
    for p in 0..partitions {
        let offset = log.committed_offset("counter", "in", p as i32).unwrap();
        let records = (0..inputs).filter(|i| i % partitions == p).count() as i64;
        assert_eq!(offset.unwrap().offset, records);
    }
    println!(
        "{kills} kills ({finished_early} runs finished first) in {:?}",
        started.elapsed()
    );
}
