//! Repartitioning between the tasks of a parallel pipeline, through an internal topic.
//!
//! Task `i` of a pipeline with `n` tasks reads partition `i` of its inputs. Where a keyed
//! stream is repartitioned, each task writes its pairs to `<pipeline>.repartition-<k>`, to
//! the partition its key hashes to (CRC32C of the JSON key, as keyed sinks do), and reads
//! partition `i` of that topic back as one more input: every key's values meet in one task.
//!
//! Both sides ride the ordinary checkpoint, one weir-log unit per task: the writing task
//! commits its repartition batches with its source offsets, the reading task commits what it
//! read of the repartition topic as its own group offsets. Nothing else is needed for
//! exactly-once.
//!
//! Event time crosses the topic as watermark markers: at each checkpoint where its source
//! watermark moved, a task appends to every partition a record without key whose headers
//! carry its task index and that watermark, after the pairs it wrote before. A reading task
//! keeps the last watermark of each writer (in its state) and its repartition input's
//! watermark is the minimum over all writers, so no window closes before every task has
//! passed its end.

use std::marker::PhantomData;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_log::StoredRecord;

use crate::error::StreamError;
use crate::graph::{Push, SharedOutlet, SharedSink, SinkBuffer, StateLoader, lock, new_outlet};
use crate::metrics::Counter;
use crate::operator::{Context, Event, StateStore};
use crate::pipeline::{SharedGraph, TaskSlot};
use crate::source::{RawInput, dead_letter};

/// Header of a watermark marker in a repartition topic: the writer's watermark (decimal).
pub(crate) const WATERMARK_HEADER: &str = "weir.watermark";
/// Header of a watermark marker in a repartition topic: the writing task's index.
pub(crate) const TASK_HEADER: &str = "weir.task";
/// Header of a watermark marker whose writer has only idle inputs: it holds nobody back.
pub(crate) const IDLE_HEADER: &str = "weir.idle";

/// What a writing task last said of its event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WriterMark {
    pub watermark: i64,
    /// All its inputs are idle: as an idle partition in a single task, it is left out of
    /// the minimum.
    pub idle: bool,
}

impl WriterMark {
    const NONE: Self = Self {
        watermark: i64::MIN,
        idle: false,
    };
}

/// The name of a pipeline's `n`th repartition topic.
pub(crate) fn topic_name(pipeline: &str, n: usize) -> String {
    format!("{pipeline}.repartition-{n}")
}

/// Routes a keyed stream through a new repartition topic; returns the stream read back.
pub(crate) fn attach<K, V>(
    graph: &SharedGraph,
    outlet: &SharedOutlet<(K, V)>,
    slot: TaskSlot,
) -> SharedOutlet<(K, V)>
where
    K: Serialize + DeserializeOwned + Clone + Send + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + 'static,
{
    let mut g = lock(graph);
    let n = g.repartitions.len() + 1;
    if n > 1 {
        // Its writers' watermark would be that of the windows between the two, but a task
        // has one watermark: the minimum over its repartition inputs, this one's included.
        g.errors.push(
            "it repartitions twice, and a parallel pipeline can repartition once so far: \
             write the first stage's results to a topic and run the second stage as a \
             parallel pipeline of its own that reads it"
                .into(),
        );
    }
    let topic = topic_name(&g.name, n);
    let buffer = SinkBuffer::new(topic.clone(), slot.parallelism);
    g.sinks.push(buffer.clone());
    g.repartitions.push(buffer.clone());
    lock(outlet).add(Box::new(RepartitionSink::<K, V> {
        buffer,
        key: Vec::new(),
        value: Vec::new(),
        _kv: PhantomData,
    }));
    let out = new_outlet();
    let table = format!("{}/repartition-{n}", g.state_prefix());
    let dead_letters = g.dead_letters.clone();
    g.sources.push(Box::new(RepartitionSource::<K, V> {
        table,
        topic,
        slot,
        out: out.clone(),
        dead_letters,
        writers: vec![WriterMark::NONE; slot.parallelism.max(1) as usize],
        changed: false,
    }));
    out
}

/// Appends a watermark marker from task `task` to every partition of a repartition topic.
pub(crate) fn mark_watermark(sink: &SharedSink, task: i32, mark: WriterMark) {
    let mut s = lock(sink);
    let mut headers = vec![
        (
            WATERMARK_HEADER.to_string(),
            Some(Bytes::from(mark.watermark.to_string())),
        ),
        (TASK_HEADER.to_string(), Some(Bytes::from(task.to_string()))),
    ];
    if mark.idle {
        headers.push((IDLE_HEADER.to_string(), None));
    }
    for p in 0..s.partitions.max(1) {
        s.push(p, mark.watermark, None, &[], &headers);
    }
}

/// Writes (key, value) pairs to the partition of the task that owns the key.
struct RepartitionSink<K, V> {
    buffer: SharedSink,
    key: Vec<u8>,
    value: Vec<u8>,
    _kv: PhantomData<fn(K, V)>,
}

