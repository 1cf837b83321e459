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
