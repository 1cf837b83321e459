//! Sources: decode a topic's records into typed events, or send them to the dead letters.

use bytes::Bytes;
use weir_log::StoredRecord;

use crate::graph::{OutputRecord, SharedOutlet, SharedSink, StateLoader, lock};
use crate::metrics::Counter;
use crate::operator::{Context, Event, StateStore};
use crate::topic::Topic;

/// Header of a dead letter that says why its record could not be read.
pub const ERROR_HEADER: &str = "weir.error";
/// Header of a dead letter naming the topic its record came from.
pub const TOPIC_HEADER: &str = "weir.topic";
/// Header of a dead letter naming the partition its record came from.
pub const PARTITION_HEADER: &str = "weir.partition";
/// Header of a dead letter whose value was cut to fit the topic: the original length.
pub const TRUNCATED_HEADER: &str = "weir.truncated";
/// Header of a dead letter naming the offset its record had.
pub const OFFSET_HEADER: &str = "weir.offset";

/// A source seen without its value type, as the runtime drives it.
pub(crate) trait RawInput: Send {
    fn topic(&self) -> &str;
    fn create_partitions(&self) -> i32;
    fn out_of_orderness_ms(&self) -> i64;
    /// Decodes and pushes records of one partition; returns their largest event time.
    fn push(&mut self, partition: i32, records: Vec<StoredRecord>, cx: &mut Context)
    -> Option<i64>;
    /// For a repartition input: its watermark, the minimum over the tasks writing to it.
    fn upstream_watermark(&self) -> Option<i64> {
        None
    }
    fn watermark(&mut self, cx: &mut Context);
    fn checkpoint(&mut self, id: u64, store: &mut dyn StateStore);
    fn restore(&mut self, load: &mut StateLoader<'_>) -> crate::Result<()>;
    fn close(&mut self, cx: &mut Context);
}

pub(crate) struct SourceNode<T> {
    pub topic: Topic<T>,
    pub out: SharedOutlet<T>,
    pub dead_letters: SharedSink,
}

/// A record that cannot be read, with why, for the dead-letter topic.
pub(crate) fn dead_letter(
    topic: &str,
    partition: i32,
    offset: i64,
    timestamp: i64,
    key: Option<Bytes>,
    value: Bytes,
    error: &str,
) -> OutputRecord {
    OutputRecord {
        partition: 0,
        timestamp,
        key,
        value,
        headers: vec![
            (
                ERROR_HEADER.into(),
                Some(Bytes::copy_from_slice(error.as_bytes())),
            ),
            (
                TOPIC_HEADER.into(),
                Some(Bytes::copy_from_slice(topic.as_bytes())),
            ),
            (
                PARTITION_HEADER.into(),
                Some(Bytes::from(partition.to_string())),
            ),
            (OFFSET_HEADER.into(), Some(Bytes::from(offset.to_string()))),
        ],
    }
}

impl<T: Clone + Send + 'static> RawInput for SourceNode<T> {
    fn topic(&self) -> &str {
        &self.topic.name
    }

    fn create_partitions(&self) -> i32 {
        self.topic.partitions
    }

    fn out_of_orderness_ms(&self) -> i64 {
        self.topic.out_of_orderness_ms
    }

    fn push(
        &mut self,
        partition: i32,
        records: Vec<StoredRecord>,
        cx: &mut Context,
    ) -> Option<i64> {
        cx.metrics.add(Counter::RecordsIn, records.len() as u64);
        let mut batch = Vec::with_capacity(records.len());
        let mut max_time = None::<i64>;
        for r in records {
            let bytes = r.value.as_deref().unwrap_or_default();
            match self.topic.codec.decode(bytes) {
                Ok(value) => {
                    let time = match &self.topic.event_time {
                        Some(f) => f(&value),
                        None => r.timestamp,
                    };
                    max_time = Some(max_time.map_or(time, |m| m.max(time)));
                    batch.push(Event { time, value });
                }
                Err(e) => {
                    cx.metrics.add(Counter::DeadLetters, 1);
                    let error = if r.value.is_none() {
                        "the record has no value (a tombstone)".to_string()
                    } else {
                        e.0
                    };
                    let mut dl = lock(&self.dead_letters);
                    let mut letter = dead_letter(
                        &self.topic.name,
                        partition,
                        r.offset,
                        r.timestamp,
                        r.key,
                        r.value.unwrap_or_default(),
                        &error,
                    );
                    letter.partition = dl.partition_for(None);
                    dl.push_output(&letter);
                }
            }
        }
        lock(&self.out).push(batch, cx);
        max_time
    }

    fn watermark(&mut self, cx: &mut Context) {
        lock(&self.out).watermark(cx);
    }

    fn checkpoint(&mut self, id: u64, store: &mut dyn StateStore) {
        lock(&self.out).checkpoint(id, store);
    }

    fn restore(&mut self, load: &mut StateLoader<'_>) -> crate::Result<()> {
        lock(&self.out).restore(load)
    }

    fn close(&mut self, cx: &mut Context) {
        lock(&self.out).close(cx);
    }
}
