//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup: requests to the group coordinator. The
//! coordinator's lock is held only to apply a request; a JoinGroup or a follower's SyncGroup
//! waits for the rebalance outside it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::group::{Answer, Join, Joined, code};
use crate::service::{Ctx, Outcome};

fn millis(ms: i32) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

fn text(s: String) -> StrBytes {
    StrBytes::from_string(s)
}

pub(crate) fn join(
    ctx: &Arc<Ctx>,
    version: i16,
    req: JoinGroupRequest,
    client_id: &str,
    peer: Option<SocketAddr>,
) -> Outcome<JoinGroupResponse> {
    let session_timeout = millis(req.session_timeout_ms);
    let join = Join {
        group: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.map(|s| s.to_string()),
        client_id: client_id.to_string(),
        // Kafka's tools show the member's address this way.
        client_host: peer.map(|p| format!("/{}", p.ip())).unwrap_or_default(),
        session_timeout,
        // v0 has no rebalance timeout: the session timeout serves as one.
        rebalance_timeout: if version >= 1 {
            millis(req.rebalance_timeout_ms)
        } else {
            session_timeout
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let member = join.member_id.clone();
    let answer = ctx.groups.lock().join(join, Instant::now());
    match answer {
        Answer::Now(j) => Outcome::Now(joined(version, j)),
        Answer::Wait(_) => Outcome::Later(Box::pin(async move {
            // Only a coordinator going away drops an answer; the member rejoins.
            let closed = Joined::error(code::REBALANCE_IN_PROGRESS, member);
            joined(version, answer.get(closed).await)
        })),
    }
}

fn joined(version: i16, j: Joined) -> JoinGroupResponse {
    let members = j
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(text(id))
                .with_group_instance_id(instance.filter(|_| version >= 5).map(text))
                .with_metadata(metadata)
        })
        .collect();
    let mut r = JoinGroupResponse::default()
        .with_error_code(j.error)
        .with_generation_id(j.generation)
        .with_leader(text(j.leader))
        .with_member_id(text(j.member_id))
        .with_members(members);
    if version >= 7 {
        r.protocol_type = j.protocol_type.map(text);
        r.protocol_name = j.protocol_name.map(text);
    } else {
        // Not nullable before v7.
        r.protocol_name = Some(text(j.protocol_name.unwrap_or_default()));
    }
    r
}

pub(crate) fn sync(
    ctx: &Arc<Ctx>,
    version: i16,
    req: SyncGroupRequest,
) -> Outcome<SyncGroupResponse> {
    let group = req.group_id.to_string();
    let assignments = req
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let mut c = ctx.groups.lock();
    let described = c.describe(&group);
    // v5 names the protocol the member was given; a mismatch is a client bug.
    let mismatch = version >= 5
        && described.as_ref().is_some_and(|d| {
            req.protocol_type
                .as_ref()
                .is_some_and(|t| **t != *d.protocol_type)
                || req
                    .protocol_name
                    .as_ref()
                    .is_some_and(|n| **n != *d.protocol)
        });
    let answer = if mismatch {
        Answer::Now((code::INCONSISTENT_GROUP_PROTOCOL, bytes::Bytes::new()))
    } else {
        c.sync(
            &group,
            &req.member_id,
            req.generation_id,
            assignments,
            Instant::now(),
        )
    };
    drop(c);
    let protocol = described.map(|d| (d.protocol_type, d.protocol));
    let respond = move |(error, assignment): (i16, bytes::Bytes)| {
        let mut r = SyncGroupResponse::default()
            .with_error_code(error)
            .with_assignment(assignment);
        if version >= 5
            && error == code::NONE
            && let Some((t, p)) = protocol
        {
            r.protocol_type = Some(text(t));
            r.protocol_name = Some(text(p));
        }
        r
    };
    match answer {
        Answer::Now(s) => Outcome::Now(respond(s)),
        Answer::Wait(_) => Outcome::Later(Box::pin(async move {
            let closed = (code::REBALANCE_IN_PROGRESS, bytes::Bytes::new());
            respond(answer.get(closed).await)
        })),
    }
}

pub(crate) fn heartbeat(ctx: &Arc<Ctx>, req: HeartbeatRequest) -> Outcome<HeartbeatResponse> {
    let error = ctx.groups.lock().heartbeat(
        &req.group_id,
        &req.member_id,
        req.generation_id,
        Instant::now(),
    );
    Outcome::Now(HeartbeatResponse::default().with_error_code(error))
}

pub(crate) fn leave(
    ctx: &Arc<Ctx>,
    version: i16,
    req: LeaveGroupRequest,
) -> Outcome<LeaveGroupResponse> {
    let now = Instant::now();
    let mut c = ctx.groups.lock();
    if version < 3 {
        let error = c.leave(&req.group_id, &req.member_id, now);
        return Outcome::Now(LeaveGroupResponse::default().with_error_code(error));
    }
    // v3+: a batch of members, each by member id or by static instance id.
    let members = req
        .members
        .into_iter()
        .map(|m| {
            let id = match (&*m.member_id, &m.group_instance_id) {
                ("", Some(instance)) => c.member_of_instance(&req.group_id, instance),
                (id, _) => Some(id.to_string()),
            };
            let error = match id {
                Some(id) => c.leave(&req.group_id, &id, now),
                None => code::UNKNOWN_MEMBER_ID,
            };
            MemberResponse::default()
                .with_member_id(m.member_id)
                .with_group_instance_id(m.group_instance_id)
                .with_error_code(error)
        })
        .collect();
    Outcome::Now(LeaveGroupResponse::default().with_members(members))
}
