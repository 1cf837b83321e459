//! The group-commit writer: one thread owns redb's write transaction.
//!
//! It takes everything queued meanwhile (units from many callers, topic changes, retention),
//! applies it in one transaction, commits once at the configured durability, publishes the
//! new high watermarks and only then answers each caller.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};
use tokio::sync::oneshot;

use crate::error::{LogError, Result};
use crate::keys::{self, BATCHES, GROUP_OFFSETS, INDEX, IndexEntry, META, PARTITIONS, TOPICS};
use crate::log::{Durability, PartitionHandle, TopicHandle};
use crate::metrics::{TopicCounters, WriterMetrics};
use crate::producer::{PRODUCERS, ProducerState, Sequence, producer_key};
use crate::topic::{TopicConfig, TopicMeta};
use crate::unit::{Appended, StateOp, Unit};

/// A state table opened in the writer's transaction.
type StateTable<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;

/// Most bytes of appends the writer takes into one transaction before committing.
const MAX_TXN_BYTES: usize = 64 << 20;
/// Under `Durability::None`, a durable commit this often lets redb reuse freed pages.
const NONE_SYNC_INTERVAL: Duration = Duration::from_secs(30);

/// Where a unit's result goes: every append's position, or the one append's.
pub(crate) enum UnitReply {
    Many(oneshot::Sender<Result<Vec<Appended>>>),
    One(oneshot::Sender<Result<Appended>>),
}

impl UnitReply {
    fn send(self, r: Result<Vec<Appended>>) {
        match self {
            UnitReply::Many(tx) => drop(tx.send(r)),
            UnitReply::One(tx) => {
                let one = r.map(|v| {
                    v.into_iter().next().unwrap_or(Appended {
                        base_offset: -1,
                        last_offset: -1,
                        duplicate: false,
                    })
                });
                drop(tx.send(one));
            }
        }
    }
}

pub(crate) enum Request {
    Unit {
        unit: Unit,
        reply: UnitReply,
    },
    CreateTopic {
        name: String,
        partitions: i32,
        config: TopicConfig,
        reply: oneshot::Sender<Result<TopicMeta>>,
    },
    DeleteTopic {
        name: String,
        reply: oneshot::Sender<Result<()>>,
    },
    DeleteRecords {
        topic: String,
        partition: i32,
        before: i64,
        reply: oneshot::Sender<Result<i64>>,
    },
    Retention {
        now_ms: i64,
        reply: oneshot::Sender<Result<u64>>,
    },
    Sync {
        reply: oneshot::Sender<Result<()>>,
    },
    AllocateProducerId {
        reply: oneshot::Sender<Result<i64>>,
    },
}

impl Request {
    fn payload_len(&self) -> usize {
        match self {
            Request::Unit { unit, .. } => unit.appends.iter().map(|a| a.payload.len()).sum(),
            _ => 0,
        }
    }
}

/// A partition as the writer sees it, ahead of what readers see until the commit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PartState {
    pub log_start: i64,
    pub next: i64,
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct TopicState {
    pub meta: TopicMeta,
    pub parts: Vec<PartState>,
}

/// The state readers share: topics and their partitions' published bounds.
pub(crate) type Published = RwLock<HashMap<String, Arc<TopicHandle>>>;

/// A reply waiting for the commit.
enum Pending {
    Unit(UnitReply, Vec<Appended>),
    Topic(oneshot::Sender<Result<TopicMeta>>, TopicMeta),
    Deleted(oneshot::Sender<Result<()>>),
    Records(oneshot::Sender<Result<i64>>, i64),
    Retention(oneshot::Sender<Result<u64>>, u64),
    Sync(oneshot::Sender<Result<()>>),
    ProducerId(oneshot::Sender<Result<i64>>, i64),
}

impl Pending {
    fn fail(self, e: &LogError) {
        let e = LogError::Storage(e.to_string());
        match self {
            Pending::Unit(r, _) => r.send(Err(e)),
            Pending::Topic(r, _) => drop(r.send(Err(e))),
            Pending::Deleted(r) => drop(r.send(Err(e))),
            Pending::Records(r, _) => drop(r.send(Err(e))),
            Pending::Retention(r, _) => drop(r.send(Err(e))),
            Pending::Sync(r) => drop(r.send(Err(e))),
            Pending::ProducerId(r, _) => drop(r.send(Err(e))),
        }
    }

