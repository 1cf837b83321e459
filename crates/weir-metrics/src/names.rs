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

// weir-broker: the Kafka-protocol server.
/// Counter {api}: requests handled, by Kafka API name.
pub const BROKER_REQUESTS: &str = "weir_broker_requests_total";
/// Counter {api}: requests answered with an error code, or that closed their connection.
pub const BROKER_REQUEST_ERRORS: &str = "weir_broker_request_errors_total";
/// Histogram {api}: time from a request's arrival to its response being ready.
pub const BROKER_REQUEST_DURATION: &str = "weir_broker_request_duration_seconds";
/// Gauge: open client connections.
pub const BROKER_CONNECTIONS: &str = "weir_broker_connections";
/// Counter: client connections accepted.
pub const BROKER_CONNECTIONS_ACCEPTED: &str = "weir_broker_connections_accepted_total";
/// Counter {topic}: records produced.
pub const BROKER_PRODUCED_RECORDS: &str = "weir_broker_produced_records_total";
/// Counter {topic}: bytes of record batches produced.
pub const BROKER_PRODUCED_BYTES: &str = "weir_broker_produced_bytes_total";
/// Counter {topic}: records served to fetches.
pub const BROKER_FETCHED_RECORDS: &str = "weir_broker_fetched_records_total";
/// Counter {topic}: bytes of record batches served to fetches.
pub const BROKER_FETCHED_BYTES: &str = "weir_broker_fetched_bytes_total";

// Consumer groups.
/// Gauge {group, topic, partition}: end offset minus the group's committed offset.
pub const GROUP_LAG: &str = "weir_group_lag";
/// Gauge {group}: members of the group.
pub const GROUP_MEMBERS: &str = "weir_group_members";
/// Counter {group}: rebalances completed (generations started).
pub const GROUP_REBALANCES: &str = "weir_group_rebalances_total";

// weir-stream: pipelines. Label `operator` is `source:<topic>`, `<n>-<name>` for the n-th
// operator defined (`3-time-window`; its state table ends the same), or `sink:<topic>`.
/// Counter {pipeline, operator}: records into an operator.
pub const STREAM_RECORDS_IN: &str = "weir_stream_records_in_total";
/// Counter {pipeline, operator}: records out of an operator.
pub const STREAM_RECORDS_OUT: &str = "weir_stream_records_out_total";
/// Histogram {pipeline}: time to push one batch of input records through the operators.
pub const STREAM_PROCESSING_DURATION: &str = "weir_stream_processing_duration_seconds";
/// Histogram {pipeline}: wall clock minus event time of records reaching a sink.
pub const STREAM_END_TO_END_LATENCY: &str = "weir_stream_end_to_end_latency_seconds";
/// Gauge {pipeline}: the pipeline's event-time watermark.
pub const STREAM_WATERMARK: &str = "weir_stream_watermark_timestamp_seconds";
/// Counter {pipeline}: records later than their window's end + grace.
pub const STREAM_LATE_RECORDS: &str = "weir_stream_late_records_total";
/// Counter {pipeline}: input records that failed to decode, sent to the dead-letter topic.
pub const STREAM_DEAD_LETTERS: &str = "weir_stream_dead_letters_total";
/// Gauge {pipeline}: windows open (not yet emitted).
pub const STREAM_OPEN_WINDOWS: &str = "weir_stream_open_windows";
/// Gauge {pipeline}: entries of keyed state (one per key with open windows).
pub const STREAM_STATE_ENTRIES: &str = "weir_stream_state_entries";
/// Gauge {pipeline}: bytes of keyed state as last checkpointed.
pub const STREAM_STATE_BYTES: &str = "weir_stream_state_bytes";
/// Histogram {pipeline}: time to write and commit one checkpoint.
pub const STREAM_CHECKPOINT_DURATION: &str = "weir_stream_checkpoint_duration_seconds";
/// Histogram {pipeline}: bytes written by one checkpoint (outputs + state).
pub const STREAM_CHECKPOINT_SIZE: &str = "weir_stream_checkpoint_size_bytes";
/// Counter {pipeline}: checkpoints committed.
pub const STREAM_CHECKPOINTS: &str = "weir_stream_checkpoints_total";
/// Counter {pipeline}: checkpoints that failed to commit.
pub const STREAM_CHECKPOINT_FAILURES: &str = "weir_stream_checkpoint_failures_total";
/// Gauge {pipeline, topic, partition}: input records not yet read.
pub const STREAM_INPUT_LAG: &str = "weir_stream_input_lag";
/// Counter {pipeline}: output values that could not be encoded or were too large.
pub const STREAM_ENCODE_ERRORS: &str = "weir_stream_encode_errors_total";
