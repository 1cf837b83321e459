//! `weir broker`: serve the Kafka protocol over a weir log until SIGINT/SIGTERM.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use weir_broker::{Broker, BrokerConfig};
use weir_log::{Durability, Log, LogOptions};

use crate::properties;

#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Directory of the log (created if missing).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Address to listen on; port 0 picks a free port (printed on start).
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    pub listen: SocketAddr,
    /// Address clients are told to connect to (default: the bound address).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// A key=value properties file with any of: auto.create.topics.enable,
    /// num.partitions, socket.request.max.bytes, log.durability (fsync|none|interval),
    /// log.flush.interval.ms, log.cache.bytes, log.retention.check.interval.ms.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address of the Prometheus /metrics endpoint (default 127.0.0.1:9898; port 0 picks a
    /// free one, printed on start; "off" serves none).
    #[arg(long, value_name = "HOST:PORT|off")]
    pub metrics_listen: Option<String>,
}

/// Where /metrics is served, and whether the address was asked for (then failing to bind
/// it is an error; the default port being taken only costs a warning).
fn metrics_address(arg: Option<&str>) -> Result<Option<(SocketAddr, bool)>> {
    match arg {
        None => Ok(Some((SocketAddr::from(([127, 0, 0, 1], 9898)), false))),
        Some("off") => Ok(None),
        Some(a) => {
            let addr = a
                .parse()
                .with_context(|| format!("--metrics-listen {a:?} is not HOST:PORT (or \"off\")"))?;
            Ok(Some((addr, true)))
        }
    }
}

/// The broker and log settings that a properties file can change.
#[derive(Debug)]
struct Settings {
    broker: BrokerConfig,
    log: LogOptions,
}

fn apply(pairs: &[(String, String)], settings: &mut Settings) -> Result<()> {
    let mut durability = None::<String>;
    let mut flush_ms = None::<u64>;
    for (key, value) in pairs {
        let bad = || format!("{key}={value:?} is not valid");
        match key.as_str() {
            "auto.create.topics.enable" => {
                settings.broker.auto_create_topics = value
                    .parse()
                    .with_context(|| format!("{key}={value:?}: use true or false"))?;
            }
            "num.partitions" => {
                let n: i32 = value.parse().with_context(bad)?;
                if n < 1 {
                    bail!("{key}={n}: must be at least 1");
                }
                settings.broker.num_partitions = n;
            }
            "socket.request.max.bytes" | "max.frame.bytes" => {
                settings.broker.max_frame_bytes = value.parse().with_context(bad)?;
            }
            "log.durability" => durability = Some(value.to_ascii_lowercase()),
            "log.flush.interval.ms" => flush_ms = Some(value.parse().with_context(bad)?),
            "log.cache.bytes" => settings.log.cache_size = value.parse().with_context(bad)?,
            "log.retention.check.interval.ms" => {
                let ms: u64 = value.parse().with_context(bad)?;
                settings.log.retention_check_interval = (ms > 0).then(|| Duration::from_millis(ms));
            }
            other => bail!(
                "unknown setting {other:?}; known: auto.create.topics.enable, num.partitions, \
                 socket.request.max.bytes, log.durability, log.flush.interval.ms, \
                 log.cache.bytes, log.retention.check.interval.ms"
            ),
        }
    }
    settings.log.durability = match (durability.as_deref(), flush_ms) {
        (None | Some("fsync"), None) => Durability::Fsync,
        (Some("none"), _) => Durability::None,
        (None | Some("interval"), Some(ms)) => Durability::Interval(ms),
        (Some("interval"), None) => Durability::Interval(1000),
        (Some("fsync"), Some(_)) => {
            bail!("log.durability=fsync and log.flush.interval.ms contradict; drop one")
        }
        (Some(other), _) => bail!("log.durability={other:?}: use fsync, interval or none"),
    };
    Ok(())
}

