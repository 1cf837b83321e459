//! A pipeline's metrics: kept locally (for [`Metrics::snapshot`] and the test driver) and
//! exported through weir-metrics' registry with a `pipeline` label (and `operator` for
//! records in and out). Handles are resolved when the pipeline is defined; the hot path adds
//! per batch, never per label lookup. Input lag is computed at scrape time.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use weir_log::Log;
use weir_metrics::names;
use weir_metrics::prometheus::core::{Collector, Desc};
use weir_metrics::prometheus::proto::{self, MetricFamily, MetricType};
use weir_metrics::prometheus::{Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec};
use weir_metrics::prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use crate::graph::lock;
use crate::operator::StateStore;
use crate::task::Input;

/// What a pipeline counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    /// Kept locally only: exported per operator by [`OperatorCounters`].
    RecordsIn,
    /// Kept locally only: exported per operator by [`OperatorCounters`].
    RecordsOut,
    DeadLetters,
    LateRecords,
    EncodeErrors,
    Checkpoints,
    CheckpointFailures,
}

const COUNTERS: usize = 7;

/// The counters exported with a `pipeline` label alone.
const PIPELINE_COUNTERS: [(Counter, &str, &str); 5] = [
    (
        Counter::DeadLetters,
        names::STREAM_DEAD_LETTERS,
        "Input records that failed to decode, sent to the dead-letter topic.",
    ),
    (
        Counter::LateRecords,
        names::STREAM_LATE_RECORDS,
        "Records later than their window's end plus grace.",
    ),
    (
        Counter::EncodeErrors,
        names::STREAM_ENCODE_ERRORS,
        "Output values that could not be encoded or were too large.",
    ),
    (
        Counter::Checkpoints,
        names::STREAM_CHECKPOINTS,
        "Checkpoints committed.",
    ),
    (
        Counter::CheckpointFailures,
        names::STREAM_CHECKPOINT_FAILURES,
        "Checkpoints that failed to commit.",
    ),
];

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    weir_metrics::register(name, || IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge(name: &str, help: &str, pipeline: &str) -> IntGauge {
    weir_metrics::register(name, || {
        IntGaugeVec::new(Opts::new(name, help), &["pipeline"])
    })
    .with_label_values(&[pipeline])
}

fn histogram(name: &str, help: &str, buckets: Vec<f64>, pipeline: &str) -> Histogram {
    weir_metrics::register(name, || {
        HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets),
            &["pipeline"],
        )
    })
    .with_label_values(&[pipeline])
}

/// Buckets for checkpoint sizes: 64 B to 4 GiB, by powers of 4.
fn size_buckets() -> Vec<f64> {
    (0..14).map(|i| 64.0 * 4f64.powi(i)).collect()
}

/// Metrics of one pipeline, shared by its operators.
#[derive(Debug)]
pub struct Metrics {
    pipeline: String,
    local: [AtomicU64; COUNTERS],
    exported: [Option<IntCounter>; COUNTERS],
    records_in: IntCounterVec,
    records_out: IntCounterVec,
    watermark: Gauge,
    processing: Histogram,
    end_to_end: Arc<LatencyCells>,
    checkpoint_duration: Histogram,
    checkpoint_size: Histogram,
    open_windows: IntGauge,
    state_entries: IntGauge,
    state_bytes: IntGauge,
}

/// A copy of a pipeline's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricsSnapshot {
    /// Input records read.
    pub records_in: u64,
    /// Records written to sink topics.
    pub records_out: u64,
    /// Input records sent to the dead-letter topic.
    pub dead_letters: u64,
    /// Records later than their window's end + grace.
    pub late_records: u64,
    /// Output values that failed to encode or were too large for their topic.
    pub encode_errors: u64,
    /// Checkpoints committed.
    pub checkpoints: u64,
    /// Checkpoints that failed to commit.
    pub checkpoint_failures: u64,
}

