//! The broker's metrics: per-API request counts, errors and latency, connections, bytes and
//! records in and out per topic, and consumer-group lag computed at scrape time.
//!
//! Handles are resolved once per API key and per topic; the request path does no label
//! lookup.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use kafka_protocol::messages::ApiKey;

use crate::service::Ctx;
use weir_metrics::names;
use weir_metrics::prometheus::core::{Collector, Desc};
use weir_metrics::prometheus::proto::MetricFamily;
use weir_metrics::prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};

/// One API's handles.
#[derive(Clone)]
pub(crate) struct ApiMetrics {
    name: &'static str,
    requests: IntCounter,
    errors: IntCounter,
    duration: Histogram,
}

impl ApiMetrics {
    /// The API's name, as the `api` label has it.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// Counts one request that took from `started` until now; `failed` if it was answered
    /// with an error or closed its connection.
    pub(crate) fn observe(&self, started: Instant, failed: bool) {
        self.requests.inc();
        if failed {
            self.errors.inc();
        }
        self.duration.observe(started.elapsed().as_secs_f64());
    }

    /// Counts an error found after the request was counted (a partition refused).
    pub(crate) fn error(&self) {
        self.errors.inc();
    }
}

/// One topic's traffic counters.
#[derive(Clone)]
pub(crate) struct TopicIo {
    pub records: IntCounter,
    pub bytes: IntCounter,
}

pub(crate) struct BrokerMetrics {
    apis: HashMap<i16, ApiMetrics>,
    unknown_api: ApiMetrics,
    pub connections: IntGauge,
    pub accepted: IntCounter,
    produced: (IntCounterVec, IntCounterVec),
    fetched: (IntCounterVec, IntCounterVec),
    produced_topics: Mutex<HashMap<String, TopicIo>>,
    fetched_topics: Mutex<HashMap<String, TopicIo>>,
}

fn counter_vec(name: &str, help: &str, label: &str) -> IntCounterVec {
    weir_metrics::register(name, || IntCounterVec::new(Opts::new(name, help), &[label]))
}

/// The broker's metrics, registered on first use.
pub(crate) fn broker() -> &'static BrokerMetrics {
    static M: OnceLock<BrokerMetrics> = OnceLock::new();
    M.get_or_init(|| {
        let requests = counter_vec(names::BROKER_REQUESTS, "Requests handled, by Kafka API.", "api");
        let errors = counter_vec(
            names::BROKER_REQUEST_ERRORS,
            "Error codes answered (per partition where the API is) and connections closed on a bad request, by Kafka API.",
            "api",
        );
        let duration = weir_metrics::register(names::BROKER_REQUEST_DURATION, || {
            HistogramVec::new(
                HistogramOpts::new(
                    names::BROKER_REQUEST_DURATION,
                    "Time from a request's arrival to its response being ready, by Kafka API.",
                )
                .buckets(weir_metrics::latency_buckets()),
                &["api"],
            )
        });
        let api = |name: &str| ApiMetrics {
            name: Box::leak(name.to_string().into_boxed_str()),
            requests: requests.with_label_values(&[name]),
            errors: errors.with_label_values(&[name]),
            duration: duration.with_label_values(&[name]),
        };
        let apis = crate::service::SERVED
            .iter()
            .map(|(k, _, _)| (*k as i16, api(&format!("{k:?}"))))
            .collect();
        BrokerMetrics {
            apis,
            unknown_api: api("Other"),
            connections: weir_metrics::register(names::BROKER_CONNECTIONS, || {
                IntGauge::new(names::BROKER_CONNECTIONS, "Open client connections.")
            }),
            accepted: weir_metrics::register(names::BROKER_CONNECTIONS_ACCEPTED, || {
                IntCounter::new(names::BROKER_CONNECTIONS_ACCEPTED, "Client connections accepted.")
            }),
            produced: (
                counter_vec(names::BROKER_PRODUCED_RECORDS, "Records produced.", "topic"),
                counter_vec(names::BROKER_PRODUCED_BYTES, "Bytes of record batches produced.", "topic"),
            ),
            fetched: (
                counter_vec(names::BROKER_FETCHED_RECORDS, "Records served to fetches.", "topic"),
                counter_vec(
                    names::BROKER_FETCHED_BYTES,
                    "Bytes of record batches served to fetches.",
                    "topic",
                ),
            ),
            produced_topics: Mutex::new(HashMap::new()),
            fetched_topics: Mutex::new(HashMap::new()),
        }
    })
}

