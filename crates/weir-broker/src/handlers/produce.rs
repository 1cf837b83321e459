//! Produce: v2 batches appended as sent (compressed or not), answered after the commit.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use weir_log::{Appended, LogError, Pending};

use super::message;
use crate::error::log_error_code;
use crate::service::{Ctx, Outcome};

/// One partition's append: submitted to the log, or refused before.
enum Slot {
    Submitted(Pending<Appended>),
    Refused(ResponseError, Option<String>),
}

struct TopicSlots {
    name: kafka_protocol::messages::TopicName,
    topic_id: uuid::Uuid,
    parts: Vec<(i32, Slot)>,
}

pub(crate) fn handle(
    ctx: &Arc<Ctx>,
    version: i16,
    req: ProduceRequest,
) -> Outcome<ProduceResponse> {
    let acks = req.acks;
    // Resolve names (v13 names topics by id) and find topics to auto-create.
    let mut topics = Vec::with_capacity(req.topic_data.len());
    let mut to_create = Vec::new();
    for t in req.topic_data {
        let name = if version >= 13 {
            ctx.topic_by_id(t.topic_id).map(|m| m.name)
        } else {
            Some(t.name.to_string())
        };
        if let Some(n) = &name
            && ctx.config.auto_create_topics
            && ctx.log.topic(n).is_none()
            && !to_create.contains(n)
        {
            to_create.push(n.clone());
        }
        topics.push((t, name));
    }
    let submit = move |ctx: &Ctx| -> Vec<TopicSlots> {
        topics
            .into_iter()
            .map(|(t, name)| TopicSlots {
                parts: t
                    .partition_data
                    .into_iter()
                    .map(|p| {
                        (
                            p.index,
                            submit_one(ctx, acks, name.as_deref(), p.index, p.records),
                        )
                    })
                    .collect(),
                name: t.name,
                topic_id: t.topic_id,
            })
            .collect()
    };
    if to_create.is_empty() {
        let slots = submit(ctx);
        if acks == 0 {
            return Outcome::Unanswered {
                ordered: false,
                outcome: Box::pin(async move { first_error(finish(slots).await) }),
            };
        }
        return Outcome::Later(Box::pin(finish(slots)));
    }
    let ctx = ctx.clone();
    let fut = async move {
        ctx.clone().create_missing(to_create).await;
        finish(submit(&ctx)).await
    };
    if acks == 0 {
        // Nobody waits for the answer, but later requests must see the topic.
        return Outcome::Unanswered {
            ordered: true,
            outcome: Box::pin(async move { first_error(fut.await) }),
        };
    }
    Outcome::Ordered(Box::pin(fut))
}

fn submit_one(
    ctx: &Ctx,
    acks: i16,
    topic: Option<&str>,
    partition: i32,
    records: Option<Bytes>,
) -> Slot {
    if !matches!(acks, -1..=1) {
        return Slot::Refused(
            ResponseError::InvalidRequiredAcks,
            Some(format!("acks={acks}; use 0, 1 or -1 (all)")),
        );
    }
    let Some(topic) = topic else {
        return Slot::Refused(ResponseError::UnknownTopicId, None);
    };
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return Slot::Refused(
            ResponseError::CorruptMessage,
            Some("produce without records".to_string()),
        );
    };
    Slot::Submitted(ctx.log.append(topic, partition, records))
}

async fn finish(slots: Vec<TopicSlots>) -> ProduceResponse {
    let mut responses = Vec::with_capacity(slots.len());
    for t in slots {
        let mut parts = Vec::with_capacity(t.parts.len());
        for (index, slot) in t.parts {
            let r = PartitionProduceResponse::default()
                .with_index(index)
                .with_log_append_time_ms(-1);
            let r = match slot {
                Slot::Submitted(p) => match p.await {
                    Ok(a) => r.with_base_offset(a.base_offset),
                    Err(e) => refused(r, log_error_code(&e), Some(describe(&e))),
                },
                Slot::Refused(code, msg) => refused(r, code, msg),
            };
            parts.push(r);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_partition_responses(parts),
        );
    }
    ProduceResponse::default().with_responses(responses)
}

fn describe(e: &LogError) -> String {
    if let LogError::UnknownTopic(t) = e {
        return format!(
            "unknown topic {t:?}: create it first (auto-create is off or refused the name)"
        );
    }
    e.to_string()
}

fn refused(
    r: PartitionProduceResponse,
    code: ResponseError,
    msg: Option<String>,
) -> PartitionProduceResponse {
    tracing::debug!(partition = r.index, error = ?code, message = ?msg, "produce refused");
    r.with_error_code(code.code())
        .with_base_offset(-1)
        .with_error_message(msg.and_then(message))
}

/// The first partition error of a response, described for the log.
fn first_error(resp: ProduceResponse) -> Option<String> {
    resp.responses.iter().find_map(|t| {
        t.partition_responses
            .iter()
            .find(|p| p.error_code != 0)
            .map(|p| {
                let code = ResponseError::try_from_code(p.error_code);
                format!(
                    "{}-{}: {code:?} {}",
                    &*t.name,
                    p.index,
                    p.error_message.as_deref().unwrap_or("")
                )
            })
    })
}
