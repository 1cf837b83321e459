//! One running pipeline, without I/O: feeds records to its sources, keeps the watermark,
//! and takes checkpoints into a state store. The log runtime and the test driver both
//! drive it, so tests exercise the same code as production.

use weir_log::StoredRecord;

use crate::error::{Result, StreamError};
use crate::graph::{StateLoader, lock};
use crate::operator::{Context, StateStore};
use crate::pipeline::Graph;
use crate::repartition::{WriterMark, mark_watermark};

/// One input partition of a pipeline.
#[derive(Debug, Clone)]
pub(crate) struct Input {
    pub source: usize,
    pub topic: String,
    pub partition: i32,
    pub out_of_orderness_ms: i64,
    /// Largest event time seen (across restarts).
    pub max_time: Option<i64>,
    /// Wall time when the partition last had records to read.
    pub last_active_ms: i64,
    /// The next offset to read.
    pub next_offset: i64,
}

impl Input {
    fn watermark(&self) -> i64 {
        self.max_time
            .map_or(i64::MIN, |m| m.saturating_sub(self.out_of_orderness_ms))
    }

    fn state_key(&self) -> Vec<u8> {
        format!("{}\0{}", self.topic, self.partition).into_bytes()
    }
}

const WATERMARK_KEY: &[u8] = b"\0watermark";

pub(crate) struct Task {
    pub graph: Graph,
    pub inputs: Vec<Input>,
    pub cx: Context,
    checkpoint_id: u64,
    inputs_table: String,
    /// The event time of the inputs that are not repartition topics: what this task tells
    /// the readers of its repartition topics.
    pub source_mark: WriterMark,
    /// The last mark written to the repartition topics.
    marked: Option<WriterMark>,
}

impl Task {
    /// A task over `graph`; `partitions` says how many partitions a topic has.
    pub fn new(graph: Graph, partitions: impl Fn(&str) -> i32, now_ms: i64) -> Result<Self> {
        if let Some(reason) = graph.errors.first() {
            return Err(StreamError::InvalidPipeline {
                pipeline: graph.name.clone(),
                reason: reason.clone(),
            });
        }
        if graph.sources.is_empty() {
            return Err(StreamError::InvalidPipeline {
                pipeline: graph.name.clone(),
                reason: "it has no source; add one with .source(Topic::json(..))".into(),
            });
        }
        let mut inputs = Vec::new();
        for (source, s) in graph.sources.iter().enumerate() {
            for partition in 0..partitions(s.topic()) {
                if graph.task.is_some_and(|t| t.index != partition) {
                    // Another task of a parallel pipeline reads it.
                    continue;
                }
                inputs.push(Input {
                    source,
                    topic: s.topic().to_string(),
                    partition,
                    out_of_orderness_ms: s.out_of_orderness_ms(),
                    max_time: None,
                    last_active_ms: now_ms,
                    next_offset: 0,
                });
            }
        }
        for s in graph.sinks.iter().chain([&graph.dead_letters]) {
            let mut s = lock(s);
            s.partitions = partitions(&s.topic).max(1);
        }
        let mut cx = Context::new(graph.metrics.clone());
        cx.now_ms = now_ms;
        Ok(Self {
            inputs_table: format!("{}/inputs", graph.state_prefix()),
            graph,
            inputs,
            cx,
            checkpoint_id: 0,
            source_mark: WriterMark {
                watermark: i64::MIN,
                idle: false,
            },
            marked: None,
        })
    }

    /// Restores operator state and input watermarks from the last checkpoint.
    pub fn restore(&mut self, load: &mut StateLoader<'_>) -> Result<()> {
        for s in &mut self.graph.sources {
            s.restore(load)?;
        }
        let table = self.inputs_table.clone();
        for (k, v) in load(&table)? {
            let bad = || StreamError::State {
                table: table.clone(),
                reason: "an input entry is not 8 bytes".into(),
            };
            let t = i64::from_be_bytes(v.as_slice().try_into().map_err(|_| bad())?);
            if k == WATERMARK_KEY {
                self.cx.watermark = t;
            } else if let Some(i) = self.inputs.iter_mut().find(|i| i.state_key() == k) {
                i.max_time = Some(t);
            }
        }
        Ok(())
    }

