//! Known APIs weir does not serve yet (consumer groups come in their own issue): an error
//! response where kafka-protocol can encode one, so the client fails with a clear error
//! instead of a dropped connection; otherwise the connection is closed.

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    ApiKey, DescribeClusterResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse, ListGroupsResponse,
    SaslHandshakeResponse, SyncGroupResponse,
};
use kafka_protocol::protocol::Decodable;

use super::message;
use crate::service::{Handled, Reply, encode, parse_header};
use crate::shape;

const NOT_SERVED: ResponseError = ResponseError::UnsupportedVersion;

macro_rules! top_level_error {
    ($resp:ty, $corr:expr, $version:expr) => {{
        let mut r = <$resp>::default();
        r.error_code = NOT_SERVED.code();
        encode($corr, $version, &r)
    }};
}

pub(crate) fn reply(api: ApiKey, version: i16, correlation_id: i32, frame: Bytes) -> Handled {
    let valid = api.valid_versions();
    if !(valid.min..=valid.max).contains(&version) {
        return Handled::Ready(Reply::Close(format!(
            "{api:?} v{version} is neither served by weir nor known to its protocol library"
        )));
    }
    tracing::warn!(api = ?api, version, "request for an API weir does not serve yet");
    let (c, v) = (correlation_id, version);
    let reply = match api {
        ApiKey::JoinGroup => top_level_error!(JoinGroupResponse, c, v),
        ApiKey::SyncGroup => top_level_error!(SyncGroupResponse, c, v),
        ApiKey::Heartbeat => top_level_error!(HeartbeatResponse, c, v),
        ApiKey::LeaveGroup => top_level_error!(LeaveGroupResponse, c, v),
        ApiKey::ListGroups => top_level_error!(ListGroupsResponse, c, v),
        ApiKey::DescribeCluster => top_level_error!(DescribeClusterResponse, c, v),
        // No SASL: no mechanism is enabled, which is what the mechanism list says.
        ApiKey::SaslHandshake => encode(
            c,
            v,
            &SaslHandshakeResponse::default()
                .with_error_code(ResponseError::UnsupportedSaslMechanism.code()),
        ),
        ApiKey::FindCoordinator if v < 4 => top_level_error!(FindCoordinatorResponse, c, v),
        ApiKey::FindCoordinator => find_coordinator(v, frame),
        other => Reply::Close(format!(
            "{other:?} is not served by weir (see ApiVersions for what is)"
        )),
    };
    Handled::Ready(reply)
}

/// FindCoordinator v4+ answers per key.
fn find_coordinator(version: i16, frame: Bytes) -> Reply {
    let api = ApiKey::FindCoordinator;
    let (header, mut body) = match parse_header(api, version, frame) {
        Ok(x) => x,
        Err(e) => return Reply::Close(e),
    };
    if let Err(e) = shape::check(api, version, &body) {
        return Reply::Close(e);
    }
    let req = match FindCoordinatorRequest::decode(&mut body, version) {
        Ok(r) => r,
        Err(e) => return Reply::Close(format!("malformed FindCoordinator request: {e}")),
    };
    let coordinators = req
        .coordinator_keys
        .into_iter()
        .map(|k| {
            Coordinator::default()
                .with_key(k)
                .with_node_id((-1).into())
                .with_port(-1)
                .with_error_code(NOT_SERVED.code())
                .with_error_message(message(
                    "consumer groups are not served by weir yet; assign partitions instead",
                ))
        })
        .collect();
    let resp = FindCoordinatorResponse::default().with_coordinators(coordinators);
    encode(header.correlation_id, version, &resp)
}
