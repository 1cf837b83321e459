//! A pipeline's counters: kept locally (for [`Metrics::snapshot`] and the test driver) and
//! exported through weir-metrics' registry with a `pipeline` label. Handles are resolved
//! once per pipeline; the hot path adds per batch, never per label lookup.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use weir_metrics::names;
use weir_metrics::prometheus::{Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec};
use weir_metrics::prometheus::{IntCounter, IntCounterVec, Opts};

/// What a pipeline counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    RecordsIn,
    RecordsOut,
    DeadLetters,
    LateRecords,
    EncodeErrors,
    Checkpoints,
}

const COUNTERS: [(Counter, &str, &str); 6] = [
    (
        Counter::RecordsIn,
        names::STREAM_RECORDS_IN,
        "Input records read.",
    ),
    (
        Counter::RecordsOut,
        names::STREAM_RECORDS_OUT,
        "Records written to sink topics.",
    ),
    (
        Counter::DeadLetters,
        names::STREAM_DEAD_LETTERS,
        "Input records that failed to decode.",
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
];

/// Counters of one pipeline, shared by its operators.
#[derive(Debug)]
pub struct Metrics {
    local: [AtomicU64; 6],
    exported: [IntCounter; 6],
    watermark: Gauge,
    checkpoint_duration: Histogram,
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
}

impl Metrics {
    /// The counters of pipeline `pipeline`, registered with weir-metrics.
    pub(crate) fn new(pipeline: &str) -> Self {
        let exported = COUNTERS.map(|(_, name, help)| {
            weir_metrics::register(name, || {
                IntCounterVec::new(Opts::new(name, help), &["pipeline"])
            })
            .with_label_values(&[pipeline])
        });
        let watermark = weir_metrics::register(names::STREAM_WATERMARK, || {
            GaugeVec::new(
                Opts::new(names::STREAM_WATERMARK, "The pipeline's watermark."),
                &["pipeline"],
            )
        })
        .with_label_values(&[pipeline]);
        let checkpoint_duration = weir_metrics::register(names::STREAM_CHECKPOINT_DURATION, || {
            HistogramVec::new(
                HistogramOpts::new(
                    names::STREAM_CHECKPOINT_DURATION,
                    "Time from a checkpoint's start until the pipeline saw it committed.",
                )
                .buckets(weir_metrics::latency_buckets()),
                &["pipeline"],
            )
        })
        .with_label_values(&[pipeline]);
        Self {
            local: Default::default(),
            exported,
            watermark,
            checkpoint_duration,
        }
    }

    pub(crate) fn add(&self, c: Counter, n: u64) {
        self.local[c as usize].fetch_add(n, Ordering::Relaxed);
        self.exported[c as usize].inc_by(n);
    }

    pub(crate) fn set_watermark(&self, ms: i64) {
        #[allow(clippy::cast_precision_loss)]
        self.watermark.set(ms as f64 / 1000.0);
    }

    pub(crate) fn observe_checkpoint(&self, took: Duration) {
        self.checkpoint_duration.observe(took.as_secs_f64());
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
        }
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
}
