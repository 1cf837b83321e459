//! Runs a pipeline over the embedded log with exactly-once checkpoints.
//!
//! A checkpoint is one weir-log [`Unit`]: the output batches held since the last one, the
//! operators' state changes, the inputs' event-time positions and the input offsets (a group
//! offset commit under the pipeline's name). It commits all or nothing, so after a crash the
//! pipeline restarts from a point where state, outputs and offsets agree. Outputs stay in
//! memory until their checkpoint commits: readers never see uncommitted results.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;
use weir_log::batch::{self, BatchHeader};
use weir_log::{
    Appended, CommittedOffset, Log, LogError, Pending, StoredRecord, TopicConfig, Unit,
};

use crate::error::Result;
use crate::graph::{lock, max_record_bytes};
use crate::metrics::{CheckpointStarted, Counter, InputPositions, MeasuredStore};
use crate::pipeline::Graph;
use crate::source::dead_letter;
use crate::task::Task;

/// Bytes read from one partition per step.
const READ_BYTES: usize = 256 << 10;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) async fn ensure_topic(log: &Log, name: &str, partitions: i32) -> Result<i32> {
    if let Some(t) = log.topic(name) {
        return Ok(t.partitions);
    }
    match log
        .create_topic(name, partitions, TopicConfig::default())
        .await
    {
        Ok(t) => Ok(t.partitions),
        Err(LogError::TopicExists(_)) => Ok(log.topic(name).map_or(partitions, |t| t.partitions)),
        Err(e) => Err(e.into()),
    }
}

pub(crate) struct Runner {
    log: Log,
    task: Task,
    records_since: u64,
    changed: bool,
    last_checkpoint_ms: i64,
    inflight: Option<(Pending<Vec<Appended>>, CheckpointStarted)>,
    /// Where the inputs stand, for the input lag at scrape time.
    positions: Arc<InputPositions>,
    /// Checkpoint as soon as nothing is left to read (a batch run of a parallel pipeline:
    /// the other tasks wait for what this one commits).
    pub flush_when_idle: bool,
    /// Records read but not fed yet (a checkpoint came first), and the offset after them.
    leftover: Vec<Option<(Vec<StoredRecord>, i64)>>,
}

impl Runner {
    /// Creates missing topics, then restores the pipeline from its last checkpoint.
    pub async fn start(log: Log, graph: Graph) -> Result<Self> {
        let mut topics = Vec::new();
        for s in &graph.sources {
            topics.push((s.topic().to_string(), s.create_partitions()));
        }
        for s in graph.sinks.iter().chain([&graph.dead_letters]) {
            let s = lock(s);
            topics.push((s.topic.clone(), s.create_partitions));
        }
        let mut counts = std::collections::HashMap::new();
        for (name, n) in topics {
            let n = ensure_topic(&log, &name, n).await?;
            counts.insert(name, n);
        }
        let now = now_ms();
        let mut task = Task::new(graph, |t| counts.get(t).copied().unwrap_or(1), now)?;
        for s in task.graph.sinks.iter().chain([&task.graph.dead_letters]) {
            let mut s = lock(s);
            if let Some(t) = log.topic(&s.topic) {
                s.max_record = max_record_bytes(t.config.max_message_bytes.max(0) as usize);
            }
        }
        let name = task.graph.name.clone();
        for i in &mut task.inputs {
            let start = log.bounds(&i.topic, i.partition)?.log_start;
            i.next_offset = match log.committed_offset(&name, &i.topic, i.partition)? {
                Some(c) => c.offset.max(start),
                None => start,
            };
        }
        task.restore(&mut |table| Ok(log.state_entries(table)?))?;
        tracing::info!(pipeline = %name, watermark = task.cx.watermark, "pipeline restored");
        let positions = task.cx.metrics.watch_inputs(&log, &task.inputs);
        Ok(Self {
            positions,
            log,
            records_since: 0,
            changed: false,
            last_checkpoint_ms: now,
            inflight: None,
            leftover: vec![None; task.inputs.len()],
            flush_when_idle: false,
            task,
        })
    }

