//! weir-broker: a Kafka-protocol TCP server over a [`weir_log::Log`], so unmodified Kafka
//! clients (kcat, librdkafka, kafka-python, Kafka's own tools) produce and consume.
//!
//! Request handling is sans-io ([`Service`]: a request frame in, a response frame out); the
//! TCP loop ([`Broker`]) only moves frames, keeping responses in request order per
//! connection.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use weir_broker::{Broker, BrokerConfig};
//!
//! let log = weir_log::Log::open("data")?;
//! let config = BrokerConfig { listen: "127.0.0.1:0".parse()?, ..BrokerConfig::default() };
//! let broker = Broker::bind(log, config).await?;
//! println!("listening on {}", broker.local_addr());
//! broker.run_until(std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod config;
mod error;
pub mod frame;
mod group;
mod handlers;
mod server;
mod service;
mod shape;

pub use config::{BrokerConfig, DEFAULT_MAX_FRAME_BYTES};
pub use error::BrokerError;
pub use group::GroupSettings;
pub use server::Broker;
pub use service::{BoxFuture, Handled, Reply, SERVED, Service, served_versions};
