//! A test driver for pipelines, like Kafka Streams' TopologyTestDriver: feed records with
//! timestamps, move event time and wall time by hand, read what the sinks wrote. No log,
//! no threads, no sleeps: every call processes to completion before it returns.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_log::StoredRecord;

use crate::error::Result;
use crate::graph::{OutputRecord, lock};
use crate::metrics::MetricsSnapshot;
use crate::operator::StateStore;
use crate::pipeline::{Pipeline, SharedGraph};
use crate::task::Task;
use crate::topic::duration_ms;

/// State tables as the driver keeps them: table -> key -> value.
#[derive(Debug, Default)]
struct MemoryState(BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>);

impl StateStore for MemoryState {
    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) {
        self.0
            .entry(table.to_string())
            .or_default()
            .insert(key.to_vec(), value.to_vec());
    }

    fn delete(&mut self, table: &str, key: &[u8]) {
        if let Some(t) = self.0.get_mut(table) {
            t.remove(key);
        }
    }
}

/// Drives pipelines by hand in tests.
///
/// ```
/// use weir_stream::{TestDriver, Topic, Tumbling, Windowed, secs};
///
/// let mut driver = TestDriver::new();
/// driver
///     .pipeline("counts")
///     .source::<String>(Topic::json("words"))
///     .key_by(|w| w.clone())
///     .window(Tumbling::every(secs(10)))
///     .count()
///     .sink(Topic::json("counts"));
/// driver.pipe_json("words", 1_000, &"a".to_string())?;
/// driver.pipe_json("words", 2_000, &"a".to_string())?;
/// driver.advance_watermark(10_000)?;
/// let out: Vec<Windowed<String, u64>> = driver.read_json("counts");
/// assert_eq!(out, vec![Windowed { key: "a".into(), start: 0, end: 10_000, value: 2 }]);
/// # Ok::<(), weir_stream::StreamError>(())
/// ```
#[derive(Default)]
pub struct TestDriver {
    defined: Vec<SharedGraph>,
    tasks: Vec<Task>,
    now_ms: i64,
    offsets: HashMap<(String, i32), i64>,
    outputs: HashMap<String, Vec<OutputRecord>>,
    state: MemoryState,
}

impl std::fmt::Debug for TestDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDriver")
            .field("now_ms", &self.now_ms)
            .finish_non_exhaustive()
    }
}

impl TestDriver {
    /// A driver with its wall clock at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts defining a pipeline, as [`crate::App::pipeline`] does.
    pub fn pipeline(&mut self, name: &str) -> Pipeline {
        let (p, g) = Pipeline::new(name);
        self.defined.push(g);
        p
    }

    /// Defines a pipeline as [`crate::App::parallel`] does, to test the same definition:
    /// the driver runs it as one task over all partitions (deterministic, and with equal
    /// results), where `repartition` changes nothing.
    pub fn parallel(&mut self, name: &str, build: impl Fn(&Pipeline)) {
        build(&self.pipeline(name));
    }

    /// Starts pipelines defined since the last call. Topics have the partition counts their
    /// `Topic` asked for.
    fn start(&mut self) -> Result<()> {
        for g in std::mem::take(&mut self.defined) {
            let graph = lock(&g).take();
            let mut parts = HashMap::new();
            for s in &graph.sources {
                parts.insert(s.topic().to_string(), s.create_partitions());
            }
            for s in graph.sinks.iter().chain([&graph.dead_letters]) {
                let s = lock(s);
                parts.insert(s.topic.clone(), s.create_partitions);
            }
            let task = Task::new(graph, |t| parts.get(t).copied().unwrap_or(1), self.now_ms)?;
            self.tasks.push(task);
        }
        Ok(())
    }

