//! The running shape of a pipeline: nodes that push batches downstream.
//!
//! A stream is an [`Outlet`]: the nodes that consume it. Building a pipeline adds nodes to
//! outlets; running it pushes batches from the sources through them. Watermarks,
//! checkpoints and shutdown travel the same edges; a node reached twice (after a `merge`)
//! acts on each only once.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use weir_log::BatchBuilder;

use crate::codec::CodecError;
use crate::error::Result;
use crate::metrics::{Counter, LatencyTally, OperatorCounters};
use crate::operator::{Context, Event, Operator, RestoredState, StateStore, StateWriter};
use crate::source::TRUNCATED_HEADER;

/// Loads a state table's entries for a restart.
pub(crate) type StateLoader<'a> = dyn FnMut(&str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> + 'a;

/// A consumer of a stream of `T`.
pub(crate) trait Push<T>: Send {
    fn push(&mut self, batch: Vec<Event<T>>, cx: &mut Context);
    fn watermark(&mut self, cx: &mut Context);
    fn checkpoint(&mut self, id: u64, store: &mut dyn StateStore);
    fn restore(&mut self, load: &mut StateLoader<'_>) -> Result<()>;
    fn close(&mut self, cx: &mut Context);
}

/// The consumers of one stream.
pub(crate) struct Outlet<T> {
    consumers: Vec<Box<dyn Push<T>>>,
}

pub(crate) type SharedOutlet<T> = Arc<Mutex<Outlet<T>>>;

pub(crate) fn new_outlet<T>() -> SharedOutlet<T> {
    Arc::new(Mutex::new(Outlet {
        consumers: Vec::new(),
    }))
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in a user closure poisons the lock; the data under it is still whole.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: Clone + Send + 'static> Outlet<T> {
    pub(crate) fn add(&mut self, c: Box<dyn Push<T>>) {
        self.consumers.push(c);
    }

    pub(crate) fn push(&mut self, batch: Vec<Event<T>>, cx: &mut Context) {
        if batch.is_empty() {
            return;
        }
        if let Some((last, rest)) = self.consumers.split_last_mut() {
            for c in rest {
                c.push(batch.clone(), cx);
            }
            last.push(batch, cx);
        }
    }

    pub(crate) fn watermark(&mut self, cx: &mut Context) {
        for c in &mut self.consumers {
            c.watermark(cx);
        }
    }

    pub(crate) fn checkpoint(&mut self, id: u64, store: &mut dyn StateStore) {
        for c in &mut self.consumers {
            c.checkpoint(id, store);
        }
    }

    pub(crate) fn restore(&mut self, load: &mut StateLoader<'_>) -> Result<()> {
        for c in &mut self.consumers {
            c.restore(load)?;
        }
        Ok(())
    }

    pub(crate) fn close(&mut self, cx: &mut Context) {
        for c in &mut self.consumers {
            c.close(cx);
        }
    }
}

/// A shared outlet is itself a consumer: `merge` registers one in two upstream outlets.
pub(crate) struct Forward<T>(pub SharedOutlet<T>);

impl<T: Clone + Send + 'static> Push<T> for Forward<T> {
    fn push(&mut self, batch: Vec<Event<T>>, cx: &mut Context) {
        lock(&self.0).push(batch, cx);
    }
    fn watermark(&mut self, cx: &mut Context) {
        lock(&self.0).watermark(cx);
    }
    fn checkpoint(&mut self, id: u64, store: &mut dyn StateStore) {
        lock(&self.0).checkpoint(id, store);
    }
    fn restore(&mut self, load: &mut StateLoader<'_>) -> Result<()> {
        lock(&self.0).restore(load)
    }
    fn close(&mut self, cx: &mut Context) {
        lock(&self.0).close(cx);
    }
}

/// An operator in the graph, with the outlet of its outputs.
pub(crate) struct OpNode<O: Operator> {
    op: O,
    out: SharedOutlet<O::Out>,
    buf: Vec<Event<O::Out>>,
    table: String,
    counters: OperatorCounters,
    last_watermark: i64,
    last_checkpoint: u64,
    restored: bool,
    closed: bool,
}

impl<O: Operator> OpNode<O>
where
    O::Out: Clone,
{
    pub(crate) fn new(
        op: O,
        out: SharedOutlet<O::Out>,
        table: String,
        counters: OperatorCounters,
    ) -> Self {
        Self {
            op,
            out,
            buf: Vec::new(),
            table,
            counters,
            last_watermark: i64::MIN,
            last_checkpoint: 0,
            restored: false,
            closed: false,
        }
    }

    fn flush(&mut self, cx: &mut Context) {
        if !self.buf.is_empty() {
            let batch = std::mem::take(&mut self.buf);
            self.counters.count(0, batch.len());
            lock(&self.out).push(batch, cx);
        }
    }
}

