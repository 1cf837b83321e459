//! A consumer of assigned partitions: seek with ListOffsets, read with Fetch.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, ListOffsetsRequest};

use crate::admin::topic_name;
use crate::client::{Client, TopicInfo};
use crate::connection::InFlight;
use crate::error::{ClientError, Result};
use crate::records::{ConsumerRecord, decode_records};

/// Where to start or move a partition's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// The first offset still in the log.
    Earliest,
    /// The end of the log: only records produced from now on.
    Latest,
    /// The first record with a timestamp at or after this many ms since the epoch
    /// (the end of the log if there is none).
    Timestamp(i64),
    /// This exact offset.
    At(i64),
}

/// Settings of a [`Consumer`].
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// How long the broker may hold a fetch waiting for `min_bytes`.
    pub max_wait: Duration,
    /// Bytes the broker waits for before answering.
    pub min_bytes: i32,
    /// Largest fetch response.
    pub max_bytes: i32,
    /// Largest share of one partition in a fetch response.
    pub partition_max_bytes: i32,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            // Measured: 2-4 MiB responses read fastest; 64 MiB ones at less than half
            // the rate (fresh huge allocations and page faults on both sides).
            max_bytes: 16 << 20,
            partition_max_bytes: 4 << 20,
        }
    }
}

#[derive(Debug)]
struct Assigned {
    topic: Arc<TopicInfo>,
    name: Arc<str>,
    partition: i32,
    position: i64,
    high_watermark: i64,
}

/// Reads assigned partitions of one or more topics.
#[derive(Debug)]
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    assigned: Vec<Assigned>,
}

impl Client {
    /// Resolves `spec` for each partition of `topic` with ListOffsets.
    pub async fn list_offsets(
        &self,
        topic: &str,
        spec: &[(i32, Offset)],
    ) -> Result<Vec<(i32, i64)>> {
        let info = self.topic(topic, false).await?;
        let mut out = Vec::with_capacity(spec.len());
        let mut query = Vec::new();
        for &(p, o) in spec {
            crate::client::partition_of(&info, p)?;
            let ts = match o {
                Offset::At(off) => {
                    out.push((p, off));
                    continue;
                }
                Offset::Earliest => -2,
                Offset::Latest => -1,
                Offset::Timestamp(ts) => ts,
            };
            query.push((p, ts));
        }
        // One request per leader.
        let mut leaders: Vec<i32> = query
            .iter()
            .filter_map(|(p, _)| {
                crate::client::partition_of(&info, *p)
                    .ok()
                    .map(|x| x.leader)
            })
            .collect();
        leaders.sort_unstable();
        leaders.dedup();
        for leader in leaders {
            let parts: Vec<(i32, i64)> = query
                .iter()
                .copied()
                .filter(|(p, _)| {
                    crate::client::partition_of(&info, *p).is_ok_and(|x| x.leader == leader)
                })
                .collect();
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    ListOffsetsTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(
                            parts
                                .iter()
                                .map(|&(p, ts)| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(p)
                                        .with_timestamp(ts)
                                })
                                .collect(),
                        ),
                ]);
            let conn = self.node_connection(leader).await?;
            let response = conn.send(&request).await?;
            let mut latest_needed = Vec::new();
            for &(p, ts) in &parts {
                let answer = response
                    .topics
                    .iter()
                    .filter(|t| t.name.0.as_str() == topic)
                    .flat_map(|t| t.partitions.iter())
                    .find(|x| x.partition_index == p)
                    .ok_or_else(|| ClientError::Protocol {
                        addr: conn.addr(),
                        api: "ListOffsets",
                        reason: format!("no answer for {topic}-{p}"),
                    })?;
                crate::error::check(
                    answer.error_code,
                    || format!("list offsets of {topic}-{p}"),
                    None,
                )?;
                if answer.offset < 0 && ts >= 0 {
                    latest_needed.push(p);
                } else {
                    out.push((p, answer.offset));
                }
            }
            if !latest_needed.is_empty() {
                let spec: Vec<(i32, Offset)> =
                    latest_needed.iter().map(|&p| (p, Offset::Latest)).collect();
                out.extend(Box::pin(self.list_offsets(topic, &spec)).await?);
            }
        }
        out.sort_unstable();
        Ok(out)
    }
}

impl Consumer {
    /// A consumer with no partitions assigned yet.
    pub fn new(client: Client, config: ConsumerConfig) -> Consumer {
        Consumer {
            client,
            config,
            assigned: Vec::new(),
        }
    }

    /// The client this consumer reads through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Assigns `partitions` of `topic`, each starting at `start`.
    pub async fn assign(&mut self, topic: &str, partitions: &[i32], start: Offset) -> Result<()> {
        let spec: Vec<(i32, Offset)> = partitions.iter().map(|&p| (p, start)).collect();
        self.assign_each(topic, &spec).await
    }

    /// Assigns partitions of `topic`, each starting where its entry says.
    pub async fn assign_each(&mut self, topic: &str, spec: &[(i32, Offset)]) -> Result<()> {
        let info = self.client.topic(topic, false).await?;
        let offsets = self.client.list_offsets(topic, spec).await?;
        let name: Arc<str> = Arc::from(topic);
        for (p, position) in offsets {
            self.assigned
                .retain(|a| !(a.name.as_ref() == topic && a.partition == p));
            self.assigned.push(Assigned {
                topic: info.clone(),
                name: name.clone(),
                partition: p,
                position,
                high_watermark: -1,
            });
        }
        Ok(())
    }

