//! The cluster view: bootstrap, metadata cache, one connection per broker.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::connection::{Connection, ConnectionConfig};
use crate::error::{ClientError, Result};

/// Settings of a [`Client`].
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    /// Settings applied to every broker connection.
    pub connection: ConnectionConfig,
}

/// One broker of the cluster, as metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Node id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Node id of the leader, -1 when there is none.
    pub leader: i32,
    /// Leader epoch, -1 when unknown.
    pub leader_epoch: i32,
    /// Node ids of the replicas.
    pub replicas: Vec<i32>,
    /// Node ids of the in-sync replicas.
    pub isr: Vec<i32>,
    /// Kafka error code for this partition (0 = fine).
    pub error_code: i16,
}

/// One topic, as metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Topic id (nil on brokers older than Metadata v10).
    pub id: Uuid,
    /// Whether the topic is internal to the broker.
    pub is_internal: bool,
    /// Partitions, sorted by index.
    pub partitions: Vec<PartitionInfo>,
}

/// What a Metadata request returned.
#[derive(Debug, Clone)]
pub struct ClusterMetadata {
    /// Cluster id, when the broker has one.
    pub cluster_id: Option<String>,
    /// Node id of the controller (-1 if unknown).
    pub controller: i32,
    /// Brokers.
    pub brokers: Vec<BrokerInfo>,
    /// Topics that exist, sorted by name.
    pub topics: Vec<TopicInfo>,
}

struct Inner {
    config: ClientConfig,
    bootstrap: String,
    bootstrap_conn: tokio::sync::Mutex<Option<Arc<Connection>>>,
    nodes: tokio::sync::Mutex<HashMap<i32, Arc<Connection>>>,
    brokers: Mutex<HashMap<i32, BrokerInfo>>,
    topics: Mutex<HashMap<String, Arc<TopicInfo>>>,
    controller: AtomicI32,
}

/// A handle on a Kafka-protocol cluster: metadata plus connections; clone freely.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.inner.bootstrap)
            .finish_non_exhaustive()
    }
}

/// How often to ask again for a leader that is not yet elected (e.g. right after auto-create).
const LEADER_RETRIES: u32 = 20;
const LEADER_BACKOFF: Duration = Duration::from_millis(50);

impl Client {
    /// Connects to the first reachable broker of a comma-separated `HOST:PORT` list.
    pub async fn connect(bootstrap: &str) -> Result<Client> {
        Self::connect_with(bootstrap, ClientConfig::default()).await
    }

    /// Like [`connect`](Self::connect) with explicit settings.
    pub async fn connect_with(bootstrap: &str, config: ClientConfig) -> Result<Client> {
        let client = Client {
            inner: Arc::new(Inner {
                config,
                bootstrap: bootstrap.to_string(),
                bootstrap_conn: tokio::sync::Mutex::new(None),
                nodes: tokio::sync::Mutex::new(HashMap::new()),
                brokers: Mutex::new(HashMap::new()),
                topics: Mutex::new(HashMap::new()),
                controller: AtomicI32::new(-1),
            }),
        };
        client.bootstrap_connection().await?;
        client.metadata(Some(&[]), false).await?;
        Ok(client)
    }

    /// The bootstrap list this client was made with.
    pub fn bootstrap(&self) -> &str {
        &self.inner.bootstrap
    }

