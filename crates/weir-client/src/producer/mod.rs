//! A batching producer: records are grouped per partition, a batch is sent
//! when it is full or has lingered long enough, and every record learns its
//! offset once the broker acknowledged its batch.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod sender;

use bytes::Bytes;
use kafka_protocol::records::Compression;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

use crate::client::{Client, TopicInfo};
use crate::error::{ClientError, Result};
use crate::partitioner::{Partitioner, partition_for_key};
use crate::records::PendingRecord;

/// How many acknowledgements the broker waits for before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Fire and forget: no answer, no offsets.
    None,
    /// The leader wrote it.
    Leader,
    /// Every in-sync replica has it (for weir: the durable commit happened).
    #[default]
    All,
}

impl Acks {
    /// The wire value: 0, 1 or -1.
    pub fn as_i16(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }

    /// Parses 0, 1, -1 or "all".
    pub fn parse(s: &str) -> Result<Acks> {
        match s.trim() {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "-1" | "all" => Ok(Acks::All),
            other => Err(ClientError::InvalidArgument(format!(
                "acks {other:?}: use 0, 1 or -1 (all)"
            ))),
        }
    }
}

/// Parses a compression name: none, gzip, snappy, lz4 or zstd.
pub fn parse_compression(s: &str) -> Result<Compression> {
    match s.trim().to_ascii_lowercase().as_str() {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "snappy" => Ok(Compression::Snappy),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        other => Err(ClientError::InvalidArgument(format!(
            "compression {other:?}: use none, gzip, snappy, lz4 or zstd"
        ))),
    }
}

/// Settings of a [`Producer`].
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Acknowledgements to wait for.
    pub acks: Acks,
    /// How long a batch may wait for more records before it is sent.
    pub linger: Duration,
    /// A batch is sent once its records add up to this many bytes.
    pub batch_size: usize,
    /// Compression of every batch.
    pub compression: Compression,
    /// Partition choice for records that do not name one.
    pub partitioner: Partitioner,
    /// Largest produce request; batches beyond it go in the next request.
    pub max_request_size: usize,
    /// Batches queued or in flight before `send` waits (back-pressure).
    pub max_pending_batches: usize,
    /// Broker-side timeout for acks.
    pub ack_timeout: Duration,
    /// Ask the broker to create unknown topics.
    pub allow_auto_create: bool,
    /// How often a batch is sent again after a retriable error (leader moved, connection
    /// lost, timeout). Without idempotence a retry may store a batch twice or, with
    /// several requests in flight, reorder it after a newer one — as Kafka's producer.
    pub retries: u32,
    /// Wait before a retry.
    pub retry_backoff: Duration,
    /// Idempotence (`enable.idempotence`): the producer gets a producer id and numbers its
    /// batches per partition, so a batch retried after a lost answer is stored once, in
    /// order. Needs `acks = All`; at most [`IDEMPOTENT_MAX_IN_FLIGHT`] requests are in flight.
    pub idempotent: bool,
}

/// Requests in flight of an idempotent producer: the broker remembers this many batches per
/// producer and partition to recognise retries (Kafka's limit).
pub const IDEMPOTENT_MAX_IN_FLIGHT: usize = 5;

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 256 << 10,
            compression: Compression::None,
            partitioner: Partitioner::Default,
            max_request_size: 8 << 20,
            max_pending_batches: 256,
            ack_timeout: Duration::from_secs(30),
            allow_auto_create: true,
            retries: 3,
            retry_backoff: Duration::from_millis(100),
            idempotent: false,
        }
    }
}

/// A record to produce.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    /// Target topic.
    pub topic: String,
    /// Target partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    /// Key (hashed by the default partitioner).
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Timestamp in ms since the epoch; `None` = now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value only.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the partition.
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((key.into(), Some(value.into())));
        self
    }

    /// Sets the timestamp.
    pub fn with_timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Partition.
    pub partition: i32,
    /// Offset (-1 with acks=0).
    pub offset: i64,
    /// Timestamp the record was sent with.
    pub timestamp: i64,
}

