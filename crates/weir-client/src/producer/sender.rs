//! The producer's sender task: lingered and full batches become produce
//! requests, sent in order per connection; answers resolve deliveries.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use tokio::sync::OwnedSemaphorePermit;

use super::{Acks, Batch, Shared};
use crate::admin::topic_name;
use crate::client::TopicInfo;
use crate::error::ClientError;
use crate::records::{Sequenced, encode_batch};

/// Drains ready and lingered batches into produce requests, one connection at a time, in order.
pub(super) async fn sender_loop(shared: Arc<Shared>) {
    loop {
        let (batches, next_deadline) = {
            let mut acc = shared.lock();
            let now = Instant::now();
            let closing = shared.closed.load(Ordering::Acquire);
            let linger = shared.config.linger;
            acc.close_where(|b| closing || b.created + linger <= now);
            let next = acc
                .topics
                .values()
                .flat_map(|t| t.open.values())
                .map(|b| b.created + linger)
                .min();
            (acc.ready.drain(..).collect::<Vec<_>>(), next)
        };
        if !batches.is_empty() {
            send_batches(&shared, batches).await;
            continue;
        }
        if shared.closed.load(Ordering::Acquire) && shared.outstanding.load(Ordering::Acquire) == 0
        {
            return;
        }
        match next_deadline {
            Some(at) => {
                let _ = tokio::time::timeout_at(at.into(), shared.wake.notified()).await;
            }
            None => {
                if shared.closed.load(Ordering::Acquire) {
                    // Wait for in-flight batches to finish, then exit.
                    let idle = shared.idle.notified();
                    if shared.outstanding.load(Ordering::Acquire) != 0 {
                        idle.await;
                    }
                    return;
                }
                shared.wake.notified().await;
            }
        }
    }
}

async fn send_batches(shared: &Arc<Shared>, mut batches: Vec<Batch>) {
    let identity = if shared.config.idempotent {
        match shared.identity().await {
            Ok(id) => Some(id),
            Err(e) => {
                shared.fail(batches, e);
                return;
            }
        }
    } else {
        None
    };
    // Retries go out before newer batches of their partition, in sequence order, or the
    // broker would see a gap (new batches have no sequence yet and keep their order).
    batches.sort_by_key(|b| b.sequence.map_or(i64::MAX, i64::from));
    // Group by leader node, keeping arrival order.
    let mut by_node: Vec<(i32, Vec<Batch>)> = Vec::new();
    for mut b in batches {
        if b.attempts > 0 {
            // The leader may have moved: look the topic up again.
            match shared.client.topic(&b.topic.name, false).await {
                Ok(t) => b.topic = t,
                Err(e) => {
                    shared.finish(b, Err(Arc::new(e)));
                    continue;
                }
            }
        }
        let leader = crate::client::partition_of(&b.topic, b.partition).map(|p| p.leader);
        let leader = match leader {
            Ok(l) => l,
            Err(e) => {
                shared.finish(b, Err(Arc::new(e)));
                continue;
            }
        };
        match by_node.iter_mut().find(|(n, _)| *n == leader) {
            Some((_, v)) => v.push(b),
            None => by_node.push((leader, vec![b])),
        }
    }
    for (node, batches) in by_node {
        let conn = match shared.client.node_connection(node).await {
            Ok(c) => c,
            Err(e) => {
                shared.fail(batches, e);
                continue;
            }
        };
        let mut request_batches = Vec::new();
        let mut request_bytes = 0;
        let mut encoded = Vec::new();
        for mut b in batches {
            let batch_bytes = match b.encoded.clone() {
                Some(bytes) => Ok(bytes),
                None => {
                    let records = std::mem::take(&mut b.records);
                    b.records_sent = records.len();
                    let sequenced = identity.map(|(producer_id, producer_epoch)| {
                        let base_sequence =
                            shared.next_sequence(&b.topic.name, b.partition, records.len());
                        b.sequence = Some(base_sequence);
                        Sequenced {
                            producer_id,
                            producer_epoch,
                            base_sequence,
                        }
                    });
                    encode_batch(records, shared.config.compression, sequenced)
                }
            };
            b.attempts += 1;
            let bytes = match batch_bytes {
                Ok(bytes) => {
                    b.encoded = Some(bytes.clone());
                    bytes
                }
                Err(reason) => {
                    shared.finish(
                        b,
                        Err(Arc::new(ClientError::Encode {
                            api: "Produce",
                            reason,
                        })),
                    );
                    continue;
                }
            };
            if request_bytes + bytes.len() > shared.config.max_request_size
                && !request_batches.is_empty()
            {
                let permit = in_flight_permit(shared).await;
                dispatch(
                    shared,
                    &conn,
                    std::mem::take(&mut request_batches),
                    std::mem::take(&mut encoded),
                    permit,
                );
                request_bytes = 0;
            }
            request_bytes += bytes.len();
            encoded.push(bytes);
            request_batches.push(b);
        }
        if !request_batches.is_empty() {
            let permit = in_flight_permit(shared).await;
            dispatch(shared, &conn, request_batches, encoded, permit);
        }
    }
}

/// Waits until fewer than the in-flight limit of requests are out (idempotent producers).
async fn in_flight_permit(shared: &Arc<Shared>) -> Option<OwnedSemaphorePermit> {
    let limit = shared.in_flight.clone()?;
    limit.acquire_owned().await.ok()
}

