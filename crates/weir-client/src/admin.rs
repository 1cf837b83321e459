//! Topic administration: CreateTopics, DeleteTopics and Metadata.

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, DeleteTopicsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::{Client, TopicInfo};
use crate::error::{ClientError, Result, check};

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Topic name.
    pub name: String,
    /// Number of partitions (-1 = the broker's default).
    pub partitions: i32,
    /// Replication factor (-1 = the broker's default).
    pub replication_factor: i16,
    /// Topic configs, e.g. `("retention.ms", "3600000")`.
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with `partitions` partitions and broker defaults otherwise.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: -1,
            configs: Vec::new(),
        }
    }

    /// Adds a topic config.
    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((key.into(), value.into()));
        self
    }
}

const ADMIN_TIMEOUT_MS: i32 = 30_000;

impl Client {
    /// Creates topics; fails with the first per-topic error (e.g. TopicAlreadyExists).
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<()> {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(ADMIN_TIMEOUT_MS)
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(topic_name(&t.name))
                            .with_num_partitions(t.partitions)
                            .with_replication_factor(t.replication_factor)
                            .with_configs(
                                t.configs
                                    .iter()
                                    .map(|(k, v)| {
                                        CreatableTopicConfig::default()
                                            .with_name(StrBytes::from_string(k.clone()))
                                            .with_value(Some(StrBytes::from_string(v.clone())))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let conn = self.controller_connection().await?;
        let response = conn.send(&request).await?;
        for t in &response.topics {
            check(
                t.error_code,
                || format!("create topic {}", t.name.0),
                t.error_message.as_deref(),
            )?;
        }
        for t in topics {
            self.invalidate(&t.name);
        }
        Ok(())
    }

    /// Creates one topic.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<()> {
        self.create_topics(std::slice::from_ref(&topic)).await
    }

    /// Deletes topics by name; fails with the first per-topic error.
    pub async fn delete_topics(&self, names: &[&str]) -> Result<()> {
        let conn = self.controller_connection().await?;
        let version = conn.version_for(ApiKey::DeleteTopics)?;
        let mut request = DeleteTopicsRequest::default().with_timeout_ms(ADMIN_TIMEOUT_MS);
        if version >= 6 {
            request.topics = names
                .iter()
                .map(|n| DeleteTopicState::default().with_name(Some(topic_name(n))))
                .collect();
        } else {
            request.topic_names = names.iter().map(|n| topic_name(n)).collect();
        }
        let response = conn.send_at(&request, version, None).await?;
        for (i, t) in response.responses.iter().enumerate() {
            let name = t
                .name
                .as_ref()
                .map(|n| n.0.to_string())
                .or_else(|| names.get(i).map(|n| n.to_string()))
                .unwrap_or_default();
            check(
                t.error_code,
                || format!("delete topic {name}"),
                t.error_message.as_deref(),
            )?;
        }
        for n in names {
            self.invalidate(n);
        }
        Ok(())
    }

    /// Names of all non-internal topics, sorted.
    pub async fn list_topics(&self) -> Result<Vec<String>> {
        let metadata = self.metadata(None, false).await?;
        Ok(metadata
            .topics
            .into_iter()
            .filter(|t| !t.is_internal)
            .map(|t| t.name)
            .collect())
    }

    /// Partitions and leaders of the named topics, in the order given.
    pub async fn describe_topics(&self, names: &[&str]) -> Result<Vec<TopicInfo>> {
        let wanted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let metadata = self.metadata(Some(&wanted), false).await?;
        names
            .iter()
            .map(|n| {
                metadata
                    .topics
                    .iter()
                    .find(|t| t.name == *n)
                    .cloned()
                    .ok_or_else(|| ClientError::UnknownTopic(n.to_string()))
            })
            .collect()
    }
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}
