//! Metadata: the one broker, and topics with their partitions (auto-creating when enabled).

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::StrBytes;
use weir_log::TopicMeta;

use super::topic_name;
use crate::error::log_error_code;
use crate::service::{Ctx, Outcome};

/// What one requested topic resolved to.
enum Wanted {
    Found(TopicMeta),
    /// Missing, to be auto-created.
    Create(String),
    Error(MetadataResponseTopic),
}

pub(crate) fn handle(
    ctx: &Arc<Ctx>,
    version: i16,
    req: MetadataRequest,
) -> Outcome<MetadataResponse> {
    let auto = ctx.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    // v0 asks for all topics with an empty list; later versions with null.
    let wanted: Vec<Wanted> = match req.topics {
        None => ctx.log.topics().into_iter().map(Wanted::Found).collect(),
        Some(t) if t.is_empty() && version == 0 => {
            ctx.log.topics().into_iter().map(Wanted::Found).collect()
        }
        Some(topics) => topics
            .into_iter()
            .map(|t| match t.name {
                Some(name) => match ctx.log.topic(&name) {
                    Some(m) => Wanted::Found(m),
                    None if auto => Wanted::Create(name.to_string()),
                    None => Wanted::Error(missing(&name, ResponseError::UnknownTopicOrPartition)),
                },
                None => match ctx.topic_by_id(t.topic_id) {
                    Some(m) => Wanted::Found(m),
                    None => Wanted::Error(
                        MetadataResponseTopic::default()
                            .with_name(None)
                            .with_topic_id(t.topic_id)
                            .with_error_code(ResponseError::UnknownTopicId.code()),
                    ),
                },
            })
            .collect(),
    };
    let to_create: Vec<String> = wanted
        .iter()
        .filter_map(|w| match w {
            Wanted::Create(n) => Some(n.clone()),
            _ => None,
        })
        .collect();
    if to_create.is_empty() {
        return Outcome::Now(respond(ctx, version, wanted));
    }
    let ctx = ctx.clone();
    Outcome::Ordered(Box::pin(async move {
        let created = ctx.clone().create_missing(to_create).await;
        let wanted = wanted
            .into_iter()
            .map(|w| match w {
                Wanted::Create(name) => {
                    match created
                        .iter()
                        .find(|(n, _)| *n == name)
                        .and_then(|(_, e)| e.as_ref())
                    {
                        Some(e) => Wanted::Error(missing(&name, log_error_code(e))),
                        None => match ctx.log.topic(&name) {
                            Some(m) => Wanted::Found(m),
                            None => {
                                Wanted::Error(missing(&name, ResponseError::LeaderNotAvailable))
                            }
                        },
                    }
                }
                other => other,
            })
            .collect();
        respond(&ctx, version, wanted)
    }))
}

fn missing(name: &str, e: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(name)))
        .with_error_code(e.code())
}

fn respond(ctx: &Ctx, version: i16, wanted: Vec<Wanted>) -> MetadataResponse {
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(0))
        .with_host(StrBytes::from_string(ctx.host.clone()))
        .with_port(ctx.port);
    let topics = wanted
        .into_iter()
        .map(|w| match w {
            Wanted::Found(m) => describe(&m, version),
            Wanted::Create(n) => missing(&n, ResponseError::LeaderNotAvailable),
            Wanted::Error(t) => t,
        })
        .collect();
    let mut resp = MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_controller_id(BrokerId(0))
        .with_topics(topics);
    if version >= 2 {
        resp.cluster_id = Some(StrBytes::from_string(ctx.config.cluster_id.clone()));
    }
    resp
}

fn describe(m: &TopicMeta, version: i16) -> MetadataResponseTopic {
    let partitions = (0..m.partitions)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(BrokerId(0))
                .with_leader_epoch(-1)
                .with_replica_nodes(vec![BrokerId(0)])
                .with_isr_nodes(vec![BrokerId(0)])
        })
        .collect();
    let mut t = MetadataResponseTopic::default()
        .with_name(Some(topic_name(&m.name)))
        .with_partitions(partitions);
    if version >= 10 {
        t.topic_id = uuid::Uuid::from_bytes(m.uuid);
    }
    t
}
