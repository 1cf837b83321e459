//! Fetch: stored batch bytes served as they are, with a long poll on the partitions' high
//! watermark watches (max_wait_ms / min_bytes), never a sleep loop.

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use tokio::sync::watch;
use tokio::time::Instant;
use weir_log::{BatchHeader, LogError};

use crate::error::log_error_code;
use crate::service::{Ctx, Outcome};

/// One partition to read.
struct Target {
    partition: i32,
    offset: i64,
    max_bytes: usize,
}

/// One topic of the request, resolved to a name when it exists.
struct TopicPlan {
    name: TopicName,
    topic_id: uuid::Uuid,
    resolved: Option<String>,
    targets: Vec<Target>,
}

struct Plan {
    version: i16,
    topics: Vec<TopicPlan>,
    max_bytes: usize,
    min_bytes: usize,
    read_committed: bool,
}

pub(crate) fn handle(ctx: &Arc<Ctx>, version: i16, req: FetchRequest) -> Outcome<FetchResponse> {
    // weir keeps no fetch sessions (it answers session id 0), so an incremental fetch names a
    // session it never granted.
    if version >= 7 && req.session_id != 0 && req.session_epoch > 0 {
        return Outcome::Now(
            FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code()),
        );
    }
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let topics = req
        .topics
        .into_iter()
        .map(|t| TopicPlan {
            resolved: if version >= 13 {
                ctx.topic_by_id(t.topic_id).map(|m| m.name)
            } else {
                ctx.log.topic(&t.topic).map(|m| m.name)
            },
            name: t.topic,
            topic_id: t.topic_id,
            targets: t
                .partitions
                .into_iter()
                .map(|p| Target {
                    partition: p.partition,
                    offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(1) as usize,
                })
                .collect(),
        })
        .collect();
    let plan = Plan {
        version,
        topics,
        max_bytes: req.max_bytes.max(1) as usize,
        min_bytes: req.min_bytes.max(0) as usize,
        read_committed: req.isolation_level == 1,
    };
    let ctx = ctx.clone();
    Outcome::Later(Box::pin(long_poll(ctx, plan, deadline)))
}

async fn long_poll(ctx: Arc<Ctx>, plan: Plan, deadline: Instant) -> FetchResponse {
    // Subscribe before reading, so a commit between the read and the wait still wakes us.
    let mut watches: Vec<watch::Receiver<i64>> = plan
        .topics
        .iter()
        .filter_map(|t| t.resolved.as_deref().map(|n| (n, &t.targets)))
        .flat_map(|(n, targets)| {
            targets
                .iter()
                .filter_map(|p| ctx.log.watch(n, p.partition).ok())
        })
        .collect();
    loop {
        for w in &mut watches {
            w.borrow_and_update();
        }
        let (resp, bytes, failed) = read_all(&ctx, &plan);
        if failed || bytes >= plan.min_bytes || bytes > 0 && bytes >= plan.max_bytes {
            return resp;
        }
        if watches.is_empty() || Instant::now() >= deadline {
            return resp;
        }
        let woke = tokio::time::timeout_at(deadline, any_changed(&mut watches)).await;
        if woke.is_err() {
            // Deadline: answer with what is there now.
            return read_all(&ctx, &plan).0;
        }
        // A deleted topic's watch stays closed; keep only live ones.
        watches.retain(|w| w.has_changed().is_ok());
    }
}

/// Resolves when any watched high watermark moves (or its topic goes away).
async fn any_changed(watches: &mut [watch::Receiver<i64>]) {
    let mut futs: Vec<_> = watches.iter_mut().map(|w| Box::pin(w.changed())).collect();
    std::future::poll_fn(|cx| {
        for f in &mut futs {
            if f.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
}

/// Reads every partition once: the response, the record bytes in it, and whether any
/// partition failed (which answers at once, as Kafka does).
fn read_all(ctx: &Ctx, plan: &Plan) -> (FetchResponse, usize, bool) {
    let mut budget = plan.max_bytes;
    let mut total = 0usize;
    let mut failed = false;
    let mut responses = Vec::with_capacity(plan.topics.len());
    for t in &plan.topics {
        let mut parts = Vec::with_capacity(t.targets.len());
        for p in &t.targets {
            let base = PartitionData::default()
                .with_partition_index(p.partition)
                .with_records(Some(Bytes::new()))
                .with_aborted_transactions(plan.read_committed.then(Vec::new));
            let Some(name) = &t.resolved else {
                failed = true;
                let code = if plan.version >= 13 {
                    ResponseError::UnknownTopicId
                } else {
                    ResponseError::UnknownTopicOrPartition
                };
                parts.push(errored(base, code));
                continue;
            };
            // Past the response's byte budget: report the partition's bounds, no records.
            let read = if budget == 0 {
                ctx.log
                    .bounds(name, p.partition)
                    .map(|b| (Bytes::new(), b.high_watermark, b.log_start))
            } else {
                ctx.log
                    .read(name, p.partition, p.offset, p.max_bytes.min(budget))
                    .map(|f| (f.records, f.high_watermark, f.log_start))
            };
            match read {
                Ok((mut records, hw, log_start)) => {
                    // Only the response's first records may overshoot the budget (so a batch
                    // larger than max_bytes still gets through, as in Kafka); later ones fit.
                    if total > 0 && records.len() > budget {
                        records = whole_batches_within(records, budget);
                    }
                    budget = budget.saturating_sub(records.len());
                    total += records.len();
                    parts.push(
                        base.with_high_watermark(hw)
                            .with_last_stable_offset(hw)
                            .with_log_start_offset(log_start)
                            .with_records(Some(records)),
                    );
                }
                Err(LogError::OffsetOutOfRange {
                    log_start,
                    high_watermark,
                    ..
                }) => {
                    failed = true;
                    parts.push(
                        base.with_error_code(ResponseError::OffsetOutOfRange.code())
                            .with_high_watermark(high_watermark)
                            .with_last_stable_offset(high_watermark)
                            .with_log_start_offset(log_start),
                    );
                }
                Err(e) => {
                    failed = true;
                    tracing::debug!(topic = %name, partition = p.partition, error = %e, "fetch failed");
                    parts.push(errored(base, log_error_code(&e)));
                }
            }
        }
        let mut topic = FetchableTopicResponse::default().with_partitions(parts);
        if plan.version >= 13 {
            topic.topic_id = t.topic_id;
        } else {
            topic.topic = t.name.clone();
        }
        responses.push(topic);
    }
    (
        FetchResponse::default().with_responses(responses),
        total,
        failed,
    )
}

fn errored(base: PartitionData, code: ResponseError) -> PartitionData {
    base.with_error_code(code.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
}

/// The longest run of whole batches at the front of `records` that fits in `budget` bytes.
fn whole_batches_within(records: Bytes, budget: usize) -> Bytes {
    let mut end = 0;
    while let Ok(h) = BatchHeader::parse(&records[end..]) {
        let next = end + h.total_len();
        if next > budget || next > records.len() {
            break;
        }
        end = next;
    }
    records.slice(..end)
}
