//! An atomic unit: appends, group offset commits and state changes that commit together.

use bytes::Bytes;

use crate::batch::{self, BatchHeader, Record};

/// Everything in one unit is committed in one transaction, or none of it is.
///
/// Exactly-once processing stands on this: a pipeline checkpoint is one unit holding its
/// output batches, its state changes and its input offsets.
#[derive(Debug, Default, Clone)]
pub struct Unit {
    pub(crate) appends: Vec<Append>,
    pub(crate) offsets: Vec<OffsetCommit>,
    pub(crate) state: Vec<StateOp>,
    pub(crate) deleted_groups: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Append {
    pub topic: String,
    pub partition: i32,
    pub payload: Bytes,
    /// Filled in by validation, before the unit reaches the writer.
    pub batches: Vec<(BatchHeader, Bytes)>,
}

#[derive(Debug, Clone)]
pub(crate) struct OffsetCommit {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: CommittedOffset,
}

#[derive(Debug, Clone)]
pub(crate) enum StateOp {
    Put {
        table: String,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        table: String,
        key: Vec<u8>,
    },
    Clear {
        table: String,
    },
}

/// A consumer group's committed position in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset the group will read.
    pub offset: i64,
    /// Leader epoch the committer saw, or -1.
    pub leader_epoch: i32,
    /// Free text the committer attached.
    pub metadata: String,
    /// When it was committed, in milliseconds since the epoch.
    pub commit_timestamp: i64,
}

impl CommittedOffset {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(20 + self.metadata.len());
        v.extend_from_slice(&self.offset.to_be_bytes());
        v.extend_from_slice(&self.leader_epoch.to_be_bytes());
        v.extend_from_slice(&self.commit_timestamp.to_be_bytes());
        v.extend_from_slice(self.metadata.as_bytes());
        v
    }

    pub(crate) fn decode(v: &[u8]) -> Option<Self> {
        Some(Self {
            offset: i64::from_be_bytes(v.get(0..8)?.try_into().ok()?),
            leader_epoch: i32::from_be_bytes(v.get(8..12)?.try_into().ok()?),
            commit_timestamp: i64::from_be_bytes(v.get(12..20)?.try_into().ok()?),
            metadata: String::from_utf8_lossy(v.get(20..)?).into_owned(),
        })
    }
}

impl Unit {
    /// An empty unit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the unit holds nothing.
    pub fn is_empty(&self) -> bool {
        self.appends.is_empty()
            && self.offsets.is_empty()
            && self.state.is_empty()
            && self.deleted_groups.is_empty()
    }

    /// Appends one or more pre-encoded v2 batches, as a Kafka producer sends them.
    ///
    /// They are validated (CRC, magic, size) when the unit is committed.
    pub fn append_batches(&mut self, topic: &str, partition: i32, payload: Bytes) -> &mut Self {
        self.appends.push(Append {
            topic: topic.to_string(),
            partition,
            payload,
            batches: Vec::new(),
        });
        self
    }

    /// Appends records, encoded as one uncompressed batch. No records, no append.
    pub fn append_records(&mut self, topic: &str, partition: i32, records: &[Record]) -> &mut Self {
        if records.is_empty() {
            return self;
        }
        self.append_batches(topic, partition, Bytes::from(batch::encode(records)))
    }

    /// Commits a consumer group's offset for one partition.
    pub fn commit_offset(
        &mut self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: CommittedOffset,
    ) -> &mut Self {
        self.offsets.push(OffsetCommit {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
            offset,
        });
        self
    }

    /// Removes every offset a group has committed.
    pub fn delete_group_offsets(&mut self, group: &str) -> &mut Self {
        self.deleted_groups.push(group.to_string());
        self
    }

    /// Sets `key` to `value` in the named state table.
    pub fn state_put(&mut self, table: &str, key: &[u8], value: &[u8]) -> &mut Self {
        self.state.push(StateOp::Put {
            table: table.to_string(),
            key: key.to_vec(),
            value: value.to_vec(),
        });
        self
    }

    /// Removes `key` from the named state table.
    pub fn state_delete(&mut self, table: &str, key: &[u8]) -> &mut Self {
        self.state.push(StateOp::Delete {
            table: table.to_string(),
            key: key.to_vec(),
        });
        self
    }

    /// Removes every key of the named state table.
    pub fn state_clear(&mut self, table: &str) -> &mut Self {
        self.state.push(StateOp::Clear {
            table: table.to_string(),
        });
        self
    }
}

/// Where one append of a unit landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first record written.
    pub base_offset: i64,
    /// Offset of the last record written.
    pub last_offset: i64,
    /// The append was an idempotent producer's retry of batches already written: nothing
    /// was written again, and the offsets are those of the first write.
    pub duplicate: bool,
}
