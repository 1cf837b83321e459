//! InitProducerId: a fresh producer id for idempotent producers.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

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
    let (id, epoch) =
        if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
            (req.producer_id.0, req.producer_epoch + 1)
        } else {
            (ctx.next_producer_id.fetch_add(1, Ordering::Relaxed), 0)
        };
    Outcome::Now(
        InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch),
    )
}
