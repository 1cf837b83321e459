//! The log handle: opens the database, hands writes to the writer, serves reads.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::{oneshot, watch};

use crate::batch;
use crate::error::{LogError, Result};
use crate::keys::{self, BATCHES, GROUP_OFFSETS, INDEX, IndexEntry, PARTITIONS};
use crate::topic::{TopicConfig, TopicMeta};
use crate::unit::{Appended, CommittedOffset, Unit};
use crate::writer::{self, Published, Request, UnitReply, Writer};

/// When a commit reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync every commit; a caller is answered after its data is on disk. The default.
    #[default]
    Fsync,
    /// fsync at most every this many milliseconds. Commits since the last fsync live only in
    /// this process's memory (redb's non-durable commits): a process crash loses them, as
    /// a power loss does, though they were acknowledged.
    Interval(u64),
    /// Never fsync on the write path (a durable commit runs every 30 s so redb can reuse
    /// space, and on close); a crash loses everything since the last of those.
    None,
}

/// How to open a log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// When commits reach the disk.
    pub durability: Durability,
    /// redb's page cache, in bytes.
    pub cache_size: usize,
    /// How often retention runs; `None` runs it only when asked
    /// ([`Log::enforce_retention`]).
    pub retention_check_interval: Option<Duration>,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Fsync,
            cache_size: 256 << 20,
            retention_check_interval: Some(Duration::from_secs(300)),
        }
    }
}

/// The file inside the data directory that holds the log.
pub const DB_FILE: &str = "weir.redb";

pub(crate) struct PartitionHandle {
    pub high_watermark: watch::Sender<i64>,
    pub log_start: AtomicI64,
    pub bytes: AtomicU64,
}

impl PartitionHandle {
    pub(crate) fn new(log_start: i64, next: i64, bytes: u64) -> Self {
        Self {
            high_watermark: watch::Sender::new(next),
            log_start: AtomicI64::new(log_start),
            bytes: AtomicU64::new(bytes),
        }
    }
}

pub(crate) struct TopicHandle {
    pub meta: TopicMeta,
    pub parts: Vec<PartitionHandle>,
}

/// A partition's bounds as last committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionBounds {
    /// The first offset still stored.
    pub log_start: i64,
    /// The next offset to be written (Kafka's high watermark).
    pub high_watermark: i64,
    /// Bytes of batches stored.
    pub bytes: u64,
}

/// Whole batches read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Concatenated v2 batches as stored; the first may start below the offset asked for.
    pub records: Bytes,
    /// Number of batches in `records`.
    pub batch_count: usize,
    /// The partition's high watermark in the snapshot read.
    pub high_watermark: i64,
    /// The partition's log start offset in the snapshot read.
    pub log_start: i64,
}

impl Fetched {
    /// The records of the fetched batches (uncompressed batches only), from `from` on.
    pub fn decode_from(&self, from: i64) -> Result<Vec<batch::StoredRecord>> {
        let mut out = Vec::new();
        let mut rest = self.records.clone();
        while !rest.is_empty() {
            let h = batch::BatchHeader::parse(&rest)?;
            let one = rest.split_to(h.total_len().min(rest.len()));
            out.extend(
                batch::decode(&one)?
                    .into_iter()
                    .filter(|r| r.offset >= from),
            );
        }
        Ok(out)
    }
}

/// A write on its way to the disk: `.await` it, or `.wait()` outside async code.
#[derive(Debug)]
pub struct Pending<T> {
    state: PendingState<T>,
}

#[derive(Debug)]
enum PendingState<T> {
    Ready(Option<Result<T>>),
    Waiting(oneshot::Receiver<Result<T>>),
}

impl<T> Pending<T> {
    fn ready(r: Result<T>) -> Self {
        Self {
            state: PendingState::Ready(Some(r)),
        }
    }

