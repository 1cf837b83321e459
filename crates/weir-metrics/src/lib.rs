//! weir-metrics: one Prometheus registry per process, every metric name as a constant in
//! [`names`], and a `/metrics` endpoint in Prometheus' text format.
//!
//! Instrumented code resolves its handles once (at open, per topic, per operator) and keeps
//! them: no label lookup per record.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

pub use prometheus;
use prometheus::core::Collector;
use prometheus::{Encoder, Registry, TextEncoder};

mod http;
pub mod names;

pub use http::{MetricsError, MetricsServer};

/// The content type of the text exposition format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The process's registry.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::new)
}

/// Collectors registered so far, by name, so that opening a second log or pipeline in the
/// same process shares the first one's metric families instead of failing to register.
fn registered() -> &'static Mutex<HashMap<String, Box<dyn Any + Send>>> {
    static MAP: OnceLock<Mutex<HashMap<String, Box<dyn Any + Send>>>> = OnceLock::new();
    MAP.get_or_init(Default::default)
}

/// Registers the collector `make` builds under `name`, or returns the one registered before.
///
/// Panics if `make` builds an invalid metric (a bad name or help): that is a bug in weir,
/// not something input can cause.
pub fn register<C>(name: &str, make: impl FnOnce() -> prometheus::Result<C>) -> C
where
    C: Collector + Clone + Send + 'static,
{
    let mut map = registered().lock().expect("metrics map lock");
    if let Some(c) = map.get(name).and_then(|c| c.downcast_ref::<C>()) {
        return c.clone();
    }
    let c = make().unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
    registry()
        .register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric {name} cannot be registered: {e}"));
    map.insert(name.to_string(), Box::new(c.clone()));
    c
}

/// Registers a collector that computes its samples at scrape time (log sizes, offsets, lag).
/// A second collector of the same `name` replaces nothing and is dropped.
pub fn register_collector(name: &str, c: Box<dyn Collector>) {
    let mut map = registered().lock().expect("metrics map lock");
    if map.contains_key(name) {
        return;
    }
    if let Err(e) = registry().register(c) {
        tracing::warn!(metric = name, error = %e, "collector not registered");
        return;
    }
    map.insert(name.to_string(), Box::new(()));
}

/// Every metric of the registry in the text exposition format.
pub fn encode_text() -> String {
    let mut buf = Vec::new();
    // Encoding our own registry into memory cannot fail short of a bug in prometheus.
    let _ = TextEncoder::new().encode(&registry().gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// Buckets for latencies from 50 µs to 10 s.
pub fn latency_buckets() -> Vec<f64> {
    vec![
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
        1.0, 2.5, 5.0, 10.0,
    ]
}

/// Buckets for counts from 1 to 1M, by powers of 4.
pub fn count_buckets() -> Vec<f64> {
    (0..11).map(|i| 4f64.powi(i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{IntCounterVec, Opts};

    #[test]
    fn registering_twice_shares_one_family() {
        let make =
            || IntCounterVec::new(Opts::new("weir_test_things_total", "Things."), &["topic"]);
        let a = register("weir_test_things_total", make);
        let b = register("weir_test_things_total", make);
        a.with_label_values(&["t"]).inc();
        b.with_label_values(&["t"]).inc();
        let text = encode_text();
        assert!(
            text.contains("weir_test_things_total{topic=\"t\"} 2"),
            "{text}"
        );
    }
}
