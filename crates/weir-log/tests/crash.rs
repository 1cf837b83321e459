//! Crash test: a child process appends in a loop and prints every acknowledged append; the
//! test kills it with SIGKILL at random moments, reopens the log and checks that every
//! acknowledged record is there, offsets are dense, every stored batch passes its CRC, and
//! no atomic unit (append + offset commit + state put) is torn.
//!
//! The child is this test binary run again with `--exact crash_child`, so no extra build
//! target is needed. Replay a run with the `WEIR_TEST_SEED` it prints.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_log::{CommittedOffset, Durability, Log, LogOptions, Record, TopicConfig, Unit};

/// The child reads its data directory from this variable...
const DIR_ENV: &str = "WEIR_CRASH_DIR";
/// ...and its round number (which makes its records unique) from this one.
const ROUND_ENV: &str = "WEIR_CRASH_ROUND";
/// When set, the child opens the log with `Durability::Interval(this many ms)`, appends for
/// `APPEND_MS_ENV` ms, then stops and prints `IDLE` once a durable commit is due.
const INTERVAL_ENV: &str = "WEIR_CRASH_INTERVAL_MS";
const APPEND_MS_ENV: &str = "WEIR_CRASH_APPEND_MS";
const IDLE: &str = "idle";
const TOPIC: &str = "crash";
const PARTITIONS: i32 = 2;
/// Appending threads in the child; writer `w` appends to partition `w % PARTITIONS`, so two
/// share each partition and their appends meet in the writer's group commits.
const WRITERS: u64 = 4;
/// This writer commits units: its append, an offset commit and a state put, all naming the
/// append, so a torn unit shows after a crash.
const UNIT_WRITER: u64 = 3;
const GROUP: &str = "crash-group";
const STATE_TABLE: &str = "crash-state";
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

    /// Parses a whole line the child printed; test harness chatter is not an ack, but may
    /// precede the first one on its line ("test crash_child ... ack 0 0 ...").
    fn parse(line: &str) -> Option<Self> {
        let (_, ack) = line.trim_end().split_once("ack ")?;
        let mut f = ack.split(' ');
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
#[ignore = "the child process of the crash tests below, which start it"]
fn crash_child() {
    let dir = std::env::var(DIR_ENV).expect("WEIR_CRASH_DIR names the data directory");
    let round: u64 = std::env::var(ROUND_ENV)
        .expect("WEIR_CRASH_ROUND is set")
        .parse()
        .expect("round is a number");
    let interval: Option<u64> = std::env::var(INTERVAL_ENV)
        .ok()
        .and_then(|v| v.parse().ok());
    let append_for = std::env::var(APPEND_MS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(CHILD_LIFETIME, Duration::from_millis);
    let options = LogOptions {
        // Durability::Fsync, the default, unless asked: an ack means the data is on disk.
        durability: interval.map_or(Durability::Fsync, Durability::Interval),
        ..common::test_options()
    };
    let log = Log::open_with(&dir, options).expect("child opens the log");
    let stdout = Arc::new(Mutex::new(std::io::stdout()));
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (log, stdout) = (log.clone(), stdout.clone());
            std::thread::spawn(move || {
                let partition = (writer % PARTITIONS as u64) as i32;
                for n in 0.. {
                    if started.elapsed() > append_for {
                        break;
                    }
                    let records = batch_records(round, writer, n);
                    let at = if writer == UNIT_WRITER {
                        let id = format!("{round}/{writer}/{n}");
                        let mut unit = Unit::new();
                        unit.append_records(TOPIC, partition, &records)
                            .commit_offset(
                                GROUP,
                                TOPIC,
                                partition,
                                CommittedOffset {
                                    offset: n as i64,
                                    leader_epoch: -1,
                                    metadata: id.clone(),
                                    commit_timestamp: T0,
                                },
                            )
                            .state_put(STATE_TABLE, b"last", id.as_bytes());
                        log.commit(unit).wait().expect("child unit")[0]
                    } else {
                        log.append_records(TOPIC, partition, &records)
                            .wait()
                            .expect("child append")
                    };
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
    if let Some(ms) = interval {
        // The writer owes a durable commit `ms` after the last one; leave it ample time.
        std::thread::sleep(Duration::from_millis(3 * ms + 200));
        let mut out = stdout.lock().expect("stdout lock");
        writeln!(out, "{IDLE}").expect("print idle");
        out.flush().expect("flush idle");
        drop(out);
        // Stay alive (with the log open) until killed, or give up after the lifetime.
        std::thread::sleep(CHILD_LIFETIME.saturating_sub(started.elapsed()));
    }
}

/// When the parent kills the child.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// This long after starting it.
    After(Duration),
    /// As soon as it prints `IDLE`.
    Idle,
}

/// Runs one child, kills it with SIGKILL as `kill_at` says and returns the acks it printed.
fn run_child_and_kill(dir: &Path, round: u64, env: &[(&str, String)], kill_at: KillAt) -> Vec<Ack> {
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
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("piped stdout");
    let (idle_tx, idle_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        let mut r = BufReader::new(stdout);
        let mut line = Vec::new();
        // Only whole lines count: the kill may cut the last one short.
        while r.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            if line.ends_with(b"\n")
                && let Ok(text) = std::str::from_utf8(&line)
            {
                if let Some(a) = Ack::parse(text) {
                    acks.push(a);
                } else if text.trim_end().ends_with(IDLE) {
                    let _ = idle_tx.send(());
                }
            }
            line.clear();
        }
        acks
    });
    match kill_at {
        KillAt::After(d) => std::thread::sleep(d),
        KillAt::Idle => {
            if idle_rx.recv_timeout(Duration::from_secs(15)).is_err() {
                let _ = child.kill();
                panic!("round {round}: the child never went idle");
            }
        }
    }
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
    check_units(log, acks);
    stored
}

/// The unit writer's last committed unit is whole: its offset commit, its state put and its
/// append all name the same append, which is at least the last one acknowledged.
fn check_units(log: &Log, acks: &[Ack]) {
    let partition = (UNIT_WRITER % PARTITIONS as u64) as i32;
    let committed = log
        .committed_offset(GROUP, TOPIC, partition)
        .expect("offset");
    let state = log.state_get(STATE_TABLE, b"last").expect("state");
    let last_acked = acks
        .iter()
        .filter(|a| a.writer == UNIT_WRITER)
        .map(|a| (a.round, a.n))
        .max();
    let (c, s) = match (committed, state) {
        (None, None) => {
            assert_eq!(last_acked, None, "an acknowledged unit is missing");
            return;
        }
        (Some(c), Some(s)) => (c, s),
        (c, s) => panic!("torn unit: offset {c:?}, state {s:?}"),
    };
    assert_eq!(
        c.metadata.as_bytes(),
        s,
        "torn unit: offset and state disagree"
    );
    let id: Vec<u64> = c
        .metadata
        .split('/')
        .map(|x| x.parse().expect("unit id"))
        .collect();
    assert_eq!((id[1], c.offset), (UNIT_WRITER, id[2] as i64), "{c:?}");
    assert!(
        Some((id[0], id[2])) >= last_acked,
        "unit {id:?} is stored, but {last_acked:?} was acknowledged"
    );
    let first_value = format!("{}/0/", c.metadata);
    let dump = common::dump_partition(log, TOPIC, partition);
    assert!(
        dump.records.iter().any(|r| r
            .value
            .as_deref()
            .is_some_and(|v| v.starts_with(first_value.as_bytes()))),
        "torn unit: offset and state name {}, whose append is not stored",
        c.metadata
    );
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
        let new = run_child_and_kill(dir.path(), round, &[], KillAt::After(run_for));
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

/// What `Durability::Interval` promises: once the interval has passed with no new appends,
/// every acknowledged append is on disk and survives SIGKILL. (Appends acknowledged inside the
/// last interval may be lost; see `Durability::Interval`.)
#[test]
fn interval_durability_syncs_within_the_interval() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let log = Log::open_with(dir.path(), common::test_options()).expect("open");
        log.create_topic(TOPIC, PARTITIONS, TopicConfig::default())
            .wait()
            .expect("create topic");
    }
    let env = [
        (INTERVAL_ENV, "50".to_string()),
        (APPEND_MS_ENV, "150".to_string()),
    ];
    let mut acks = Vec::new();
    for round in 0..3 {
        let new = run_child_and_kill(dir.path(), round, &env, KillAt::Idle);
        assert!(!new.is_empty(), "round {round}: no append was acknowledged");
        acks.extend(new);
        let log = Log::open_with(dir.path(), common::test_options()).expect("reopen");
        let stored = check(&log, &acks);
        let acked: usize = acks.iter().map(|a| a.count).sum();
        assert_eq!(
            stored, acked,
            "round {round}: every append was acknowledged"
        );
    }
}