    /// Blocks the thread until the write is committed. Do not call it inside an async runtime.
    pub fn wait(self) -> Result<T> {
        match self.state {
            PendingState::Ready(r) => r.unwrap_or(Err(LogError::Closed)),
            PendingState::Waiting(rx) => rx.blocking_recv().unwrap_or(Err(LogError::Closed)),
        }
    }
}

// The receiver is Unpin and `T` is never pinned in place.
impl<T> Unpin for Pending<T> {}

impl<T> Future for Pending<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        // Neither variant is structurally pinned: the receiver is Unpin.
        match &mut self.get_mut().state {
            PendingState::Ready(r) => Poll::Ready(r.take().unwrap_or(Err(LogError::Closed))),
            PendingState::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(LogError::Closed))),
        }
    }
}

struct Inner {
    db: Arc<Database>,
    published: Arc<Published>,
    tx: Option<Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    dir: PathBuf,
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// A handle on the log; cheap to clone. The last clone dropped finishes queued commits.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// A handle that does not keep the log open; for observers such as metrics collectors.
#[derive(Clone)]
pub struct WeakLog {
    inner: std::sync::Weak<Inner>,
}

impl std::fmt::Debug for WeakLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakLog").finish_non_exhaustive()
    }
}

impl WeakLog {
    /// The log, if it is still open.
    pub fn upgrade(&self) -> Option<Log> {
        self.inner.upgrade().map(|inner| Log { inner })
    }
}

pub(crate) fn validate_state_table(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 200 {
        return Err(LogError::InvalidStateTable(name.to_string()));
    }
    Ok(())
}

