//! The running shape of a pipeline: nodes that push batches downstream.
//!
//! A stream is an [`Outlet`]: the nodes that consume it. Building a pipeline adds nodes to
//! outlets; running it pushes batches from the sources through them. Watermarks,
//! checkpoints and shutdown travel the same edges; a node reached twice (after a `merge`)
//! acts on each only once.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use weir_log::Record;

use crate::codec::CodecError;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::operator::{Context, Event, Operator, RestoredState, StateStore, StateWriter};

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
    last_watermark: i64,
    last_checkpoint: u64,
    restored: bool,
    closed: bool,
}

impl<O: Operator> OpNode<O>
where
    O::Out: Clone,
{
    pub(crate) fn new(op: O, out: SharedOutlet<O::Out>, table: String) -> Self {
        Self {
            op,
            out,
            buf: Vec::new(),
            table,
            last_watermark: i64::MIN,
            last_checkpoint: 0,
            restored: false,
            closed: false,
        }
    }

    fn flush(&mut self, cx: &mut Context) {
        if !self.buf.is_empty() {
            let batch = std::mem::take(&mut self.buf);
            lock(&self.out).push(batch, cx);
        }
    }
}

impl<O: Operator> Push<O::In> for OpNode<O>
where
    O::Out: Clone,
{
    fn push(&mut self, batch: Vec<Event<O::In>>, cx: &mut Context) {
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

/// Records for one topic held until the next checkpoint commits them.
#[derive(Debug)]
pub(crate) struct SinkBuffer {
    pub topic: String,
    /// Partitions of the topic; set when the pipeline starts.
    pub partitions: i32,
    /// Partitions to create the topic with if it is missing.
    pub create_partitions: i32,
    pub records: Vec<OutputRecord>,
    sticky: u32,
}

pub(crate) type SharedSink = Arc<Mutex<SinkBuffer>>;

impl SinkBuffer {
    pub(crate) fn new(topic: String, create_partitions: i32) -> SharedSink {
        Arc::new(Mutex::new(Self {
            topic,
            partitions: 1,
            create_partitions,
            records: Vec::new(),
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

    /// Moves the held records into `unit` as batches, per partition.
    pub(crate) fn drain_into(&mut self, unit: &mut weir_log::Unit) {
        const MAX_BATCH_RECORDS: usize = 4096;
        const MAX_BATCH_BYTES: usize = 512 << 10;
        if self.records.is_empty() {
            return;
        }
        let mut parts: Vec<Vec<Record>> = vec![Vec::new(); self.partitions.max(1) as usize];
        let mut sizes = vec![0usize; parts.len()];
        for r in self.records.drain(..) {
            let p = r.partition as usize;
            let size = r.value.len() + r.key.as_ref().map_or(0, Bytes::len) + 32;
            if sizes[p] + size > MAX_BATCH_BYTES || parts[p].len() >= MAX_BATCH_RECORDS {
                unit.append_records(&self.topic, p as i32, &parts[p]);
                parts[p].clear();
                sizes[p] = 0;
            }
            sizes[p] += size;
            parts[p].push(Record {
                key: r.key,
                value: Some(r.value),
                headers: r.headers,
                timestamp: r.timestamp,
            });
        }
        for (p, recs) in parts.iter().enumerate() {
            unit.append_records(&self.topic, p as i32, recs);
        }
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
}

impl<T: Send + 'static> Push<T> for SinkNode<T> {
    fn push(&mut self, batch: Vec<Event<T>>, cx: &mut Context) {
        let mut buf = lock(&self.buffer);
        buf.next_batch();
        buf.records.reserve(batch.len());
        let mut errors = 0;
        for e in &batch {
            self.key.clear();
            self.value.clear();
            match (self.encode)(&e.value, &mut self.key, &mut self.value) {
                Ok(keyed) => {
                    let key = keyed.then(|| Bytes::copy_from_slice(&self.key));
                    let partition = buf.partition_for(key.as_deref());
                    buf.records.push(OutputRecord {
                        partition,
                        timestamp: e.time,
                        key,
                        value: Bytes::copy_from_slice(&self.value),
                        headers: Vec::new(),
                    });
                }
                Err(err) => {
                    errors += 1;
                    tracing::warn!(topic = %buf.topic, error = %err, "output value failed to encode; it is counted and skipped");
                }
            }
        }
        Metrics::add(&cx.metrics.records_out, (batch.len() - errors) as u64);
        Metrics::add(&cx.metrics.encode_errors, errors as u64);
    }
    fn watermark(&mut self, _cx: &mut Context) {}
    fn checkpoint(&mut self, _id: u64, _store: &mut dyn StateStore) {}
    fn restore(&mut self, _load: &mut StateLoader<'_>) -> Result<()> {
        Ok(())
    }
    fn close(&mut self, _cx: &mut Context) {}
}