impl<O: Operator> Push<O::In> for OpNode<O>
where
    O::Out: Clone,
{
    fn push(&mut self, batch: Vec<Event<O::In>>, cx: &mut Context) {
        self.counters.count(batch.len(), 0);
        self.op.process(batch, &mut self.buf, cx);
        self.flush(cx);
    }

    fn watermark(&mut self, cx: &mut Context) {
        if cx.watermark <= self.last_watermark {
            return;
        }
        self.last_watermark = cx.watermark;
        self.op.on_watermark(&mut self.buf, cx);
        self.flush(cx);
        lock(&self.out).watermark(cx);
    }

    fn checkpoint(&mut self, id: u64, store: &mut dyn StateStore) {
        if id == self.last_checkpoint {
            return;
        }
        self.last_checkpoint = id;
        self.op.on_checkpoint(&mut StateWriter {
            table: &self.table,
            store,
        });
        lock(&self.out).checkpoint(id, store);
    }

    fn restore(&mut self, load: &mut StateLoader<'_>) -> Result<()> {
        if self.restored {
            return Ok(());
        }
        self.restored = true;
        let state = RestoredState {
            entries: load(&self.table)?,
            table: self.table.clone(),
        };
        self.op.on_restore(&state)?;
        lock(&self.out).restore(load)
    }

    fn close(&mut self, cx: &mut Context) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.op.on_close(&mut self.buf, cx);
        self.flush(cx);
        lock(&self.out).close(cx);
    }
}

/// An encoded output record waiting for the next checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    /// The partition it goes to.
    pub partition: i32,
    /// Event time, written as the record timestamp.
    pub timestamp: i64,
    /// The encoded key, if the stream is keyed.
    pub key: Option<Bytes>,
    /// The encoded value.
    pub value: Bytes,
    /// Headers (dead letters carry the error here).
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Records for one topic held until the next checkpoint commits them, already encoded as
/// record batches per partition.
#[derive(Debug)]
pub(crate) struct SinkBuffer {
    pub topic: String,
    /// Partitions of the topic; set when the pipeline starts.
    pub partitions: i32,
    /// Partitions to create the topic with if it is missing.
    pub create_partitions: i32,
    /// Larger records are refused: their batch would be refused by the topic.
    pub max_record: usize,
    open: Vec<Option<BatchBuilder>>,
    done: Vec<(i32, Vec<u8>)>,
    sticky: u32,
}

pub(crate) type SharedSink = Arc<Mutex<SinkBuffer>>;

/// A batch is closed at this size; a topic takes batches up to `max.message.bytes` (1 MiB
/// by default), so a record may add up to that much less this.
const BATCH_BYTES: usize = 256 << 10;

/// The largest record a topic with batches of at most `max_batch` bytes can take here.
pub(crate) fn max_record_bytes(max_batch: usize) -> usize {
    max_batch.saturating_sub(BATCH_BYTES + 1024)
}

/// Kafka's default `max.message.bytes`.
const DEFAULT_MAX_BATCH: usize = 1_048_588;

impl SinkBuffer {
    pub(crate) fn new(topic: String, create_partitions: i32) -> SharedSink {
        Arc::new(Mutex::new(Self {
            topic,
            partitions: 1,
            create_partitions,
            max_record: max_record_bytes(DEFAULT_MAX_BATCH),
            open: Vec::new(),
            done: Vec::new(),
            sticky: 0,
        }))
    }

    /// The partition for a key: CRC32C of its bytes, so it is stable across runs.
    pub(crate) fn partition_for(&mut self, key: Option<&[u8]>) -> i32 {
        let n = self.partitions.max(1) as u32;
        match key {
            Some(k) => (crc32c::crc32c(k) % n) as i32,
            None => (self.sticky % n) as i32,
        }
    }

    /// Keyless records go to one partition per batch, the next one each time (as Kafka's
    /// sticky partitioner does).
    pub(crate) fn next_batch(&mut self) {
        self.sticky = self.sticky.wrapping_add(1);
    }

