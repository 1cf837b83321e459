//! redb tables and the big-endian keys that order them.

use redb::TableDefinition;

/// (topic id, partition, base offset) -> the batch's bytes.
pub(crate) const BATCHES: TableDefinition<'_, &[u8; 16], &[u8]> = TableDefinition::new("batches");
/// (topic id, partition, base offset) -> [`IndexEntry`]: what retention and lookups need
/// without reading the batch.
pub(crate) const INDEX: TableDefinition<'_, &[u8; 16], &[u8; 20]> =
    TableDefinition::new("batch_index");
/// (topic id, partition) -> (log start offset, next offset).
pub(crate) const PARTITIONS: TableDefinition<'_, &[u8; 8], &[u8; 16]> =
    TableDefinition::new("partitions");
/// topic name -> JSON `TopicMeta`.
pub(crate) const TOPICS: TableDefinition<'_, &str, &str> = TableDefinition::new("topics");
/// Counters that outlive topics ("next_topic_id").
pub(crate) const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
/// (group, topic, partition) -> committed offset, see [`offset_key`].
pub(crate) const GROUP_OFFSETS: TableDefinition<'_, &[u8], &[u8]> =
    TableDefinition::new("group_offsets");

/// Prefix of the redb tables that hold pipeline state.
pub(crate) const STATE_PREFIX: &str = "state/";

pub(crate) fn batch_key(topic: u32, partition: u32, offset: i64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[0..4].copy_from_slice(&topic.to_be_bytes());
    k[4..8].copy_from_slice(&partition.to_be_bytes());
    k[8..16].copy_from_slice(&(offset.max(0) as u64).to_be_bytes());
    k
}

pub(crate) fn key_offset(k: &[u8; 16]) -> i64 {
    u64::from_be_bytes(k[8..16].try_into().expect("8 bytes")) as i64
}

pub(crate) fn partition_key(topic: u32, partition: u32) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[0..4].copy_from_slice(&topic.to_be_bytes());
    k[4..8].copy_from_slice(&partition.to_be_bytes());
    k
}

/// Per-batch facts kept beside the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub last_offset_delta: i32,
    pub size: u32,
    pub max_timestamp: i64,
}

impl IndexEntry {
    pub fn encode(&self) -> [u8; 20] {
        let mut v = [0u8; 20];
        v[0..4].copy_from_slice(&self.last_offset_delta.to_be_bytes());
        v[4..8].copy_from_slice(&self.size.to_be_bytes());
        v[8..16].copy_from_slice(&self.max_timestamp.to_be_bytes());
        v
    }

    pub fn decode(v: &[u8; 20]) -> Self {
        Self {
            last_offset_delta: i32::from_be_bytes(v[0..4].try_into().expect("4")),
            size: u32::from_be_bytes(v[4..8].try_into().expect("4")),
            max_timestamp: i64::from_be_bytes(v[8..16].try_into().expect("8")),
        }
    }
}

pub(crate) fn encode_bounds(log_start: i64, next: i64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[0..8].copy_from_slice(&log_start.to_be_bytes());
    v[8..16].copy_from_slice(&next.to_be_bytes());
    v
}

pub(crate) fn decode_bounds(v: &[u8; 16]) -> (i64, i64) {
    (
        i64::from_be_bytes(v[0..8].try_into().expect("8")),
        i64::from_be_bytes(v[8..16].try_into().expect("8")),
    )
}

fn put_str(k: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(&s.as_bytes()[..len as usize]);
}

/// Key of a group's offsets: length-prefixed group, so one group's keys form one range.
pub(crate) fn group_prefix(group: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + group.len());
    put_str(&mut k, group);
    k
}

pub(crate) fn offset_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut k = group_prefix(group);
    put_str(&mut k, topic);
    k.extend_from_slice(&(partition as u32).to_be_bytes());
    k
}

fn take_str(k: &[u8]) -> Option<(&str, &[u8])> {
    let len = u16::from_be_bytes(k.get(0..2)?.try_into().ok()?) as usize;
    let s = std::str::from_utf8(k.get(2..2 + len)?).ok()?;
    Some((s, &k[2 + len..]))
}

/// (group, topic, partition) of an offset key.
pub(crate) fn parse_offset_key(k: &[u8]) -> Option<(&str, &str, i32)> {
    let (group, rest) = take_str(k)?;
    let (topic, rest) = take_str(rest)?;
    let p = u32::from_be_bytes(rest.get(0..4)?.try_into().ok()?) as i32;
    Some((group, topic, p))
}

/// The smallest key greater than every key that starts with `prefix`, if any.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_keys_sort_by_topic_partition_offset() {
        let mut ks = vec![
            batch_key(2, 0, 0),
            batch_key(1, 1, 5),
            batch_key(1, 0, 300),
            batch_key(1, 0, 2),
        ];
        ks.sort();
        assert_eq!(
            ks,
            vec![
                batch_key(1, 0, 2),
                batch_key(1, 0, 300),
                batch_key(1, 1, 5),
                batch_key(2, 0, 0)
            ]
        );
        assert_eq!(key_offset(&batch_key(7, 3, 99)), 99);
    }

    #[test]
    fn offset_keys_round_trip_and_group_by_prefix() {
        let k = offset_key("g", "t", 4);
        assert_eq!(parse_offset_key(&k), Some(("g", "t", 4)));
        assert!(k.starts_with(&group_prefix("g")));
        assert!(!offset_key("gg", "t", 0).starts_with(&group_prefix("g")));
        assert_eq!(prefix_end(&[1, 255]), Some(vec![2]));
    }
}
