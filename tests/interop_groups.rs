//! Consumer groups with real Kafka clients against a live weir broker: two confluent-kafka
//! consumer processes sharing a topic, kafka-python 3's idempotent producer and group
//! consumer, and kcat as a balanced consumer. Clients are found and skipped (or, with
//! `WEIR_INTEROP_REQUIRED=1`, failed) as in tests/interop.rs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{LiveBroker, has_kcat, missing, python_with, script};
use weir_broker::BrokerConfig;

/// Waits for a child with a deadline; kills it when the deadline passes.
fn finish(mut child: std::process::Child, what: &str, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} still running after {limit:?}:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn two_confluent_kafka_consumers_share_an_8_partition_topic_without_duplicates() {
    confluent_consumers_share("range");
}

/// The same with librdkafka's incremental (KIP-429) rebalancing, over the classic protocol.
#[test]
fn two_confluent_kafka_cooperative_sticky_consumers_share_an_8_partition_topic() {
    confluent_consumers_share("cooperative-sticky");
}

/// What two consumer processes printed, as it arrives.
struct Members {
    children: Vec<Child>,
    rx: mpsc::Receiver<(usize, String)>,
    lines: [Vec<String>; 2],
    assigned: [Vec<i32>; 2],
    /// record -> (member, partition, offset); a record read twice fails the test.
    seen: BTreeMap<usize, (usize, i32, i64)>,
}

impl Members {
    /// Reads what the members print until `done` holds; fails after `limit`.
    fn pump_until(&mut self, what: &str, limit: Duration, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok((m, line)) = self.rx.recv_timeout(left) else {
                for c in &mut self.children {
                    let _ = c.kill();
                }
                panic!(
                    "{what}: not within {limit:?}; {} records read; output: {:?}",
                    self.seen.len(),
                    self.lines
                );
            };
            let f: Vec<&str> = line.split(' ').collect();
            match f[..] {
                ["assigned", parts] => {
                    self.assigned[m] = parts.split(',').filter_map(|p| p.parse().ok()).collect();
                }
                ["record", i, p, o] => {
                    let (i, p, o) = (i.parse().unwrap(), p.parse().unwrap(), o.parse().unwrap());
                    if let Some(first) = self.seen.insert(i, (m, p, o)) {
                        panic!("record {i} read twice: {first:?} and {:?}", (m, p, o));
                    }
                }
                _ => {}
            }
            self.lines[m].push(line);
        }
    }

    /// Partitions each member read records from, among records `range`.
    fn read_by(&self, range: std::ops::Range<usize>) -> [BTreeSet<i32>; 2] {
        let mut by = [BTreeSet::new(), BTreeSet::new()];
        for (_, (m, p, _)) in self.seen.range(range) {
            by[*m].insert(*p);
        }
        by
    }
}

fn confluent_consumers_share(assignor: &str) {
    let Some(py) = python_with("confluent_kafka") else {
        return missing("Python module confluent_kafka");
    };
    let broker = LiveBroker::start();
    let b = broker.addr.to_string();
    let (topic, half) = ("shared", 2000usize);
    let run = |args: &[&str]| {
        Command::new(&py)
            .arg(script("group_confluent.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let produce = |from: usize, to: usize| {
        let (from, to) = (from.to_string(), to.to_string());
        let p = run(&["produce", &b, topic, "8", &from, &to]);
        finish(p, "producer", Duration::from_secs(30));
    };
    let limit = Duration::from_secs(25);
    finish(run(&["create", &b, topic, "8"]), "create", limit);

    let (tx, rx) = mpsc::channel::<(usize, String)>();
    let children = (0..2)
        .map(|m| {
            let mut child = run(&["consume", &b, topic, "sharers", assignor]);
            let out = BufReader::new(child.stdout.take().unwrap());
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in out.lines().map_while(Result::ok) {
                    let _ = tx.send((m, line));
                }
            });
            child
        })
        .collect();
    drop(tx);
    let mut members = Members {
        children,
        rx,
        lines: [Vec::new(), Vec::new()],
        assigned: [Vec::new(), Vec::new()],
        seen: BTreeMap::new(),
    };
    // Both members join before there is anything to read, so neither reads alone.
    members.pump_until("both members assigned", limit, |m| {
        m.assigned.iter().all(|a| !a.is_empty() && a.len() < 8)
    });
    produce(0, half);
    members.pump_until("first half read", limit, |m| m.seen.len() == half);
    let [by0, by1] = members.read_by(0..half);
    for (m, parts) in [&by0, &by1].into_iter().enumerate() {
        assert!(
            !parts.is_empty() && parts.len() < 8,
            "member {m} read partitions {parts:?}; each should have some, neither all\n{:?}",
            members.lines[m]
        );
    }
    assert!(
        by0.is_disjoint(&by1),
        "both members read from {:?}",
        by0.intersection(&by1)
    );

    // Member 1 leaves (closing its consumer sends LeaveGroup): member 0 takes over its
    // partitions and starts at member 1's commits.
    let mut leaving = members.children.pop().unwrap();
    drop(leaving.stdin.take());
    finish(leaving, "consumer 1", limit);
    produce(half, 2 * half);
    members.pump_until("second half read", limit, |m| m.seen.len() == 2 * half);
    let [by0, by1] = members.read_by(half..2 * half);
    assert!(by1.is_empty(), "member 1 read after it left: {by1:?}");
    assert_eq!(by0.len(), 8, "member 0 took over every partition: {by0:?}");
    assert!(members.seen.keys().copied().eq(0..2 * half));
    let mut last = members.children.pop().unwrap();
    drop(last.stdin.take());
    finish(last, "consumer 0", limit);
}

