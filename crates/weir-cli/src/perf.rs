//! `weir perf produce|consume`, in the manner of kafka-producer-perf-test.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use tokio::sync::mpsc;
use weir_client::{
    Acks, Client, ClientError, Consumer, ConsumerConfig, Delivery, NewTopic, Offset, Producer,
    ProducerConfig, ProducerRecord, ResponseError, parse_compression,
};

use crate::connect::{BrokerAddr, connect};

#[derive(Debug, Subcommand)]
pub enum PerfCommand {
    /// Produce N records of a fixed size as fast as possible.
    Produce(ProducePerfArgs),
    /// Read N records from the beginning of a topic as fast as possible.
    Consume(ConsumePerfArgs),
}

#[derive(Debug, Args)]
pub struct ProducePerfArgs {
    /// Topic (created if missing).
    #[arg(long, default_value = "weir-perf")]
    pub topic: String,
    /// Partitions of the topic if it has to be created.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Number of records.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Batch size in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub batch: usize,
    /// Linger in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub linger: u64,
    /// Acknowledgements: 0, 1 or -1 (all).
    #[arg(long, default_value = "-1", allow_hyphen_values = true)]
    pub acks: String,
    /// Compression: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Idempotent producer (at most 5 requests in flight).
    #[arg(long)]
    pub idempotent: bool,
    /// Print one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub addr: BrokerAddr,
}

#[derive(Debug, Args)]
pub struct ConsumePerfArgs {
    /// Topic to read.
    #[arg(long, default_value = "weir-perf")]
    pub topic: String,
    /// Number of records to read.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Largest fetch response in bytes (also the per-partition limit). A few MiB is
    /// fastest here: much larger responses cost more in allocation than they save.
    #[arg(long, default_value_t = 4 << 20)]
    pub fetch_max_bytes: i32,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
    /// Print one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub addr: BrokerAddr,
}

pub async fn run(cmd: PerfCommand) -> Result<()> {
    match cmd {
        PerfCommand::Produce(args) => produce(args).await,
        PerfCommand::Consume(args) => consume(args).await,
    }
}

/// Latency percentiles of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Latency {
    avg: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

fn percentiles(mut micros: Vec<u32>) -> Latency {
    if micros.is_empty() {
        return Latency {
            avg: 0.0,
            p50: 0.0,
            p99: 0.0,
            p999: 0.0,
            max: 0.0,
        };
    }
    micros.sort_unstable();
    let at = |q: f64| {
        let i = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1;
        f64::from(micros[i]) / 1000.0
    };
    let sum: u64 = micros.iter().map(|&m| u64::from(m)).sum();
    Latency {
        avg: sum as f64 / micros.len() as f64 / 1000.0,
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        max: f64::from(micros[micros.len() - 1]) / 1000.0,
    }
}

fn latency_json(l: &Latency) -> serde_json::Value {
    serde_json::json!({"avg": l.avg, "p50": l.p50, "p99": l.p99, "p999": l.p999, "max": l.max})
}

async fn ensure_topic(client: &Client, topic: &str, partitions: i32) -> Result<()> {
    match client.create_topic(NewTopic::new(topic, partitions)).await {
        Ok(()) => Ok(()),
        Err(e) if e.kafka_code() == Some(ResponseError::TopicAlreadyExists) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create topic {topic}")),
    }
}