type Outcome = Option<std::result::Result<i64, Arc<ClientError>>>;

/// Resolves to a record's [`RecordMetadata`] once its batch was acknowledged; `.await` it.
#[derive(Debug)]
pub struct Delivery {
    rx: watch::Receiver<Outcome>,
    index: i64,
    partition: i32,
    timestamp: i64,
    topic: Arc<str>,
}

impl Delivery {
    /// Whether the batch has been answered (then [`wait`](Self::wait) returns at once).
    pub fn is_done(&self) -> bool {
        self.rx.borrow().is_some()
    }

    /// Waits for the batch's answer.
    pub async fn wait(mut self) -> Result<RecordMetadata> {
        let outcome = match self.rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        };
        match outcome {
            Some(Ok(base)) => Ok(RecordMetadata {
                partition: self.partition,
                offset: if base < 0 { -1 } else { base + self.index },
                timestamp: self.timestamp,
            }),
            Some(Err(e)) => Err(ClientError::Delivery {
                topic: self.topic.to_string(),
                partition: self.partition,
                source: e,
            }),
            None => Err(ClientError::ProducerClosed),
        }
    }
}

impl IntoFuture for Delivery {
    type Output = Result<RecordMetadata>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<RecordMetadata>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}

struct Batch {
    topic: Arc<TopicInfo>,
    partition: i32,
    records: Vec<PendingRecord>,
    /// How many records went into the encoded batch (records is emptied by encoding).
    records_sent: usize,
    /// The encoded batch, kept for retries.
    encoded: Option<Bytes>,
    /// Sends so far.
    attempts: u32,
    /// First sequence number, given at first encoding (idempotent producers only).
    sequence: Option<i32>,
    bytes: usize,
    created: Instant,
    done: watch::Sender<Outcome>,
    _permit: OwnedSemaphorePermit,
}

/// Open batches of one topic, looked up by `&str` so that appending allocates nothing.
struct TopicBatches {
    name: Arc<str>,
    open: HashMap<i32, Batch>,
    /// Round-robin counter, or the sticky partition for records without a key.
    next_partition: u32,
}

#[derive(Default)]
struct Accumulator {
    topics: HashMap<String, TopicBatches>,
    ready: VecDeque<Batch>,
}

impl Accumulator {
    fn topic(&mut self, name: &str) -> &mut TopicBatches {
        if !self.topics.contains_key(name) {
            self.topics.insert(
                name.to_string(),
                TopicBatches {
                    name: Arc::from(name),
                    open: HashMap::new(),
                    next_partition: 0,
                },
            );
        }
        self.topics
            .get_mut(name)
            .unwrap_or_else(|| unreachable!("inserted above"))
    }

    /// Moves every open batch that `expired` selects to the ready queue.
    fn close_where(&mut self, mut expired: impl FnMut(&Batch) -> bool) {
        for t in self.topics.values_mut() {
            let keys: Vec<i32> = t
                .open
                .iter()
                .filter(|(_, b)| expired(b))
                .map(|(k, _)| *k)
                .collect();
            for k in keys {
                if let Some(b) = t.open.remove(&k) {
                    self.ready.push_back(b);
                }
            }
        }
    }
}