    /// Assigns every partition of `topic`, each starting at `start`.
    pub async fn assign_all(&mut self, topic: &str, start: Offset) -> Result<()> {
        let info = self.client.topic(topic, false).await?;
        let partitions: Vec<i32> = info.partitions.iter().map(|p| p.partition).collect();
        self.assign(topic, &partitions, start).await
    }

    /// Drops every assigned partition.
    pub fn unassign(&mut self) {
        self.assigned.clear();
    }

    /// The assigned (topic, partition) pairs.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.assigned
            .iter()
            .map(|a| (a.name.to_string(), a.partition))
            .collect()
    }

    /// Moves the position of an assigned partition; returns the new position.
    pub async fn seek(&mut self, topic: &str, partition: i32, to: Offset) -> Result<i64> {
        let idx = self.index_of(topic, partition)?;
        let (_, offset) = self
            .client
            .list_offsets(topic, &[(partition, to)])
            .await?
            .pop()
            .ok_or_else(|| {
                ClientError::InvalidArgument(format!("no offset for {topic}-{partition}"))
            })?;
        self.assigned[idx].position = offset;
        Ok(offset)
    }

    /// The next offset to be read from an assigned partition.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.index_of(topic, partition)
            .ok()
            .map(|i| self.assigned[i].position)
    }

    /// The high watermark seen in the last fetch of a partition (-1 before any).
    pub fn high_watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        self.index_of(topic, partition)
            .ok()
            .map(|i| self.assigned[i].high_watermark)
    }

    /// Whether every assigned partition has been read up to its last known high watermark.
    pub fn at_end(&self) -> bool {
        self.assigned
            .iter()
            .all(|a| a.high_watermark >= 0 && a.position >= a.high_watermark)
    }

    fn index_of(&self, topic: &str, partition: i32) -> Result<usize> {
        self.assigned
            .iter()
            .position(|a| a.name.as_ref() == topic && a.partition == partition)
            .ok_or_else(|| {
                ClientError::InvalidArgument(format!(
                    "{topic}-{partition} is not assigned to this consumer; assign it first"
                ))
            })
    }

    /// Fetches once from every assigned partition (long-polling up to `max_wait`)
    /// and returns the records, advancing positions past them.
    pub async fn poll(&mut self) -> Result<Vec<ConsumerRecord>> {
        if self.assigned.is_empty() {
            return Err(ClientError::InvalidArgument(
                "no partitions assigned; call assign first".into(),
            ));
        }
        let mut leaders: Vec<i32> = Vec::new();
        for a in &self.assigned {
            let leader = crate::client::partition_of(&a.topic, a.partition)?.leader;
            if !leaders.contains(&leader) {
                leaders.push(leader);
            }
        }
        let mut requests: Vec<(Vec<usize>, InFlight<FetchRequest>)> = Vec::new();
        for leader in leaders {
            let members: Vec<usize> = (0..self.assigned.len())
                .filter(|&i| {
                    let a = &self.assigned[i];
                    crate::client::partition_of(&a.topic, a.partition)
                        .is_ok_and(|p| p.leader == leader)
                })
                .collect();
            let mut topics: Vec<FetchTopic> = Vec::new();
            for &i in &members {
                let a = &self.assigned[i];
                let part = FetchPartition::default()
                    .with_partition(a.partition)
                    .with_fetch_offset(a.position)
                    .with_partition_max_bytes(self.config.partition_max_bytes);
                match topics
                    .iter_mut()
                    .find(|t| t.topic.0.as_str() == a.name.as_ref())
                {
                    Some(t) => t.partitions.push(part),
                    None => topics.push(
                        FetchTopic::default()
                            .with_topic(topic_name(&a.name))
                            .with_topic_id(a.topic.id)
                            .with_partitions(vec![part]),
                    ),
                }
            }
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(self.config.max_wait.as_millis().min(i32::MAX as u128) as i32)
                .with_min_bytes(self.config.min_bytes)
                .with_max_bytes(self.config.max_bytes)
                .with_session_id(0)
                .with_session_epoch(-1)
                .with_topics(topics);
            let conn = self.client.node_connection(leader).await?;
            requests.push((members, conn.start(&request)?));
        }
        let mut out = Vec::new();
        for (members, in_flight) in requests {
            let response = in_flight.response().await?;
            crate::error::check(response.error_code, || "fetch".into(), None)?;
            for i in members {
                let a = &mut self.assigned[i];
                let Some(data) = response
                    .responses
                    .iter()
                    .filter(|t| {
                        if t.topic.0.is_empty() {
                            t.topic_id == a.topic.id
                        } else {
                            t.topic.0.as_str() == a.name.as_ref()
                        }
                    })
                    .flat_map(|t| t.partitions.iter())
                    .find(|p| p.partition_index == a.partition)
                else {
                    continue;
                };
                if data.error_code != 0 {
                    if matches!(data.error_code, 3 | 6 | 100) {
                        self.client.invalidate(&a.name);
                    }
                    let hint = if data.error_code == 1 {
                        " (the offset is outside the log; seek to earliest or latest)"
                    } else {
                        ""
                    };
                    return Err(ClientError::kafka(
                        data.error_code,
                        format!(
                            "fetch {}-{} at offset {}{hint}",
                            a.name, a.partition, a.position
                        ),
                        None,
                    ));
                }
                a.high_watermark = data.high_watermark;
                if let Some(records) = data.records.clone() {
                    let next = decode_records(&a.name, a.partition, records, a.position, &mut out)
                        .map_err(|reason| ClientError::CorruptBatch {
                            topic: a.name.to_string(),
                            partition: a.partition,
                            offset: a.position,
                            reason,
                        })?;
                    if let Some(next) = next {
                        a.position = a.position.max(next);
                    }
                }
            }
        }
        Ok(out)
    }
}
