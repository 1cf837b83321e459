//! `weir consume TOPIC`: print records.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use std::collections::BTreeMap;

use weir_client::{
    AutoOffsetReset, Client, Consumer, ConsumerConfig, ConsumerRecord, GroupConfig, GroupConsumer,
    Offset,
};

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
    /// Start at the earliest record instead of the end (with --group: where the group has
    /// no committed offset yet).
    #[arg(long)]
    pub from_beginning: bool,
    /// Start at this offset (with --partition).
    #[arg(long, conflicts_with = "from_beginning")]
    pub offset: Option<i64>,
    /// Read only this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Read as a member of this consumer group: share the partitions with the group's other
    /// members, start at the group's committed offsets, commit after printing.
    #[arg(long, conflicts_with_all = ["offset", "partition"])]
    pub group: Option<String>,
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
    if let Some(group) = args.group.clone() {
        return run_in_group(client, group, &args).await;
    }
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
            if idle_too_long(args.timeout_ms, last_record) {
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

/// Whether no record came for longer than `--timeout-ms`.
fn idle_too_long(timeout_ms: Option<u64>, last_record: Instant) -> bool {
    timeout_ms.is_some_and(|t| last_record.elapsed() >= Duration::from_millis(t))
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

/// `weir consume TOPIC --group G`: a group member that commits what it printed; leaves the
/// group on --max, --timeout-ms, Ctrl-C or SIGTERM.
async fn run_in_group(client: Client, group: String, args: &ConsumeArgs) -> Result<()> {
    let config = GroupConfig {
        auto_offset_reset: if args.from_beginning {
            AutoOffsetReset::Earliest
        } else {
            AutoOffsetReset::Latest
        },
        fetch: ConsumerConfig {
            max_wait: Duration::from_millis(250),
            ..ConsumerConfig::default()
        },
        ..GroupConfig::new(group.clone())
    };
    let mut consumer = GroupConsumer::new(client, config, &[&args.topic])?;
    let mut shutdown = std::pin::pin!(crate::broker::shutdown_signal());
    let result = async {
        let mut out = std::io::BufWriter::new(std::io::stdout());
        let mut seen = 0u64;
        let mut last_record = Instant::now();
        while args.max.is_none_or(|m| seen < m) {
            let records = tokio::select! {
                r = consumer.poll() => r.with_context(|| {
                    format!("cannot read topic {} in group {group}", args.topic)
                })?,
                () = &mut shutdown => break,
            };
            if records.is_empty() {
                if idle_too_long(args.timeout_ms, last_record) {
                    break;
                }
                continue;
            }
            last_record = Instant::now();
            let mut printed: BTreeMap<(String, i32), i64> = BTreeMap::new();
            for r in records {
                if args.max.is_some_and(|m| seen >= m) {
                    break;
                }
                print_record(&mut out, &r, args.format).context("cannot write to stdout")?;
                printed.insert((r.topic.to_string(), r.partition), r.offset + 1);
                seen += 1;
            }
            // Commit only what reached stdout: a record is printed at least once.
            out.flush().context("cannot write to stdout")?;
            match consumer.commit_offsets(&printed).await {
                Ok(()) => {}
                // The partitions moved to another member mid-way; it prints from the last commit.
                Err(e) if e.kafka_code().is_some() => {
                    tracing::warn!(error = %e, "commit refused; the group is rebalancing");
                }
                Err(e) => return Err(e).context("cannot commit offsets"),
            }
        }
        anyhow::Ok(())
    }
    .await;
    let left = consumer.close().await;
    result?;
    left.with_context(|| format!("cannot leave group {group}"))
}
