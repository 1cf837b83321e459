//! Remote mode for the examples, until weir-stream reads and writes through a broker
//! itself: copy a broker's topic into the embedded log, run the pipelines there, and
//! produce their results back to the broker with weir-client (weir or Kafka alike).
//!
//! What this gives up against a real remote source: the pipeline runs once over what the
//! topic held when the copy caught up, in one process, and the broker sees results only
//! when the job ends (at-least-once: a failed copy back can be run again).

use std::collections::VecDeque;

use anyhow::Context as _;
use weir::client::{
    Client, Consumer, ConsumerConfig, NewTopic, Offset, Producer, ProducerConfig, ProducerRecord,
};
use weir::log::{Log, Record, TopicConfig};

/// Copies every record of topic `remote` at `brokers` (all partitions, earliest to the end
/// as it stands when the copy catches up) into partition 0 of `local`, keeping timestamps,
/// keys and values. Returns how many.
pub async fn pull(
    brokers: &str,
    remote: &str,
    log: &Log,
    local: &str,
    show: bool,
) -> anyhow::Result<u64> {
    let mut consumer = Consumer::new(connect(brokers).await?, ConsumerConfig::default());
    consumer
        .assign_all(remote, Offset::Earliest)
        .await
        .with_context(|| {
            format!("reading topic {remote:?} at {brokers}: does it exist? produce to it first")
        })?;
    copy_in(consumer, brokers, remote, log, local, show).await
}

/// Copies what `consumer` reads, to the end of its partitions, into partition 0 of `local`.
async fn copy_in(
    mut consumer: Consumer,
    brokers: &str,
    remote: &str,
    log: &Log,
    local: &str,
    show: bool,
) -> anyhow::Result<u64> {
    if log.topic(local).is_none() {
        log.create_topic(local, 1, TopicConfig::default()).await?;
    }
    let bar = super::progress(show, 0, &format!("copying {remote} from {brokers}"));
    let mut copied = 0u64;
    loop {
        let records = consumer
            .poll()
            .await
            .with_context(|| format!("reading {remote} at {brokers}"))?;
        if !records.is_empty() {
            let batch: Vec<Record> = records
                .into_iter()
                .map(|r| Record {
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                    timestamp: r.timestamp,
                })
                .collect();
            for chunk in batch.chunks(1_000) {
                log.append_records(local, 0, chunk).await?;
            }
            copied += batch.len() as u64;
            bar.set_position(copied);
        }
        if consumer.at_end() {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(copied)
}

/// Remote mode's input: produces `records` to partition 0 of topic `remote` at `brokers`
/// (created with one partition if missing, so that outside consumers see them in order),
/// then copies exactly those records (not what earlier runs produced there) into partition
/// 0 of `local`. Returns how many.
pub async fn round_trip(
    records: Vec<Record>,
    brokers: &str,
    remote: &str,
    log: &Log,
    local: &str,
    show: bool,
) -> anyhow::Result<u64> {
    let client = connect(brokers).await?;
    ensure_topic(&client, brokers, remote).await?;
    let from = client
        .list_offsets(remote, &[(0, Offset::Latest)])
        .await
        .with_context(|| format!("finding the end of {remote} at {brokers}"))?
        .first()
        .map_or(0, |(_, o)| *o);
    produce(client.clone(), records, brokers, remote, Some(0), show).await?;
    let mut consumer = Consumer::new(client, ConsumerConfig::default());
    consumer
        .assign(remote, &[0], Offset::At(from))
        .await
        .with_context(|| format!("reading back {remote} at {brokers}"))?;
    copy_in(consumer, brokers, remote, log, local, show).await
}

/// Produces every record of partition 0 of `local` to topic `remote` at `brokers` (created
/// with one partition if missing, even when there is nothing to produce), waiting for every
/// acknowledgement. Returns how many.
pub async fn push(
    log: &Log,
    local: &str,
    brokers: &str,
    remote: &str,
    show: bool,
) -> anyhow::Result<u64> {
    let client = connect(brokers).await?;
    ensure_topic(&client, brokers, remote).await?;
    let records = super::read_all(log, local)?;
    produce(client, records, brokers, remote, None, show).await
}

/// Creates topic `remote` with one partition unless the broker has it.
async fn ensure_topic(client: &Client, brokers: &str, remote: &str) -> anyhow::Result<()> {
    let exists = client
        .list_topics()
        .await
        .with_context(|| format!("listing the topics at {brokers}"))?
        .iter()
        .any(|t| t == remote);
    if !exists {
        client
            .create_topic(NewTopic::new(remote, 1))
            .await
            .with_context(|| format!("creating topic {remote} at {brokers}"))?;
    }
    Ok(())
}

async fn connect(brokers: &str) -> anyhow::Result<Client> {
    Client::connect(brokers)
        .await
        .with_context(|| format!("connecting to the broker at {brokers} (is it running?)"))
}

/// Produces `records` (key, value and timestamp) to `remote`, to `partition` if given,
/// waiting for every acknowledgement. Returns how many.
async fn produce(
    client: Client,
    records: Vec<Record>,
    brokers: &str,
    remote: &str,
    partition: Option<i32>,
    show: bool,
) -> anyhow::Result<u64> {
    let producer = Producer::new(client, ProducerConfig::default())?;
    let bar = super::progress(
        show,
        records.len() as u64,
        &format!("writing {remote} at {brokers}"),
    );
    let mut sent = 0u64;
    let mut pending = VecDeque::new();
    for r in records {
        let mut out =
            ProducerRecord::new(remote, r.value.unwrap_or_default()).with_timestamp(r.timestamp);
        if let Some(k) = r.key {
            out = out.with_key(k);
        }
        if let Some(p) = partition {
            out = out.with_partition(p);
        }
        pending.push_back(producer.send(out).await?);
        if pending.len() > 100_000
            && let Some(d) = pending.pop_front()
        {
            d.wait().await?;
        }
        sent += 1;
        if sent.is_multiple_of(10_000) {
            bar.set_position(sent);
        }
    }
    producer.flush().await;
    for d in pending {
        d.wait()
            .await
            .with_context(|| format!("producing to {remote} at {brokers}"))?;
    }
    bar.finish_and_clear();
    Ok(sent)
}