async fn produce(args: ProducePerfArgs) -> Result<()> {
    if args.records == 0 {
        bail!("--records must be at least 1");
    }
    let acks = Acks::parse(&args.acks)?;
    let config = ProducerConfig {
        acks,
        compression: parse_compression(&args.compression)?,
        linger: Duration::from_millis(args.linger),
        batch_size: args.batch.max(1),
        idempotent: args.idempotent,
        ..ProducerConfig::default()
    };
    let client = connect(&args.addr).await?;
    ensure_topic(&client, &args.topic, args.partitions).await?;
    let producer = Producer::new(client, config)?;
    // A fixed pseudo-random payload, shared by every record (as kafka-producer-perf-test does).
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let payload: Bytes = (0..args.size)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            b'a' + (seed % 26) as u8
        })
        .collect::<Vec<u8>>()
        .into();

    // Deliveries are awaited in send order by a collector task, which takes each
    // record's latency from its send instant to the moment its batch is answered.
    let (tx, mut rx) = mpsc::channel::<(Instant, Delivery)>(1 << 16);
    let records = args.records;
    let collector = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(records as usize);
        let mut first_error: Option<ClientError> = None;
        let mut now = Instant::now();
        let mut since_clock = 0u32;
        while let Some((sent, d)) = rx.recv().await {
            // Reading the clock per record costs more than the rest of this loop; a
            // record already answered shares the last reading, refreshed every 64.
            let ready = d.is_done();
            let result = d.wait().await;
            since_clock += 1;
            if !ready || since_clock >= 64 {
                now = Instant::now();
                since_clock = 0;
            }
            match result {
                Ok(_) => lat.push(
                    now.saturating_duration_since(sent)
                        .as_micros()
                        .min(u128::from(u32::MAX)) as u32,
                ),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        (lat, first_error)
    });
    let start = Instant::now();
    for _ in 0..args.records {
        let record = ProducerRecord {
            topic: args.topic.clone(),
            value: Some(payload.clone()),
            ..Default::default()
        };
        let sent = Instant::now();
        let d = producer
            .send(record)
            .await
            .with_context(|| format!("cannot produce to {}", args.topic))?;
        if tx.send((sent, d)).await.is_err() {
            bail!("latency collector stopped early");
        }
    }
    producer.flush().await;
    drop(tx);
    let (lat, first_error) = collector.await.context("latency collector panicked")?;
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(e) = first_error {
        return Err(e).context(format!(
            "{} of {} records failed",
            args.records - lat.len() as u64,
            args.records
        ));
    }
    let rate = args.records as f64 / elapsed;
    let mb = rate * args.size as f64 / (1024.0 * 1024.0);
    let l = percentiles(lat);
    if args.json {
        let line = serde_json::json!({
            "test": "produce", "topic": args.topic, "records": args.records,
            "record_size": args.size, "batch_size": args.batch, "linger_ms": args.linger,
            "acks": acks.as_i16(), "compression": args.compression,
            "elapsed_s": elapsed, "records_per_sec": rate, "mb_per_sec": mb,
            "latency_ms": latency_json(&l),
        });
        println!("{line}");
    } else {
        println!(
            "{} records sent, {rate:.1} records/sec ({mb:.2} MB/sec), {:.2} ms avg latency, \
             {:.2} ms max latency, {:.2} ms 50th, {:.2} ms 99th, {:.2} ms 99.9th.",
            args.records, l.avg, l.max, l.p50, l.p99, l.p999
        );
    }
    Ok(())
}

async fn consume(args: ConsumePerfArgs) -> Result<()> {
    let client = connect(&args.addr).await?;
    let mut consumer = Consumer::new(
        client,
        ConsumerConfig {
            max_bytes: args.fetch_max_bytes,
            partition_max_bytes: args.fetch_max_bytes,
            ..ConsumerConfig::default()
        },
    );
    consumer
        .assign_all(&args.topic, Offset::Earliest)
        .await
        .with_context(|| format!("cannot read topic {}", args.topic))?;
    let deadline = Duration::from_secs(args.timeout_secs);
    let mut fetch_lat = Vec::new();
    let mut count = 0u64;
    let mut bytes = 0u64;
    let start = Instant::now();
    while count < args.records {
        if start.elapsed() > deadline {
            bail!(
                "read only {count} of {} records in {} s; produce more first \
                 (`weir perf produce --records {}`) or lower --records",
                args.records,
                args.timeout_secs,
                args.records
            );
        }
        let t = Instant::now();
        let batch = consumer.poll().await.context("fetch failed")?;
        fetch_lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        for r in &batch {
            bytes += r.value.as_ref().map_or(0, |v| v.len() as u64)
                + r.key.as_ref().map_or(0, |k| k.len() as u64);
        }
        count += batch.len() as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rate = count as f64 / elapsed;
    let mb = bytes as f64 / elapsed / (1024.0 * 1024.0);
    let fetches = fetch_lat.len();
    let l = percentiles(fetch_lat);
    if args.json {
        let line = serde_json::json!({
            "test": "consume", "topic": args.topic, "records": count, "bytes": bytes,
            "fetches": fetches, "elapsed_s": elapsed, "records_per_sec": rate, "mb_per_sec": mb,
            "fetch_latency_ms": latency_json(&l),
        });
        println!("{line}");
    } else {
        println!(
            "{count} records read in {fetches} fetches, {rate:.1} records/sec ({mb:.2} MB/sec), \
             fetch latency {:.2} ms avg, {:.2} ms 50th, {:.2} ms 99th, {:.2} ms 99.9th, {:.2} ms max.",
            l.avg, l.p50, l.p99, l.p999, l.max
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_nearest_rank() {
        let l = percentiles((1..=1000).map(|i| i * 1000).collect());
        assert_eq!(l.p50, 500.0);
        assert_eq!(l.p99, 990.0);
        assert_eq!(l.p999, 999.0);
        assert_eq!(l.max, 1000.0);
        assert!((l.avg - 500.5).abs() < 1e-9);
        assert_eq!(percentiles(Vec::new()).max, 0.0);
    }
}