/// Queues one produce request on `conn` and spawns the wait for its answer.
fn dispatch(
    shared: &Arc<Shared>,
    conn: &Arc<crate::connection::Connection>,
    batches: Vec<Batch>,
    encoded: Vec<Bytes>,
    permit: Option<OwnedSemaphorePermit>,
) {
    // One entry per partition: batches of the same partition are concatenated,
    // and each learns its base offset from the records queued before it.
    let mut topics: Vec<TopicProduceData> = Vec::new();
    let mut skip: Vec<i64> = Vec::with_capacity(batches.len());
    let mut parts: Vec<(Arc<TopicInfo>, i32, Vec<Bytes>, i64)> = Vec::new();
    for (b, bytes) in batches.iter().zip(encoded) {
        match parts
            .iter_mut()
            .find(|(t, p, _, _)| *p == b.partition && t.name == b.topic.name)
        {
            Some((_, _, set, count)) => {
                skip.push(*count);
                set.push(bytes);
                *count += b.records_sent as i64;
            }
            None => {
                skip.push(0);
                parts.push((
                    b.topic.clone(),
                    b.partition,
                    vec![bytes],
                    b.records_sent as i64,
                ));
            }
        }
    }
    for (topic, partition, set, _) in parts {
        let records = match <[Bytes; 1]>::try_from(set) {
            Ok([one]) => one,
            Err(many) => many.concat().into(),
        };
        let data = PartitionProduceData::default()
            .with_index(partition)
            .with_records(Some(records));
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic.name) {
            Some(t) => t.partition_data.push(data),
            None => topics.push(
                TopicProduceData::default()
                    .with_name(topic_name(&topic.name))
                    .with_topic_id(topic.id)
                    .with_partition_data(vec![data]),
            ),
        }
    }
    let request = ProduceRequest::default()
        .with_acks(shared.config.acks.as_i16())
        .with_timeout_ms(shared.config.ack_timeout.as_millis().min(i32::MAX as u128) as i32)
        .with_topic_data(topics);
    if shared.config.acks == Acks::None {
        let result = conn.send_no_response(&request).map(|()| -1);
        let result = result.map_err(Arc::new);
        for b in batches {
            shared.finish(b, result.clone());
        }
        return;
    }
    let in_flight = match conn.start(&request) {
        Ok(f) => f,
        Err(e) => {
            shared.fail(batches, e);
            return;
        }
    };
    let shared = shared.clone();
    let addr = conn.addr();
    tokio::spawn(async move {
        let _permit = permit;
        let idempotent = shared.config.idempotent;
        let mut retry = Vec::new();
        match in_flight.response().await {
            Ok(response) => {
                for (b, skip) in batches.into_iter().zip(skip) {
                    let answer = response.responses.iter().find_map(|t| {
                        let same = if t.name.0.is_empty() {
                            t.topic_id == b.topic.id
                        } else {
                            t.name.0.as_str() == b.topic.name
                        };
                        if !same {
                            return None;
                        }
                        t.partition_responses
                            .iter()
                            .find(|p| p.index == b.partition)
                    });
                    let outcome = match answer {
                        // DUPLICATE_SEQUENCE_NUMBER: the broker already has this batch.
                        Some(p) if p.error_code == 0 || (idempotent && p.error_code == 46) => {
                            Ok(if p.base_offset < 0 {
                                -1
                            } else {
                                p.base_offset + skip
                            })
                        }
                        Some(p) => {
                            if matches!(p.error_code, 3 | 6 | 100) {
                                shared.client.invalidate(&b.topic.name);
                            }
                            let e = ClientError::kafka(
                                p.error_code,
                                format!("produce to {}-{}", b.topic.name, b.partition),
                                p.error_message.as_deref(),
                            );
                            // OUT_OF_ORDER_SEQUENCE_NUMBER: an earlier batch of the partition
                            // failed and is being retried; this one follows it.
                            let retriable = e.is_retriable() || (idempotent && p.error_code == 45);
                            if retriable && b.attempts <= shared.config.retries {
                                retry.push(b);
                                continue;
                            }
                            Err(Arc::new(e))
                        }
                        None => Err(Arc::new(ClientError::Protocol {
                            addr,
                            api: "Produce",
                            reason: format!(
                                "no answer for partition {}-{}",
                                b.topic.name, b.partition
                            ),
                        })),
                    };
                    shared.finish(b, outcome);
                }
            }
            Err(e) if e.is_retriable() => {
                let (again, give_up): (Vec<Batch>, Vec<Batch>) = batches
                    .into_iter()
                    .partition(|b| b.attempts <= shared.config.retries);
                retry = again;
                if !give_up.is_empty() {
                    shared.fail(give_up, e);
                }
            }
            Err(e) => shared.fail(batches, e),
        }
        if !retry.is_empty() {
            tracing::debug!(
                batches = retry.len(),
                "retrying produce after a retriable error"
            );
            tokio::time::sleep(shared.config.retry_backoff).await;
            {
                let mut acc = shared.lock();
                for b in retry.into_iter().rev() {
                    acc.ready.push_front(b);
                }
            }
            shared.wake.notify_one();
        }
    });
}