struct Shared {
    client: Client,
    config: ProducerConfig,
    accumulator: Mutex<Accumulator>,
    wake: Notify,
    batches: Arc<Semaphore>,
    outstanding: AtomicUsize,
    idle: Notify,
    closed: AtomicBool,
    /// Producer id and epoch, once InitProducerId answered (idempotent producers only).
    identity: tokio::sync::Mutex<Option<(i64, i16)>>,
    /// Next sequence number per (topic, partition) (idempotent producers only).
    sequences: Mutex<HashMap<(String, i32), i32>>,
    /// Limits requests in flight (idempotent producers only).
    in_flight: Option<Arc<Semaphore>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Accumulator> {
        self.accumulator.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The producer id and epoch, asked for on first use.
    async fn identity(&self) -> Result<(i64, i16)> {
        let mut slot = self.identity.lock().await;
        if let Some(id) = *slot {
            return Ok(id);
        }
        let request = kafka_protocol::messages::InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(kafka_protocol::messages::ProducerId(-1))
            .with_producer_epoch(-1);
        let conn = self.client.bootstrap_connection().await?;
        let response = conn.send(&request).await?;
        crate::error::check(
            response.error_code,
            || "get a producer id for the idempotent producer".into(),
            None,
        )?;
        let id = (response.producer_id.0, response.producer_epoch);
        *slot = Some(id);
        Ok(id)
    }

    /// Gives `records` consecutive sequence numbers on `topic`-`partition`; returns the first.
    fn next_sequence(&self, topic: &str, partition: i32, records: usize) -> i32 {
        let mut map = self.sequences.lock().unwrap_or_else(|e| e.into_inner());
        let next = map.entry((topic.to_string(), partition)).or_insert(0);
        let first = *next;
        // Sequences wrap to 0 after i32::MAX, as Kafka's do.
        *next = (first as i64 + records as i64).rem_euclid(i32::MAX as i64 + 1) as i32;
        first
    }

    fn finish(&self, batch: Batch, outcome: std::result::Result<i64, Arc<ClientError>>) {
        let _ = batch.done.send(Some(outcome));
        drop(batch);
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}

impl Shared {
    /// Fails every batch with the same error.
    fn fail(&self, batches: Vec<Batch>, error: ClientError) {
        let error = Arc::new(error);
        for b in batches {
            self.finish(b, Err(error.clone()));
        }
    }
}

struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.wake.notify_one();
    }
}

