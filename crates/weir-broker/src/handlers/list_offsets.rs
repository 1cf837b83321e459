//! ListOffsets: earliest (-2), latest (-1), or the first batch at or after a timestamp.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use weir_log::{BatchHeader, Compression};

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
        ts if ts >= 0 => {
            ctx.log
                .offset_for_timestamp(topic, partition, ts)
                .map(|found| match found {
                    Some((base, max_ts)) => {
                        first_record_at(ctx, topic, partition, base, ts).unwrap_or((base, max_ts))
                    }
                    None => (-1, -1),
                })
        }
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

/// Within the batch at `base`, the first record stamped at or after `ts`: its offset and
/// timestamp. `None` for a compressed batch (weir does not decompress on this path; the
/// batch's base offset is answered) or one whose record count its size cannot hold.
fn first_record_at(
    ctx: &Ctx,
    topic: &str,
    partition: i32,
    base: i64,
    ts: i64,
) -> Option<(i64, i64)> {
    let fetched = ctx.log.read(topic, partition, base, 1).ok()?;
    let h = BatchHeader::parse(&fetched.records).ok()?;
    let len = h.total_len().min(fetched.records.len());
    // Every record takes at least 7 bytes; a larger count is a lie that would over-allocate.
    if h.compression() != Compression::None || h.record_count.max(0) as usize > len / 7 {
        return None;
    }
    let records = weir_log::batch::decode(&fetched.records.slice(..len)).ok()?;
    records
        .iter()
        .find(|r| r.timestamp >= ts)
        .map(|r| (r.offset, r.timestamp))
}
