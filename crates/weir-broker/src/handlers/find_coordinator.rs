//! FindCoordinator: this broker coordinates every group (v4+ asks for many keys at once).

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::message;
use crate::service::{Ctx, Outcome};

/// Key types: consumer group, transactional id, share group.
const KEY_GROUP: i8 = 0;
const KEY_TRANSACTION: i8 = 1;

/// Where the coordinator of one key of `key_type` is, or why there is none.
fn locate(ctx: &Ctx, key_type: i8) -> Result<(StrBytes, i32), (ResponseError, String)> {
    match key_type {
        // Transactional ids find this broker too; InitProducerId then says transactions
        // are not served, which is clearer than a missing coordinator.
        KEY_GROUP | KEY_TRANSACTION => Ok((StrBytes::from_string(ctx.host.clone()), ctx.port)),
        other => Err((
            ResponseError::InvalidRequest,
            format!(
                "coordinator key type {other} is not served by weir; it coordinates consumer groups (0)"
            ),
        )),
    }
}

pub(crate) fn handle(
    ctx: &Arc<Ctx>,
    version: i16,
    req: FindCoordinatorRequest,
) -> Outcome<FindCoordinatorResponse> {
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key);
                match locate(ctx, req.key_type) {
                    Ok((host, port)) => c.with_node_id(BrokerId(0)).with_host(host).with_port(port),
                    Err((code, msg)) => c
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(code.code())
                        .with_error_message(message(msg)),
                }
            })
            .collect();
        return Outcome::Now(FindCoordinatorResponse::default().with_coordinators(coordinators));
    }
    let r = FindCoordinatorResponse::default();
    Outcome::Now(match locate(ctx, req.key_type) {
        Ok((host, port)) => r.with_node_id(BrokerId(0)).with_host(host).with_port(port),
        Err((code, msg)) => {
            let mut r = r
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(code.code());
            if version >= 1 {
                r.error_message = message(msg);
            }
            r
        }
    })
}
