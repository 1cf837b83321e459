//! `weir consume TOPIC`: print records.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use weir_client::{Consumer, ConsumerConfig, ConsumerRecord, Offset};

use crate::connect::{BrokerAddr, connect};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// The value's bytes, one record per line.
    Value,
    /// One JSON object per line with partition, offset, timestamp, key, value and headers.
    Json,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Start at the earliest record instead of the end.
    #[arg(long)]
    pub from_beginning: bool,
    /// Start at this offset (with --partition).
    #[arg(long, conflicts_with = "from_beginning")]
    pub offset: Option<i64>,
    /// Read only this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Stop after this many records.
    #[arg(long)]
    pub max: Option<u64>,
    /// Stop when no record arrived for this many milliseconds.
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value = "value")]
    pub format: Format,
    #[command(flatten)]
    pub addr: BrokerAddr,
}

pub async fn run(args: ConsumeArgs) -> Result<()> {
    if args.offset.is_some() && args.partition.is_none() {
        bail!("--offset needs --partition: an offset means something only within one partition");
    }
    let client = connect(&args.addr).await?;
    let start = match (args.offset, args.from_beginning) {
        (Some(o), _) => Offset::At(o),
        (None, true) => Offset::Earliest,
        (None, false) => Offset::Latest,
    };
    let mut consumer = Consumer::new(
        client,
        ConsumerConfig {
            max_wait: Duration::from_millis(250),
            ..ConsumerConfig::default()
        },
    );
    match args.partition {
        Some(p) => consumer.assign(&args.topic, &[p], start).await,
        None => consumer.assign_all(&args.topic, start).await,
    }
    .with_context(|| format!("cannot read topic {}", args.topic))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut seen = 0u64;
    let mut last_record = Instant::now();
    while args.max.is_none_or(|m| seen < m) {
        let records = consumer
            .poll()
            .await
            .with_context(|| format!("cannot read topic {}", args.topic))?;
        if records.is_empty() {
            out.flush().context("cannot write to stdout")?;
            if args
                .timeout_ms
                .is_some_and(|t| last_record.elapsed() >= Duration::from_millis(t))
            {
                break;
            }
            continue;
        }
        last_record = Instant::now();
        for r in records {
            if args.max.is_some_and(|m| seen >= m) {
                break;
            }
            print_record(&mut out, &r, args.format).context("cannot write to stdout")?;
            seen += 1;
        }
        // Flush per fetch so that a reader (or Ctrl-C) sees whole fetches promptly.
        out.flush().context("cannot write to stdout")?;
    }
    out.flush().context("cannot write to stdout")?;
    Ok(())
}

fn print_record(out: &mut impl Write, r: &ConsumerRecord, format: Format) -> std::io::Result<()> {
    match format {
        Format::Value => {
            out.write_all(r.value.as_deref().unwrap_or_default())?;
            out.write_all(b"\n")
        }
        Format::Json => {
            let text = |b: &Option<bytes::Bytes>| {
                b.as_ref()
                    .map(|b| serde_json::Value::String(String::from_utf8_lossy(b).into_owned()))
                    .unwrap_or(serde_json::Value::Null)
            };
            let headers: serde_json::Map<String, serde_json::Value> = r
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), text(v)))
                .collect();
            let line = serde_json::json!({
                "topic": r.topic.as_ref(),
                "partition": r.partition,
                "offset": r.offset,
                "timestamp": r.timestamp,
                "key": text(&r.key),
                "value": text(&r.value),
                "headers": headers,
            });
            writeln!(out, "{line}")
        }
    }
}