    fn succeed(self) {
        match self {
            Pending::Unit(r, v) => r.send(Ok(v)),
            Pending::Topic(r, m) => drop(r.send(Ok(m))),
            Pending::Deleted(r) => drop(r.send(Ok(()))),
            Pending::Records(r, v) => drop(r.send(Ok(v))),
            Pending::Retention(r, v) => drop(r.send(Ok(v))),
            Pending::Sync(r) => drop(r.send(Ok(()))),
            Pending::ProducerId(r, id) => drop(r.send(Ok(id))),
        }
    }
}

/// What readers must learn after a commit, in order.
enum Change {
    Created(String),
    Deleted(String),
    Partition(String, usize),
}

pub(crate) struct Writer {
    db: Arc<Database>,
    published: Arc<Published>,
    topics: HashMap<String, TopicState>,
    durability: Durability,
    last_sync: Instant,
    unsynced: bool,
    retention_interval: Option<Duration>,
    last_retention: Instant,
    metrics: WriterMetrics,
    counters: HashMap<String, TopicCounters>,
    /// (topic, records, bytes) appended in the group being committed; counted once it commits.
    group_counts: Vec<(String, u64, u64)>,
    /// Idempotent producers by (topic id, partition, producer id).
    producers: HashMap<[u8; 16], ProducerState>,
}

/// Where a planned batch goes: written at an offset, or a retry already written.
enum Planned {
    Write(i64),
    Duplicate(i64, i64),
}

/// Reads every idempotent producer's state as committed.
pub(crate) fn load_producers(db: &Database) -> Result<HashMap<[u8; 16], ProducerState>> {
    let txn = db.begin_read()?;
    let mut out = HashMap::new();
    for e in txn.open_table(PRODUCERS)?.iter()? {
        let (k, v) = e?;
        let st = ProducerState::decode(v.value())
            .ok_or_else(|| LogError::Storage("malformed producer state".into()))?;
        out.insert(*k.value(), st);
    }
    Ok(out)
}

/// Reads topics and partition bounds as committed: at open, and after a failed commit.
pub(crate) fn load_state(db: &Database) -> Result<HashMap<String, TopicState>> {
    let txn = db.begin_read()?;
    let mut topics = HashMap::new();
    let topic_table = match txn.open_table(TOPICS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(topics),
        Err(e) => return Err(e.into()),
    };
    let parts_table = txn.open_table(PARTITIONS)?;
    let index = txn.open_table(INDEX)?;
    for entry in topic_table.iter()? {
        let (name, json) = entry?;
        let meta: TopicMeta = serde_json::from_str(json.value())
            .map_err(|e| LogError::Storage(format!("topic record of {}: {e}", name.value())))?;
        let mut parts = Vec::with_capacity(meta.partitions as usize);
        for p in 0..meta.partitions as u32 {
            let (log_start, next) = parts_table
                .get(&keys::partition_key(meta.id, p))?
                .map(|v| keys::decode_bounds(v.value()))
                .unwrap_or((0, 0));
            let mut bytes = 0u64;
            let lo = keys::batch_key(meta.id, p, 0);
            let hi = keys::batch_key(meta.id, p + 1, 0);
            for e in index.range::<&[u8; 16]>(&lo..&hi)? {
                bytes += u64::from(IndexEntry::decode(e?.1.value()).size);
            }
            parts.push(PartState {
                log_start,
                next,
                bytes,
            });
        }
        topics.insert(meta.name.clone(), TopicState { meta, parts });
    }
    Ok(topics)
}

/// Creates the tables a fresh database lacks, so readers can open them.
pub(crate) fn init_tables(db: &Database) -> Result<()> {
    let txn = db.begin_write()?;
    txn.open_table(BATCHES)?;
    txn.open_table(INDEX)?;
    txn.open_table(PARTITIONS)?;
    txn.open_table(TOPICS)?;
    txn.open_table(META)?;
    txn.open_table(GROUP_OFFSETS)?;
    txn.open_table(PRODUCERS)?;
    txn.commit()?;
    Ok(())
}

pub(crate) fn publish_topic(t: &TopicState) -> Arc<TopicHandle> {
    Arc::new(TopicHandle {
        meta: t.meta.clone(),
        parts: t
            .parts
            .iter()
            .map(|p| PartitionHandle::new(p.log_start, p.next, p.bytes))
            .collect(),
    })
}

