//! The errors of weir-stream.

use weir_log::LogError;

/// Errors of weir-stream.
///
/// Each says whose fault it is: the pipeline's definition (`InvalidPipeline`), the stored
/// state (`State`), or the log underneath (`Log`, whose `is_retriable` tells whether a retry
/// can help). Bad input records are never errors: they go to the dead-letter topic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The log failed underneath; see [`LogError::is_retriable`].
    #[error("log: {0}")]
    Log(#[from] LogError),
    /// The pipeline is defined in a way that cannot run; fix the program.
    #[error("pipeline {pipeline:?} cannot run: {reason}")]
    InvalidPipeline {
        /// The pipeline's name.
        pipeline: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The metrics endpoint could not start (its address is taken or not allowed).
    #[error("metrics: {0}")]
    Metrics(#[from] weir_metrics::MetricsError),
    /// A checkpointed state entry could not be read back: the state was written by a
    /// different version of the pipeline.
    #[error(
        "state table {table:?} holds an entry this pipeline cannot read ({reason}); the pipeline \
         changed shape since its last checkpoint: rename the pipeline to start afresh"
    )]
    State {
        /// The state table.
        table: String,
        /// What failed to decode.
        reason: String,
    },
}

impl StreamError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Log(e) if e.is_retriable())
    }
}

/// The result type of weir-stream.
pub type Result<T, E = StreamError> = std::result::Result<T, E>;
