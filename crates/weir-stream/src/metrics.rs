//! A pipeline's counters. Names follow weir's conventions so an exporter can publish them
//! as they are.

use std::sync::atomic::{AtomicU64, Ordering};

/// Metric names, in one place.
pub mod names {
    /// Input records read.
    pub const RECORDS_IN: &str = "weir_stream_records_in_total";
    /// Records written to sink topics.
    pub const RECORDS_OUT: &str = "weir_stream_records_out_total";
    /// Input records that failed to decode and went to the dead-letter topic.
    pub const DEAD_LETTERS: &str = "weir_stream_dead_letters_total";
    /// Records that arrived after their window closed.
    pub const LATE_RECORDS: &str = "weir_stream_late_records_total";
    /// Output values that failed to encode (a codec bug or unencodable data).
    pub const ENCODE_ERRORS: &str = "weir_stream_encode_errors_total";
    /// Checkpoints committed.
    pub const CHECKPOINTS: &str = "weir_stream_checkpoints_total";
}

/// Counters of one pipeline, shared by its operators.
#[derive(Debug, Default)]
pub struct Metrics {
    pub(crate) records_in: AtomicU64,
    pub(crate) records_out: AtomicU64,
    pub(crate) dead_letters: AtomicU64,
    pub(crate) late_records: AtomicU64,
    pub(crate) encode_errors: AtomicU64,
    pub(crate) checkpoints: AtomicU64,
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
    /// Output values that failed to encode.
    pub encode_errors: u64,
    /// Checkpoints committed.
    pub checkpoints: u64,
}

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            records_in: g(&self.records_in),
            records_out: g(&self.records_out),
            dead_letters: g(&self.dead_letters),
            late_records: g(&self.late_records),
            encode_errors: g(&self.encode_errors),
            checkpoints: g(&self.checkpoints),
        }
    }

    /// (name, value) pairs for an exporter.
    pub fn pairs(&self) -> [(&'static str, u64); 6] {
        let s = self.snapshot();
        [
            (names::RECORDS_IN, s.records_in),
            (names::RECORDS_OUT, s.records_out),
            (names::DEAD_LETTERS, s.dead_letters),
            (names::LATE_RECORDS, s.late_records),
            (names::ENCODE_ERRORS, s.encode_errors),
            (names::CHECKPOINTS, s.checkpoints),
        ]
    }
}
