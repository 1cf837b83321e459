//! `weir produce TOPIC`: one record per input line.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Args;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use weir_client::{Acks, Delivery, Producer, ProducerConfig, ProducerRecord, parse_compression};

use crate::connect::{BrokerAddr, connect};

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to produce to.
    pub topic: String,
    /// Read lines from this file instead of stdin.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    pub key_sep: Option<String>,
    /// Send every record to this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Acknowledgements: 0, 1 or -1 (all).
    #[arg(long, default_value = "-1", allow_hyphen_values = true)]
    pub acks: String,
    /// Compression: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Milliseconds a batch waits for more records.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Idempotent producer: a batch retried after a lost answer is stored once (needs acks=-1).
    #[arg(long)]
    pub idempotent: bool,
    #[command(flatten)]
    pub addr: BrokerAddr,
}

/// Deliveries awaited before reading more input, to bound memory.
const MAX_UNACKED: usize = 100_000;

pub async fn run(args: ProduceArgs) -> Result<()> {
    let config = ProducerConfig {
        acks: Acks::parse(&args.acks)?,
        compression: parse_compression(&args.compression)?,
        linger: Duration::from_millis(args.linger_ms),
        idempotent: args.idempotent,
        ..ProducerConfig::default()
    };
    let client = connect(&args.addr).await?;
    let producer = Producer::new(client, config)?;
    let count = match &args.file {
        Some(path) => {
            let file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("cannot open {}", path.display()))?;
            produce_lines(&producer, &args, BufReader::new(file)).await?
        }
        None => produce_lines(&producer, &args, BufReader::new(tokio::io::stdin())).await?,
    };
    eprintln!("produced {count} record(s) to {}", args.topic);
    Ok(())
}

async fn produce_lines(
    producer: &Producer,
    args: &ProduceArgs,
    mut input: impl AsyncBufRead + Unpin,
) -> Result<u64> {
    let mut unacked: VecDeque<Delivery> = VecDeque::new();
    let mut line = Vec::new();
    let mut count = 0u64;
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .await
            .context("cannot read input")?;
        if n == 0 {
            break;
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        let mut record = ProducerRecord {
            topic: args.topic.clone(),
            partition: args.partition,
            ..Default::default()
        };
        match args.key_sep.as_deref().map(str::as_bytes) {
            Some(sep) if !sep.is_empty() => match find(&line, sep) {
                Some(at) => {
                    record.key = Some(Bytes::copy_from_slice(&line[..at]));
                    record.value = Some(Bytes::copy_from_slice(&line[at + sep.len()..]));
                }
                None => record.value = Some(Bytes::copy_from_slice(&line)),
            },
            _ => record.value = Some(Bytes::copy_from_slice(&line)),
        }
        let delivery = producer
            .send(record)
            .await
            .with_context(|| format!("cannot produce to {}", args.topic))?;
        unacked.push_back(delivery);
        count += 1;
        if unacked.len() >= MAX_UNACKED
            && let Some(d) = unacked.pop_front()
        {
            d.wait()
                .await
                .with_context(|| format!("record {} was not stored", count))?;
        }
    }
    producer.flush().await;
    for d in unacked {
        d.wait().await.context("a record was not stored")?;
    }
    Ok(count)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