    /// Pushes records read from one input partition; returns how many.
    pub fn feed(&mut self, input: usize, records: Vec<StoredRecord>, now_ms: i64) -> usize {
        let n = records.len();
        let Some(last) = records.last() else {
            return 0;
        };
        self.cx.now_ms = now_ms;
        let i = &mut self.inputs[input];
        i.next_offset = last.offset + 1;
        i.last_active_ms = now_ms;
        let (source, partition) = (i.source, i.partition);
        if let Some(t) = self.graph.sources[source].push(partition, records, &mut self.cx) {
            let i = &mut self.inputs[input];
            i.max_time = Some(i.max_time.map_or(t, |m| m.max(t)));
        }
        n
    }

    /// Marks an input as having unread records (it is not idle).
    pub fn touch(&mut self, input: usize, now_ms: i64) {
        self.inputs[input].last_active_ms = now_ms;
    }

    /// Recomputes the watermark at wall time `now_ms` and passes it on if it grew: the
    /// minimum over active input partitions, idle ones left out (all idle: the maximum).
    /// With repartition inputs, it is theirs: they carry every task's source watermark,
    /// this one's included.
    pub fn advance(&mut self, now_ms: i64) {
        self.cx.now_ms = now_ms;
        let idle_after = self.graph.settings.idle_timeout_ms;
        let mut active = None::<i64>;
        let mut all = i64::MIN;
        let mut repartitioned = None::<i64>;
        for i in &self.inputs {
            if let Some(w) = self.graph.sources[i.source].upstream_watermark() {
                repartitioned = Some(repartitioned.map_or(w, |r| r.min(w)));
                continue;
            }
            let w = i.watermark();
            all = all.max(w);
            if now_ms.saturating_sub(i.last_active_ms) < idle_after {
                active = Some(active.map_or(w, |a| a.min(w)));
            }
        }
        self.source_mark = WriterMark {
            watermark: active.unwrap_or(all),
            idle: active.is_none(),
        };
        self.set_watermark(repartitioned.unwrap_or(self.source_mark.watermark));
    }

    /// Whether the source watermark moved since the last checkpoint told the repartition
    /// topics (a checkpoint is then due even if nothing else changed).
    pub fn source_mark_moved(&self) -> bool {
        !self.graph.repartitions.is_empty() && self.marked != Some(self.source_mark)
    }

    /// Moves the watermark to `wm` if that is later.
    pub fn set_watermark(&mut self, wm: i64) {
        if wm <= self.cx.watermark {
            return;
        }
        self.cx.watermark = wm;
        self.cx.metrics.set_watermark(wm);
        for s in &mut self.graph.sources {
            s.watermark(&mut self.cx);
        }
    }

    /// Writes every operator's state changes and the inputs' event-time positions.
    pub fn checkpoint(&mut self, store: &mut dyn StateStore) {
        self.checkpoint_id += 1;
        if let Some(t) = self.graph.task
            && self.source_mark_moved()
        {
            for s in &self.graph.repartitions {
                mark_watermark(s, t.index, self.source_mark);
            }
            self.marked = Some(self.source_mark);
        }
        for s in &mut self.graph.sources {
            s.checkpoint(self.checkpoint_id, store);
        }
        for i in &self.inputs {
            if let Some(t) = i.max_time {
                store.put(&self.inputs_table, &i.state_key(), &t.to_be_bytes());
            }
        }
        if self.cx.watermark > i64::MIN {
            store.put(
                &self.inputs_table,
                WATERMARK_KEY,
                &self.cx.watermark.to_be_bytes(),
            );
        }
    }

    /// Tells every operator the pipeline stops.
    pub fn close(&mut self) {
        for s in &mut self.graph.sources {
            s.close(&mut self.cx);
        }
    }
}
