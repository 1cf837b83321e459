//! Every metric name weir exports, in one place. Dashboards and tests refer to these.
//!
//! Conventions: `weir_` prefix, base units (`_seconds`, `_bytes`), counters end in `_total`,
//! labels of bounded cardinality (topic, partition, api, pipeline, operator; never a key).

// weir-log: the group-commit writer.
/// Histogram: time to apply and commit one group of writes, fsync included.
pub const LOG_COMMIT_DURATION: &str = "weir_log_commit_duration_seconds";
/// Histogram: records appended per commit (how much group commit gathers).
pub const LOG_COMMIT_RECORDS: &str = "weir_log_commit_records";
/// Counter: write transactions committed.
pub const LOG_COMMITS: &str = "weir_log_commits_total";
/// Counter: write transactions that failed (their callers got an error).
pub const LOG_COMMIT_FAILURES: &str = "weir_log_commit_failures_total";
/// Counter {topic}: records appended.
pub const LOG_APPENDED_RECORDS: &str = "weir_log_appended_records_total";
/// Counter {topic}: bytes of record batches appended.
pub const LOG_APPENDED_BYTES: &str = "weir_log_appended_bytes_total";
/// Gauge {topic}: bytes of batches stored.
pub const LOG_SIZE: &str = "weir_log_size_bytes";
/// Gauge {topic, partition}: first offset still stored.
pub const LOG_START_OFFSET: &str = "weir_log_start_offset";
/// Gauge {topic, partition}: next offset to be written (high watermark).
pub const LOG_END_OFFSET: &str = "weir_log_end_offset";
/// Gauge: partitions across all topics.
pub const LOG_PARTITIONS: &str = "weir_log_partitions";

// weir-stream: pipelines.
/// Counter {pipeline}: input records read.
pub const STREAM_RECORDS_IN: &str = "weir_stream_records_in_total";
/// Counter {pipeline}: records written to sink topics.
pub const STREAM_RECORDS_OUT: &str = "weir_stream_records_out_total";
/// Counter {pipeline}: input records that failed to decode (sent to the dead-letter topic).
pub const STREAM_DEAD_LETTERS: &str = "weir_stream_dead_letters_total";
/// Counter {pipeline}: records that arrived after their window closed.
pub const STREAM_LATE_RECORDS: &str = "weir_stream_late_records_total";
/// Counter {pipeline}: output values that could not be encoded or were too large.
pub const STREAM_ENCODE_ERRORS: &str = "weir_stream_encode_errors_total";
/// Counter {pipeline}: checkpoints committed.
pub const STREAM_CHECKPOINTS: &str = "weir_stream_checkpoints_total";
/// Gauge {pipeline}: the pipeline's watermark, seconds since the epoch.
pub const STREAM_WATERMARK: &str = "weir_stream_watermark_seconds";
/// Histogram {pipeline}: time from a checkpoint's start until the pipeline saw it committed.
pub const STREAM_CHECKPOINT_DURATION: &str = "weir_stream_checkpoint_duration_seconds";