impl Metrics {
    /// The metrics of pipeline `pipeline`, registered with weir-metrics.
    pub(crate) fn new(pipeline: &str) -> Self {
        let mut exported: [Option<IntCounter>; COUNTERS] = Default::default();
        for (c, name, help) in PIPELINE_COUNTERS {
            exported[c as usize] =
                Some(counter_vec(name, help, &["pipeline"]).with_label_values(&[pipeline]));
        }
        Self {
            pipeline: pipeline.to_string(),
            local: Default::default(),
            exported,
            records_in: counter_vec(
                names::STREAM_RECORDS_IN,
                "Records into an operator (for a source: records read from its topic).",
                &["pipeline", "operator"],
            ),
            records_out: counter_vec(
                names::STREAM_RECORDS_OUT,
                "Records out of an operator (for a sink: records written to its topic).",
                &["pipeline", "operator"],
            ),
            watermark: weir_metrics::register(names::STREAM_WATERMARK, || {
                GaugeVec::new(
                    Opts::new(
                        names::STREAM_WATERMARK,
                        "The pipeline's event-time watermark.",
                    ),
                    &["pipeline"],
                )
            })
            .with_label_values(&[pipeline]),
            processing: histogram(
                names::STREAM_PROCESSING_DURATION,
                "Time to push one batch of input records through the operators.",
                weir_metrics::latency_buckets(),
                pipeline,
            ),
            end_to_end: latency_cells(pipeline),
            checkpoint_duration: histogram(
                names::STREAM_CHECKPOINT_DURATION,
                "Time from a checkpoint's start until the pipeline saw it committed.",
                weir_metrics::latency_buckets(),
                pipeline,
            ),
            checkpoint_size: histogram(
                names::STREAM_CHECKPOINT_SIZE,
                "Bytes written by one checkpoint: output batches and state entries.",
                size_buckets(),
                pipeline,
            ),
            open_windows: gauge(
                names::STREAM_OPEN_WINDOWS,
                "Windows open (not yet emitted).",
                pipeline,
            ),
            state_entries: gauge(
                names::STREAM_STATE_ENTRIES,
                "Entries of keyed window state.",
                pipeline,
            ),
            state_bytes: gauge(
                names::STREAM_STATE_BYTES,
                "Bytes of keyed window state (keys and values) as last checkpointed.",
                pipeline,
            ),
        }
    }

    pub(crate) fn add(&self, c: Counter, n: u64) {
        self.local[c as usize].fetch_add(n, Ordering::Relaxed);
        if let Some(e) = &self.exported[c as usize] {
            e.inc_by(n);
        }
    }

    /// Records in and out of the node labelled `operator`, resolved once.
    pub(crate) fn operator(&self, operator: &str) -> OperatorCounters {
        OperatorCounters {
            records_in: self
                .records_in
                .with_label_values(&[&self.pipeline, operator]),
            records_out: self
                .records_out
                .with_label_values(&[&self.pipeline, operator]),
        }
    }

    pub(crate) fn set_watermark(&self, ms: i64) {
        #[allow(clippy::cast_precision_loss)]
        self.watermark.set(ms as f64 / 1000.0);
    }

    /// One batch of input went through the operators in `took`.
    pub(crate) fn observe_processing(&self, took: Duration) {
        self.processing.observe(took.as_secs_f64());
    }

    /// Records reached a sink with these latencies.
    pub(crate) fn observe_end_to_end(&self, tally: &LatencyTally) {
        self.end_to_end.add(tally);
    }

    /// A checkpoint begun at `started`, of `records` input records and `bytes` bytes, was
    /// handed to the log.
    pub(crate) fn checkpoint_started(
        &self,
        started: Instant,
        records: u64,
        bytes: u64,
    ) -> CheckpointStarted {
        self.checkpoint_size.observe(bytes as f64);
        CheckpointStarted {
            started,
            span: tracing::info_span!(
                "checkpoint",
                pipeline = %self.pipeline,
                records,
                bytes,
                duration_ms = tracing::field::Empty,
            ),
        }
    }

    /// The checkpoint `c` committed (`error` is `None`) or failed.
    pub(crate) fn checkpoint_finished(
        &self,
        c: CheckpointStarted,
        error: Option<&dyn std::fmt::Display>,
    ) {
        let took = c.started.elapsed();
        c.span.record("duration_ms", took.as_secs_f64() * 1000.0);
        let _in = c.span.enter();
        match error {
            None => {
                self.add(Counter::Checkpoints, 1);
                self.checkpoint_duration.observe(took.as_secs_f64());
                tracing::info!("checkpoint committed");
            }
            Some(e) => {
                self.add(Counter::CheckpointFailures, 1);
                tracing::warn!(error = %e, "checkpoint failed");
            }
        }
    }

    /// Starts reporting the lag of `inputs` (read from `log`) at scrape time, while the
    /// returned positions live.
    pub(crate) fn watch_inputs(&self, log: &Log, inputs: &[Input]) -> Arc<InputPositions> {
        let p = Arc::new(InputPositions {
            pipeline: self.pipeline.clone(),
            log: log.clone(),
            inputs: inputs
                .iter()
                .map(|i| (i.topic.clone(), i.partition, AtomicI64::new(i.next_offset)))
                .collect(),
        });
        lock(&lag_collector().pipelines).push(Arc::downgrade(&p));
        p
    }

