//! The one error type of weir-log.

use std::fmt;

/// Why a record batch was refused; nothing of it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// Fewer bytes than a v2 batch header, or fewer than the header's length field claims.
    Truncated {
        /// Bytes the batch needs.
        needed: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// The magic byte is not 2 (only RecordBatch v2 is stored).
    WrongMagic(i8),
    /// The CRC32C in the header does not match the bytes that follow it.
    CrcMismatch {
        /// The CRC the header claims.
        expected: u32,
        /// The CRC of the bytes that arrived.
        actual: u32,
    },
    /// The batch holds no records.
    Empty,
    /// The header's fields contradict each other (record count vs. last offset delta).
    Inconsistent(&'static str),
    /// The batch is larger than the topic's `max.message.bytes`.
    TooLarge {
        /// Size of the batch in bytes.
        size: usize,
        /// The topic's `max.message.bytes`.
        max: usize,
    },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed, got } => {
                write!(f, "truncated record batch: needs {needed} bytes, got {got}")
            }
            Self::WrongMagic(m) => {
                write!(f, "record batch magic is {m}; only v2 batches are stored")
            }
            Self::CrcMismatch { expected, actual } => write!(
                f,
                "record batch CRC32C mismatch: header says {expected:#010x}, bytes give {actual:#010x}"
            ),
            Self::Empty => write!(f, "record batch holds no records"),
            Self::Inconsistent(what) => write!(f, "record batch header is inconsistent: {what}"),
            Self::TooLarge { size, max } => write!(
                f,
                "record batch of {size} bytes exceeds the topic's max.message.bytes of {max}"
            ),
        }
    }
}

impl std::error::Error for BatchError {}

/// Errors of weir-log.
///
/// Each says whose fault it is: the caller's input (`InvalidTopicName`, `InvalidBatch`, ...),
/// the log's state (`UnknownTopic`, `OffsetOutOfRange`), or the storage underneath (`Storage`,
/// `Io`), which a retry rarely cures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A topic name that Kafka would refuse.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A topic config key or value that weir does not accept.
    #[error("invalid topic config {key}={value:?}: {reason}")]
    InvalidConfig {
        /// The config key.
        key: String,
        /// The value as given.
        value: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A partition count below 1 or above the limit.
    #[error("invalid partition count {0}: a topic needs 1 to 100000 partitions")]
    InvalidPartitions(i64),
    /// Creating a topic whose name is taken.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// A topic that does not exist.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// A partition the topic does not have.
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: i32,
    },
    /// A read below the log start or above the high watermark.
    #[error(
        "offset {offset} is out of range for {topic}-{partition}: valid offsets are {log_start}..={high_watermark}"
    )]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset asked for.
        offset: i64,
        /// The first offset still stored.
        log_start: i64,
        /// The next offset to be written.
        high_watermark: i64,
    },
    /// A record batch refused on arrival.
    #[error("{0}")]
    InvalidBatch(#[from] BatchError),
    /// An idempotent producer's batch does not follow its last one: a batch was lost.
    #[error(
        "producer {producer_id} sent sequence {got} to {topic}-{partition}, expected {expected}: a batch in between is missing"
    )]
    OutOfOrderSequence {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The producer.
        producer_id: i64,
        /// The sequence that would follow the last batch written.
        expected: i32,
        /// The batch's first sequence.
        got: i32,
    },
    /// A batch from a producer epoch older than the one last seen: a zombie producer.
    #[error("producer {producer_id} epoch {epoch} is older than its current epoch {current}")]
    InvalidProducerEpoch {
        /// The producer.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The newest epoch written.
        current: i16,
    },
    /// A state table name that is empty or too long.
    #[error("invalid state table name {0:?}: use 1 to 200 characters")]
    InvalidStateTable(String),
    /// A consumer group id longer than the 65,535 bytes its stored key can hold.
    #[error("invalid group id of {0} bytes: a group id can be at most 65535 bytes long")]
    InvalidGroup(usize),
    /// The writer has shut down (the log is closing).
    #[error("the log is closed")]
    Closed,
    /// redb failed underneath; the transaction was not committed.
    #[error("storage error: {0}")]
    Storage(String),
    /// A file system error opening the log.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl LogError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Storage(_) | Self::Io(_))
    }
}

macro_rules! storage_from {
    ($($t:ty),*) => {
        $(impl From<$t> for LogError {
            fn from(e: $t) -> Self {
                Self::Storage(e.to_string())
            }
        })*
    };
}

storage_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// The result type of weir-log.
pub type Result<T, E = LogError> = std::result::Result<T, E>;