fn topic_io(
    cache: &Mutex<HashMap<String, TopicIo>>,
    vecs: &(IntCounterVec, IntCounterVec),
    topic: &str,
) -> TopicIo {
    let mut map = cache.lock().expect("topic metrics lock");
    if let Some(t) = map.get(topic) {
        return t.clone();
    }
    let t = TopicIo {
        records: vecs.0.with_label_values(&[topic]),
        bytes: vecs.1.with_label_values(&[topic]),
    };
    map.insert(topic.to_string(), t.clone());
    t
}

impl BrokerMetrics {
    /// The handles of the API whose key starts `frame`.
    pub(crate) fn api(&self, frame: &[u8]) -> &ApiMetrics {
        let key = frame.get(0..2).map(|b| i16::from_be_bytes([b[0], b[1]]));
        key.and_then(|k| self.apis.get(&k))
            .unwrap_or(&self.unknown_api)
    }

    /// The handles of a served API.
    pub(crate) fn api_key(&self, key: ApiKey) -> &ApiMetrics {
        self.apis.get(&(key as i16)).unwrap_or(&self.unknown_api)
    }

    /// Counts records and bytes produced to `topic`.
    pub(crate) fn produced(&self, topic: &str, records: u64, bytes: u64) {
        let t = topic_io(&self.produced_topics, &self.produced, topic);
        t.records.inc_by(records);
        t.bytes.inc_by(bytes);
    }

    /// Counts records and bytes served from `topic`.
    pub(crate) fn fetched(&self, topic: &str, records: u64, bytes: u64) {
        let t = topic_io(&self.fetched_topics, &self.fetched, topic);
        t.records.inc_by(records);
        t.bytes.inc_by(bytes);
    }
}

/// Consumer groups at scrape time: lag (each group's committed offset against the end
/// offset), members, and generations. Holds the broker weakly: a closed broker is not kept.
struct GroupCollector {
    ctx: Mutex<Weak<Ctx>>,
    descs: Vec<Desc>,
}

fn group_families() -> (IntGaugeVec, IntGaugeVec, IntCounterVec) {
    let lag = IntGaugeVec::new(
        Opts::new(
            names::GROUP_LAG,
            "End offset minus the group's committed offset.",
        ),
        &["group", "topic", "partition"],
    );
    let members = IntGaugeVec::new(
        Opts::new(names::GROUP_MEMBERS, "Members of the group."),
        &["group"],
    );
    let rebalances = IntCounterVec::new(
        Opts::new(
            names::GROUP_REBALANCES,
            "Rebalances completed: the group's generation.",
        ),
        &["group"],
    );
    (
        lag.expect("valid gauge"),
        members.expect("valid gauge"),
        rebalances.expect("valid counter"),
    )
}

impl Collector for &'static GroupCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(ctx) = self.ctx.lock().expect("group collector lock").upgrade() else {
            return Vec::new();
        };
        let (lag, members, rebalances) = group_families();
        let log = &ctx.log;
        let with_offsets = log.groups_with_offsets().unwrap_or_default();
        for group in &with_offsets {
            for (topic, p, committed) in log.group_offsets(group).unwrap_or_default() {
                if let Ok(b) = log.bounds(&topic, p) {
                    let behind = (b.high_watermark - committed.offset.max(b.log_start)).max(0);
                    lag.with_label_values(&[group, &topic, &p.to_string()])
                        .set(behind);
                }
            }
        }
        {
            // Groups with only committed offsets show too, with no members.
            let coordinator = ctx.groups.lock();
            let mut groups: Vec<String> =
                coordinator.list().into_iter().map(|(g, _, _)| g).collect();
            groups.extend(with_offsets);
            groups.sort();
            groups.dedup();
            for group in groups {
                let d = coordinator.describe(&group);
                let (n, generation) = d.map_or((0, 0), |d| (d.members.len(), d.generation.max(0)));
                members.with_label_values(&[&group]).set(n as i64);
                rebalances
                    .with_label_values(&[&group])
                    .inc_by(generation as u64);
            }
        }
        let mut out = lag.collect();
        out.extend(members.collect());
        out.extend(rebalances.collect());
        out
    }
}

/// Reports the groups of this broker (the latest one started in the process).
pub(crate) fn watch_groups(ctx: &Arc<Ctx>) {
    static C: OnceLock<&'static GroupCollector> = OnceLock::new();
    let c = C.get_or_init(|| {
        let (lag, members, rebalances) = group_families();
        let descs = [lag.desc(), members.desc(), rebalances.desc()]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let c: &'static GroupCollector = Box::leak(Box::new(GroupCollector {
            ctx: Mutex::new(Weak::new()),
            descs,
        }));
        weir_metrics::register_collector(names::GROUP_LAG, Box::new(c));
        c
    });
    *c.ctx.lock().expect("group collector lock") = Arc::downgrade(ctx);
}