    /// Open windows, state entries and state bytes as the gauges show them.
    #[cfg(test)]
    pub(crate) fn state_gauges(&self) -> (i64, i64, i64) {
        (
            self.open_windows.get(),
            self.state_entries.get(),
            self.state_bytes.get(),
        )
    }

    /// The counters now (this pipeline's own, since it was defined).
    pub fn snapshot(&self) -> MetricsSnapshot {
        let g = |c: Counter| self.local[c as usize].load(Ordering::Relaxed);
        MetricsSnapshot {
            records_in: g(Counter::RecordsIn),
            records_out: g(Counter::RecordsOut),
            dead_letters: g(Counter::DeadLetters),
            late_records: g(Counter::LateRecords),
            encode_errors: g(Counter::EncodeErrors),
            checkpoints: g(Counter::Checkpoints),
            checkpoint_failures: g(Counter::CheckpointFailures),
        }
    }
}

/// Records in and out of one node of a pipeline.
#[derive(Debug, Clone)]
pub(crate) struct OperatorCounters {
    records_in: IntCounter,
    records_out: IntCounter,
}

impl OperatorCounters {
    /// A batch of `n_in` records went in and `n_out` came out.
    pub(crate) fn count(&self, n_in: usize, n_out: usize) {
        if n_in > 0 {
            self.records_in.inc_by(n_in as u64);
        }
        if n_out > 0 {
            self.records_out.inc_by(n_out as u64);
        }
    }
}

/// A checkpoint on its way to the log.
#[derive(Debug)]
pub(crate) struct CheckpointStarted {
    started: Instant,
    span: tracing::Span,
}

/// A state store that counts the bytes put into it (for the checkpoint size).
pub(crate) struct MeasuredStore<'a> {
    pub inner: &'a mut dyn StateStore,
    pub bytes: u64,
}

impl StateStore for MeasuredStore<'_> {
    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) {
        self.bytes += (key.len() + value.len()) as u64;
        self.inner.put(table, key, value);
    }

    fn delete(&mut self, table: &str, key: &[u8]) {
        self.bytes += key.len() as u64;
        self.inner.delete(table, key);
    }
}

/// One window operator's share of the pipeline's state gauges: it reports its totals, the
/// gauges move by the difference, and what it added goes away when it is dropped (so a
/// pipeline restarted in the same process is not counted twice).
#[derive(Debug)]
pub(crate) struct StateGauges {
    metrics: Arc<Metrics>,
    open_windows: i64,
    entries: i64,
    bytes: i64,
}

fn move_to(gauge: &IntGauge, reported: &mut i64, now: i64) {
    if *reported != now {
        gauge.add(now - *reported);
        *reported = now;
    }
}

impl StateGauges {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            open_windows: 0,
            entries: 0,
            bytes: 0,
        }
    }

    /// The operator now holds `open_windows` windows over `entries` keys.
    pub(crate) fn windows(&mut self, open_windows: usize, entries: usize) {
        let m = &self.metrics;
        move_to(&m.open_windows, &mut self.open_windows, open_windows as i64);
        move_to(&m.state_entries, &mut self.entries, entries as i64);
    }

    /// The operator's state takes `bytes` bytes as checkpointed.
    pub(crate) fn bytes(&mut self, bytes: i64) {
        move_to(&self.metrics.state_bytes, &mut self.bytes, bytes);
    }
}

impl Drop for StateGauges {
    fn drop(&mut self) {
        self.windows(0, 0);
        self.bytes(0);
    }
}

/// Upper bounds of the end-to-end latency buckets, in milliseconds: 1 ms to 1 h (windowed
/// results are as late as their window is long).
const LATENCY_BOUNDS_MS: [i64; 17] = [
    1, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000, 900_000,
    3_600_000,
];
const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// End-to-end latencies of one sink batch, added up before they touch shared counters.
#[derive(Debug)]
pub(crate) struct LatencyTally {
    counts: [u64; LATENCY_BUCKETS],
    sum_ms: i64,
    n: u64,
}

impl LatencyTally {
    pub(crate) fn new() -> Self {
        Self {
            counts: [0; LATENCY_BUCKETS],
            sum_ms: 0,
            n: 0,
        }
    }

    /// One record reached the sink `latency_ms` after its event time (event times in the
    /// future count as 0).
    pub(crate) fn record(&mut self, latency_ms: i64) {
        let l = latency_ms.max(0);
        self.counts[LATENCY_BOUNDS_MS.partition_point(|b| *b < l)] += 1;
        self.sum_ms = self.sum_ms.saturating_add(l);
        self.n += 1;
    }
}

