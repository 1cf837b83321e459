//! Nexmark-style queries through weir-stream against the same computations written by hand.
//!
//! Run: `cargo bench --bench stream` (set WEIR_BENCH_EVENTS to change the 10,000,000 bids,
//! WEIR_BENCH_QUERIES=q1,hopping to run some queries only, WEIR_BENCH_CHECKPOINT_MS and
//! WEIR_BENCH_CHECKPOINT_RECORDS to change the checkpoint cadence, WEIR_BENCH_PARTITIONS
//! to change the 2 partitions of the parallel run; 1 skips it).
//!
//! Bids are generated into a one-partition topic of the embedded log (32-byte binary
//! values, 100,000 bids per second of event time, 10,000 auctions). Each query then runs to
//! the end of the input with exactly-once checkpoints on (every 500 ms or 200,000 records, fsync
//! durability); the hand-written loop reads the log, decodes, computes in a HashMap and
//! commits its outputs and offsets at the same cadence. Figures are events per second of
//! wall time and per second of CPU time (all threads: the pipeline and the log's writer).
//! The framework runs each query twice: as one task over the one-partition topic, and with
//! `App::parallel` as one task per partition over the same bids in a topic of
//! WEIR_BENCH_PARTITIONS partitions (bid `i` in partition `i % n`), on a tokio runtime with
//! as many worker threads; its windowed queries route (auction, price) pairs to their
//! owning task through a repartition topic.
//! A JSON report with the machine and parameters goes to target/bench-reports/stream.json.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use weir::log::batch;
use weir::log::{CommittedOffset, Log, Record, TopicConfig, Unit};
use weir::stream::{
    App, Codec, CodecError, Hopping, Json, Pipeline, Stream, Topic, Tumbling, Windowed,
};

