//! ListOffsets: earliest (-2), latest (-1), or the first batch at or after a timestamp.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::error::log_error_code;
use crate::service::{Ctx, Outcome};

/// Kafka's special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

pub(crate) fn handle(ctx: &Arc<Ctx>, req: ListOffsetsRequest) -> Outcome<ListOffsetsResponse> {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| lookup(ctx, &t.name, p.partition_index, p.timestamp))
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    Outcome::Now(ListOffsetsResponse::default().with_topics(topics))
}

fn lookup(ctx: &Ctx, topic: &str, partition: i32, timestamp: i64) -> ListOffsetsPartitionResponse {
    let r = ListOffsetsPartitionResponse::default().with_partition_index(partition);
    let found = match timestamp {
        LATEST => ctx
            .log
            .bounds(topic, partition)
            .map(|b| (b.high_watermark, -1)),
        EARLIEST => ctx.log.bounds(topic, partition).map(|b| (b.log_start, -1)),
        ts if ts >= 0 => ctx
            .log
            .offset_for_timestamp(topic, partition, ts)
            .map(|o| o.unwrap_or((-1, -1))),
        other => {
            tracing::debug!(
                timestamp = other,
                "ListOffsets timestamp weir does not know"
            );
            return r
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_offset(-1)
                .with_timestamp(-1);
        }
    };
    match found {
        Ok((offset, ts)) => r.with_offset(offset).with_timestamp(ts),
        Err(e) => r
            .with_error_code(log_error_code(&e).code())
            .with_offset(-1)
            .with_timestamp(-1),
    }
}
