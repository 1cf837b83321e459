//! Crash test: a child process appends in a loop and prints every acknowledged append; the
//! test kills it with SIGKILL at random moments, reopens the log and checks that every
//! acknowledged record is there, offsets are dense, and every stored batch passes its CRC.
//!
//! The child is this test binary run again with `--exact crash_child`, so no extra build
//! target is needed. Replay a run with the `WEIR_TEST_SEED` it prints.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_log::{Log, Record, TopicConfig};

/// The child reads its data directory from this variable...
const DIR_ENV: &str = "WEIR_CRASH_DIR";
/// ...and its round number (which makes its records unique) from this one.
const ROUND_ENV: &str = "WEIR_CRASH_ROUND";
const TOPIC: &str = "crash";
const PARTITIONS: i32 = 2;
/// Appending threads in the child; writer `w` appends to partition `w % PARTITIONS`, so two
/// share partition 0 and their appends meet in the writer's group commits.
const WRITERS: u64 = 3;
const ROUNDS: u64 = 24;
/// A child left behind by a dead parent stops by itself after this long.
const CHILD_LIFETIME: Duration = Duration::from_secs(20);
const T0: i64 = 1_700_000_000_000;

/// The records of append `n` of writer `w` in round `round`. Count and content follow from
/// the three numbers, and each value names them, so any stored record can be checked.
fn batch_records(round: u64, w: u64, n: u64) -> Vec<Record> {
    let mut rng = common::Rng::new((round << 40) ^ (w << 32) ^ n);
    let count = rng.range(1, 30) as usize;
    (0..count)
        .map(|i| {
            let pad = "x".repeat(rng.range(0, 200) as usize);
            let value = format!("{round}/{w}/{n}/{i}/{pad}");
            Record::keyed(T0 + n as i64, format!("k{i}"), value)
        })
        .collect()
}

/// One append the child reported as acknowledged.
#[derive(Debug, Clone, Copy)]
struct Ack {
    partition: i32,
    base_offset: i64,
    count: usize,
    round: u64,
    writer: u64,
    n: u64,
}

impl Ack {
    fn line(&self) -> String {
        format!(
            "ack {} {} {} {} {} {}\n",
            self.partition, self.base_offset, self.count, self.round, self.writer, self.n
        )
    }

    /// Parses a whole line the child printed; test harness chatter is not an ack.
    fn parse(line: &str) -> Option<Self> {
        let mut f = line.trim_end().strip_prefix("ack ")?.split(' ');
        let mut next = || f.next()?.parse::<i64>().ok();
        Some(Self {
            partition: next()? as i32,
            base_offset: next()?,
            count: next()? as usize,
            round: next()? as u64,
            writer: next()? as u64,
            n: next()? as u64,
        })
    }
}

#[test]
#[ignore = "the child process of acknowledged_appends_survive_sigkill, which starts it"]
fn crash_child() {
    let dir = std::env::var(DIR_ENV).expect("WEIR_CRASH_DIR names the data directory");
    let round: u64 = std::env::var(ROUND_ENV)
        .expect("WEIR_CRASH_ROUND is set")
        .parse()
        .expect("round is a number");
    // Durability::Fsync, the default: an ack means the data is on disk.
    let log = Log::open_with(&dir, common::test_options()).expect("child opens the log");
    let stdout = Arc::new(Mutex::new(std::io::stdout()));
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (log, stdout) = (log.clone(), stdout.clone());
            std::thread::spawn(move || {
                let partition = (writer % PARTITIONS as u64) as i32;
                for n in 0.. {
                    if started.elapsed() > CHILD_LIFETIME {
                        break;
                    }
                    let records = batch_records(round, writer, n);
                    let at = log
                        .append_records(TOPIC, partition, &records)
                        .wait()
                        .expect("child append");
                    let ack = Ack {
                        partition,
                        base_offset: at.base_offset,
                        count: records.len(),
                        round,
                        writer,
                        n,
                    };
                    let mut out = stdout.lock().expect("stdout lock");
                    out.write_all(ack.line().as_bytes()).expect("print ack");
                    out.flush().expect("flush ack");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer thread");
    }
}

/// Runs one child for `run_for`, kills it with SIGKILL and returns the acks it printed.
fn run_child_and_kill(dir: &Path, round: u64, run_for: Duration) -> Vec<Ack> {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir)
        .env(ROUND_ENV, round.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        let mut r = BufReader::new(stdout);
        let mut line = Vec::new();
        // Only whole lines count: the kill may cut the last one short.
        while r.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            if line.ends_with(b"\n")
                && let Some(a) = std::str::from_utf8(&line).ok().and_then(Ack::parse)
            {
                acks.push(a);
            }
            line.clear();
        }
        acks
    });
    std::thread::sleep(run_for);
    if let Some(status) = child.try_wait().expect("child status") {
        panic!("round {round}: the child exited by itself before the kill: {status}");
    }
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    reader.join().expect("stdout reader")
}

