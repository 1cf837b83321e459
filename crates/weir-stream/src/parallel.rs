//! Runs a pipeline as one task per input partition, each a checkpointed [`Runner`] on
//! tokio.
//!
//! The pipeline is defined by a function that is called once per task (and once more to
//! find its inputs): task `i` of `n` reads partition `i` of every input, keeps its own
//! state tables (`<pipeline>/<i>/...`) and commits its own checkpoints. `n` is the largest
//! partition count among the pipeline's source topics. Keyed streams reach the task that
//! owns their key through repartition topics (see `repartition.rs`). All tasks commit
//! their input offsets under the pipeline's name as consumer group.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;
use weir_log::{Log, LogError, TopicConfig};

use crate::error::{Result, StreamError};
use crate::graph::lock;
use crate::metrics::Metrics;
use crate::pipeline::{Graph, Pipeline, TaskSlot};
use crate::repartition::topic_name;
use crate::runtime::{Runner, ensure_topic};

/// How often a batch run (`run_to_end`) checks whether every task has caught up.
const POLL: Duration = Duration::from_millis(10);
/// How often what the tasks have read of the repartition topics is deleted.
const PURGE_EVERY: Duration = Duration::from_secs(1);

/// Defines one task's copy of a pipeline.
pub(crate) type Build = Arc<dyn Fn(&Pipeline) + Send + Sync>;

/// A pipeline that runs as one task per input partition.
pub(crate) struct ParallelPipeline {
    pub name: String,
    pub build: Build,
}

/// Defines one task's graph (`None`: the probe that finds the inputs). All of them count
/// into `metrics`, which `Pipeline::metrics` returns while `build` runs.
fn instance(name: &str, build: &Build, task: Option<TaskSlot>, metrics: &Arc<Metrics>) -> Graph {
    let (p, g) = Pipeline::new(name);
    {
        let mut g = lock(&g);
        g.task = task;
        g.metrics = metrics.clone();
    }
    build(&p);
    lock(&g).take()
}

fn invalid(pipeline: &str, reason: String) -> StreamError {
    StreamError::InvalidPipeline {
        pipeline: pipeline.to_string(),
        reason,
    }
}