    /// Feeds one record to partition `partition` of `topic`, with raw key and value bytes.
    pub fn pipe_raw(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: &[u8],
    ) -> Result<()> {
        self.start()?;
        let offset = self
            .offsets
            .entry((topic.to_string(), partition))
            .or_insert(0);
        let record = StoredRecord {
            offset: *offset,
            timestamp,
            key: key.map(Bytes::copy_from_slice),
            value: Some(Bytes::copy_from_slice(value)),
            headers: Vec::new(),
        };
        *offset += 1;
        for t in &mut self.tasks {
            let found = t
                .inputs
                .iter()
                .position(|i| i.topic == topic && i.partition == partition);
            if let Some(idx) = found {
                t.feed(idx, vec![record.clone()], self.now_ms);
                t.advance(self.now_ms);
            }
        }
        self.collect();
        Ok(())
    }

    /// Feeds one JSON value to partition 0 of `topic` with record timestamp `timestamp`.
    pub fn pipe_json<T: Serialize>(
        &mut self,
        topic: &str,
        timestamp: i64,
        value: &T,
    ) -> Result<()> {
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        self.pipe_raw(topic, 0, timestamp, None, &bytes)
    }

    /// Moves the wall clock forward (idle inputs stop holding the watermark back).
    pub fn advance_wall_time(&mut self, by: Duration) -> Result<()> {
        self.start()?;
        self.now_ms = self.now_ms.saturating_add(duration_ms(by));
        for t in &mut self.tasks {
            t.advance(self.now_ms);
        }
        self.collect();
        Ok(())
    }

    /// Moves every pipeline's watermark to at least `to`, as if all inputs had passed it:
    /// windows that close by then emit. `i64::MAX` closes everything.
    pub fn advance_watermark(&mut self, to: i64) -> Result<()> {
        self.start()?;
        for t in &mut self.tasks {
            t.set_watermark(to);
        }
        self.collect();
        Ok(())
    }

    /// Takes a checkpoint of every pipeline into the driver's memory and returns how many
    /// state entries it holds then (to test operators' `on_checkpoint`).
    pub fn checkpoint(&mut self) -> Result<usize> {
        self.start()?;
        for t in &mut self.tasks {
            t.checkpoint(&mut self.state);
        }
        self.collect();
        Ok(self.state.0.values().map(BTreeMap::len).sum())
    }

    /// Closes every pipeline (their `on_close` hooks run).
    pub fn close(&mut self) -> Result<()> {
        self.start()?;
        for t in &mut self.tasks {
            t.close();
        }
        self.collect();
        Ok(())
    }

    fn collect(&mut self) {
        for t in &self.tasks {
            for s in t.graph.sinks.iter().chain([&t.graph.dead_letters]) {
                let mut s = lock(s);
                let recs = s.drain_records();
                if !recs.is_empty() {
                    self.outputs
                        .entry(s.topic.clone())
                        .or_default()
                        .extend(recs);
                }
            }
        }
    }

    /// Takes the records written to `topic` since the last read.
    pub fn read_output(&mut self, topic: &str) -> Vec<OutputRecord> {
        self.outputs.remove(topic).unwrap_or_default()
    }

    /// Takes the values written to `topic` since the last read, decoded as JSON (values
    /// that do not decode as `T` are skipped).
    pub fn read_json<T: DeserializeOwned>(&mut self, topic: &str) -> Vec<T> {
        self.read_output(topic)
            .iter()
            .filter_map(|r| serde_json::from_slice(&r.value).ok())
            .collect()
    }

    /// A pipeline's counters.
    pub fn metrics(&self, pipeline: &str) -> Option<MetricsSnapshot> {
        self.tasks
            .iter()
            .find(|t| t.graph.name == pipeline)
            .map(|t| t.cx.metrics.snapshot())
    }

    /// A pipeline's current watermark.
    pub fn watermark(&self, pipeline: &str) -> Option<i64> {
        self.tasks
            .iter()
            .find(|t| t.graph.name == pipeline)
            .map(|t| t.cx.watermark())
    }
}