impl Writer {
    pub(crate) fn new(
        db: Arc<Database>,
        published: Arc<Published>,
        topics: HashMap<String, TopicState>,
        durability: Durability,
        retention_interval: Option<Duration>,
        producers: HashMap<[u8; 16], ProducerState>,
    ) -> Self {
        Self {
            db,
            published,
            topics,
            durability,
            last_sync: Instant::now(),
            unsynced: false,
            retention_interval,
            last_retention: Instant::now(),
            metrics: WriterMetrics::get(),
            counters: HashMap::new(),
            group_counts: Vec::new(),
            producers,
        }
    }

    /// Serves requests until every sender is gone, then makes a last durable commit.
    pub(crate) fn run(mut self, rx: Receiver<Request>) {
        loop {
            let first = match rx.recv_timeout(self.idle_timeout()) {
                Ok(r) => Some(r),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut group = Vec::new();
            let mut bytes = 0;
            if let Some(r) = first {
                bytes += r.payload_len();
                group.push(r);
                while bytes < MAX_TXN_BYTES {
                    match rx.try_recv() {
                        Ok(r) => {
                            bytes += r.payload_len();
                            group.push(r);
                        }
                        Err(_) => break,
                    }
                }
            }
            let retention_due = self
                .retention_interval
                .is_some_and(|i| self.last_retention.elapsed() >= i);
            if retention_due {
                self.last_retention = Instant::now();
                let (reply, _) = oneshot::channel();
                group.push(Request::Retention {
                    now_ms: now_ms(),
                    reply,
                });
            }
            if group.is_empty() && !self.sync_due() {
                continue;
            }
            self.commit_group(group);
        }
        if self.unsynced {
            let (reply, _) = oneshot::channel();
            self.commit_group(vec![Request::Sync { reply }]);
        }
    }

    fn idle_timeout(&self) -> Duration {
        let mut t = Duration::from_secs(3600);
        if let Some(i) = self.retention_interval {
            t = t.min(i.saturating_sub(self.last_retention.elapsed()));
        }
        if self.unsynced {
            let every = match self.durability {
                Durability::Interval(ms) => Duration::from_millis(ms),
                _ => NONE_SYNC_INTERVAL,
            };
            t = t.min(every.saturating_sub(self.last_sync.elapsed()));
        }
        t.max(Duration::from_millis(1))
    }

    fn sync_due(&self) -> bool {
        self.unsynced
            && match self.durability {
                Durability::Fsync => true,
                Durability::Interval(ms) => self.last_sync.elapsed() >= Duration::from_millis(ms),
                Durability::None => self.last_sync.elapsed() >= NONE_SYNC_INTERVAL,
            }
    }

    fn commit_group(&mut self, group: Vec<Request>) {
        let force_sync = group.iter().any(|r| matches!(r, Request::Sync { .. }));
        let durable = force_sync || self.sync_due() || self.durability == Durability::Fsync;
        let mut pending = Vec::with_capacity(group.len());
        let mut changes = Vec::new();
        let started = Instant::now();
        let result = self.apply_all(group, durable, &mut pending, &mut changes);
        self.metrics
            .commit_duration
            .observe(started.elapsed().as_secs_f64());
        let counts = std::mem::take(&mut self.group_counts);
        match result {
            Ok(()) => {
                self.metrics.commits.inc();
                let mut records = 0;
                for (topic, n, bytes) in counts {
                    records += n;
                    let m = &self.metrics;
                    let c = self
                        .counters
                        .entry(topic)
                        .or_insert_with_key(|t| m.topic(t));
                    c.records.inc_by(n);
                    c.bytes.inc_by(bytes);
                }
                self.metrics.commit_records.observe(records as f64);
                if durable {
                    self.last_sync = Instant::now();
                    self.unsynced = false;
                } else {
                    self.unsynced = true;
                }
                self.publish(changes);
                for p in pending {
                    p.succeed();
                }
            }
            Err(e) => {
                self.metrics.failures.inc();
                tracing::error!(error = %e, "log commit failed; reloading committed state");
                for p in pending {
                    p.fail(&e);
                }
                match load_state(&self.db).and_then(|t| Ok((t, load_producers(&self.db)?))) {
                    Ok((t, p)) => (self.topics, self.producers) = (t, p),
                    Err(e) => tracing::error!(error = %e, "reloading the log state failed"),
                }
            }
        }
    }

    fn apply_all(
        &mut self,
        group: Vec<Request>,
        durable: bool,
        pending: &mut Vec<Pending>,
        changes: &mut Vec<Change>,
    ) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        // Two-phase commit is off (redb's default): one fsync per commit, checksums guard it.
        txn.set_durability(if durable {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        })?;
        for req in group {
            // Each request is checked in full before it writes anything, so a refused one
            // leaves the transaction as it was and the others still commit.
            match req {
                Request::Unit { unit, reply } => match self.apply_unit(&txn, unit, changes) {
                    Ok(v) => pending.push(Pending::Unit(reply, v)),
                    Err(e) if e.is_retriable() => return Err(e),
                    Err(e) => reply.send(Err(e)),
                },
                Request::CreateTopic {
                    name,
                    partitions,
                    config,
                    reply,
                } => match self.create_topic(&txn, name, partitions, config, changes) {
                    Ok(m) => pending.push(Pending::Topic(reply, m)),
                    Err(e) if e.is_retriable() => return Err(e),
                    Err(e) => drop(reply.send(Err(e))),
                },
                Request::DeleteTopic { name, reply } => {
                    match self.delete_topic(&txn, &name, changes) {
                        Ok(()) => pending.push(Pending::Deleted(reply)),
                        Err(e) if e.is_retriable() => return Err(e),
                        Err(e) => drop(reply.send(Err(e))),
                    }
                }
                Request::DeleteRecords {
                    topic,
                    partition,
                    before,
                    reply,
                } => match self.delete_records(&txn, &topic, partition, before, changes) {
                    Ok(v) => pending.push(Pending::Records(reply, v)),
                    Err(e) if e.is_retriable() => return Err(e),
                    Err(e) => drop(reply.send(Err(e))),
                },
                Request::Retention { now_ms, reply } => {
                    let n = self.apply_retention(&txn, now_ms, changes)?;
                    pending.push(Pending::Retention(reply, n));
                }
                Request::Sync { reply } => pending.push(Pending::Sync(reply)),
                Request::AllocateProducerId { reply } => {
                    let mut meta = txn.open_table(META)?;
                    let id = meta
                        .get("next_producer_id")?
                        .map(|v| v.value())
                        .unwrap_or(1000);
                    meta.insert("next_producer_id", id + 1)?;
                    pending.push(Pending::ProducerId(reply, id as i64));
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn part_index(&self, topic: &str, partition: i32) -> Result<(u32, usize)> {
        let t = self
            .topics
            .get(topic)
            .ok_or_else(|| LogError::UnknownTopic(topic.to_string()))?;
        if partition < 0 || partition >= t.meta.partitions {
            return Err(LogError::UnknownPartition {
                topic: topic.to_string(),
                partition,
            });
        }
        Ok((t.meta.id, partition as usize))
    }

    fn apply_unit(
        &mut self,
        txn: &WriteTransaction,
        unit: Unit,
        changes: &mut Vec<Change>,
    ) -> Result<Vec<Appended>> {
        // Plan everything first (offsets, producer sequences): the unit commits whole or not
        // at all, and once planned only the storage itself can fail.
        for op in &unit.state {
            let (StateOp::Put { table, .. }
            | StateOp::Delete { table, .. }
            | StateOp::Clear { table }) = op;
            crate::log::validate_state_table(table)?;
        }
        let mut next: HashMap<(u32, usize), i64> = HashMap::new();
        let mut producers: HashMap<[u8; 16], ProducerState> = HashMap::new();
        let mut plans = Vec::with_capacity(unit.appends.len());
        for a in &unit.appends {
            let (id, p) = self.part_index(&a.topic, a.partition)?;
            let at = next
                .entry((id, p))
                .or_insert(self.topics[&a.topic].parts[p].next);
            let mut plan = Vec::with_capacity(a.batches.len());
            for (h, _) in &a.batches {
                if h.producer_id >= 0 && h.base_sequence >= 0 {
                    let key = producer_key(id, p as u32, h.producer_id);
                    let known = producers.get(&key).or_else(|| self.producers.get(&key));
                    match ProducerState::check(known, h, &a.topic, a.partition)? {
                        Sequence::Duplicate {
                            base_offset,
                            last_offset,
                        } => {
                            plan.push(Planned::Duplicate(base_offset, last_offset));
                            continue;
                        }
                        Sequence::Next => {
                            let mut st = known.cloned().unwrap_or_default();
                            st.record(h, *at);
                            producers.insert(key, st);
                        }
                    }
                }
                plan.push(Planned::Write(*at));
                *at += i64::from(h.last_offset_delta) + 1;
            }
            plans.push(plan);
        }
        let mut appended = Vec::with_capacity(unit.appends.len());
        if !unit.appends.is_empty() {
            let mut batches = txn.open_table(BATCHES)?;
            let mut index = txn.open_table(INDEX)?;
            let mut bounds = txn.open_table(PARTITIONS)?;
            for (a, plan) in unit.appends.into_iter().zip(plans) {
                let (id, p) = self.part_index(&a.topic, a.partition)?;
                let part = &mut self.topics.get_mut(&a.topic).expect("planned above").parts[p];
                let (mut first, mut last) = (None, -1);
                let (mut n, mut size, mut wrote) = (0u64, 0u64, false);
                for ((h, bytes), planned) in a.batches.iter().zip(plan) {
                    let base = match planned {
                        Planned::Duplicate(base, end) => {
                            first.get_or_insert(base);
                            last = end;
                            continue;
                        }
                        Planned::Write(base) => base,
                    };
                    let key = keys::batch_key(id, p as u32, base);
                    {
                        let mut slot = batches.insert_reserve(&key, bytes.len())?;
                        let dst = slot.as_mut();
                        dst.copy_from_slice(bytes);
                        crate::batch::set_base_offset(dst, base);
                    }
                    let entry = IndexEntry {
                        last_offset_delta: h.last_offset_delta,
                        size: bytes.len() as u32,
                        max_timestamp: h.max_timestamp,
                    };
                    index.insert(&key, &entry.encode())?;
                    part.next = base + i64::from(h.last_offset_delta) + 1;
                    part.bytes += bytes.len() as u64;
                    first.get_or_insert(base);
                    last = part.next - 1;
                    n += h.record_count as u64;
                    size += bytes.len() as u64;
                    wrote = true;
                }
                appended.push(Appended {
                    base_offset: first.unwrap_or(part.next),
                    last_offset: last,
                    duplicate: !wrote,
                });
                if wrote {
                    bounds.insert(
                        &keys::partition_key(id, p as u32),
                        &keys::encode_bounds(part.log_start, part.next),
                    )?;
                    self.group_counts.push((a.topic.clone(), n, size));
                    changes.push(Change::Partition(a.topic, p));
                }
            }
        }
        if !producers.is_empty() {
            let mut table = txn.open_table(PRODUCERS)?;
            for (k, st) in &producers {
                table.insert(k, st.encode().as_slice())?;
            }
            self.producers.extend(producers);
        }
        if !unit.offsets.is_empty() || !unit.deleted_groups.is_empty() {
            let mut offsets = txn.open_table(GROUP_OFFSETS)?;
            for g in &unit.deleted_groups {
                let prefix = keys::group_prefix(g);
                match keys::prefix_end(&prefix) {
                    Some(end) => {
                        offsets.retain_in(prefix.as_slice()..end.as_slice(), |_, _| false)?
                    }
                    None => offsets.retain_in(prefix.as_slice().., |_, _| false)?,
                }
            }
            for c in &unit.offsets {
                let k = keys::offset_key(&c.group, &c.topic, c.partition);
                offsets.insert(k.as_slice(), c.offset.encode().as_slice())?;
            }
        }
        // Runs of ops on one table (a checkpoint writes many) share one opened table:
        // opening a redb table per op costs more than the op.
        let mut open: Option<(String, StateTable<'_>)> = None;
        for op in unit.state {
            let table = match &op {
                StateOp::Put { table, .. } | StateOp::Delete { table, .. } => table,
                StateOp::Clear { table } => {
                    drop(open.take());
                    let name = format!("{}{table}", keys::STATE_PREFIX);
                    txn.delete_table(redb::TableDefinition::<&[u8], &[u8]>::new(&name))?;
                    continue;
                }
            };
            if open.as_ref().is_none_or(|(n, _)| n != table) {
                drop(open.take());
                let name = format!("{}{table}", keys::STATE_PREFIX);
                let t = txn.open_table(redb::TableDefinition::<&[u8], &[u8]>::new(&name))?;
                open = Some((table.clone(), t));
            }
            let Some((_, t)) = open.as_mut() else {
                continue;
            };
            match op {
                StateOp::Put { key, value, .. } => {
                    t.insert(key.as_slice(), value.as_slice())?;
                }
                StateOp::Delete { key, .. } => {
                    t.remove(key.as_slice())?;
                }
                StateOp::Clear { .. } => {}
            }
        }
        drop(open);
        Ok(appended)
    }

    fn create_topic(
        &mut self,
        txn: &WriteTransaction,
        name: String,
        partitions: i32,
        config: TopicConfig,
        changes: &mut Vec<Change>,
    ) -> Result<TopicMeta> {
        crate::topic::validate_topic_name(&name)?;
        if !(1..=crate::topic::MAX_PARTITIONS).contains(&partitions) {
            return Err(LogError::InvalidPartitions(i64::from(partitions)));
        }
        if self.topics.contains_key(&name) {
            return Err(LogError::TopicExists(name));
        }
        let mut meta_table = txn.open_table(META)?;
        let id = meta_table
            .get("next_topic_id")?
            .map(|v| v.value())
            .unwrap_or(1);
        meta_table.insert("next_topic_id", id + 1)?;
        let meta = TopicMeta {
            name: name.clone(),
            uuid: *uuid::Uuid::new_v4().as_bytes(),
            id: id as u32,
            partitions,
            config,
        };
        let json = serde_json::to_string(&meta).map_err(|e| LogError::Storage(e.to_string()))?;
        txn.open_table(TOPICS)?
            .insert(name.as_str(), json.as_str())?;
        let mut bounds = txn.open_table(PARTITIONS)?;
        for p in 0..partitions as u32 {
            bounds.insert(&keys::partition_key(meta.id, p), &keys::encode_bounds(0, 0))?;
        }
        let parts = vec![
            PartState {
                log_start: 0,
                next: 0,
                bytes: 0
            };
            partitions as usize
        ];
        self.topics.insert(
            name.clone(),
            TopicState {
                meta: meta.clone(),
                parts,
            },
        );
        changes.push(Change::Created(name));
        Ok(meta)
    }

    fn delete_topic(
        &mut self,
        txn: &WriteTransaction,
        name: &str,
        changes: &mut Vec<Change>,
    ) -> Result<()> {
        let t = self
            .topics
            .get(name)
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))?;
        let id = t.meta.id;
        let lo = keys::batch_key(id, 0, 0);
        let hi = keys::batch_key(id + 1, 0, 0);
        txn.open_table(BATCHES)?
            .retain_in::<&[u8; 16], _>(&lo..&hi, |_, _| false)?;
        txn.open_table(INDEX)?
            .retain_in::<&[u8; 16], _>(&lo..&hi, |_, _| false)?;
        let (plo, phi) = (keys::partition_key(id, 0), keys::partition_key(id + 1, 0));
        txn.open_table(PARTITIONS)?
            .retain_in::<&[u8; 8], _>(&plo..&phi, |_, _| false)?;
        txn.open_table(TOPICS)?.remove(name)?;
        txn.open_table(PRODUCERS)?
            .retain_in::<&[u8; 16], _>(&lo..&hi, |_, _| false)?;
        self.producers.retain(|k, _| k[0..4] != id.to_be_bytes());
        self.topics.remove(name);
        changes.push(Change::Deleted(name.to_string()));
        Ok(())
    }

    /// Deletes whole batches that end below `before`; returns the new log start offset.
    fn delete_records(
        &mut self,
        txn: &WriteTransaction,
        topic: &str,
        partition: i32,
        before: i64,
        changes: &mut Vec<Change>,
    ) -> Result<i64> {
        let (id, p) = self.part_index(topic, partition)?;
        let part = self.topics[topic].parts[p];
        let before = if before < 0 { part.next } else { before };
        if before > part.next {
            return Err(LogError::OffsetOutOfRange {
                topic: topic.to_string(),
                partition,
                offset: before,
                log_start: part.log_start,
                high_watermark: part.next,
            });
        }
        self.truncate_front(
            txn,
            topic,
            id,
            p,
            |_, e, base| base + i64::from(e.last_offset_delta) < before,
            changes,
        )
    }

    /// Removes batches from the front of a partition while `doomed(bytes_left, entry, base)`
    /// holds; returns the new log start offset.
    fn truncate_front(
        &mut self,
        txn: &WriteTransaction,
        topic: &str,
        id: u32,
        p: usize,
        mut doomed: impl FnMut(u64, &IndexEntry, i64) -> bool,
        changes: &mut Vec<Change>,
    ) -> Result<i64> {
        let part = self.topics[topic].parts[p];
        let lo = keys::batch_key(id, p as u32, 0);
        let hi = keys::batch_key(id, p as u32 + 1, 0);
        let mut index = txn.open_table(INDEX)?;
        let mut left = part.bytes;
        let mut new_start = None;
        let mut removed_bytes = 0u64;
        for e in index.range::<&[u8; 16]>(&lo..&hi)? {
            let (k, v) = e?;
            let entry = IndexEntry::decode(v.value());
            let base = keys::key_offset(k.value());
            if !doomed(left, &entry, base) {
                new_start = Some(base);
                break;
            }
            left -= u64::from(entry.size);
            removed_bytes += u64::from(entry.size);
        }
        let new_start = new_start.unwrap_or(part.next);
        if new_start <= part.log_start && removed_bytes == 0 {
            return Ok(part.log_start);
        }
        let cut = keys::batch_key(id, p as u32, new_start);
        index.retain_in::<&[u8; 16], _>(&lo..&cut, |_, _| false)?;
        txn.open_table(BATCHES)?
            .retain_in::<&[u8; 16], _>(&lo..&cut, |_, _| false)?;
        let part = &mut self.topics.get_mut(topic).expect("known topic").parts[p];
        part.log_start = part.log_start.max(new_start);
        part.bytes -= removed_bytes;
        txn.open_table(PARTITIONS)?.insert(
            &keys::partition_key(id, p as u32),
            &keys::encode_bounds(part.log_start, part.next),
        )?;
        changes.push(Change::Partition(topic.to_string(), p));
        Ok(part.log_start)
    }

    fn apply_retention(
        &mut self,
        txn: &WriteTransaction,
        now_ms: i64,
        changes: &mut Vec<Change>,
    ) -> Result<u64> {
        let mut work = Vec::new();
        for t in self.topics.values() {
            let c = &t.meta.config;
            if c.retention_ms < 0 && c.retention_bytes < 0 {
                continue;
            }
            for (p, part) in t.parts.iter().enumerate() {
                if part.bytes > 0 {
                    work.push((
                        t.meta.name.clone(),
                        t.meta.id,
                        p,
                        c.retention_ms,
                        c.retention_bytes,
                    ));
                }
            }
        }
        let mut deleted = 0u64;
        for (topic, id, p, ms, max_bytes) in work {
            let before = self.topics[&topic].parts[p].log_start;
            let cutoff = if ms < 0 {
                i64::MIN
            } else {
                now_ms.saturating_sub(ms)
            };
            let start = self.truncate_front(
                txn,
                &topic,
                id,
                p,
                |left, e, _| {
                    e.max_timestamp < cutoff || (max_bytes >= 0 && left > max_bytes as u64)
                },
                changes,
            )?;
            if start > before {
                deleted += 1;
                tracing::debug!(
                    topic,
                    partition = p,
                    log_start = start,
                    "retention deleted batches"
                );
            }
        }
        Ok(deleted)
    }

    fn publish(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        // A panic elsewhere while the lock was held must not take every reader down.
        let mut map = self
            .published
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for c in changes {
            match c {
                Change::Created(name) => {
                    if let Some(t) = self.topics.get(&name) {
                        map.insert(name, publish_topic(t));
                    }
                }
                Change::Deleted(name) => {
                    map.remove(&name);
                }
                Change::Partition(name, p) => {
                    // The topic may have been deleted and created again (with other
                    // partitions) later in the same group: only the same incarnation's
                    // handle takes the new bounds; `Created` publishes the new one whole.
                    if let (Some(h), Some(t)) = (map.get(&name), self.topics.get(&name))
                        && h.meta.id == t.meta.id
                        && let (Some(ph), Some(s)) = (h.parts.get(p), t.parts.get(p))
                    {
                        ph.log_start.store(s.log_start, Ordering::Release);
                        ph.bytes.store(s.bytes, Ordering::Release);
                        ph.high_watermark.send_replace(s.next);
                    }
                }
            }
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
