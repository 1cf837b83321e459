//! CreateTopics, DeleteTopics and DescribeConfigs (topic configs).

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use weir_log::topic::{MAX_PARTITIONS, validate_topic_name};
use weir_log::{LogError, TopicConfig, TopicMeta};

use super::{message, topic_name};
use crate::error::log_error_code;
use crate::service::{Ctx, Outcome};

/// DescribeConfigs resource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Config sources.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

/// What a topic's creation needs, once its request checked out.
struct Creation {
    partitions: i32,
    config: TopicConfig,
}

fn check_creation(
    ctx: &Ctx,
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> Result<Creation, (ResponseError, String)> {
    validate_topic_name(&t.name).map_err(|e| (log_error_code(&e), e.to_string()))?;
    if !matches!(t.replication_factor, -1 | 1) {
        return Err((
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication factor {} is impossible: weir is one broker; use 1 or -1",
                t.replication_factor
            ),
        ));
    }
    let partitions = if !t.assignments.is_empty() {
        if t.num_partitions != -1 {
            return Err((
                ResponseError::InvalidRequest,
                "give either num_partitions or a replica assignment, not both".into(),
            ));
        }
        if t.assignments
            .iter()
            .any(|a| a.broker_ids.iter().any(|b| b.0 != 0))
        {
            return Err((
                ResponseError::InvalidReplicaAssignment,
                "replicas can only be placed on broker 0".into(),
            ));
        }
        t.assignments.len() as i32
    } else if t.num_partitions == -1 {
        ctx.config.num_partitions
    } else {
        t.num_partitions
    };
    if !(1..=MAX_PARTITIONS).contains(&partitions) {
        let e = LogError::InvalidPartitions(i64::from(partitions));
        return Err((ResponseError::InvalidPartitions, e.to_string()));
    }
    let mut config = TopicConfig::default();
    for c in &t.configs {
        if let Some(v) = &c.value {
            config
                .set(&c.name, v)
                .map_err(|e| (ResponseError::InvalidConfig, e.to_string()))?;
        }
    }
    if ctx.log.topic(&t.name).is_some() {
        let e = LogError::TopicExists(t.name.to_string());
        return Err((ResponseError::TopicAlreadyExists, e.to_string()));
    }
    Ok(Creation { partitions, config })
}

pub(crate) fn create_topics(
    ctx: &Arc<Ctx>,
    version: i16,
    req: CreateTopicsRequest,
) -> Outcome<CreateTopicsResponse> {
    let mut jobs = Vec::with_capacity(req.topics.len());
    // Counted once: a request may name hundreds of thousands of topics.
    let mut named: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for t in &req.topics {
        *named.entry(t.name.as_str()).or_default() += 1;
    }
    for t in &req.topics {
        let dup = named.get(t.name.as_str()).copied().unwrap_or(0) > 1;
        let checked = if dup {
            Err((
                ResponseError::InvalidRequest,
                format!(
                    "topic {:?} is named more than once in the request",
                    &*t.name
                ),
            ))
        } else {
            check_creation(ctx, t)
        };
        let job = match checked {
            Ok(c) if req.validate_only => Ok((c, None)),
            Ok(c) => {
                let p = ctx
                    .log
                    .create_topic(&t.name, c.partitions, c.config.clone());
                Ok((c, Some(p)))
            }
            Err(e) => Err(e),
        };
        jobs.push((t.name.clone(), job));
    }
    Outcome::Ordered(Box::pin(async move {
        let mut topics = Vec::with_capacity(jobs.len());
        for (name, job) in jobs {
            let r = CreatableTopicResult::default().with_name(name.clone());
            let r = match job {
                Ok((c, pending)) => {
                    let created = match pending {
                        Some(p) => p.await.map(Some),
                        None => Ok(None),
                    };
                    match created {
                        Ok(meta) => {
                            tracing::info!(topic = %&*name, partitions = c.partitions, "created topic");
                            created_result(r, version, &c, meta.as_ref())
                        }
                        Err(e) => failed(r, log_error_code(&e), e.to_string()),
                    }
                }
                Err((code, msg)) => failed(r, code, msg),
            };
            topics.push(r);
        }
        CreateTopicsResponse::default().with_topics(topics)
    }))
}

fn created_result(
    mut r: CreatableTopicResult,
    version: i16,
    c: &Creation,
    meta: Option<&TopicMeta>,
) -> CreatableTopicResult {
    if version >= 5 {
        r.num_partitions = c.partitions;
        r.replication_factor = 1;
        r.configs = Some(
            c.config
                .to_pairs()
                .into_iter()
                .map(|(k, v)| {
                    CreatableTopicConfigs::default()
                        .with_name(StrBytes::from_static_str(k))
                        .with_value(Some(StrBytes::from_string(v)))
                        .with_config_source(source(&c.config, k))
                })
                .collect(),
        );
    }
    if version >= 7
        && let Some(m) = meta
    {
        r.topic_id = uuid::Uuid::from_bytes(m.uuid);
    }
    r
}