fn parse_advertise(s: &str) -> Result<(String, u16)> {
    let Some((host, port)) = s.rsplit_once(':') else {
        bail!("--advertise {s:?} is not HOST:PORT");
    };
    let port = port
        .parse()
        .with_context(|| format!("--advertise {s:?}: port must be a number 0-65535"))?;
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

pub async fn run(args: BrokerArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let mut settings = Settings {
        broker: BrokerConfig {
            listen: args.listen,
            advertise: args.advertise.as_deref().map(parse_advertise).transpose()?,
            ..BrokerConfig::default()
        },
        log: LogOptions::default(),
    };
    if let Some(path) = &args.config {
        apply(&properties::read(path)?, &mut settings)?;
    }
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("cannot create data directory {}", args.data.display()))?;
    let data = args.data.clone();
    let log_options = settings.log.clone();
    let log = tokio::task::spawn_blocking(move || Log::open_with(&data, log_options))
        .await
        .context("opening the log panicked")?
        .with_context(|| format!("cannot open the log in {}", args.data.display()))?;
    let broker = Broker::bind(log, settings.broker)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = broker.local_addr();
    // The first line on stdout is the contract for scripts and tests.
    println!("weir broker listening on {addr}");
    if let Some((at, asked)) = metrics_address(args.metrics_listen.as_deref())? {
        match weir_metrics::MetricsServer::bind(at).await {
            // On stderr: scripts read stdout's first line only and may close it after.
            Ok(server) => {
                tracing::info!(url = %format!("http://{}/metrics", server.spawn()), "serving metrics")
            }
            Err(e) if !asked => tracing::warn!(
                error = %e,
                "serving no metrics: pass --metrics-listen 127.0.0.1:0 for a free port"
            ),
            Err(e) => return Err(e).context("cannot serve /metrics"),
        }
    }
    tracing::info!(%addr, data = %args.data.display(), "broker started");
    broker
        .run_until(shutdown_signal())
        .await
        .context("broker failed")?;
    tracing::info!("broker stopped; every acknowledged write is committed");
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the broker");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown requested");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            broker: BrokerConfig::default(),
            log: LogOptions::default(),
        }
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn properties_set_broker_and_log_options() {
        let mut s = settings();
        apply(
            &pairs(&[
                ("auto.create.topics.enable", "false"),
                ("num.partitions", "4"),
                ("log.flush.interval.ms", "50"),
            ]),
            &mut s,
        )
        .unwrap();
        assert!(!s.broker.auto_create_topics);
        assert_eq!(s.broker.num_partitions, 4);
        assert_eq!(s.log.durability, Durability::Interval(50));
        let mut s = settings();
        apply(&pairs(&[("log.durability", "none")]), &mut s).unwrap();
        assert_eq!(s.log.durability, Durability::None);
    }

    #[test]
    fn unknown_and_bad_settings_are_errors_that_name_the_key() {
        let e = apply(&pairs(&[("nope", "1")]), &mut settings()).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let e = apply(&pairs(&[("num.partitions", "0")]), &mut settings()).unwrap_err();
        assert!(e.to_string().contains("num.partitions"), "{e}");
    }

    #[test]
    fn advertise_parses_host_and_port() {
        assert_eq!(
            parse_advertise("example:19092").unwrap(),
            ("example".into(), 19092)
        );
        assert_eq!(parse_advertise("[::1]:9092").unwrap(), ("::1".into(), 9092));
        assert!(parse_advertise("nohost").is_err());
    }

    #[test]
    fn metrics_address_defaults_parses_and_turns_off() {
        assert_eq!(
            metrics_address(None).unwrap(),
            Some(("127.0.0.1:9898".parse().unwrap(), false))
        );
        assert_eq!(
            metrics_address(Some("127.0.0.1:0")).unwrap(),
            Some(("127.0.0.1:0".parse().unwrap(), true))
        );
        assert_eq!(metrics_address(Some("off")).unwrap(), None);
        let e = metrics_address(Some("nine")).unwrap_err().to_string();
        assert!(e.contains("--metrics-listen"), "{e}");
    }
}
