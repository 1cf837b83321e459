//! How a broker listens, what it advertises, and what it does for topics nobody created.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::group::GroupSettings;

/// Default largest request frame: 100 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 100 << 20;

/// A broker's settings. `Default` gives Kafka's defaults on 127.0.0.1:9092.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Address to listen on; port 0 picks a free port ([`crate::Broker::local_addr`] tells it).
    pub listen: SocketAddr,
    /// Host and port clients are told to connect to (Metadata). `None`: the listen address,
    /// with 127.0.0.1 for an unspecified IP such as 0.0.0.0.
    pub advertise: Option<(String, u16)>,
    /// Create a topic on first Metadata or Produce naming it (`auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic, and of CreateTopics asking for -1 (`num.partitions`).
    pub num_partitions: i32,
    /// Largest request frame accepted, in bytes; a larger one closes the connection.
    pub max_frame_bytes: usize,
    /// Cluster id reported in Metadata v2+.
    pub cluster_id: String,
    /// Most requests of one connection read ahead of their responses (pipelining depth).
    pub max_in_flight_per_connection: usize,
    /// On shutdown, how long connections get to finish their in-flight requests.
    pub shutdown_grace: Duration,
    /// Consumer group limits and delays.
    pub groups: GroupSettings,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9092)),
            advertise: None,
            auto_create_topics: true,
            num_partitions: 1,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            cluster_id: "weir-cluster".to_string(),
            max_in_flight_per_connection: 64,
            shutdown_grace: Duration::from_secs(10),
            groups: GroupSettings::default(),
        }
    }
}

impl BrokerConfig {
    /// The host and port to advertise, given the address actually bound.
    pub fn advertised(&self, bound: SocketAddr) -> (String, u16) {
        match &self.advertise {
            Some((h, p)) => (h.clone(), *p),
            None if bound.ip().is_unspecified() => ("127.0.0.1".to_string(), bound.port()),
            None => (bound.ip().to_string(), bound.port()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_defaults_to_loopback_for_unspecified_ip() {
        let c = BrokerConfig::default();
        let any: SocketAddr = "0.0.0.0:9093".parse().unwrap();
        assert_eq!(c.advertised(any), ("127.0.0.1".to_string(), 9093));
        let lo: SocketAddr = "127.0.0.2:1".parse().unwrap();
        assert_eq!(c.advertised(lo), ("127.0.0.2".to_string(), 1));
        let c = BrokerConfig {
            advertise: Some(("kafka.example".into(), 19092)),
            ..c
        };
        assert_eq!(c.advertised(lo), ("kafka.example".to_string(), 19092));
    }
}