/// A pipeline's end-to-end latency histogram. Prometheus' own histogram takes one
/// observation per call; a sink batch adds all of its records at once here instead.
#[derive(Debug)]
struct LatencyCells {
    counts: [AtomicU64; LATENCY_BUCKETS],
    /// Sum of latencies in seconds, as f64 bits.
    sum: AtomicU64,
    n: AtomicU64,
}

impl LatencyCells {
    fn add(&self, t: &LatencyTally) {
        if t.n == 0 {
            return;
        }
        for (cell, n) in self.counts.iter().zip(t.counts) {
            if n > 0 {
                cell.fetch_add(n, Ordering::Relaxed);
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let add = t.sum_ms as f64 / 1000.0;
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some((f64::from_bits(s) + add).to_bits())
            });
        self.n.fetch_add(t.n, Ordering::Relaxed);
    }

    fn proto(&self) -> proto::Histogram {
        let mut h = proto::Histogram::default();
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BOUNDS_MS.len());
        for (bound, cell) in LATENCY_BOUNDS_MS.iter().zip(&self.counts) {
            cumulative += cell.load(Ordering::Relaxed);
            let mut b = proto::Bucket::default();
            #[allow(clippy::cast_precision_loss)]
            b.set_upper_bound(*bound as f64 / 1000.0);
            b.set_cumulative_count(cumulative);
            buckets.push(b);
        }
        h.set_bucket(buckets);
        // Read after the buckets: a batch added meanwhile makes the count at least their sum.
        h.set_sample_count(
            self.n
                .load(Ordering::Relaxed)
                .max(cumulative + self.counts[LATENCY_BUCKETS - 1].load(Ordering::Relaxed)),
        );
        h.set_sample_sum(f64::from_bits(self.sum.load(Ordering::Relaxed)));
        h
    }
}

const LATENCY_HELP: &str = "Wall clock minus event time of records reaching a sink.";

struct LatencyCollector {
    pipelines: Mutex<BTreeMap<String, Arc<LatencyCells>>>,
    desc: Desc,
}

fn latency_collector() -> &'static LatencyCollector {
    static C: OnceLock<&'static LatencyCollector> = OnceLock::new();
    C.get_or_init(|| {
        let desc = Desc::new(
            names::STREAM_END_TO_END_LATENCY.into(),
            LATENCY_HELP.into(),
            vec!["pipeline".into()],
            HashMap::new(),
        )
        .expect("a valid metric description");
        let c: &'static LatencyCollector = Box::leak(Box::new(LatencyCollector {
            pipelines: Mutex::new(BTreeMap::new()),
            desc,
        }));
        weir_metrics::register_collector(names::STREAM_END_TO_END_LATENCY, Box::new(c));
        c
    })
}

/// The latency histogram of `pipeline`: one per name, as a labelled child would be.
fn latency_cells(pipeline: &str) -> Arc<LatencyCells> {
    let mut map = lock(&latency_collector().pipelines);
    map.entry(pipeline.to_string())
        .or_insert_with(|| {
            Arc::new(LatencyCells {
                counts: Default::default(),
                sum: AtomicU64::new(0f64.to_bits()),
                n: AtomicU64::new(0),
            })
        })
        .clone()
}

fn label(name: &str, value: &str) -> proto::LabelPair {
    let mut l = proto::LabelPair::default();
    l.set_name(name.into());
    l.set_value(value.into());
    l
}

impl Collector for &'static LatencyCollector {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let map = lock(&self.pipelines);
        let mut metrics = Vec::with_capacity(map.len());
        for (pipeline, cells) in map.iter() {
            let mut m = proto::Metric::from_label(vec![label("pipeline", pipeline)]);
            m.set_histogram(cells.proto());
            metrics.push(m);
        }
        let mut f = MetricFamily::default();
        f.set_name(names::STREAM_END_TO_END_LATENCY.into());
        f.set_help(LATENCY_HELP.into());
        f.set_field_type(MetricType::HISTOGRAM);
        f.set_metric(metrics);
        vec![f]
    }
}

/// The next offsets a running pipeline will read, for its input lag.
#[derive(Debug)]
pub(crate) struct InputPositions {
    pipeline: String,
    log: Log,
    inputs: Vec<(String, i32, AtomicI64)>,
}

impl InputPositions {
    /// Notes where each input stands (once per step, not per record).
    pub(crate) fn update(&self, inputs: &[Input]) {
        for ((_, _, at), i) in self.inputs.iter().zip(inputs) {
            at.store(i.next_offset, Ordering::Relaxed);
        }
    }
}