    /// Adds a record to its partition's open batch; false (and nothing added) if it is
    /// larger than the topic takes.
    pub(crate) fn push(
        &mut self,
        partition: i32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(String, Option<Bytes>)],
    ) -> bool {
        let size = key.map_or(0, <[u8]>::len)
            + value.len()
            + headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len))
                .sum::<usize>();
        if size > self.max_record {
            return false;
        }
        let p = partition.max(0) as usize;
        if self.open.len() <= p {
            self.open.resize_with(p + 1, || None);
        }
        let b = self.open[p].get_or_insert_with(BatchBuilder::new);
        b.push(timestamp, key, Some(value), headers);
        if b.size() >= BATCH_BYTES
            && let Some(full) = self.open[p].take()
        {
            self.done.push((partition, full.finish()));
        }
        true
    }

    /// Adds a dead letter, cut to what the topic takes (header `weir.truncated` then says
    /// how long the value was).
    pub(crate) fn push_output(&mut self, r: &OutputRecord) {
        let room = self.max_record.saturating_sub(4096);
        let key = r.key.as_deref();
        if r.value.len() > room {
            let mut headers = r.headers.clone();
            headers.push((
                TRUNCATED_HEADER.into(),
                Some(Bytes::from(r.value.len().to_string())),
            ));
            self.push(r.partition, r.timestamp, key, &r.value[..room], &headers);
        } else {
            self.push(r.partition, r.timestamp, key, &r.value, &r.headers);
        }
    }

    fn close_batches(&mut self) {
        for (p, b) in self.open.iter_mut().enumerate() {
            if let Some(b) = b.take().filter(|b| !b.is_empty()) {
                self.done.push((p as i32, b.finish()));
            }
        }
    }

    /// Moves the held batches into `unit`; returns their bytes.
    pub(crate) fn drain_into(&mut self, unit: &mut weir_log::Unit) -> usize {
        self.close_batches();
        let mut bytes = 0;
        for (p, batch) in self.done.drain(..) {
            bytes += batch.len();
            unit.append_batches(&self.topic, p, Bytes::from(batch));
        }
        bytes
    }

    /// Takes the held records, decoded (for the test driver).
    pub(crate) fn drain_records(&mut self) -> Vec<OutputRecord> {
        self.close_batches();
        let mut out = Vec::new();
        for (partition, batch) in self.done.drain(..) {
            // The batches were built just above, so they decode.
            for r in weir_log::batch::decode(&Bytes::from(batch)).unwrap_or_default() {
                out.push(OutputRecord {
                    partition,
                    timestamp: r.timestamp,
                    key: r.key,
                    value: r.value.unwrap_or_default(),
                    headers: r.headers,
                });
            }
        }
        out
    }
}

/// Encodes a value into (key, value) bytes; returns whether there is a key.
pub(crate) type EncodeFn<T> =
    Box<dyn Fn(&T, &mut Vec<u8>, &mut Vec<u8>) -> std::result::Result<bool, CodecError> + Send>;

/// The end of a stream: encodes values into a topic's buffer.
pub(crate) struct SinkNode<T> {
    pub encode: EncodeFn<T>,
    pub buffer: SharedSink,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub counters: OperatorCounters,
}

impl<T: Send + 'static> Push<T> for SinkNode<T> {
    fn push(&mut self, batch: Vec<Event<T>>, cx: &mut Context) {
        let mut buf = lock(&self.buffer);
        buf.next_batch();
        let mut errors = 0;
        let mut latency = LatencyTally::new();
        for e in &batch {
            self.key.clear();
            self.value.clear();
            match (self.encode)(&e.value, &mut self.key, &mut self.value) {
                Ok(keyed) => {
                    let key = keyed.then_some(self.key.as_slice());
                    let partition = buf.partition_for(key);
                    if buf.push(partition, e.time, key, &self.value, &[]) {
                        latency.record(cx.now_ms - e.time);
                    } else {
                        errors += 1;
                        tracing::warn!(topic = %buf.topic, bytes = self.value.len(), "output record larger than the topic takes; it is counted and skipped");
                    }
                }
                Err(err) => {
                    errors += 1;
                    tracing::warn!(topic = %buf.topic, error = %err, "output value failed to encode; it is counted and skipped");
                }
            }
        }
        let written = batch.len() - errors;
        self.counters.count(batch.len(), written);
        cx.metrics.add(Counter::RecordsOut, written as u64);
        if errors > 0 {
            cx.metrics.add(Counter::EncodeErrors, errors as u64);
        }
        cx.metrics.observe_end_to_end(&latency);
    }
    fn watermark(&mut self, _cx: &mut Context) {}
    fn checkpoint(&mut self, _id: u64, _store: &mut dyn StateStore) {}
    fn restore(&mut self, _load: &mut StateLoader<'_>) -> Result<()> {
        Ok(())
    }
    fn close(&mut self, _cx: &mut Context) {}
}