const AUCTIONS: u64 = 10_000;
const EVENTS_PER_SEC: i64 = 100_000;
fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Checkpoint cadence (the pipeline's defaults unless set).
fn checkpoint_ms() -> u64 {
    env_or("WEIR_BENCH_CHECKPOINT_MS", 500)
}

fn checkpoint_records() -> u64 {
    env_or("WEIR_BENCH_CHECKPOINT_RECORDS", 200_000)
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Bid {
    auction: u64,
    bidder: u64,
    price: u64,
    date_time: i64,
}

/// Bids as 32 little-endian bytes.
struct BidCodec;

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Codec<Bid> for BidCodec {
    fn decode(&self, b: &[u8]) -> Result<Bid, CodecError> {
        if b.len() != 32 {
            return Err(CodecError(format!("a bid is 32 bytes, got {}", b.len())));
        }
        Ok(Bid {
            auction: u64_at(b, 0),
            bidder: u64_at(b, 8),
            price: u64_at(b, 16),
            date_time: u64_at(b, 24) as i64,
        })
    }

    fn encode(&self, v: &Bid, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(&v.auction.to_le_bytes());
        out.extend_from_slice(&v.bidder.to_le_bytes());
        out.extend_from_slice(&v.price.to_le_bytes());
        out.extend_from_slice(&v.date_time.to_le_bytes());
        Ok(())
    }
}

/// (auction, price) as 16 little-endian bytes.
struct PairCodec;

impl Codec<(u64, u64)> for PairCodec {
    fn decode(&self, b: &[u8]) -> Result<(u64, u64), CodecError> {
        if b.len() != 16 {
            return Err(CodecError("a pair is 16 bytes".into()));
        }
        Ok((u64_at(b, 0), u64_at(b, 8)))
    }

    fn encode(&self, v: &(u64, u64), out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(&v.0.to_le_bytes());
        out.extend_from_slice(&v.1.to_le_bytes());
        Ok(())
    }
}

fn bid(i: u64) -> Bid {
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    Bid {
        auction: (h >> 20) % AUCTIONS,
        bidder: (h >> 40) % 100_000,
        price: 100 + (h >> 8) % 10_000,
        date_time: 1_700_000_000_000 + (i as i64) * 1000 / EVENTS_PER_SEC,
    }
}

fn keep_forever() -> TopicConfig {
    TopicConfig {
        retention_ms: -1,
        ..TopicConfig::default()
    }
}

/// Bids `0..n` into `topic`, bid `i` in partition `i % partitions`.
fn generate(log: &Log, topic: &str, partitions: u64, n: u64) {
    log.create_topic(topic, partitions as i32, keep_forever())
        .wait()
        .expect("create bids");
    let mut value = Vec::with_capacity(32);
    let mut i = 0;
    while i < n {
        let mut unit = Unit::new();
        for _ in 0..20 {
            let chunk = i..(i + 5000).min(n);
            i = chunk.end;
            for p in 0..partitions {
                let recs: Vec<Record> = (chunk.clone())
                    .filter(|j| j % partitions == p)
                    .map(|j| {
                        let b = bid(j);
                        value.clear();
                        BidCodec.encode(&b, &mut value).expect("encode");
                        Record::value(b.date_time, value.clone())
                    })
                    .collect();
                unit.append_records(topic, p as i32, &recs);
            }
            if i >= n {
                break;
            }
        }
        log.commit(unit).wait().expect("append bids");
    }
}

/// The parallel runs' partition count.
fn partitions() -> u64 {
    env_or("WEIR_BENCH_PARTITIONS", 2)
}

/// CPU seconds this process has used (all threads), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

struct Measured {
    wall: Duration,
    cpu: f64,
}

fn measure(f: impl FnOnce()) -> Measured {
    let (t, c) = (Instant::now(), cpu_seconds());
    f();
    Measured {
        wall: t.elapsed(),
        cpu: cpu_seconds() - c,
    }
}

fn bids(p: Pipeline, topic: &str) -> Stream<Bid> {
    p.checkpoint_interval(Duration::from_millis(checkpoint_ms()))
        .checkpoint_records(checkpoint_records())
        .source::<Bid>(Topic::with_codec(topic, BidCodec).event_time(|b: &Bid| b.date_time))
}

/// Defines q1 or q2; gives the bids back for a windowed query.
fn stateless(query: &str, bids: Stream<Bid>, out: &str) -> Option<Stream<Bid>> {
    match query {
        "q1" => bids
            .map(|b| Bid {
                price: b.price * 908 / 1000,
                ..b
            })
            .sink(Topic::with_codec(out, BidCodec)),
        "q2" => bids
            .filter(|b| b.auction % 123 == 0)
            .map(|b| (b.auction, b.price))
            .sink(Topic::with_codec(out, PairCodec)),
        _ => return Some(bids),
    }
    None
}

/// The query as one task per partition of `bids-<n>`.
fn framework_parallel(log: &Log, query: &str, partitions: u64) -> Measured {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(partitions as usize)
        .enable_all()
        .build()
        .expect("runtime");
    let app = App::with_log(log.clone());
    let (query, out) = (query.to_string(), format!("par-{query}-out"));
    app.parallel(&format!("par-{query}"), move |p| {
        let Some(bids) = stateless(&query, bids(p.clone(), &format!("bids-{partitions}")), &out)
        else {
            return;
        };
        let prices = bids
            .key_by(|b| b.auction)
            .map_values(|b| b.price)
            .repartition();
        if query == "tumbling" {
            prices
                .window(Tumbling::every(Duration::from_secs(10)))
                .aggregate((0u64, 0u64), |a, price| {
                    a.0 += 1;
                    a.1 = a.1.max(*price);
                })
                .sink(Topic::with_codec(&out, Json));
        } else {
            prices
                .window(Hopping::of(Duration::from_secs(10), Duration::from_secs(2)))
                .count()
                .sink(Topic::with_codec(&out, Json));
        }
    });
    measure(|| rt.block_on(app.run_to_end()).expect("pipeline run"))
}

fn framework(log: &Log, query: &str) -> Measured {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let app = App::with_log(log.clone());
    let out = format!("fw-{query}-out");
    let Some(bids) = stateless(
        query,
        bids(app.pipeline(&format!("fw-{query}")), "bids"),
        &out,
    ) else {
        return measure(|| rt.block_on(app.run_to_end()).expect("pipeline run"));
    };
    match query {
        "tumbling" => bids
            .key_by(|b| b.auction)
            .window(Tumbling::every(Duration::from_secs(10)))
            .aggregate((0u64, 0u64), |a, b| {
                a.0 += 1;
                a.1 = a.1.max(b.price);
            })
            .sink(Topic::with_codec(out, Json)),
        _ => bids
            .key_by(|b| b.auction)
            .window(Hopping::of(Duration::from_secs(10), Duration::from_secs(2)))
            .count()
            .sink(Topic::with_codec(out, Json)),
    }
    measure(|| rt.block_on(app.run_to_end()).expect("pipeline run"))
}

/// Output batches of the hand-written loop, built in place.
#[derive(Default)]
struct Output {
    open: Option<batch::BatchBuilder>,
    done: Vec<Vec<u8>>,
}

impl Output {
    fn push(&mut self, timestamp: i64, value: &[u8]) {
        let b = self.open.get_or_insert_with(batch::BatchBuilder::new);
        b.push(timestamp, None, Some(value), &[]);
        if b.size() >= 256 << 10 {
            self.done
                .extend(self.open.take().map(batch::BatchBuilder::finish));
        }
    }

    fn take(&mut self) -> Vec<Vec<u8>> {
        self.done.extend(
            self.open
                .take()
                .filter(|b| !b.is_empty())
                .map(batch::BatchBuilder::finish),
        );
        std::mem::take(&mut self.done)
    }
}

/// The hand-written loop: read, decode, compute, and commit outputs with offsets.
fn by_hand(log: &Log, query: &str) -> Measured {
    let out_topic = format!("hand-{query}-out");
    log.create_topic(&out_topic, 1, keep_forever())
        .wait()
        .expect("create out");
    let group = format!("hand-{query}");
    measure(|| {
        let mut offset = 0;
        let mut out = Output::default();
        let mut since = 0usize;
        let mut last = Instant::now();
        let mut windows: HashMap<i64, HashMap<u64, (u64, u64)>> = HashMap::new();
        let mut max_time = i64::MIN;
        let mut buf = Vec::new();
        let windowed = query == "tumbling" || query == "hopping";
        let (size, slide) = if query == "tumbling" {
            (10_000, 10_000)
        } else {
            (10_000, 2_000)
        };
        loop {
            let f = log.read("bids", 0, offset, 256 << 10).expect("read");
            let mut rest = f.records.clone();
            let at_end = f.batch_count == 0;
            while !rest.is_empty() {
                let h = batch::BatchHeader::parse(&rest).expect("header");
                let one = rest.split_to(h.total_len());
                for r in batch::decode(&one).expect("decode") {
                    if r.offset < offset {
                        continue;
                    }
                    offset = r.offset + 1;
                    since += 1;
                    let Ok(b) = BidCodec.decode(r.value.as_deref().unwrap_or_default()) else {
                        continue;
                    };
                    match query {
                        "q1" => {
                            buf.clear();
                            let m = Bid {
                                price: b.price * 908 / 1000,
                                ..b
                            };
                            BidCodec.encode(&m, &mut buf).expect("encode");
                            out.push(b.date_time, &buf);
                        }
                        "q2" => {
                            if b.auction % 123 == 0 {
                                buf.clear();
                                PairCodec
                                    .encode(&(b.auction, b.price), &mut buf)
                                    .expect("encode");
                                out.push(b.date_time, &buf);
                            }
                        }
                        _ => {
                            max_time = max_time.max(b.date_time);
                            let t = b.date_time;
                            let mut start = t - t.rem_euclid(slide);
                            while start + size > t {
                                let a = windows
                                    .entry(start)
                                    .or_default()
                                    .entry(b.auction)
                                    .or_default();
                                a.0 += 1;
                                a.1 = a.1.max(b.price);
                                start -= slide;
                            }
                        }
                    }
                }
            }
            if windowed {
                let closed: Vec<i64> = windows
                    .keys()
                    .copied()
                    .filter(|s| s + size <= max_time)
                    .collect();
                for s in closed {
                    for (auction, (count, max)) in windows.remove(&s).unwrap_or_default() {
                        let value = if query == "tumbling" {
                            serde_json::to_vec(&Windowed {
                                key: auction,
                                start: s,
                                end: s + size,
                                value: (count, max),
                            })
                        } else {
                            serde_json::to_vec(&Windowed {
                                key: auction,
                                start: s,
                                end: s + size,
                                value: count,
                            })
                        };
                        out.push(s + size - 1, &value.expect("json"));
                    }
                }
            }
            if at_end
                || since as u64 >= checkpoint_records()
                || last.elapsed().as_millis() >= u128::from(checkpoint_ms())
            {
                let mut unit = Unit::new();
                for batch in out.take() {
                    unit.append_batches(&out_topic, 0, batch.into());
                }
                unit.commit_offset(
                    &group,
                    "bids",
                    0,
                    CommittedOffset {
                        offset,
                        leader_epoch: -1,
                        metadata: String::new(),
                        commit_timestamp: 0,
                    },
                );
                log.commit(unit).wait().expect("commit");
                since = 0;
                last = Instant::now();
            }
            if at_end {
                break;
            }
        }
    })
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; nothing to list.
    }
    let n = env_or("WEIR_BENCH_EVENTS", 10_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let log = Log::open(dir.path()).expect("open log");
    let t = Instant::now();
    generate(&log, "bids", 1, n);
    let parts = partitions();
    if parts > 1 {
        generate(&log, &format!("bids-{parts}"), parts, n);
    }
    println!("generated {n} bids in {:.1?}", t.elapsed());
    let mut rows = Vec::new();
    let only = std::env::var("WEIR_BENCH_QUERIES").unwrap_or_default();
    for q in ["q1", "q2", "tumbling", "hopping"] {
        if !only.is_empty() && !only.split(',').any(|o| o == q) {
            continue;
        }
        let hand = by_hand(&log, q);
        let fw = framework(&log, q);
        let per = |m: &Measured| (n as f64 / m.wall.as_secs_f64(), n as f64 / m.cpu.max(1e-9));
        let (fw_wall, fw_cpu) = per(&fw);
        let (hand_wall, hand_cpu) = per(&hand);
        println!(
            "{q:>9}: weir-stream {:>6.2}M ev/s ({:>6.2}M ev/CPU-s) | by hand {:>6.2}M ev/s ({:>6.2}M ev/CPU-s) | ratio {:.0}% (wall), {:.0}% (CPU)",
            fw_wall / 1e6,
            fw_cpu / 1e6,
            hand_wall / 1e6,
            hand_cpu / 1e6,
            100.0 * fw_wall / hand_wall,
            100.0 * fw_cpu / hand_cpu
        );
        let parallel = (parts > 1).then(|| {
            let (wall, cpu) = per(&framework_parallel(&log, q, parts));
            println!(
                "{q:>9}: weir-stream with {parts} tasks over {parts} partitions {:>6.2}M ev/s ({:>6.2}M ev/CPU-s)",
                wall / 1e6,
                cpu / 1e6
            );
            serde_json::json!({ "tasks": parts, "events_per_sec": wall, "events_per_cpu_sec": cpu })
        });
        rows.push(serde_json::json!({
            "query": q,
            "parallel": parallel,
            "framework_events_per_sec": fw_wall,
            "framework_events_per_cpu_sec": fw_cpu,
            "hand_events_per_sec": hand_wall,
            "hand_events_per_cpu_sec": hand_cpu,
            "ratio_wall": fw_wall / hand_wall,
            "ratio_cpu": fw_cpu / hand_cpu,
        }));
    }
    let cpu = common::cpu_model();
    let report = serde_json::json!({
        "benchmark": "weir-stream nexmark-style",
        "hardware": { "cpu": cpu, "cores": common::cores() },
        "parameters": {
            "events": n, "auctions": AUCTIONS, "events_per_event_second": EVENTS_PER_SEC,
            "checkpoint_ms": checkpoint_ms(), "checkpoint_records": checkpoint_records(),
            "durability": "fsync", "value_bytes": 32,
            "parallel_partitions": partitions()
        },
        "results": rows,
    });
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let path = std::path::Path::new(&dir).join("bench-reports");
    if std::fs::create_dir_all(&path).is_ok() {
        let file = path.join("stream.json");
        if std::fs::write(
            &file,
            serde_json::to_vec_pretty(&report).unwrap_or_default(),
        )
        .is_ok()
        {
            println!("report: {}", file.display());
        }
    }
}