impl<K, V> Push<(K, V)> for RepartitionSink<K, V>
where
    K: Serialize + Send + 'static,
    V: Serialize + Send + 'static,
{
    fn push(&mut self, batch: Vec<Event<(K, V)>>, cx: &mut Context) {
        let mut buf = lock(&self.buffer);
        for e in &batch {
            self.key.clear();
            self.value.clear();
            let encoded = serde_json::to_writer(&mut self.key, &e.value.0)
                .and_then(|()| serde_json::to_writer(&mut self.value, &e.value.1));
            let pushed = encoded.is_ok() && {
                let p = buf.partition_for(Some(&self.key));
                buf.push(p, e.time, Some(&self.key), &self.value, &[])
            };
            if !pushed {
                cx.metrics.add(Counter::EncodeErrors, 1);
                tracing::warn!(topic = %buf.topic, error = ?encoded.err(), "a value could not be repartitioned (it fails to encode as JSON, or is larger than the topic takes); it is counted and skipped");
            }
        }
    }
    fn watermark(&mut self, _cx: &mut Context) {}
    fn checkpoint(&mut self, _id: u64, _store: &mut dyn StateStore) {}
    fn restore(&mut self, _load: &mut StateLoader<'_>) -> crate::Result<()> {
        Ok(())
    }
    fn close(&mut self, _cx: &mut Context) {}
}

/// Reads a task's partition of a repartition topic back into (key, value) pairs.
struct RepartitionSource<K, V> {
    topic: String,
    table: String,
    slot: TaskSlot,
    out: SharedOutlet<(K, V)>,
    dead_letters: SharedSink,
    /// Each writing task's last marker.
    writers: Vec<WriterMark>,
    changed: bool,
}

fn header<'a>(r: &'a StoredRecord, name: &str) -> Option<&'a [u8]> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
}

fn parse<T: std::str::FromStr>(v: Option<&[u8]>) -> Option<T> {
    std::str::from_utf8(v?).ok()?.parse().ok()
}

impl<K, V> RawInput for RepartitionSource<K, V>
where
    K: DeserializeOwned + Clone + Send + 'static,
    V: DeserializeOwned + Clone + Send + 'static,
{
    fn topic(&self) -> &str {
        &self.topic
    }

    fn create_partitions(&self) -> i32 {
        self.slot.parallelism
    }

    fn out_of_orderness_ms(&self) -> i64 {
        0
    }

    fn push(
        &mut self,
        partition: i32,
        records: Vec<StoredRecord>,
        cx: &mut Context,
    ) -> Option<i64> {
        let mut batch = Vec::with_capacity(records.len());
        for r in records {
            if let Some(wm) = header(&r, WATERMARK_HEADER) {
                let task = parse::<usize>(header(&r, TASK_HEADER));
                match (
                    task.and_then(|t| self.writers.get_mut(t)),
                    parse::<i64>(Some(wm)),
                ) {
                    (Some(w), Some(wm)) => {
                        w.watermark = w.watermark.max(wm);
                        w.idle = r.headers.iter().any(|(k, _)| k == IDLE_HEADER);
                        self.changed = true;
                    }
                    _ => {
                        tracing::warn!(topic = %self.topic, offset = r.offset, "a watermark marker names no task of this pipeline; it is skipped (was the topic written by a run with another parallelism?)")
                    }
                }
                continue;
            }
            let decoded = r
                .key
                .as_deref()
                .ok_or_else(|| "the record has no key".to_string())
                .and_then(|k| serde_json::from_slice::<K>(k).map_err(|e| format!("key: {e}")))
                .and_then(|k| {
                    let v = r.value.as_deref().unwrap_or_default();
                    serde_json::from_slice::<V>(v)
                        .map(|v| (k, v))
                        .map_err(|e| format!("value: {e}"))
                });
            match decoded {
                Ok(value) => batch.push(Event {
                    time: r.timestamp,
                    value,
                }),
                Err(e) => {
                    cx.metrics.add(Counter::DeadLetters, 1);
                    let mut dl = lock(&self.dead_letters);
                    let mut letter = dead_letter(
                        &self.topic,
                        partition,
                        r.offset,
                        r.timestamp,
                        r.key,
                        r.value.unwrap_or_default(),
                        &format!("a repartitioned record cannot be decoded: {e}"),
                    );
                    letter.partition = dl.partition_for(None);
                    dl.push_output(&letter);
                }
            }
        }
        lock(&self.out).push(batch, cx);
        None
    }

    fn upstream_watermark(&self) -> Option<i64> {
        let active = self.writers.iter().filter(|w| !w.idle).map(|w| w.watermark);
        let all = self.writers.iter().map(|w| w.watermark);
        active.min().or_else(|| all.max())
    }

    fn watermark(&mut self, cx: &mut Context) {
        lock(&self.out).watermark(cx);
    }

    fn checkpoint(&mut self, id: u64, store: &mut dyn StateStore) {
        if std::mem::take(&mut self.changed) {
            for (task, w) in self.writers.iter().enumerate() {
                if *w != WriterMark::NONE {
                    let mut v = w.watermark.to_be_bytes().to_vec();
                    v.push(u8::from(w.idle));
                    store.put(&self.table, &(task as u32).to_be_bytes(), &v);
                }
            }
        }
        lock(&self.out).checkpoint(id, store);
    }

    fn restore(&mut self, load: &mut StateLoader<'_>) -> crate::Result<()> {
        for (k, v) in load(&self.table)? {
            let (Ok(task), Ok(v)) = (<[u8; 4]>::try_from(k.as_slice()), <[u8; 9]>::try_from(v))
            else {
                return Err(StreamError::State {
                    table: self.table.clone(),
                    reason: "a writer entry is not a 4-byte task and a 9-byte watermark".into(),
                });
            };
            if let Some(w) = self.writers.get_mut(u32::from_be_bytes(task) as usize) {
                let mut wm = [0; 8];
                wm.copy_from_slice(&v[..8]);
                *w = WriterMark {
                    watermark: i64::from_be_bytes(wm),
                    idle: v[8] != 0,
                };
            }
        }
        lock(&self.out).restore(load)
    }

    fn close(&mut self, cx: &mut Context) {
        lock(&self.out).close(cx);
    }
}
