//! Group administration and offsets: FindCoordinator, ListGroups, DescribeGroups,
//! DeleteGroups, OffsetFetch and OffsetCommit outside a generation.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId, ListGroupsRequest,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::protocol::decode_assignment;
use crate::admin::topic_name;
use crate::client::Client;
use crate::connection::Connection;
use crate::error::{ClientError, Result, check};

/// One group as ListGroups names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type, "consumer" for consumer groups.
    pub protocol_type: String,
    /// State (Empty, Stable, ...), empty when the broker is older than ListGroups v4.
    pub state: String,
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id the coordinator gave.
    pub member_id: String,
    /// Static membership id, if the member set one.
    pub group_instance_id: Option<String>,
    /// The client id of the member's connection.
    pub client_id: String,
    /// The host the member connected from.
    pub client_host: String,
    /// Its partitions, when the group uses the consumer protocol.
    pub assignment: Vec<(String, i32)>,
}

/// What DescribeGroups says about a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State: Empty, PreparingRebalance, CompletingRebalance, Stable or Dead.
    pub state: String,
    /// Protocol type ("consumer").
    pub protocol_type: String,
    /// The chosen assignor.
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberDescription>,
}

/// Coordinator errors after which the coordinator must be looked up again.
pub(crate) fn is_coordinator_error(code: i16) -> bool {
    // COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR
    matches!(code, 14..=16)
}

impl Client {
    /// Opens a new connection to the coordinator of `group`.
    pub async fn coordinator_connection(&self, group: &str) -> Result<Arc<Connection>> {
        let conn = self.bootstrap_connection().await?;
        let version = conn.version_for(kafka_protocol::messages::ApiKey::FindCoordinator)?;
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group.to_string()))
            .with_key_type(0);
        let response = conn.send_at(&request, version, None).await?;
        check(
            response.error_code,
            || format!("find the coordinator of group {group}"),
            response.error_message.as_deref(),
        )?;
        let host_port = format!("{}:{}", response.host, response.port);
        Ok(Arc::new(self.open_connection(&host_port).await?))
    }

    /// Every group of every broker.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let metadata = self.metadata(Some(&[]), false).await?;
        let mut out = Vec::new();
        let mut nodes: Vec<i32> = metadata.brokers.iter().map(|b| b.node_id).collect();
        if nodes.is_empty() {
            nodes.push(-1);
        }
        for node in nodes {
            let conn = self.node_connection(node).await?;
            let response = conn.send(&ListGroupsRequest::default()).await?;
            check(response.error_code, || "list groups".into(), None)?;
            out.extend(response.groups.into_iter().map(|g| GroupListing {
                group_id: g.group_id.0.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: g.group_state.to_string(),
            }));
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out.dedup_by(|a, b| a.group_id == b.group_id);
        Ok(out)
    }

    /// Members, state and assignments of `group` (state "Dead" when it does not exist).
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let conn = self.coordinator_connection(group).await?;
        let request = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]);
        let response = conn.send(&request).await?;
        let g = response
            .groups
            .into_iter()
            .find(|g| g.group_id.0.as_str() == group)
            .ok_or_else(|| ClientError::Protocol {
                addr: conn.addr(),
                api: "DescribeGroups",
                reason: format!("no answer for group {group}"),
            })?;
        check(
            g.error_code,
            || format!("describe group {group}"),
            g.error_message.as_deref(),
        )?;
        let consumer = g.protocol_type.as_str() == super::protocol::PROTOCOL_TYPE;
        Ok(GroupDescription {
            group_id: group.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members: g
                .members
                .into_iter()
                .map(|m| MemberDescription {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.map(|s| s.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    assignment: if consumer {
                        decode_assignment(&m.member_assignment).unwrap_or_default()
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
        })
    }

    /// Deletes groups with no members and their committed offsets.
    pub async fn delete_groups(&self, groups: &[&str]) -> Result<()> {
        for group in groups {
            let conn = self.coordinator_connection(group).await?;
            let request = DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(StrBytes::from_string(group.to_string()))]);
            let response = conn.send(&request).await?;
            for r in response.results {
                let hint = match r.error_code {
                    68 => Some("the group still has members; stop its consumers first"),
                    69 => Some("no such group"),
                    _ => None,
                };
                check(
                    r.error_code,
                    || format!("delete group {}", r.group_id.0),
                    hint,
                )?;
            }
        }
        Ok(())
    }

    /// The committed offsets of `group`, for `topics` or (`None`) every topic it committed
    /// for: (topic, partition) -> offset. Partitions without a commit are left out.
    pub async fn committed_offsets(
        &self,
        group: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> Result<BTreeMap<(String, i32), i64>> {
        let conn = self.coordinator_connection(group).await?;
        fetch_committed(&conn, group, topics).await
    }

    /// Sets committed offsets of `group` outside any generation (the group must be empty):
    /// what `weir group reset-offsets` does.
    pub async fn alter_group_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<(String, i32), i64>,
    ) -> Result<()> {
        let conn = self.coordinator_connection(group).await?;
        let response = conn
            .send(&commit_request(group, -1, "", None, offsets))
            .await?;
        commit_result(group, &response, true)
    }
}

