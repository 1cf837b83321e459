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
    let Some(py) = python_with("confluent_kafka") else {
        return missing("Python module confluent_kafka");
    };
    let broker = LiveBroker::start();
    let b = broker.addr.to_string();
    let (topic, n) = ("shared", 4000usize);
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
    let limit = Duration::from_secs(40);
    finish(run(&["create", &b, topic, "8"]), "create", limit);

    // Both members join before there is anything to read, so neither reads alone.
    let (tx, rx) = mpsc::channel::<(usize, String)>();
    let mut members: Vec<Child> = (0..2)
        .map(|m| {
            let mut child = run(&["consume", &b, topic, "sharers"]);
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
    let mut lines: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let mut assigned: [Vec<i32>; 2] = [Vec::new(), Vec::new()];
    let mut seen: BTreeMap<usize, (usize, i32, i64)> = BTreeMap::new();
    let deadline = Instant::now() + limit;
    let mut produced = false;
    while seen.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((m, line)) = rx.recv_timeout(left) else {
            for c in &mut members {
                let _ = c.kill();
            }
            panic!(
                "{} of {n} records read; output so far: {lines:?}",
                seen.len()
            );
        };
        let f: Vec<&str> = line.split(' ').collect();
        match f[..] {
            ["assigned", parts] => {
                assigned[m] = parts.split(',').filter_map(|p| p.parse().ok()).collect();
            }
            ["record", i, p, o] => {
                let (i, p, o) = (i.parse().unwrap(), p.parse().unwrap(), o.parse().unwrap());
                if let Some(first) = seen.insert(i, (m, p, o)) {
                    panic!("record {i} read twice: {first:?} and {:?}", (m, p, o));
                }
            }
            _ => {}
        }
        lines[m].push(line);
        let shared = assigned.iter().all(|a| !a.is_empty() && a.len() < 8);
        if shared && !produced {
            finish(
                run(&["produce", &b, topic, "8", &n.to_string()]),
                "producer",
                limit,
            );
            produced = true;
        }
    }
    // Stop both: closing stdin tells them to close (and leave the group).
    let outputs: Vec<String> = members
        .into_iter()
        .enumerate()
        .map(|(m, mut c)| {
            drop(c.stdin.take());
            finish(c, &format!("consumer {m}"), limit);
            lines[m].join("\n")
        })
        .collect();
    assert!(seen.keys().copied().eq(0..n));
    let mut read_by = [BTreeSet::new(), BTreeSet::new()];
    for (m, p, _) in seen.values() {
        read_by[*m].insert(*p);
    }
    for (m, parts) in read_by.iter().enumerate() {
        assert!(
            !parts.is_empty() && parts.len() < 8,
            "member {m} read partitions {parts:?}; each should have some, neither all\n{}",
            outputs[m]
        );
    }
    assert!(
        read_by[0].is_disjoint(&read_by[1]),
        "both members read from {:?}",
        read_by[0].intersection(&read_by[1]).collect::<Vec<_>>()
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
