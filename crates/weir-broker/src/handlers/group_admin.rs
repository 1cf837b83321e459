//! DescribeGroups, ListGroups and DeleteGroups. A group is what the coordinator knows plus
//! what has committed offsets in the log (after a restart, only the latter).

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, ListGroupsRequest, ListGroupsResponse,
};
use kafka_protocol::protocol::StrBytes;
use weir_log::{LogError, Unit};

use super::message;
use crate::error::log_error_code;
use crate::group::{GroupState, code};
use crate::service::{Ctx, Outcome};

/// The protocol type of a group known only by its committed offsets.
const CONSUMER: &str = "consumer";
/// ListGroups v5 group type: the classic (JoinGroup/SyncGroup) protocol.
const CLASSIC: &str = "classic";

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn has_offsets(ctx: &Ctx, group: &str) -> Result<bool, LogError> {
    Ok(!ctx.log.group_offsets(group)?.is_empty())
}

pub(crate) fn describe(
    ctx: &Arc<Ctx>,
    version: i16,
    req: DescribeGroupsRequest,
) -> Outcome<DescribeGroupsResponse> {
    let c = ctx.groups.lock();
    let described: Vec<_> = req
        .groups
        .into_iter()
        .map(|id| {
            let d = c.describe(&id);
            (id, d)
        })
        .collect();
    drop(c);
    let groups = described
        .into_iter()
        .map(|(id, d)| {
            let r = DescribedGroup::default().with_group_id(id.clone());
            match d {
                Some(d) => {
                    let members = d
                        .members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(text(m.member_id))
                                .with_group_instance_id(
                                    m.instance_id.filter(|_| version >= 4).map(text),
                                )
                                .with_client_id(text(m.client_id))
                                .with_client_host(text(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect();
                    r.with_group_state(text(d.state.name()))
                        .with_protocol_type(text(d.protocol_type))
                        .with_protocol_data(text(d.protocol))
                        .with_members(members)
                }
                None => match has_offsets(ctx, &id) {
                    Ok(true) => r
                        .with_group_state(text(GroupState::Empty.name()))
                        .with_protocol_type(text(CONSUMER)),
                    Ok(false) if version >= 6 => r
                        .with_group_state(text("Dead"))
                        .with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(message(format!("group {:?} does not exist", &*id))),
                    // Before v6 Kafka describes an unknown group as Dead, without an error.
                    Ok(false) => r.with_group_state(text("Dead")),
                    Err(e) => r.with_error_code(log_error_code(&e).code()),
                },
            }
        })
        .collect();
    Outcome::Now(DescribeGroupsResponse::default().with_groups(groups))
}

pub(crate) fn list(
    ctx: &Arc<Ctx>,
    version: i16,
    req: ListGroupsRequest,
) -> Outcome<ListGroupsResponse> {
    let mut groups: Vec<(String, String, GroupState)> = ctx.groups.lock().list();
    let stored = match ctx.log.groups_with_offsets() {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list groups with committed offsets");
            return Outcome::Now(
                ListGroupsResponse::default().with_error_code(log_error_code(&e).code()),
            );
        }
    };
    for g in stored {
        if !groups.iter().any(|(id, _, _)| *id == g) {
            groups.push((g, CONSUMER.to_string(), GroupState::Empty));
        }
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let wants_state = |s: GroupState| {
        version < 4
            || req.states_filter.is_empty()
            || req
                .states_filter
                .iter()
                .any(|f| f.eq_ignore_ascii_case(s.name()))
    };
    let wants_classic = version < 5
        || req.types_filter.is_empty()
        || req
            .types_filter
            .iter()
            .any(|f| f.eq_ignore_ascii_case(CLASSIC));
    let listed = groups
        .into_iter()
        .filter(|(_, _, s)| wants_classic && wants_state(*s))
        .map(|(id, protocol_type, state)| {
            let mut g = ListedGroup::default()
                .with_group_id(GroupId(text(id)))
                .with_protocol_type(text(protocol_type));
            if version >= 4 {
                g.group_state = text(state.name());
            }
            if version >= 5 {
                g.group_type = text(CLASSIC);
            }
            g
        })
        .collect();
    Outcome::Now(ListGroupsResponse::default().with_groups(listed))
}

pub(crate) fn delete(ctx: &Arc<Ctx>, req: DeleteGroupsRequest) -> Outcome<DeleteGroupsResponse> {
    let mut jobs = Vec::with_capacity(req.groups_names.len());
    for id in req.groups_names {
        // Members first: a group in use keeps its offsets and its place in the coordinator.
        let verdict = {
            let mut c = ctx.groups.lock();
            if c.has_members(&id) {
                Err(code::NON_EMPTY_GROUP)
            } else {
                Ok(c.delete(&id) == code::NONE)
            }
        };
        let job = match verdict {
            Err(e) => Err(e),
            Ok(known) => match has_offsets(ctx, &id) {
                Ok(true) => {
                    let mut unit = Unit::new();
                    unit.delete_group_offsets(&id);
                    Ok(Some(ctx.log.commit(unit)))
                }
                Ok(false) if known => Ok(None),
                Ok(false) => Err(ResponseError::GroupIdNotFound.code()),
                Err(e) => Err(log_error_code(&e).code()),
            },
        };
        jobs.push((id, job));
    }
    Outcome::Later(Box::pin(async move {
        let mut results = Vec::with_capacity(jobs.len());
        for (id, job) in jobs {
            let error = match job {
                Ok(Some(p)) => match p.await {
                    Ok(_) => {
                        tracing::info!(group = %&*id, "deleted group and its committed offsets");
                        code::NONE
                    }
                    Err(e) => log_error_code(&e).code(),
                },
                Ok(None) => code::NONE,
                Err(e) => e,
            };
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(id)
                    .with_error_code(error),
            );
        }
        DeleteGroupsResponse::default().with_results(results)
    }))
}