/// OffsetFetch on `conn` (which must be the coordinator's).
pub(crate) async fn fetch_committed(
    conn: &Connection,
    group: &str,
    topics: Option<&[(String, Vec<i32>)]>,
) -> Result<BTreeMap<(String, i32), i64>> {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partition_indexes(ps.clone())
                })
                .collect()
        }))
        .with_require_stable(true);
    let response = conn.send(&request).await?;
    check(
        response.error_code,
        || format!("fetch committed offsets of group {group}"),
        None,
    )?;
    let mut out = BTreeMap::new();
    for t in response.topics {
        for p in t.partitions {
            check(
                p.error_code,
                || {
                    format!(
                        "fetch committed offset of group {group} for {}-{}",
                        t.name.0, p.partition_index
                    )
                },
                None,
            )?;
            if p.committed_offset >= 0 {
                out.insert(
                    (t.name.0.to_string(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    Ok(out)
}

/// An OffsetCommit of `offsets` as member `member_id` of `generation` (-1 and "" outside one).
pub(crate) fn commit_request(
    group: &str,
    generation: i32,
    member_id: &str,
    instance_id: Option<&str>,
    offsets: &BTreeMap<(String, i32), i64>,
) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for ((t, p), &o) in offsets {
        let part = OffsetCommitRequestPartition::default()
            .with_partition_index(*p)
            .with_committed_offset(o)
            .with_committed_leader_epoch(-1)
            .with_committed_metadata(Some(StrBytes::default()));
        match topics.iter_mut().find(|x| x.name.0.as_str() == t) {
            Some(x) => x.partitions.push(part),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name(t))
                    .with_partitions(vec![part]),
            ),
        }
    }
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_group_instance_id(instance_id.map(|s| StrBytes::from_string(s.to_string())))
        .with_retention_time_ms(-1)
        .with_topics(topics)
}

/// The first per-partition error of a commit, as an error.
/// `outside`: the commit was made outside any generation (an admin's reset).
pub(crate) fn commit_result(
    group: &str,
    response: &OffsetCommitResponse,
    outside: bool,
) -> Result<()> {
    for t in &response.topics {
        for p in &t.partitions {
            let hint = match p.error_code {
                22 | 25 | 27 if outside => Some(
                    "the group has active members; stop them first (only an empty group's \
                     offsets can be set from outside)",
                ),
                _ => None,
            };
            check(
                p.error_code,
                || {
                    format!(
                        "commit offset of group {group} for {}-{}",
                        t.name.0, p.partition_index
                    )
                },
                hint,
            )?;
        }
    }
    Ok(())
}
