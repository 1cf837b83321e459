//! Which API versions this client speaks, and picking one per broker.

use std::collections::HashMap;
use std::net::SocketAddr;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::api_versions_response::ApiVersionsResponse;
use kafka_protocol::protocol::VersionRange;

use crate::error::{ClientError, Result};

/// The versions of `key` this client can speak.
///
/// The upper ends are the newest kafka-protocol knows; every field the client
/// relies on is handled across the range (topic ids for Produce v13 and
/// Fetch v13+, topic states for DeleteTopics v6). The lower ends skip versions
/// whose semantics differ and that no supported broker needs (Metadata v0's
/// "empty list means all topics").
pub fn client_range(key: ApiKey) -> VersionRange {
    let (min, max) = match key {
        ApiKey::ApiVersions => (0, 4),
        ApiKey::Metadata => (1, 13),
        ApiKey::Produce => (3, 13),
        ApiKey::Fetch => (4, 18),
        ApiKey::ListOffsets => (1, 10),
        ApiKey::CreateTopics => (2, 7),
        ApiKey::DeleteTopics => (1, 6),
        // v4+ batch coordinator keys; one key per request is all a member needs.
        ApiKey::FindCoordinator => (1, 3),
        ApiKey::JoinGroup => (2, 9),
        ApiKey::SyncGroup => (1, 5),
        ApiKey::Heartbeat => (1, 4),
        ApiKey::LeaveGroup => (1, 5),
        // v9+ is the new (KIP-848) protocol's member epoch; v8+ of OffsetFetch batches groups.
        ApiKey::OffsetCommit => (2, 8),
        ApiKey::OffsetFetch => (2, 7),
        ApiKey::DescribeGroups => (0, 5),
        ApiKey::ListGroups => (0, 4),
        ApiKey::DeleteGroups => (0, 2),
        ApiKey::InitProducerId => (0, 4),
        _ => (1, 0),
    };
    VersionRange { min, max }
}

/// A short name of an API for messages.
pub fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::Metadata => "Metadata",
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::InitProducerId => "InitProducerId",
        _ => "request",
    }
}

/// The API version ranges a broker advertised.
#[derive(Debug, Clone, Default)]
pub struct VersionTable {
    broker: HashMap<i16, VersionRange>,
}

impl VersionTable {
    /// Builds the table from an ApiVersions response.
    pub fn from_response(response: &ApiVersionsResponse) -> Self {
        VersionTable {
            broker: response
                .api_keys
                .iter()
                .map(|k| {
                    (
                        k.api_key,
                        VersionRange {
                            min: k.min_version,
                            max: k.max_version,
                        },
                    )
                })
                .collect(),
        }
    }

    /// The range the broker advertised for `key`, if any.
    pub fn broker_range(&self, key: ApiKey) -> Option<VersionRange> {
        self.broker.get(&(key as i16)).copied()
    }

    /// The highest version of `key` that both the broker and this client speak.
    pub fn pick(&self, key: ApiKey, addr: SocketAddr) -> Result<i16> {
        let ours = client_range(key);
        let theirs = self.broker_range(key);
        match theirs.map(|t| t.intersect(&ours)) {
            Some(common) if !common.is_empty() => Ok(common.max),
            _ => Err(ClientError::UnsupportedApi {
                addr,
                api: api_name(key),
                client_min: ours.min,
                client_max: ours.max,
                broker: theirs.map_or_else(|| "none".into(), |t| t.to_string()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;

    fn table(entries: &[(ApiKey, i16, i16)]) -> VersionTable {
        let mut response = ApiVersionsResponse::default();
        for &(k, min, max) in entries {
            response.api_keys.push(
                ApiVersion::default()
                    .with_api_key(k as i16)
                    .with_min_version(min)
                    .with_max_version(max),
            );
        }
        VersionTable::from_response(&response)
    }

    #[test]
    fn picks_the_highest_common_version() {
        let addr = "127.0.0.1:9092".parse().unwrap();
        let t = table(&[
            (ApiKey::Produce, 0, 9),
            (ApiKey::Fetch, 0, 99),
            (ApiKey::Metadata, 0, 0),
        ]);
        assert_eq!(t.pick(ApiKey::Produce, addr).unwrap(), 9);
        assert_eq!(t.pick(ApiKey::Fetch, addr).unwrap(), 18);
        let e = t.pick(ApiKey::Metadata, addr).unwrap_err();
        assert!(e.to_string().contains("Metadata"), "{e}");
        assert!(matches!(
            t.pick(ApiKey::ListOffsets, addr),
            Err(ClientError::UnsupportedApi { .. })
        ));
    }

    #[test]
    fn client_ranges_lie_within_what_kafka_protocol_encodes() {
        use kafka_protocol::messages::*;
        use kafka_protocol::protocol::Message;
        for (key, crate_range) in [
            (ApiKey::ApiVersions, ApiVersionsRequest::VERSIONS),
            (ApiKey::Metadata, MetadataRequest::VERSIONS),
            (ApiKey::Produce, ProduceRequest::VERSIONS),
            (ApiKey::Fetch, FetchRequest::VERSIONS),
            (ApiKey::ListOffsets, ListOffsetsRequest::VERSIONS),
            (ApiKey::CreateTopics, CreateTopicsRequest::VERSIONS),
            (ApiKey::DeleteTopics, DeleteTopicsRequest::VERSIONS),
            (ApiKey::FindCoordinator, FindCoordinatorRequest::VERSIONS),
            (ApiKey::JoinGroup, JoinGroupRequest::VERSIONS),
            (ApiKey::SyncGroup, SyncGroupRequest::VERSIONS),
            (ApiKey::Heartbeat, HeartbeatRequest::VERSIONS),
            (ApiKey::LeaveGroup, LeaveGroupRequest::VERSIONS),
            (ApiKey::OffsetCommit, OffsetCommitRequest::VERSIONS),
            (ApiKey::OffsetFetch, OffsetFetchRequest::VERSIONS),
            (ApiKey::DescribeGroups, DescribeGroupsRequest::VERSIONS),
            (ApiKey::ListGroups, ListGroupsRequest::VERSIONS),
            (ApiKey::DeleteGroups, DeleteGroupsRequest::VERSIONS),
            (ApiKey::InitProducerId, InitProducerIdRequest::VERSIONS),
        ] {
            let ours = client_range(key);
            assert!(
                ours.min >= crate_range.min && ours.max <= crate_range.max,
                "{key:?}"
            );
        }
    }
}
