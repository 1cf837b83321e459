//! OffsetCommit and OffsetFetch: a group's committed positions, kept in the log so they
//! survive restarts. Commits are checked against the group's generation first.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use weir_log::{CommittedOffset, LogError, Unit};

use super::topic_name;
use crate::error::log_error_code;
use crate::group::code;
use crate::service::{Ctx, Outcome};

/// Longest metadata string a commit may carry (Kafka's `offset.metadata.max.bytes`).
const MAX_METADATA_BYTES: usize = 4096;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn commit(ctx: &Arc<Ctx>, req: OffsetCommitRequest) -> Outcome<OffsetCommitResponse> {
    let group = req.group_id.to_string();
    let verdict = if group.is_empty() {
        ResponseError::InvalidGroupId.code()
    } else {
        ctx.groups
            .lock()
            .check_commit(&group, &req.member_id, req.generation_id_or_member_epoch)
    };
    let now = now_ms();
    let mut unit = Unit::new();
    let checked: Vec<(TopicName, Vec<(i32, i16)>)> = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = ctx.log.topic(&t.name).map_or(0, |m| m.partitions);
            let parts = t
                .partitions
                .into_iter()
                .map(|p| {
                    let metadata = p.committed_metadata.as_deref().unwrap_or_default();
                    let error = if verdict != code::NONE {
                        verdict
                    } else if !(0..partitions).contains(&p.partition_index) {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else if metadata.len() > MAX_METADATA_BYTES {
                        ResponseError::OffsetMetadataTooLarge.code()
                    } else {
                        unit.commit_offset(
                            &group,
                            &t.name,
                            p.partition_index,
                            CommittedOffset {
                                offset: p.committed_offset,
                                leader_epoch: p.committed_leader_epoch,
                                metadata: metadata.to_string(),
                                commit_timestamp: now,
                            },
                        );
                        code::NONE
                    };
                    (p.partition_index, error)
                })
                .collect();
            (t.name, parts)
        })
        .collect();
    if verdict != code::NONE {
        tracing::debug!(%group, member = %&*req.member_id, generation = req.generation_id_or_member_epoch, error = verdict, "offset commit refused");
    }
    let stored = ctx.log.commit(unit);
    Outcome::Later(Box::pin(async move {
        let failed = stored.await.err().map(|e| {
            tracing::warn!(error = %e, "offset commit failed in the log");
            log_error_code(&e).code()
        });
        let topics = checked
            .into_iter()
            .map(|(name, parts)| {
                let partitions = parts
                    .into_iter()
                    .map(|(index, error)| {
                        let error = match failed {
                            Some(f) if error == code::NONE => f,
                            _ => error,
                        };
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(index)
                            .with_error_code(error)
                    })
                    .collect();
                OffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(partitions)
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    }))
}

/// One topic's committed offsets: (partition, offset if any).
type TopicOffsets = (TopicName, Vec<(i32, Option<CommittedOffset>)>);

/// A group's committed offsets for the partitions asked for, or for all (`None`).
fn read_offsets(
    ctx: &Ctx,
    group: &str,
    wanted: Option<Vec<(TopicName, Vec<i32>)>>,
) -> Result<Vec<TopicOffsets>, LogError> {
    let Some(wanted) = wanted else {
        let mut out: Vec<TopicOffsets> = Vec::new();
        for (topic, partition, offset) in ctx.log.group_offsets(group)? {
            match out.last_mut() {
                Some((t, parts)) if **t == *topic => parts.push((partition, Some(offset))),
                _ => out.push((topic_name(&topic), vec![(partition, Some(offset))])),
            }
        }
        return Ok(out);
    };
    wanted
        .into_iter()
        .map(|(topic, partitions)| {
            let parts = partitions
                .into_iter()
                .map(|p| Ok((p, ctx.log.committed_offset(group, &topic, p)?)))
                .collect::<Result<_, LogError>>()?;
            Ok((topic, parts))
        })
        .collect()
}

/// What a partition without a committed offset answers: offset -1, empty metadata.
fn position(o: Option<CommittedOffset>) -> (i64, i32, StrBytes) {
    match o {
        Some(o) => (o.offset, o.leader_epoch, StrBytes::from_string(o.metadata)),
        None => (-1, -1, StrBytes::default()),
    }
}

fn group_error(group: &str, e: &LogError) -> i16 {
    tracing::warn!(%group, error = %e, "cannot read committed offsets");
    log_error_code(e).code()
}

pub(crate) fn fetch(
    ctx: &Arc<Ctx>,
    version: i16,
    req: OffsetFetchRequest,
) -> Outcome<OffsetFetchResponse> {
    if version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name, t.partition_indexes))
                        .collect()
                });
                let r = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                match read_offsets(ctx, &g.group_id, wanted) {
                    Ok(topics) => r.with_topics(
                        topics
                            .into_iter()
                            .map(|(name, parts)| {
                                let partitions = parts
                                    .into_iter()
                                    .map(|(index, o)| {
                                        let (offset, epoch, metadata) = position(o);
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(index)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(Some(metadata))
                                    })
                                    .collect();
                                OffsetFetchResponseTopics::default()
                                    .with_name(name)
                                    .with_partitions(partitions)
                            })
                            .collect(),
                    ),
                    Err(e) => r.with_error_code(group_error(&g.group_id, &e)),
                }
            })
            .collect();
        return Outcome::Now(OffsetFetchResponse::default().with_groups(groups));
    }
    let wanted = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    let r = OffsetFetchResponse::default();
    Outcome::Now(match read_offsets(ctx, &req.group_id, wanted) {
        Ok(topics) => r.with_topics(
            topics
                .into_iter()
                .map(|(name, parts)| {
                    let partitions = parts
                        .into_iter()
                        .map(|(index, o)| {
                            let (offset, epoch, metadata) = position(o);
                            let mut p = OffsetFetchResponsePartition::default()
                                .with_partition_index(index)
                                .with_committed_offset(offset)
                                .with_metadata(Some(metadata));
                            if version >= 5 {
                                p.committed_leader_epoch = epoch;
                            }
                            p
                        })
                        .collect();
                    OffsetFetchResponseTopic::default()
                        .with_name(name)
                        .with_partitions(partitions)
                })
                .collect(),
        ),
        // v1 has no top-level error: the group simply shows no offsets.
        Err(e) if version >= 2 => r.with_error_code(group_error(&req.group_id, &e)),
        Err(e) => {
            group_error(&req.group_id, &e);
            r
        }
    })
}
