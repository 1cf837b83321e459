//! Real Kafka clients against a live weir broker on 127.0.0.1: kcat (librdkafka's CLI),
//! confluent-kafka and kafka-python 3 (from the venv `.ci/run` makes under `target/venv`,
//! or the Python named by `WEIR_PYTHON`).
//!
//! With `WEIR_INTEROP_REQUIRED=1` (CI sets it) a missing client fails the test; elsewhere it
//! is skipped with a loud message.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{LiveBroker, has_kcat, missing, python_with, script};

fn run_python(module: &str, script_name: &str, prefix: &str, records: usize) {
    let Some(py) = python_with(module) else {
        return missing(&format!("Python module {module}"));
    };
    let broker = LiveBroker::start();
    let out = Command::new(py)
        .arg(script(script_name))
        .args([
            broker.addr.to_string(),
            prefix.to_string(),
            records.to_string(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script_name} failed:\n{stdout}\n{stderr}"
    );
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        assert!(
            stdout.contains(&format!(" {codec}: {records} records")),
            "no {codec} round trip in:\n{stdout}"
        );
    }
}

#[test]
fn confluent_kafka_round_trips_every_codec() {
    run_python("confluent_kafka", "roundtrip_confluent.py", "ck", 3000);
}

#[test]
fn kafka_python_round_trips_every_codec_with_its_idempotent_producer() {
    run_python("kafka", "roundtrip_kafka_python.py", "kp", 2000);
}

#[test]
fn kcat_produces_consumes_and_lists_10k_keyed_records_with_headers() {
    if !has_kcat() {
        return missing("kcat");
    }
    let broker = LiveBroker::start();
    let b = broker.addr.to_string();
    let n = 10_000;
    let input: String = (0..n)
        .map(|i| format!("key-{i}:value-{i}-{}\n", "x".repeat(i % 50)))
        .collect();
    let mut producer = Command::new("kcat")
        .args([
            "-b",
            &b,
            "-P",
            "-t",
            "kc",
            "-K:",
            "-H",
            "origin=kcat",
            "-H",
            "run=1",
            "-X",
            "acks=all",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    producer
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = producer.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kcat -P failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new("kcat")
        .args([
            "-b",
            &b,
            "-C",
            "-t",
            "kc",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%k:%s|%h|%o\n",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kcat -C failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), n, "kcat read {} of {n} records", lines.len());
    for (i, line) in lines.iter().enumerate() {
        let want = format!(
            "key-{i}:value-{i}-{}|origin=kcat,run=1|{i}",
            "x".repeat(i % 50)
        );
        assert_eq!(*line, want, "record {i}");
    }

    let out = Command::new("kcat")
        .args(["-b", &b, "-L", "-t", "kc"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && listing.contains("topic \"kc\" with 1 partitions"),
        "kcat -L:\n{listing}"
    );
    assert!(
        listing.contains(&format!("broker 0 at {b}")),
        "kcat -L names no broker at {b}:\n{listing}"
    );
}