const LAG_HELP: &str = "Input records not yet read: the partition's high watermark minus the \
                        next offset the pipeline reads.";

struct LagCollector {
    pipelines: Mutex<Vec<Weak<InputPositions>>>,
    desc: Vec<Desc>,
}

fn lag_family() -> IntGaugeVec {
    IntGaugeVec::new(
        Opts::new(names::STREAM_INPUT_LAG, LAG_HELP),
        &["pipeline", "topic", "partition"],
    )
    .expect("a valid gauge")
}

fn lag_collector() -> &'static LagCollector {
    static C: OnceLock<&'static LagCollector> = OnceLock::new();
    C.get_or_init(|| {
        let c: &'static LagCollector = Box::leak(Box::new(LagCollector {
            pipelines: Mutex::new(Vec::new()),
            desc: lag_family().desc().into_iter().cloned().collect(),
        }));
        weir_metrics::register_collector(names::STREAM_INPUT_LAG, Box::new(c));
        c
    })
}

impl Collector for &'static LagCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.desc.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let live: Vec<Arc<InputPositions>> = {
            let mut all = lock(&self.pipelines);
            all.retain(|w| w.strong_count() > 0);
            all.iter().filter_map(Weak::upgrade).collect()
        };
        let lag = lag_family();
        // The latest of two runs of one pipeline (two logs in one process) wins.
        for p in &live {
            for (topic, partition, next) in &p.inputs {
                let Ok(b) = p.log.bounds(topic, *partition) else {
                    continue;
                };
                let behind = b.high_watermark - next.load(Ordering::Relaxed).max(b.log_start);
                lag.with_label_values(&[&p.pipeline, topic, &partition.to_string()])
                    .set(behind.max(0));
            }
        }
        lag.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_exported_with_the_pipeline_label() {
        let m = Metrics::new("metrics-test");
        m.add(Counter::LateRecords, 3);
        assert_eq!(m.snapshot().late_records, 3);
        let text = weir_metrics::encode_text();
        assert!(
            text.contains("weir_stream_late_records_total{pipeline=\"metrics-test\"} 3"),
            "{text}"
        );
    }

    #[test]
    fn operator_counters_carry_the_operator_label() {
        let m = Metrics::new("metrics-op-test");
        m.operator("1-map").count(5, 4);
        let text = weir_metrics::encode_text();
        assert!(
            text.contains(
                "weir_stream_records_in_total{operator=\"1-map\",pipeline=\"metrics-op-test\"} 5"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "weir_stream_records_out_total{operator=\"1-map\",pipeline=\"metrics-op-test\"} 4"
            ),
            "{text}"
        );
    }

    #[test]
    fn end_to_end_latencies_land_in_their_buckets() {
        let m = Metrics::new("metrics-e2e-test");
        let mut t = LatencyTally::new();
        for l in [0, 1, 2, 7_000, 10_000_000, -5] {
            t.record(l);
        }
        m.observe_end_to_end(&t);
        let text = weir_metrics::encode_text();
        let line = |le: &str, n: u64| {
            format!(
                "weir_stream_end_to_end_latency_seconds_bucket{{pipeline=\"metrics-e2e-test\",le=\"{le}\"}} {n}"
            )
        };
        for want in [
            line("0.001", 3),
            line("0.005", 4),
            line("5", 4),
            line("10", 5),
            line("3600", 5),
            line("+Inf", 6),
            "weir_stream_end_to_end_latency_seconds_count{pipeline=\"metrics-e2e-test\"} 6"
                .to_string(),
            "weir_stream_end_to_end_latency_seconds_sum{pipeline=\"metrics-e2e-test\"} 10007.003"
                .to_string(),
        ] {
            assert!(text.contains(&want), "{want} missing from:\n{text}");
        }
    }

    #[test]
    fn state_gauges_move_by_differences_and_drop_back() {
        let m = Arc::new(Metrics::new("metrics-state-test"));
        let mut a = StateGauges::new(m.clone());
        let mut b = StateGauges::new(m.clone());
        a.windows(3, 2);
        b.windows(4, 1);
        a.windows(1, 1);
        b.bytes(100);
        assert_eq!(m.open_windows.get(), 5);
        assert_eq!(m.state_entries.get(), 2);
        assert_eq!(m.state_bytes.get(), 100);
        drop(b);
        assert_eq!(m.open_windows.get(), 1);
        assert_eq!(m.state_bytes.get(), 0);
    }
}
