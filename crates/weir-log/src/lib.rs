//! weir-log: topics and partitions of Kafka record batches in one redb file, written by one
//! group-commit writer. Nothing acknowledged is ever lost.
//!
//! ```
//! use weir_log::{Log, Record, TopicConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let log = Log::open(dir.path())?;
//! log.create_topic("clicks", 1, TopicConfig::default()).wait()?;
//! let at = log.append_records("clicks", 0, &[Record::keyed(1_700_000_000_000, "u1", "/home")]).wait()?;
//! let read = log.read("clicks", 0, at.base_offset, 1 << 20)?;
//! let records = read.decode_from(at.base_offset)?;
//! assert_eq!(records[0].value.as_deref(), Some(&b"/home"[..]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod batch;
mod error;
mod keys;
mod log;
mod metrics;
mod producer;
pub mod topic;
mod unit;
mod writer;

pub use batch::{BatchBuilder, BatchHeader, Compression, Record, StoredRecord};
pub use error::{BatchError, LogError, Result};
pub use log::{DB_FILE, Durability, Fetched, Log, LogOptions, PartitionBounds, Pending, WeakLog};
pub use topic::{CleanupPolicy, TopicConfig, TopicMeta};
pub use unit::{Appended, CommittedOffset, Unit};