impl ParallelPipeline {
    /// Starts every task, runs them until `stop` turns true (or, with `to_end`, until all
    /// inputs, repartition topics included, are read and committed), then stops each with
    /// a last checkpoint.
    pub async fn run(self, log: Log, mut stop: watch::Receiver<bool>, to_end: bool) -> Result<()> {
        let name = self.name.clone();
        let metrics = Arc::new(Metrics::new(&name));
        let probe = instance(&name, &self.build, None, &metrics);
        if let Some(reason) = probe.errors.first() {
            return Err(invalid(&name, reason.clone()));
        }
        let sources: Vec<(String, i32)> = (probe.sources.iter())
            .map(|s| (s.topic().to_string(), s.create_partitions()))
            .collect();
        drop(probe);
        let mut parallelism = 1;
        for (topic, partitions) in sources {
            parallelism = parallelism.max(ensure_topic(&log, &topic, partitions).await?);
        }
        // Inputs in the order data flows: sources first, then each repartition topic.
        let mut topics = Vec::new();
        let mut runners = Vec::new();
        for index in 0..parallelism {
            let slot = TaskSlot { index, parallelism };
            let graph = instance(&name, &self.build, Some(slot), &metrics);
            let repartitions: Vec<String> = (1..=graph.repartitions.len())
                .map(|n| topic_name(&name, n))
                .collect();
            if index == 0 {
                let sources = graph.sources.iter().map(|s| s.topic().to_string());
                topics.extend(sources.filter(|t| !repartitions.contains(t)));
                topics.extend(repartitions.iter().cloned());
            }
            for topic in repartitions {
                if let Err(e) = create_repartition(&log, &name, &topic, parallelism).await {
                    drop(graph);
                    return Err(e);
                }
            }
            let mut runner = Runner::start(log.clone(), graph).await?;
            runner.flush_when_idle = to_end;
            runners.push(runner);
        }
        tracing::info!(pipeline = %name, tasks = parallelism, "parallel pipeline started");

        let (tx, rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for r in runners {
            tasks.spawn(r.run(rx.clone(), false));
        }
        let mut result = Ok(());
        let mut last_purge = Instant::now();
        loop {
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                _ = stop.changed() => {}
                ended = tasks.join_next() => {
                    // A task ended on its own: an error, or a panic.
                    if let Some(r) = ended {
                        result = joined(&name, r);
                    }
                    break;
                }
                () = tokio::time::sleep(POLL) => {
                    let purged = if last_purge.elapsed() >= PURGE_EVERY {
                        last_purge = Instant::now();
                        purge(&log, &name, &topics).await
                    } else {
                        Ok(())
                    };
                    // An error stops the tasks too, each with a last checkpoint.
                    match purged.and_then(|()| Ok(to_end && caught_up(&log, &name, &topics)?)) {
                        Ok(false) => {}
                        Ok(true) => break,
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
            }
        }
        let _ = tx.send(true);
        while let Some(r) = tasks.join_next().await {
            let r = joined(&name, r);
            if result.is_ok() {
                result = r;
            }
        }
        if result.is_ok() {
            result = purge(&log, &name, &topics).await;
        }
        result
    }
}

/// Creates a repartition topic with a partition per task, kept until the pipeline has
/// read it (never by time: its records carry event times, which may be old); refuses one
/// made for another number of tasks.
async fn create_repartition(log: &Log, pipeline: &str, topic: &str, tasks: i32) -> Result<()> {
    if log.topic(topic).is_none() {
        let config = TopicConfig {
            retention_ms: -1,
            retention_bytes: -1,
            ..TopicConfig::default()
        };
        match log.create_topic(topic, tasks, config).await {
            Ok(_) | Err(LogError::TopicExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    match log.topic(topic) {
        Some(t) if t.partitions != tasks => Err(invalid(
            pipeline,
            format!(
                "its repartition topic {topic:?} has {} partitions but the pipeline now runs as {tasks} tasks; keys would move between tasks and their state. Keep the input partition count, or delete the pipeline's internal topics and state to start over",
                t.partitions
            ),
        )),
        _ => Ok(()),
    }
}

/// Deletes what the pipeline has committed as read of its repartition topics (as Kafka
/// Streams purges its repartition topics): a restart never reads it again.
async fn purge(log: &Log, group: &str, topics: &[String]) -> Result<()> {
    let internal = format!("{group}.repartition-");
    for t in topics.iter().filter(|t| t.starts_with(&internal)) {
        let partitions = log.topic(t).map_or(0, |t| t.partitions);
        for p in 0..partitions {
            let Some(read) = log.committed_offset(group, t, p)? else {
                continue;
            };
            if read.offset > log.bounds(t, p)?.log_start {
                log.delete_records(t, p, read.offset).await?;
            }
        }
    }
    Ok(())
}

fn joined(name: &str, r: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    r.unwrap_or_else(|e| {
        Err(invalid(
            name,
            format!("a task panicked (a bug in an operator): {e}"),
        ))
    })
}

/// Whether the pipeline's group has committed every partition of `topics` up to its end:
/// then each task's outputs for all input so far are committed too (they ride in the same
/// checkpoints as the offsets). `topics` go in the order data flows, so what a topic read
/// earlier led to is already in the ones read after it.
fn caught_up(log: &Log, group: &str, topics: &[String]) -> Result<bool> {
    for t in topics {
        let partitions = log.topic(t).map_or(0, |t| t.partitions);
        for p in 0..partitions {
            let bounds = log.bounds(t, p)?;
            let committed = log
                .committed_offset(group, t, p)?
                .map_or(bounds.log_start, |c| c.offset);
            if committed < bounds.high_watermark {
                return Ok(false);
            }
        }
    }
    Ok(true)
}