fn failed(r: CreatableTopicResult, code: ResponseError, msg: String) -> CreatableTopicResult {
    tracing::debug!(topic = %&*r.name, error = ?code, %msg, "create topic refused");
    r.with_error_code(code.code())
        .with_error_message(message(msg))
}

pub(crate) fn delete_topics(
    ctx: &Arc<Ctx>,
    version: i16,
    req: DeleteTopicsRequest,
) -> Outcome<DeleteTopicsResponse> {
    // v6 names topics by name or id; earlier versions by name.
    let wanted: Vec<(Option<TopicName>, uuid::Uuid)> = if version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n), uuid::Uuid::nil()))
            .collect()
    };
    let jobs: Vec<_> = wanted
        .into_iter()
        .map(|(name, id)| {
            let meta = match &name {
                Some(n) => ctx.log.topic(n),
                None => ctx.topic_by_id(id),
            };
            let pending = meta.as_ref().map(|m| ctx.log.delete_topic(&m.name));
            (name, id, meta, pending)
        })
        .collect();
    Outcome::Ordered(Box::pin(async move {
        let mut responses = Vec::with_capacity(jobs.len());
        for (name, id, meta, pending) in jobs {
            let mut r = DeletableTopicResult::default().with_name(
                name.clone()
                    .or_else(|| meta.as_ref().map(|m| topic_name(&m.name))),
            );
            if version >= 6 {
                r.topic_id = meta.as_ref().map_or(id, |m| uuid::Uuid::from_bytes(m.uuid));
            }
            let outcome = match pending {
                Some(p) => p.await.map_err(|e| (log_error_code(&e), e.to_string())),
                None if name.is_none() => Err((
                    ResponseError::UnknownTopicId,
                    format!("no topic has id {id}"),
                )),
                None => Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("unknown topic {:?}", name.as_deref().map_or("", |n| &**n)),
                )),
            };
            if let Err((code, msg)) = outcome {
                r.error_code = code.code();
                if version >= 5 {
                    r.error_message = message(msg);
                }
            } else if let Some(m) = &meta {
                tracing::info!(topic = %m.name, "deleted topic");
            }
            responses.push(r);
        }
        DeleteTopicsResponse::default().with_responses(responses)
    }))
}

fn source(config: &TopicConfig, key: &str) -> i8 {
    let default = TopicConfig::default().to_pairs();
    let now = config.to_pairs();
    if default.iter().find(|(k, _)| *k == key) == now.iter().find(|(k, _)| *k == key) {
        SOURCE_DEFAULT
    } else {
        SOURCE_TOPIC
    }
}

/// Kafka's ConfigType codes: INT 3, LONG 5, LIST 7.
fn config_type(key: &str) -> i8 {
    match key {
        "max.message.bytes" => 3,
        "cleanup.policy" => 7,
        _ => 5,
    }
}

pub(crate) fn describe_configs(
    ctx: &Arc<Ctx>,
    version: i16,
    req: DescribeConfigsRequest,
) -> Outcome<DescribeConfigsResponse> {
    let results = req
        .resources
        .into_iter()
        .map(|res| {
            let r = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            match res.resource_type {
                RESOURCE_TOPIC => match ctx.log.topic(&res.resource_name) {
                    Some(m) => {
                        let configs = m
                            .config
                            .to_pairs()
                            .into_iter()
                            .filter(|(k, _)| {
                                res.configuration_keys
                                    .as_ref()
                                    .is_none_or(|keys| keys.iter().any(|x| &**x == *k))
                            })
                            .map(|(k, v)| {
                                let mut c = DescribeConfigsResourceResult::default()
                                    .with_name(StrBytes::from_static_str(k))
                                    .with_value(Some(StrBytes::from_string(v)))
                                    .with_config_source(source(&m.config, k));
                                if version >= 3 {
                                    c.config_type = config_type(k);
                                }
                                c
                            })
                            .collect();
                        r.with_configs(configs)
                    }
                    None => r
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_error_message(message(format!(
                            "unknown topic {:?}",
                            &*res.resource_name
                        ))),
                },
                // weir has no broker configs to show yet; an empty list, as for a broker
                // with every setting at its default.
                RESOURCE_BROKER => r,
                other => r
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(message(format!(
                        "resource type {other} is not described by weir; use 2 (topic)"
                    ))),
            }
        })
        .collect();
    Outcome::Now(DescribeConfigsResponse::default().with_results(results))
}