    /// Reads each input partition once and processes what it got; returns 0 if there was
    /// nothing to read, else about how many records were processed.
    pub fn step(&mut self) -> Result<usize> {
        let watermark = self.task.cx.watermark;
        let mut total = 0;
        for idx in 0..self.task.inputs.len() {
            let budget = (self.task.graph.settings.checkpoint_records)
                .saturating_sub(self.records_since)
                .max(1) as usize;
            let (mut records, end) = match self.leftover[idx].take() {
                Some(l) => l,
                None => match self.fetch(idx)? {
                    Some(f) => f,
                    None => continue,
                },
            };
            let now = now_ms();
            self.changed = true;
            if records.len() > budget {
                // Feed no more than the checkpoint allows; the rest waits for the next step.
                let rest = records.split_off(budget);
                self.leftover[idx] = Some((rest, end));
            }
            let n = self.task.feed(idx, records, now);
            if self.leftover[idx].is_none() {
                let i = &mut self.task.inputs[idx];
                i.next_offset = i.next_offset.max(end);
            }
            self.task.touch(idx, now);
            // Batches without records (control batches) are progress too.
            total += n.max(1);
            self.records_since += n as u64;
            self.task.advance(now);
        }
        if total == 0 {
            self.task.advance(now_ms());
        }
        if self.task.cx.watermark != watermark || self.task.source_mark_moved() {
            // Windows may have closed (an input went idle): their results need a checkpoint;
            // or the other tasks of a parallel pipeline wait for this one's watermark.
            self.changed = true;
        }
        self.positions.update(&self.task.inputs);
        Ok(total)
    }