/// A batching producer; clone it to share between tasks.
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
    _close: Arc<CloseOnDrop>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// A producer sending through `client`; spawns its sender task on the current runtime.
    pub fn new(client: Client, config: ProducerConfig) -> Result<Producer> {
        if config.batch_size == 0 || config.max_pending_batches == 0 {
            return Err(ClientError::InvalidArgument(
                "batch_size and max_pending_batches must be positive".into(),
            ));
        }
        if config.idempotent && config.acks != Acks::All {
            return Err(ClientError::InvalidArgument(
                "an idempotent producer needs acks=all (-1): with fewer acks a retry cannot \
                 be recognised"
                    .into(),
            ));
        }
        let in_flight = config
            .idempotent
            .then(|| Arc::new(Semaphore::new(IDEMPOTENT_MAX_IN_FLIGHT)));
        let shared = Arc::new(Shared {
            client,
            batches: Arc::new(Semaphore::new(config.max_pending_batches)),
            config,
            accumulator: Mutex::new(Accumulator::default()),
            wake: Notify::new(),
            outstanding: AtomicUsize::new(0),
            idle: Notify::new(),
            closed: AtomicBool::new(false),
            identity: tokio::sync::Mutex::new(None),
            sequences: Mutex::new(HashMap::new()),
            in_flight,
        });
        tokio::spawn(sender::sender_loop(shared.clone()));
        Ok(Producer {
            _close: Arc::new(CloseOnDrop(shared.clone())),
            shared,
        })
    }

    /// The client this producer sends through.
    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    /// Queues a record; the returned [`Delivery`] resolves when its batch is acknowledged.
    /// Waits only when too many batches are pending (back-pressure) or for topic metadata.
    pub async fn send(&self, record: ProducerRecord) -> Result<Delivery> {
        let shared = &self.shared;
        let topic = shared
            .client
            .topic(&record.topic, shared.config.allow_auto_create)
            .await?;
        let pending = PendingRecord {
            timestamp: record.timestamp.unwrap_or_else(now_ms),
            key: record.key,
            value: record.value,
            headers: record.headers,
        };
        let size = pending.approx_size();
        let sticky = record.partition.is_none()
            && pending.key.is_none()
            && shared.config.partitioner == Partitioner::Default;
        let mut pending = Some(pending);
        let mut permit = None;
        let mut partition = record.partition;
        loop {
            if let Some(delivery) = self.try_append(
                &topic,
                &mut partition,
                &mut pending,
                size,
                sticky,
                &mut permit,
            )? {
                return Ok(delivery);
            }
            permit = Some(
                shared
                    .batches
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| ClientError::ProducerClosed)?,
            );
        }
    }

    /// Appends `pending` to its partition's open batch; `Ok(None)` when a new
    /// batch is needed and `permit` is empty (then `pending` is left in place and
    /// `chosen` holds the partition picked, so the retry does not pick again).
    fn try_append(
        &self,
        topic: &Arc<TopicInfo>,
        chosen: &mut Option<i32>,
        pending: &mut Option<PendingRecord>,
        size: usize,
        sticky: bool,
        permit: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<Option<Delivery>> {
        let shared = &self.shared;
        let count = topic.partitions.len();
        let mut acc = shared.lock();
        let partition = match *chosen {
            Some(p) if p >= 0 && (p as usize) < count => p,
            Some(p) => {
                return Err(ClientError::UnknownPartition {
                    topic: topic.name.clone(),
                    partition: p,
                    count,
                });
            }
            None => choose(
                &mut acc,
                topic,
                pending.as_ref().and_then(|r| r.key.as_deref()),
                shared.config.partitioner,
            ),
        };
        *chosen = Some(partition);
        let acc = &mut *acc;
        let slot = acc.topic(&topic.name);
        let name = slot.name.clone();
        let batch = match slot.open.entry(partition) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => {
                let Some(p) = permit.take() else {
                    return Ok(None);
                };
                let (done, _) = watch::channel(None);
                shared.outstanding.fetch_add(1, Ordering::AcqRel);
                shared.wake.notify_one();
                v.insert(Batch {
                    topic: topic.clone(),
                    partition,
                    records: Vec::new(),
                    records_sent: 0,
                    encoded: None,
                    attempts: 0,
                    sequence: None,
                    bytes: 0,
                    created: Instant::now(),
                    done,
                    _permit: p,
                })
            }
        };
        let Some(record) = pending.take() else {
            return Err(ClientError::ProducerClosed);
        };
        let delivery = Delivery {
            rx: batch.done.subscribe(),
            index: batch.records.len() as i64,
            partition,
            timestamp: record.timestamp,
            topic: name,
        };
        batch.records.push(record);
        batch.bytes += size;
        if batch.bytes >= shared.config.batch_size {
            if let Some(full) = slot.open.remove(&partition) {
                acc.ready.push_back(full);
            }
            if sticky && count > 1 {
                let slot = acc.topic(&topic.name);
                slot.next_partition = slot.next_partition.wrapping_add(1);
            }
            shared.wake.notify_one();
        }
        Ok(Some(delivery))
    }

    /// Sends every queued record now and waits until all pending batches are answered.
    pub async fn flush(&self) {
        let shared = &self.shared;
        {
            shared.lock().close_where(|_| true);
        }
        shared.wake.notify_one();
        loop {
            let idle = shared.idle.notified();
            if shared.outstanding.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

fn choose(acc: &mut Accumulator, topic: &TopicInfo, key: Option<&[u8]>, how: Partitioner) -> i32 {
    let count = topic.partitions.len();
    match (how, key) {
        (Partitioner::Default, Some(k)) => partition_for_key(k, count),
        (Partitioner::Default, None) => {
            let n = acc.topic(&topic.name).next_partition;
            (n % count.max(1) as u32) as i32
        }
        (Partitioner::RoundRobin, _) => {
            let slot = acc.topic(&topic.name);
            let p = (slot.next_partition % count.max(1) as u32) as i32;
            slot.next_partition = slot.next_partition.wrapping_add(1);
            p
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