/// Checks the reopened log against every ack so far; returns the records stored.
fn check(log: &Log, acks: &[Ack]) -> usize {
    let mut stored = 0;
    for p in 0..PARTITIONS {
        // Validates every batch's CRC and that offsets are dense from the log start.
        let dump = common::dump_partition(log, TOPIC, p);
        assert_eq!(dump.bounds.log_start, 0, "nothing was deleted");
        // Every stored batch, acknowledged or not, is one whole append of a child.
        for (h, _) in &dump.batches {
            let first = &dump.records[(h.base_offset - dump.bounds.log_start) as usize];
            let value = first.value.as_deref().expect("child records have values");
            let id: Vec<u64> = std::str::from_utf8(value)
                .expect("utf-8 value")
                .split('/')
                .take(3)
                .map(|s| s.parse().expect("value names its append"))
                .collect();
            let want = batch_records(id[0], id[1], id[2]);
            assert_eq!(
                h.record_count as usize,
                want.len(),
                "batch at {}",
                h.base_offset
            );
            let got = &dump.records[h.base_offset as usize..][..want.len()];
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(
                    (&g.key, &g.value, g.timestamp),
                    (&w.key, &w.value, w.timestamp)
                );
            }
        }
        for a in acks.iter().filter(|a| a.partition == p) {
            let want = batch_records(a.round, a.writer, a.n);
            assert_eq!(want.len(), a.count);
            let end = a.base_offset as usize + a.count;
            assert!(
                end <= dump.records.len(),
                "acknowledged {a:?} is missing: {p} holds {} records",
                dump.records.len()
            );
            for (i, (g, w)) in dump.records[a.base_offset as usize..end]
                .iter()
                .zip(&want)
                .enumerate()
            {
                assert_eq!(
                    (&g.key, &g.value, g.timestamp),
                    (&w.key, &w.value, w.timestamp),
                    "record {i} of acknowledged {a:?}"
                );
            }
        }
        stored += dump.records.len();
    }
    stored
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let log = Log::open_with(dir.path(), common::test_options()).expect("open");
        log.create_topic(TOPIC, PARTITIONS, TopicConfig::default())
            .wait()
            .expect("create topic");
    }
    let mut rng = common::Rng::from_clock("acknowledged_appends_survive_sigkill");
    let mut acks = Vec::new();
    let mut rounds_with_acks = 0;
    for round in 0..ROUNDS {
        let run_for = Duration::from_millis(rng.range(40, 400));
        let new = run_child_and_kill(dir.path(), round, run_for);
        rounds_with_acks += usize::from(!new.is_empty());
        acks.extend(new);
        let log = Log::open_with(dir.path(), common::test_options()).expect("reopen");
        let stored = check(&log, &acks);
        let acked: usize = acks.iter().map(|a| a.count).sum();
        assert!(stored >= acked, "{stored} stored < {acked} acknowledged");
        eprintln!(
            "round {round}: killed after {run_for:?}, {} acks so far, {stored} records stored",
            acks.len()
        );
    }
    // The kills must have landed while the child was appending, or nothing was tested.
    assert!(
        rounds_with_acks >= ROUNDS as usize / 2,
        "only {rounds_with_acks} of {ROUNDS} rounds got an append acknowledged"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "crash test took {:?}",
        started.elapsed()
    );
}
