//! What the examples share: logging to stderr filtered by `RUST_LOG`, and where they serve
//! their metrics.

use std::io::IsTerminal;
use std::net::SocketAddr;

/// Logs to stderr at `RUST_LOG`'s levels (`info` if unset; e.g. `RUST_LOG=weir_stream=debug`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Where to serve /metrics: `--metrics-listen ADDR` if given, else 127.0.0.1:9899 (the
/// pipelines' target in dashboards/prometheus.yml).
#[allow(dead_code)] // Not every example runs a pipeline.
pub fn metrics_listen() -> anyhow::Result<SocketAddr> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--metrics-listen" {
            let v = args.next().ok_or_else(|| {
                anyhow::anyhow!("--metrics-listen needs an address, e.g. 127.0.0.1:0")
            })?;
            return v
                .parse()
                .map_err(|e| anyhow::anyhow!("--metrics-listen {v:?}: {e} (want IP:PORT)"));
        }
    }
    Ok(SocketAddr::from(([127, 0, 0, 1], 9899)))
}