    /// Reads the next batches of one input: their records, and the offset after them.
    fn fetch(&mut self, idx: usize) -> Result<Option<(Vec<StoredRecord>, i64)>> {
        let (topic, partition, from) = {
            let i = &self.task.inputs[idx];
            (i.topic.clone(), i.partition, i.next_offset)
        };
        let fetched = match self.log.read(&topic, partition, from, READ_BYTES) {
            Ok(f) => f,
            Err(LogError::OffsetOutOfRange { log_start, .. }) if from < log_start => {
                tracing::warn!(%topic, partition, from, log_start, "input records were deleted by retention before this pipeline read them; skipping to the log start");
                self.task.inputs[idx].next_offset = log_start;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if fetched.batch_count == 0 {
            return Ok(None);
        }
        Ok(Some(self.decode(idx, fetched.records, from)))
    }

    /// The records at or after `from` in the fetched batches. A batch that cannot be
    /// decoded (compressed, or corrupt) goes whole to the dead letters.
    fn decode(&mut self, idx: usize, mut rest: Bytes, from: i64) -> (Vec<StoredRecord>, i64) {
        let mut out = Vec::new();
        let mut end = from;
        while !rest.is_empty() {
            let Ok(h) = BatchHeader::parse(&rest) else {
                break;
            };
            let one = rest.split_to(h.total_len().min(rest.len()));
            match batch::decode(&one) {
                Ok(recs) => out.extend(recs.into_iter().filter(|r| r.offset >= from)),
                // Dead-letter a bad batch only at the head of a fetch: with records before it,
                // a checkpoint could commit its dead letter with an offset below it (when the
                // records are fed in parts) and a restart would dead-letter it again.
                Err(_) if !out.is_empty() => return (out, h.base_offset),
                Err(e) => {
                    let i = &self.task.inputs[idx];
                    self.task.cx.metrics.add(Counter::DeadLetters, 1);
                    let letter = dead_letter(
                        &i.topic,
                        i.partition,
                        h.base_offset,
                        h.max_timestamp,
                        None,
                        one,
                        &format!("the batch cannot be decoded: {e}"),
                    );
                    lock(&self.task.graph.dead_letters).push_output(&letter);
                }
            }
            end = end.max(h.last_offset() + 1);
        }
        (out, end)
    }

    pub fn checkpoint_due(&self) -> bool {
        self.changed
            && (self.records_since >= self.task.graph.settings.checkpoint_records
                || now_ms() - self.last_checkpoint_ms
                    >= self.task.graph.settings.checkpoint_interval_ms)
    }

    /// Waits for the checkpoint in flight, if any.
    pub async fn settle(&mut self) -> Result<()> {
        if let Some((p, started)) = self.inflight.take() {
            let r = p.await;
            let error = r.as_ref().err().map(|e| e as &dyn std::fmt::Display);
            self.task.cx.metrics.checkpoint_finished(started, error);
            r?;
        }
        Ok(())
    }

    /// Starts a checkpoint; it commits while the pipeline goes on (the next one waits).
    pub async fn checkpoint(&mut self) -> Result<()> {
        self.settle().await?;
        let started = Instant::now();
        let mut unit = Unit::new();
        let mut store = MeasuredStore {
            inner: &mut unit,
            bytes: 0,
        };
        self.task.checkpoint(&mut store);
        let mut bytes = store.bytes;
        for s in self
            .task
            .graph
            .sinks
            .iter()
            .chain([&self.task.graph.dead_letters])
        {
            bytes += lock(s).drain_into(&mut unit) as u64;
        }
        let now = now_ms();
        for i in &self.task.inputs {
            unit.commit_offset(
                &self.task.graph.name,
                &i.topic,
                i.partition,
                CommittedOffset {
                    offset: i.next_offset,
                    leader_epoch: -1,
                    metadata: String::new(),
                    commit_timestamp: now,
                },
            );
        }
        let started = (self.task.cx.metrics).checkpoint_started(started, self.records_since, bytes);
        self.inflight = Some((self.log.commit(unit), started));
        self.records_since = 0;
        self.changed = false;
        self.last_checkpoint_ms = now;
        Ok(())
    }

    /// How long to wait for input before something is due anyway.
    fn idle_wait(&self) -> Duration {
        let s = &self.task.graph.settings;
        let now = now_ms();
        let mut due = i64::MAX;
        if self.changed {
            due = due.min(self.last_checkpoint_ms + s.checkpoint_interval_ms);
        }
        for i in &self.task.inputs {
            let idle_at = i.last_active_ms.saturating_add(s.idle_timeout_ms);
            if idle_at > now {
                due = due.min(idle_at);
            }
        }
        let ms = due.saturating_sub(now).clamp(1, 1000);
        Duration::from_millis(ms as u64)
    }

    /// Whether every input has been read to its high watermark.
    fn caught_up(&self) -> Result<bool> {
        for i in &self.task.inputs {
            if self.log.bounds(&i.topic, i.partition)?.high_watermark > i.next_offset {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Runs until `stop` turns true (or, with `to_end`, until every input is read to its
    /// end); then finishes with a last checkpoint.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>, to_end: bool) -> Result<()> {
        let mut watches = Vec::new();
        for i in &self.task.inputs {
            watches.push(self.log.watch(&i.topic, i.partition)?);
        }
        loop {
            for w in &mut watches {
                w.borrow_and_update();
            }
            let n = self.step()?;
            if self.checkpoint_due() || (self.flush_when_idle && n == 0 && self.changed) {
                self.checkpoint().await?;
            }
            if *stop.borrow() || (to_end && n == 0 && self.caught_up()?) {
                break;
            }
            if n == 0 {
                // Nothing to do: see the checkpoint in flight through, so that it counts
                // (and its duration shows) now rather than when the next one starts.
                self.settle().await?;
                let wait = self.idle_wait();
                tokio::select! {
                    () = any_changed(&mut watches) => {}
                    () = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
            } else {
                tokio::task::yield_now().await;
            }
        }
        self.task.close();
        self.changed = true;
        self.checkpoint().await?;
        self.settle().await?;
        tracing::info!(pipeline = %self.task.graph.name, "pipeline stopped after a final checkpoint");
        Ok(())
    }
}

/// Resolves when any of the watched high watermarks moves (or its topic goes away).
async fn any_changed(watches: &mut [watch::Receiver<i64>]) {
    if watches.is_empty() {
        return std::future::pending().await;
    }
    let mut futs: Vec<Pin<Box<dyn Future<Output = _> + Send + '_>>> = watches
        .iter_mut()
        .map(|w| Box::pin(w.changed()) as Pin<Box<dyn Future<Output = _> + Send>>)
        .collect();
    std::future::poll_fn(|cx| {
        for f in &mut futs {
            if f.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await;
}
