//! DeleteRecords: moves a partition's log start forward, deleting whole batches below it.

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::error::log_error_code;
use crate::service::{Ctx, Outcome};

pub(crate) fn handle(ctx: &Arc<Ctx>, req: DeleteRecordsRequest) -> Outcome<DeleteRecordsResponse> {
    // Submitted now, in request order; answered after the commit.
    let jobs: Vec<_> = req
        .topics
        .into_iter()
        .map(|t| {
            let parts: Vec<_> = t
                .partitions
                .iter()
                .map(|p| {
                    let pending = ctx.log.delete_records(&t.name, p.partition_index, p.offset);
                    (p.partition_index, pending)
                })
                .collect();
            (t.name, parts)
        })
        .collect();
    Outcome::Later(Box::pin(async move {
        let mut topics = Vec::with_capacity(jobs.len());
        for (name, parts) in jobs {
            let mut partitions = Vec::with_capacity(parts.len());
            for (index, pending) in parts {
                let r = DeleteRecordsPartitionResult::default().with_partition_index(index);
                partitions.push(match pending.await {
                    Ok(low) => r.with_low_watermark(low),
                    Err(e) => r
                        .with_low_watermark(-1)
                        .with_error_code(log_error_code(&e).code()),
                });
            }
            topics.push(
                DeleteRecordsTopicResult::default()
                    .with_name(name)
                    .with_partitions(partitions),
            );
        }
        DeleteRecordsResponse::default().with_topics(topics)
    }))
}