    /// The connection to the bootstrap broker, reconnecting if it dropped.
    pub async fn bootstrap_connection(&self) -> Result<Arc<Connection>> {
        let mut slot = self.inner.bootstrap_conn.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let mut last = None;
        for entry in self
            .inner
            .bootstrap
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match self.connect_to(entry).await {
                Ok(c) => {
                    let c = Arc::new(c);
                    *slot = Some(c.clone());
                    return Ok(c);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            ClientError::InvalidArgument(format!(
                "empty broker list {:?}; give HOST:PORT",
                self.inner.bootstrap
            ))
        }))
    }

    /// Opens a new connection to `host_port`, not shared with other users of this client
    /// (a group member's coordinator connection, whose joins may be held for long).
    pub async fn open_connection(&self, host_port: &str) -> Result<Connection> {
        self.connect_to(host_port).await
    }

    async fn connect_to(&self, host_port: &str) -> Result<Connection> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(host_port)
            .await
            .map_err(|e| ClientError::Resolve {
                addr: host_port.to_string(),
                reason: e.to_string(),
            })?
            .collect();
        let mut last = None;
        for addr in addrs {
            match Connection::connect(addr, self.inner.config.connection.clone()).await {
                Ok(c) => return Ok(c),
                Err(ClientError::Connect { source, .. }) => {
                    last = Some(ClientError::Connect {
                        addr: host_port.to_string(),
                        source,
                    })
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Resolve {
            addr: host_port.to_string(),
            reason: "no addresses".into(),
        }))
    }

    /// The connection to broker `node_id`, opened on first use.
    pub async fn node_connection(&self, node_id: i32) -> Result<Arc<Connection>> {
        let mut nodes = self.inner.nodes.lock().await;
        if let Some(c) = nodes.get(&node_id).filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let broker = self
            .inner
            .brokers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&node_id)
            .cloned();
        let conn = match broker {
            Some(b) => Arc::new(self.connect_to(&format!("{}:{}", b.host, b.port)).await?),
            None => self.bootstrap_connection().await?,
        };
        nodes.insert(node_id, conn.clone());
        Ok(conn)
    }

    /// The connection to the controller (for admin requests).
    pub async fn controller_connection(&self) -> Result<Arc<Connection>> {
        match self.inner.controller.load(Ordering::Relaxed) {
            id if id >= 0 => self.node_connection(id).await,
            _ => self.bootstrap_connection().await,
        }
    }

    /// Asks for metadata of `topics` (`None` = all topics) and refreshes the cache.
    pub async fn metadata(
        &self,
        topics: Option<&[String]>,
        allow_auto_create: bool,
    ) -> Result<ClusterMetadata> {
        let conn = self.bootstrap_connection().await?;
        let request = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|n| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(allow_auto_create);
        let response = conn.send(&request).await?;
        let metadata = self.absorb(response)?;
        Ok(metadata)
    }

    fn absorb(&self, response: MetadataResponse) -> Result<ClusterMetadata> {
        crate::error::check(response.error_code, || "metadata".into(), None)?;
        let brokers: Vec<BrokerInfo> = response
            .brokers
            .iter()
            .map(|b| BrokerInfo {
                node_id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
            })
            .collect();
        {
            let mut map = self.inner.brokers.lock().unwrap_or_else(|e| e.into_inner());
            for b in &brokers {
                map.insert(b.node_id, b.clone());
            }
        }
        self.inner
            .controller
            .store(response.controller_id.0, Ordering::Relaxed);
        let mut topics = Vec::new();
        let mut cache = self.inner.topics.lock().unwrap_or_else(|e| e.into_inner());
        for t in response.topics {
            let Some(name) = t.name.map(|n| n.0.to_string()) else {
                continue;
            };
            if t.error_code != 0 {
                cache.remove(&name);
                continue;
            }
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|n| n.0).collect(),
                    isr: p.isr_nodes.iter().map(|n| n.0).collect(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            let info = TopicInfo {
                name: name.clone(),
                id: t.topic_id,
                is_internal: t.is_internal,
                partitions,
            };
            cache.insert(name, Arc::new(info.clone()));
            topics.push(info);
        }
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ClusterMetadata {
            cluster_id: response.cluster_id.map(|c| c.to_string()),
            controller: response.controller_id.0,
            brokers,
            topics,
        })
    }

    /// Metadata of one topic, from the cache or the broker; waits briefly for
    /// leaders of a just-created topic.
    pub async fn topic(&self, name: &str, allow_auto_create: bool) -> Result<Arc<TopicInfo>> {
        if let Some(t) = self.cached_topic(name) {
            return Ok(t);
        }
        for attempt in 0..LEADER_RETRIES {
            let conn = self.bootstrap_connection().await?;
            let request = MetadataRequest::default()
                .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                    TopicName(StrBytes::from_string(name.to_string())),
                ))]))
                .with_allow_auto_topic_creation(allow_auto_create);
            let response = conn.send(&request).await?;
            let code = response
                .topics
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name))
                .map_or(3, |t| t.error_code);
            self.absorb(response)?;
            match code {
                0 => {
                    if let Some(t) = self.cached_topic(name)
                        && t.partitions.iter().all(|p| p.leader >= 0)
                        && !t.partitions.is_empty()
                    {
                        return Ok(t);
                    }
                }
                // A broker that auto-creates answers LEADER_NOT_AVAILABLE meanwhile; one
                // that still says UNKNOWN_TOPIC on the second ask does not auto-create.
                3 if !allow_auto_create || attempt > 0 => {
                    return Err(ClientError::UnknownTopic(name.into()));
                }
                3 | 5 => {}
                other => {
                    return Err(ClientError::kafka(
                        other,
                        format!("metadata for topic {name}"),
                        None,
                    ));
                }
            }
            tokio::time::sleep(LEADER_BACKOFF).await;
        }
        Err(ClientError::kafka(
            5,
            format!("topic {name} has no leader after {LEADER_RETRIES} tries"),
            None,
        ))
    }

    fn cached_topic(&self, name: &str) -> Option<Arc<TopicInfo>> {
        self.inner
            .topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Drops `name` from the metadata cache (after an error that suggests it is stale).
    pub fn invalidate(&self, name: &str) {
        self.inner
            .topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    /// The connection to the leader of `topic`/`partition`.
    pub async fn leader_connection(
        &self,
        topic: &TopicInfo,
        partition: i32,
    ) -> Result<Arc<Connection>> {
        let p = partition_of(topic, partition)?;
        if p.leader < 0 {
            return Err(ClientError::kafka(
                5,
                format!("leader of {}-{partition}", topic.name),
                None,
            ));
        }
        self.node_connection(p.leader).await
    }
}

/// Looks up partition `partition` of `topic`.
pub(crate) fn partition_of(topic: &TopicInfo, partition: i32) -> Result<&PartitionInfo> {
    usize::try_from(partition)
        .ok()
        .and_then(|i| topic.partitions.get(i))
        .filter(|p| p.partition == partition)
        .or_else(|| topic.partitions.iter().find(|p| p.partition == partition))
        .ok_or_else(|| ClientError::UnknownPartition {
            topic: topic.name.clone(),
            partition,
            count: topic.partitions.len(),
        })
}
