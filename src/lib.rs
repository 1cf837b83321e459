//! weir: stream processing on its own Kafka-compatible log.
//!
//! This facade re-exports weir's crates; see the README for the map.

pub use weir_broker as broker;
pub use weir_client as client;
pub use weir_log as log;
pub use weir_metrics as metrics;
pub use weir_stream as stream;
pub use weir_stream::{App, Topic};
