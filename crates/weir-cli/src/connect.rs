//! Connecting to a broker with an error that says what to do.

use anyhow::{Context, Result, anyhow};
use clap::Args;
use weir_client::{Client, ClientError};

/// Where the brokers are.
#[derive(Debug, Clone, Args)]
pub struct BrokerAddr {
    /// Broker address(es), HOST:PORT, comma-separated.
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    pub brokers: String,
}

/// Connects, turning "connection refused" into advice.
pub async fn connect(addr: &BrokerAddr) -> Result<Client> {
    match Client::connect(&addr.brokers).await {
        Ok(c) => Ok(c),
        Err(ClientError::Connect { addr, source }) => Err(anyhow!(
            "no broker at {addr} — is `weir broker` running? Start one with \
             `weir broker --data DIR --listen {addr}` or pass --brokers HOST:PORT ({source})"
        )),
        Err(e) => Err(e).with_context(|| format!("cannot talk to the broker at {}", addr.brokers)),
    }
}
