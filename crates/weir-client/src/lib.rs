//! An async client for any Kafka-protocol broker — weir's own or a Kafka
//! cluster: version negotiation, topic administration, a batching (optionally
//! idempotent) producer,
//! a consumer of assigned partitions, and a consumer-group member.
//!
//! ```no_run
//! # async fn demo() -> Result<(), weir_client::ClientError> {
//! use weir_client::{Client, Consumer, ConsumerConfig, NewTopic, Offset, Producer, ProducerConfig, ProducerRecord};
//! let client = Client::connect("127.0.0.1:9092").await?;
//! client.create_topic(NewTopic::new("clicks", 3)).await?;
//! let producer = Producer::new(client.clone(), ProducerConfig::default())?;
//! let delivery = producer.send(ProducerRecord::new("clicks", "hello").with_key("user-1")).await?;
//! let meta = delivery.await?;
//! let mut consumer = Consumer::new(client, ConsumerConfig::default());
//! consumer.assign("clicks", &[meta.partition], Offset::Earliest).await?;
//! let records = consumer.poll().await?;
//! # let _ = records; Ok(()) }
//! ```

mod admin;
mod client;
mod connection;
mod consumer;
mod error;
mod group;
mod partitioner;
mod producer;
mod records;
mod versions;

pub use admin::NewTopic;
pub use client::{BrokerInfo, Client, ClientConfig, ClusterMetadata, PartitionInfo, TopicInfo};
pub use connection::{Connection, ConnectionConfig, InFlight, decode_response, encode_frame};
pub use consumer::{Consumer, ConsumerConfig, Offset};
pub use error::{ClientError, Result};
pub use group::{
    Assignor, AutoOffsetReset, CommitHandle, GroupConfig, GroupConsumer, GroupDescription,
    GroupListing, MemberDescription, PROTOCOL_TYPE, Rebalance, decode_assignment,
    decode_subscription, encode_assignment, encode_subscription,
};
pub use kafka_protocol::ResponseError;
pub use kafka_protocol::messages::ApiKey;
pub use kafka_protocol::records::Compression;
pub use partitioner::{Partitioner, murmur2, partition_for_key};
pub use producer::{
    Acks, Delivery, IDEMPOTENT_MAX_IN_FLIGHT, Producer, ProducerConfig, ProducerRecord,
    RecordMetadata, parse_compression,
};
pub use records::ConsumerRecord;
pub use versions::{VersionTable, client_range};
