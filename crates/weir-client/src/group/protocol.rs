//! The "consumer" embedded protocol (sans-io): what a member puts in JoinGroup's metadata,
//! what the leader puts in SyncGroup's assignments, and the range and round-robin assignors
//! that compute them. Same bytes as Kafka's Java client and librdkafka, so members of either
//! can share a group with weir-client members.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// The protocol type of consumer groups in JoinGroup.
pub const PROTOCOL_TYPE: &str = "consumer";

/// Highest version of the embedded messages kafka-protocol decodes; newer ones only append
/// fields, so they are read as this version.
const MAX_EMBEDDED_VERSION: i16 = 3;

/// How the group leader splits partitions among members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Kafka's `range`: per topic, consecutive partition ranges, members in member-id order.
    Range,
    /// Kafka's `roundrobin`: all partitions of all topics dealt out one by one.
    RoundRobin,
}

impl Assignor {
    /// The protocol name members announce in JoinGroup.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
        }
    }

    /// The assignor with this protocol name, if weir-client has it.
    pub fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "range" => Some(Assignor::Range),
            "roundrobin" => Some(Assignor::RoundRobin),
            _ => None,
        }
    }

    /// Splits the partitions of `partition_counts` (topic -> count) among `members`
    /// (member id -> subscribed topics). Every member gets an entry, possibly empty.
    pub fn assign(
        self,
        members: &BTreeMap<String, Vec<String>>,
        partition_counts: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Vec<(String, i32)>> {
        let mut out: BTreeMap<String, Vec<(String, i32)>> =
            members.keys().map(|m| (m.clone(), Vec::new())).collect();
        match self {
            Assignor::Range => {
                for (topic, &count) in partition_counts {
                    let subscribed: Vec<&String> = members
                        .iter()
                        .filter(|(_, topics)| topics.contains(topic))
                        .map(|(m, _)| m)
                        .collect();
                    if subscribed.is_empty() || count <= 0 {
                        continue;
                    }
                    let per = count as usize / subscribed.len();
                    let extra = count as usize % subscribed.len();
                    for (i, m) in subscribed.into_iter().enumerate() {
                        let start = i * per + i.min(extra);
                        let len = per + usize::from(i < extra);
                        let list = out.entry(m.clone()).or_default();
                        list.extend((start..start + len).map(|p| (topic.clone(), p as i32)));
                    }
                }
            }
            Assignor::RoundRobin => {
                let ids: Vec<&String> = members.keys().collect();
                if ids.is_empty() {
                    return out;
                }
                let mut next = 0usize;
                for (topic, &count) in partition_counts {
                    for p in 0..count.max(0) {
                        // The next member in the circle that subscribes to this topic.
                        for step in 0..ids.len() {
                            let m = ids[(next + step) % ids.len()];
                            if members[m].contains(topic) {
                                out.entry(m.clone()).or_default().push((topic.clone(), p));
                                next = (next + step + 1) % ids.len();
                                break;
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// A member's subscription as JoinGroup metadata (version 1: topics, no user data, no owned
/// partitions — what an eager-rebalancing member sends).
pub fn encode_subscription(topics: &[String]) -> Bytes {
    let message = ConsumerProtocolSubscription::default().with_topics(
        topics
            .iter()
            .map(|t| StrBytes::from_string(t.clone()))
            .collect(),
    );
    encode_embedded(&message, 1)
}

/// The topics of a member's JoinGroup metadata; `None` when the bytes are not a consumer
/// subscription.
pub fn decode_subscription(metadata: &Bytes) -> Option<Vec<String>> {
    let (version, mut body) = split_version(metadata)?;
    let message = ConsumerProtocolSubscription::decode(&mut body, version).ok()?;
    Some(message.topics.iter().map(|t| t.to_string()).collect())
}

/// An assignment as SyncGroup carries it (version 0: topic partitions, no user data).
pub fn encode_assignment(partitions: &[(String, i32)]) -> Bytes {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    let message = ConsumerProtocolAssignment::default().with_assigned_partitions(
        by_topic
            .into_iter()
            .map(|(t, ps)| {
                AssignedTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                    .with_partitions(ps)
            })
            .collect(),
    );
    encode_embedded(&message, 0)
}

/// The (topic, partition) pairs of a SyncGroup assignment, sorted; empty bytes (a member
/// given nothing) is an empty list; `None` when the bytes are not a consumer assignment.
pub fn decode_assignment(assignment: &Bytes) -> Option<Vec<(String, i32)>> {
    if assignment.is_empty() {
        return Some(Vec::new());
    }
    let (version, mut body) = split_version(assignment)?;
    let message = ConsumerProtocolAssignment::decode(&mut body, version).ok()?;
    let set: BTreeSet<(String, i32)> = message
        .assigned_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().map(|&p| (t.topic.0.to_string(), p)))
        .collect();
    Some(set.into_iter().collect())
}

fn encode_embedded<M: Encodable>(message: &M, version: i16) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(version);
    // Encoding plain strings and integer lists at a version the type defines cannot fail;
    // an empty body would be refused by the peer, never misread.
    if let Err(e) = message.encode(&mut buf, version) {
        tracing::error!(error = %e, "cannot encode consumer protocol metadata");
    }
    buf.freeze()
}

fn split_version(bytes: &Bytes) -> Option<(i16, Bytes)> {
    if bytes.len() < 2 {
        return None;
    }
    let mut body = bytes.clone();
    let version = body.get_i16();
    if version < 0 {
        return None;
    }
    Some((version.min(MAX_EMBEDDED_VERSION), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        list.iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn counts(list: &[(&str, i32)]) -> BTreeMap<String, i32> {
        list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn parts(a: &BTreeMap<String, Vec<(String, i32)>>, m: &str) -> Vec<i32> {
        a[m].iter().map(|(_, p)| *p).collect()
    }

    #[test]
    fn range_gives_consecutive_ranges_extra_to_the_first() {
        let m = members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let a = Assignor::Range.assign(&m, &counts(&[("t", 8)]));
        assert_eq!(parts(&a, "a"), [0, 1, 2]);
        assert_eq!(parts(&a, "b"), [3, 4, 5]);
        assert_eq!(parts(&a, "c"), [6, 7]);
    }

    #[test]
    fn round_robin_deals_across_topics_and_skips_non_subscribers() {
        let m = members(&[("a", &["t", "u"]), ("b", &["t"])]);
        let a = Assignor::RoundRobin.assign(&m, &counts(&[("t", 3), ("u", 2)]));
        assert_eq!(
            a["a"],
            [
                ("t".into(), 0),
                ("t".into(), 2),
                ("u".into(), 0),
                ("u".into(), 1)
            ]
        );
        assert_eq!(a["b"], [("t".to_string(), 1)]);
    }

    #[test]
    fn every_partition_goes_to_exactly_one_member() {
        for assignor in [Assignor::Range, Assignor::RoundRobin] {
            for n in 1..6 {
                let names: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
                let m: BTreeMap<String, Vec<String>> = names
                    .iter()
                    .map(|x| (x.clone(), vec!["t".to_string(), "u".to_string()]))
                    .collect();
                let a = assignor.assign(&m, &counts(&[("t", 8), ("u", 3)]));
                let mut all: Vec<(String, i32)> = a.values().flatten().cloned().collect();
                all.sort();
                let before = all.len();
                all.dedup();
                assert_eq!(before, all.len(), "{assignor:?} {n}: overlap");
                assert_eq!(all.len(), 11, "{assignor:?} {n}");
            }
        }
    }

    #[test]
    fn subscription_and_assignment_round_trip_with_a_version_prefix() {
        let bytes = encode_subscription(&["a".into(), "b".into()]);
        assert_eq!(&bytes[..2], &[0, 1]);
        assert_eq!(decode_subscription(&bytes).unwrap(), ["a", "b"]);
        let list = vec![
            ("t".to_string(), 3),
            ("t".to_string(), 1),
            ("u".to_string(), 0),
        ];
        let bytes = encode_assignment(&list);
        assert_eq!(&bytes[..2], &[0, 0]);
        assert_eq!(
            decode_assignment(&bytes).unwrap(),
            [
                ("t".to_string(), 1),
                ("t".to_string(), 3),
                ("u".to_string(), 0)
            ]
        );
        assert_eq!(decode_assignment(&Bytes::new()).unwrap(), []);
    }

    #[test]
    fn newer_versions_are_read_as_the_newest_known_and_garbage_is_refused() {
        // A v3 subscription (rack id) from a newer client, claimed as v4 with a trailing field.
        let v3 = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t")])
            .with_rack_id(Some(StrBytes::from_static_str("r1")));
        let mut buf = BytesMut::new();
        buf.put_i16(4);
        v3.encode(&mut buf, 3).unwrap();
        buf.put_i32(7);
        assert_eq!(decode_subscription(&buf.freeze()).unwrap(), ["t"]);
        assert!(decode_subscription(&Bytes::from_static(&[0])).is_none());
        assert!(decode_assignment(&Bytes::from_static(&[0, 0, 0xff, 0xff, 0xff])).is_none());
    }
}
