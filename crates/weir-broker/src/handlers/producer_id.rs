//! InitProducerId: a producer id for idempotent producers, from the log so it is never
//! handed out twice, not even across restarts.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::error::log_error_code;
use crate::service::{Ctx, Outcome};

pub(crate) fn handle(
    ctx: &Arc<Ctx>,
    req: InitProducerIdRequest,
) -> Outcome<InitProducerIdResponse> {
    // An empty id is taken as none, as some clients send it for plain idempotence.
    if let Some(tid) = req.transactional_id.as_ref().filter(|t| !t.is_empty()) {
        tracing::warn!(transactional_id = %&**tid, "transactions are not supported yet; refusing InitProducerId");
        return Outcome::Now(
            InitProducerIdResponse::default()
                .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()),
        );
    }
    // A producer that already has an id asks for its epoch to be bumped (KIP-360).
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return Outcome::Now(
            InitProducerIdResponse::default()
                .with_producer_id(req.producer_id)
                .with_producer_epoch(req.producer_epoch + 1),
        );
    }
    let allocated = ctx.log.allocate_producer_id();
    Outcome::Later(Box::pin(async move {
        match allocated.await {
            Ok(id) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0),
            Err(e) => {
                tracing::warn!(error = %e, "cannot allocate a producer id");
                InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
                    .with_error_code(log_error_code(&e).code())
            }
        }
    }))
}