impl Log {
    /// Opens (or creates) the log in directory `dir` with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, LogOptions::default())
    }

    /// Opens (or creates) the log in directory `dir`.
    ///
    /// After a crash this recovers the last committed state: nothing acknowledged is lost and
    /// nothing half-written is visible.
    pub fn open_with(dir: impl AsRef<Path>, options: LogOptions) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let db = Database::builder()
            .set_cache_size(options.cache_size)
            .create(dir.join(DB_FILE))
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => LogError::Storage(format!(
                    "{} is already open in another process (is a broker or pipeline running on it?)",
                    dir.display()
                )),
                e => e.into(),
            })?;
        let db = Arc::new(db);
        writer::init_tables(&db)?;
        let topics = writer::load_state(&db)?;
        let published: HashMap<_, _> = topics
            .iter()
            .map(|(n, t)| (n.clone(), writer::publish_topic(t)))
            .collect();
        let published = Arc::new(RwLock::new(published));
        crate::metrics::watch_log(&published);
        let (tx, rx) = std::sync::mpsc::channel();
        let w = Writer::new(
            db.clone(),
            published.clone(),
            topics,
            options.durability,
            options.retention_check_interval,
            writer::load_producers(&db)?,
        );
        let writer = std::thread::Builder::new()
            .name("weir-log-writer".into())
            .spawn(move || w.run(rx))?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                published,
                tx: Some(tx),
                writer: Some(writer),
                dir,
            }),
        })
    }

    /// A handle that does not keep the log open.
    pub fn downgrade(&self) -> WeakLog {
        WeakLog {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn send<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Request) -> Pending<T> {
        let (reply, rx) = oneshot::channel();
        match self.inner.tx.as_ref().map(|tx| tx.send(make(reply))) {
            Some(Ok(())) => Pending {
                state: PendingState::Waiting(rx),
            },
            _ => Pending::ready(Err(LogError::Closed)),
        }
    }

    fn topic_handle(&self, topic: &str) -> Result<Arc<TopicHandle>> {
        self.inner
            .published
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(topic)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(topic.to_string()))
    }

    fn partition<'a>(&self, t: &'a TopicHandle, partition: i32) -> Result<&'a PartitionHandle> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| t.parts.get(p))
            .ok_or_else(|| LogError::UnknownPartition {
                topic: t.meta.name.clone(),
                partition,
            })
    }

    /// Creates a topic.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        config: TopicConfig,
    ) -> Pending<TopicMeta> {
        if let Err(e) = crate::topic::validate_topic_name(name) {
            return Pending::ready(Err(e));
        }
        let name = name.to_string();
        self.send(|reply| Request::CreateTopic {
            name,
            partitions,
            config,
            reply,
        })
    }

    /// Deletes a topic and all its batches.
    pub fn delete_topic(&self, name: &str) -> Pending<()> {
        let name = name.to_string();
        self.send(|reply| Request::DeleteTopic { name, reply })
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<TopicMeta> {
        let map = self
            .inner
            .published
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut v: Vec<_> = map.values().map(|t| t.meta.clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The topic with this Kafka topic id (Metadata v10+, Produce/Fetch v13+), if any.
    pub fn topic_by_uuid(&self, uuid: &[u8; 16]) -> Option<TopicMeta> {
        let map = self
            .inner
            .published
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.values()
            .find(|t| t.meta.uuid == *uuid)
            .map(|t| t.meta.clone())
    }

    /// One topic's description, if it exists.
    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.topic_handle(name).ok().map(|t| t.meta.clone())
    }

    /// Commits a unit: its appends, offset commits and state changes, all or nothing.
    ///
    /// Batches are validated here, on the caller's thread, so the writer only copies bytes.
    /// Returns where each append landed, in the unit's order.
    pub fn commit(&self, mut unit: Unit) -> Pending<Vec<Appended>> {
        if let Err(e) = self.validate(&mut unit) {
            return Pending::ready(Err(e));
        }
        if unit.is_empty() {
            return Pending::ready(Ok(Vec::new()));
        }
        self.send(|reply| Request::Unit {
            unit,
            reply: UnitReply::Many(reply),
        })
    }

    fn validate(&self, unit: &mut Unit) -> Result<()> {
        for a in &mut unit.appends {
            let t = self.topic_handle(&a.topic)?;
            self.partition(&t, a.partition)?;
            let max = t.meta.config.max_message_bytes.max(0) as usize;
            a.batches = batch::split_and_validate(a.payload.clone(), max)?;
        }
        // Offset keys hold a group id's length in 16 bits; a longer one would be cut and
        // collide with another group's.
        let groups = unit
            .offsets
            .iter()
            .map(|c| &c.group)
            .chain(&unit.deleted_groups);
        if let Some(g) = groups.into_iter().find(|g| g.len() > usize::from(u16::MAX)) {
            return Err(LogError::InvalidGroup(g.len()));
        }
        Ok(())
    }

    /// Appends pre-encoded v2 batches to one partition; returns the first offset assigned.
    pub fn append(&self, topic: &str, partition: i32, batches: Bytes) -> Pending<Appended> {
        let mut unit = Unit::new();
        unit.append_batches(topic, partition, batches);
        self.commit_one(unit)
    }

    /// Appends records to one partition as one uncompressed batch.
    pub fn append_records(
        &self,
        topic: &str,
        partition: i32,
        records: &[batch::Record],
    ) -> Pending<Appended> {
        if records.is_empty() {
            return Pending::ready(Err(batch_empty()));
        }
        let mut unit = Unit::new();
        unit.append_records(topic, partition, records);
        self.commit_one(unit)
    }

    fn commit_one(&self, mut unit: Unit) -> Pending<Appended> {
        if let Err(e) = self.validate(&mut unit) {
            return Pending::ready(Err(e));
        }
        self.send(|reply| Request::Unit {
            unit,
            reply: UnitReply::One(reply),
        })
    }

    /// Deletes whole batches that end below `before` (-1: everything); returns the new log
    /// start offset. Kafka's DeleteRecords.
    pub fn delete_records(&self, topic: &str, partition: i32, before: i64) -> Pending<i64> {
        let topic = topic.to_string();
        self.send(|reply| Request::DeleteRecords {
            topic,
            partition,
            before,
            reply,
        })
    }

    /// Runs retention now as if the clock read `now_ms`; returns how many partitions shrank.
    pub fn enforce_retention(&self, now_ms: i64) -> Pending<u64> {
        self.send(|reply| Request::Retention { now_ms, reply })
    }

    /// Makes every commit so far durable (an fsync), whatever the durability setting.
    pub fn sync(&self) -> Pending<()> {
        self.send(|reply| Request::Sync { reply })
    }

    /// A new idempotent producer id, never handed out before in this log (Kafka's
    /// InitProducerId without a transactional id; the epoch is 0).
    pub fn allocate_producer_id(&self) -> Pending<i64> {
        self.send(|reply| Request::AllocateProducerId { reply })
    }

    /// A partition's bounds as last committed.
    pub fn bounds(&self, topic: &str, partition: i32) -> Result<PartitionBounds> {
        let t = self.topic_handle(topic)?;
        let p = self.partition(&t, partition)?;
        Ok(PartitionBounds {
            log_start: p.log_start.load(Ordering::Acquire),
            high_watermark: *p.high_watermark.borrow(),
            bytes: p.bytes.load(Ordering::Acquire),
        })
    }

    /// Reads whole batches from `offset` on, up to `max_bytes` (at least one batch, as
    /// Kafka does, so a batch larger than `max_bytes` still gets through).
    ///
    /// A read at the high watermark returns no batches; below the log start or above the
    /// high watermark it is `OffsetOutOfRange`. Never waits on the writer.
    pub fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Fetched> {
        let t = self.topic_handle(topic)?;
        self.partition(&t, partition)?;
        let (id, p) = (t.meta.id, partition as u32);
        let txn = self.inner.db.begin_read()?;
        let (log_start, hw) = txn
            .open_table(PARTITIONS)?
            .get(&keys::partition_key(id, p))?
            .map(|v| keys::decode_bounds(v.value()))
            .ok_or_else(|| LogError::UnknownTopic(topic.to_string()))?;
        if offset < log_start || offset > hw {
            return Err(LogError::OffsetOutOfRange {
                topic: topic.to_string(),
                partition,
                offset,
                log_start,
                high_watermark: hw,
            });
        }
        let mut out = Fetched {
            records: Bytes::new(),
            batch_count: 0,
            high_watermark: hw,
            log_start,
        };
        if offset == hw {
            return Ok(out);
        }
        let batches = txn.open_table(BATCHES)?;
        let lo = keys::batch_key(id, p, 0);
        let hi = keys::batch_key(id, p + 1, 0);
        // The batch holding `offset` is the last one whose base offset is at or below it.
        let at = keys::batch_key(id, p, offset);
        let start = match batches.range::<&[u8; 16]>(&lo..=&at)?.next_back() {
            Some(e) => {
                let (k, v) = e?;
                let h = batch::BatchHeader::parse(v.value())?;
                if h.last_offset() >= offset {
                    *k.value()
                } else {
                    at
                }
            }
            None => at,
        };
        let mut buf = BytesMut::new();
        for e in batches.range::<&[u8; 16]>(&start..&hi)? {
            let (_, v) = e?;
            let v = v.value();
            if out.batch_count > 0 && buf.len() + v.len() > max_bytes {
                break;
            }
            buf.extend_from_slice(v);
            out.batch_count += 1;
            if buf.len() >= max_bytes {
                break;
            }
        }
        out.records = buf.freeze();
        Ok(out)
    }

    /// The first batch whose largest timestamp is at or after `timestamp`: its base offset
    /// and that largest timestamp. None when every batch is older.
    pub fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>> {
        let t = self.topic_handle(topic)?;
        self.partition(&t, partition)?;
        let (id, p) = (t.meta.id, partition as u32);
        let txn = self.inner.db.begin_read()?;
        let index = txn.open_table(INDEX)?;
        let lo = keys::batch_key(id, p, 0);
        let hi = keys::batch_key(id, p + 1, 0);
        for e in index.range::<&[u8; 16]>(&lo..&hi)? {
            let (k, v) = e?;
            let entry = IndexEntry::decode(v.value());
            if entry.max_timestamp >= timestamp {
                return Ok(Some((keys::key_offset(k.value()), entry.max_timestamp)));
            }
        }
        Ok(None)
    }

    /// A watch on a partition's high watermark, to wait for new data without polling.
    pub fn watch(&self, topic: &str, partition: i32) -> Result<watch::Receiver<i64>> {
        let t = self.topic_handle(topic)?;
        Ok(self.partition(&t, partition)?.high_watermark.subscribe())
    }

    /// Waits until the partition's high watermark passes `offset`; returns it.
    ///
    /// Wrap it in a timeout for a long poll. Fails if the topic is deleted meanwhile.
    pub async fn wait_beyond(&self, topic: &str, partition: i32, offset: i64) -> Result<i64> {
        let mut rx = self.watch(topic, partition)?;
        let hw = *rx
            .wait_for(|hw| *hw > offset)
            .await
            .map_err(|_| LogError::UnknownTopic(topic.to_string()))?;
        Ok(hw)
    }

    /// A group's committed offset for one partition.
    pub fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<CommittedOffset>> {
        let txn = self.inner.db.begin_read()?;
        let table = txn.open_table(GROUP_OFFSETS)?;
        let v = table.get(keys::offset_key(group, topic, partition).as_slice())?;
        Ok(v.and_then(|v| CommittedOffset::decode(v.value())))
    }

    /// Every offset a group has committed: (topic, partition, offset), sorted.
    pub fn group_offsets(&self, group: &str) -> Result<Vec<(String, i32, CommittedOffset)>> {
        let txn = self.inner.db.begin_read()?;
        let table = txn.open_table(GROUP_OFFSETS)?;
        let prefix = keys::group_prefix(group);
        let mut out = Vec::new();
        for e in table.range(prefix.as_slice()..)? {
            let (k, v) = e?;
            let k = k.value();
            if !k.starts_with(&prefix) {
                break;
            }
            if let (Some((_, t, p)), Some(o)) = (
                keys::parse_offset_key(k),
                CommittedOffset::decode(v.value()),
            ) {
                out.push((t.to_string(), p, o));
            }
        }
        Ok(out)
    }

    /// Groups that have committed offsets.
    pub fn groups_with_offsets(&self) -> Result<Vec<String>> {
        let txn = self.inner.db.begin_read()?;
        let table = txn.open_table(GROUP_OFFSETS)?;
        let mut out: Vec<String> = Vec::new();
        for e in table.iter()? {
            let (k, _) = e?;
            if let Some((g, _, _)) = keys::parse_offset_key(k.value())
                && out.last().map(String::as_str) != Some(g)
            {
                out.push(g.to_string());
            }
        }
        Ok(out)
    }

    /// One value of a named state table.
    pub fn state_get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        validate_state_table(table)?;
        let name = format!("{}{table}", keys::STATE_PREFIX);
        let txn = self.inner.db.begin_read()?;
        match txn.open_table(redb::TableDefinition::<&[u8], &[u8]>::new(&name)) {
            Ok(t) => Ok(t.get(key)?.map(|v| v.value().to_vec())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every entry of a named state table, in key order (for restoring a pipeline).
    pub fn state_entries(&self, table: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        validate_state_table(table)?;
        let name = format!("{}{table}", keys::STATE_PREFIX);
        let txn = self.inner.db.begin_read()?;
        let t = match txn.open_table(redb::TableDefinition::<&[u8], &[u8]>::new(&name)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for e in t.iter()? {
            let (k, v) = e?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
}

fn batch_empty() -> LogError {
    LogError::InvalidBatch(crate::error::BatchError::Empty)
}
