//! weir-log throughput: `cargo bench --bench log`
//!
//! Appends of 100-byte records in batches of 1, 100 and 1,000, from 1 and 8 concurrent
//! appenders (group commit), with `Fsync` and `None` durability; and a full-partition read.
//! Besides criterion's output it writes `target/bench-reports/log.json` (or under
//! `$CARGO_TARGET_DIR`): records/s per case with the machine and parameters beside them.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use weir::log::{Durability, Log, LogOptions, Record, TopicConfig, batch};

const VALUE_SIZE: usize = 100;

/// Records/s of each case, averaged over criterion's samples, for the JSON report.
static FIGURES: Mutex<BTreeMap<String, (u64, f64)>> = Mutex::new(BTreeMap::new());

fn record(id: String, records: u64, took: Duration) {
    let mut m = FIGURES.lock().unwrap();
    let e = m.entry(id).or_insert((0, 0.0));
    e.0 += records;
    e.1 += took.as_secs_f64();
}

fn encoded_batch(n: usize) -> Bytes {
    let value = Bytes::from(vec![b'v'; VALUE_SIZE]);
    let records: Vec<Record> = (0..n)
        .map(|i| {
            Record::keyed(
                1_700_000_000_000 + i as i64,
                format!("k{i:06}"),
                value.clone(),
            )
        })
        .collect();
    Bytes::from(batch::encode(&records))
}

fn open(durability: Durability, partitions: i32) -> (tempfile::TempDir, Log) {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        durability,
        retention_check_interval: None,
        ..LogOptions::default()
    };
    let log = Log::open_with(dir.path(), opts).unwrap();
    log.create_topic("bench", partitions, TopicConfig::default())
        .wait()
        .unwrap();
    (dir, log)
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (dname, durability) in [("fsync", Durability::Fsync), ("none", Durability::None)] {
        for batch_size in [1usize, 100, 1000] {
            for appenders in [1usize, 8] {
                let payload = encoded_batch(batch_size);
                // Enough records per iteration to amortise thread start, few enough that one
                // iteration of single-record fsync appends stays short.
                let per_appender_batches = match batch_size {
                    1 => 200 / appenders.min(2),
                    100 => 400 / appenders,
                    _ => 800 / appenders,
                };
                let records = (per_appender_batches * appenders * batch_size) as u64;
                let (_dir, log) = open(durability, 8);
                g.throughput(Throughput::Elements(records));
                let id = format!("{dname}/batch{batch_size}/appenders{appenders}");
                g.bench_function(BenchmarkId::from_parameter(&id), |b| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let t = Instant::now();
                            std::thread::scope(|s| {
                                for a in 0..appenders {
                                    let (log, payload) = (&log, &payload);
                                    // Half the appenders share partition 0, the rest have their own.
                                    let partition = if a % 2 == 0 { 0 } else { a as i32 };
                                    s.spawn(move || {
                                        for _ in 0..per_appender_batches {
                                            log.append("bench", partition, payload.clone())
                                                .wait()
                                                .unwrap();
                                        }
                                    });
                                }
                            });
                            total += t.elapsed();
                        }
                        record(format!("append/{id}"), records * iters, total);
                        total
                    })
                });
            }
        }
    }
    g.finish();
}

fn read(c: &mut Criterion) {
    let mut g = c.benchmark_group("read");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let (_dir, log) = open(Durability::None, 1);
    let payload = encoded_batch(1000);
    for _ in 0..1000 {
        log.append("bench", 0, payload.clone()).wait().unwrap();
    }
    log.sync().wait().unwrap();
    let hw = log.bounds("bench", 0).unwrap().high_watermark;
    g.throughput(Throughput::Elements(hw as u64));
    for (name, decode) in [("batches", false), ("records", true)] {
        g.bench_function(BenchmarkId::new("full-partition", name), |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    let (mut offset, mut n) = (0i64, 0u64);
                    while offset < hw {
                        let f = log.read("bench", 0, offset, 1 << 20).unwrap();
                        if decode {
                            let recs = f.decode_from(offset).unwrap();
                            n += recs.len() as u64;
                            offset = recs.last().unwrap().offset + 1;
                        } else {
                            let mut rest = f.records.clone();
                            while !rest.is_empty() {
                                let h = batch::BatchHeader::parse(&rest).unwrap();
                                n += h.record_count as u64;
                                offset = h.last_offset() + 1;
                                let _ = rest.split_to(h.total_len());
                            }
                        }
                    }
                    assert_eq!(n, hw as u64);
                }
                let took = t.elapsed();
                record(
                    format!("read/full-partition/{name}"),
                    hw as u64 * iters,
                    took,
                );
                took
            })
        });
    }
    g.finish();
}

fn write_report() {
    let cpu = common::cpu_model();
    let cores = common::cores();
    let figures = FIGURES.lock().unwrap();
    let cases: Vec<String> = figures
        .iter()
        .map(|(id, (n, s))| {
            format!(
                "    {{\"case\": \"{id}\", \"records_per_second\": {:.0}}}",
                *n as f64 / s
            )
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let json = format!(
        "{{\n  \"bench\": \"log\",\n  \"unix_time\": {now},\n  \"cpu\": \"{cpu}\",\n  \"cores\": {cores},\n  \"value_bytes\": {VALUE_SIZE},\n  \"cases\": [\n{}\n  ]\n}}\n",
        cases.join(",\n")
    );
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let dir = std::path::Path::new(&target).join("bench-reports");
    if std::fs::create_dir_all(&dir).is_ok() && std::fs::write(dir.join("log.json"), &json).is_ok()
    {
        println!("report: {}", dir.join("log.json").display());
    }
    print!("{json}");
}

criterion_group!(benches, append, read);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    write_report();
}