/// A static member (group.instance.id) that closes without leaving and comes back: it
/// takes its old place and carries on at its commits.
#[test]
fn a_confluent_kafka_static_member_comes_back_to_its_commits() {
    let Some(py) = python_with("confluent_kafka") else {
        return missing("Python module confluent_kafka");
    };
    let broker = LiveBroker::start();
    let b = broker.addr.to_string();
    let run = |args: &[&str]| {
        let child = Command::new(&py)
            .arg(script("group_confluent.py"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = finish(child, &args.join(" "), Duration::from_secs(50));
        String::from_utf8(out.stdout).unwrap()
    };
    let n = 2000;
    run(&["create", &b, "statics", "4"]);
    run(&["produce", &b, "statics", "4", "0", &n.to_string()]);
    let records = |out: &str| -> Vec<usize> {
        out.lines()
            .filter_map(|l| l.strip_prefix("record "))
            .map(|l| l.split(' ').next().unwrap().parse().unwrap())
            .collect()
    };
    let first = records(&run(&["static", &b, "statics", "st", "host-1", "500"]));
    assert!(
        first.len() >= 500 && first.len() < n,
        "first run read {}",
        first.len()
    );
    let rest = (n - first.len()).to_string();
    let second = records(&run(&["static", &b, "statics", "st", "host-1", &rest]));
    let mut all: Vec<usize> = first.iter().chain(&second).copied().collect();
    all.sort_unstable();
    let distinct = all.windows(2).all(|w| w[0] != w[1]);
    assert!(distinct, "a record was read twice across the two runs");
    assert!(
        all.iter().copied().eq(0..n),
        "{} records of {n} read",
        all.len()
    );
}

#[test]
fn kafka_python_idempotent_producer_and_group_consumer_resume_from_commits() {
    let Some(py) = python_with("kafka") else {
        return missing("Python module kafka (kafka-python)");
    };
    let broker = LiveBroker::start();
    let child = Command::new(py)
        .arg(script("group_kafka_python.py"))
        .args([&broker.addr.to_string(), "kp-groups", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child, "group_kafka_python.py", Duration::from_secs(55));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for want in [
        "read and committed 1000 records",
        "resumed at the committed offsets",
        "committed offsets sum to 2000",
    ] {
        assert!(stdout.contains(want), "no {want:?} in:\n{stdout}");
    }
}

/// Produces `lines` ("key:value") to `topic` with kcat.
fn kcat_produce(b: &str, topic: &str, lines: &str) {
    let mut p = Command::new("kcat")
        .args(["-b", b, "-P", "-t", topic, "-K:", "-X", "acks=all"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
    finish(p, "kcat -P", Duration::from_secs(30));
}

/// Reads `count` records as member of `group` with kcat -G; returns the values.
fn kcat_group_read(b: &str, group: &str, topic: &str, count: usize) -> Vec<usize> {
    let c = Command::new("kcat")
        .args(["-b", b, "-G", group, topic, "-c", &count.to_string(), "-q"])
        .args(["-f", "%s\n", "-X", "auto.offset.reset=earliest"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(c, "kcat -G", Duration::from_secs(25));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

#[test]
fn kcat_balanced_consumer_reads_everything_and_resumes_from_its_commits() {
    if !has_kcat() {
        return missing("kcat");
    }
    // Auto-created topics get 4 partitions here, so the group has some to balance.
    let broker = LiveBroker::start_with(BrokerConfig {
        num_partitions: 4,
        ..BrokerConfig::default()
    });
    let b = broker.addr.to_string();
    let n = 2000;
    let first: String = (0..n).map(|i| format!("k{i}:{i}\n")).collect();
    kcat_produce(&b, "kg", &first);
    let mut got = kcat_group_read(&b, "kcat-group", "kg", n);
    got.sort_unstable();
    assert!(
        got.iter().copied().eq(0..n),
        "kcat -G read {} records of {n}",
        got.len()
    );

    // The group's offsets were committed on close: the next member starts after them.
    let more: String = (n..n + 100).map(|i| format!("k{i}:{i}\n")).collect();
    kcat_produce(&b, "kg", &more);
    let mut got = kcat_group_read(&b, "kcat-group", "kg", 100);
    got.sort_unstable();
    assert!(
        got.iter().copied().eq(n..n + 100),
        "the second kcat -G read {:?}.. instead of the 100 new records",
        &got[..got.len().min(5)]
    );
}

#[test]
fn kafka_python_producer_and_group_consumer_carry_on_across_a_broker_restart() {
    let Some(py) = python_with("kafka") else {
        return missing("Python module kafka (kafka-python)");
    };
    let mut broker = LiveBroker::start();
    let mut child = Command::new(py)
        .arg(script("group_restart_kafka_python.py"))
        .args([&broker.addr.to_string(), "restarts", "2000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        let _ = tx.send(line);
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut rest);
        let _ = tx.send(rest);
    });
    let first = rx.recv_timeout(Duration::from_secs(40)).unwrap_or_default();
    if first.trim() != "half" {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "the script did not get through the first half: {first:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    broker.restart();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = finish(
        child,
        "group_restart_kafka_python.py",
        Duration::from_secs(50),
    );
    let rest = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    assert!(
        rest.contains("resumed: 2000 records read exactly once"),
        "{rest}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
