//! weir-log's metrics: handles the writer resolves once, and a collector that reads
//! partition bounds at scrape time so the write path pays nothing for them.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use weir_metrics::names;
use weir_metrics::prometheus::core::{Collector, Desc};
use weir_metrics::prometheus::proto::MetricFamily;
use weir_metrics::prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};

use crate::writer::Published;

/// The writer's handles.
#[derive(Clone)]
pub(crate) struct WriterMetrics {
    pub commit_duration: Histogram,
    pub commit_records: Histogram,
    pub commits: IntCounter,
    pub failures: IntCounter,
    appended_records: IntCounterVec,
    appended_bytes: IntCounterVec,
}

/// One topic's append counters, resolved when the topic is loaded or created.
#[derive(Clone)]
pub(crate) struct TopicCounters {
    pub records: IntCounter,
    pub bytes: IntCounter,
}

impl WriterMetrics {
    pub(crate) fn get() -> Self {
        use weir_metrics::register;
        Self {
            commit_duration: register(names::LOG_COMMIT_DURATION, || {
                Histogram::with_opts(
                    HistogramOpts::new(
                        names::LOG_COMMIT_DURATION,
                        "Time to apply and commit one group of writes, fsync included.",
                    )
                    .buckets(weir_metrics::latency_buckets()),
                )
            }),
            commit_records: register(names::LOG_COMMIT_RECORDS, || {
                Histogram::with_opts(
                    HistogramOpts::new(names::LOG_COMMIT_RECORDS, "Records appended per commit.")
                        .buckets(weir_metrics::count_buckets()),
                )
            }),
            commits: register(names::LOG_COMMITS, || {
                IntCounter::new(names::LOG_COMMITS, "Write transactions committed.")
            }),
            failures: register(names::LOG_COMMIT_FAILURES, || {
                IntCounter::new(
                    names::LOG_COMMIT_FAILURES,
                    "Write transactions that failed.",
                )
            }),
            appended_records: register(names::LOG_APPENDED_RECORDS, || {
                IntCounterVec::new(
                    Opts::new(names::LOG_APPENDED_RECORDS, "Records appended."),
                    &["topic"],
                )
            }),
            appended_bytes: register(names::LOG_APPENDED_BYTES, || {
                IntCounterVec::new(
                    Opts::new(
                        names::LOG_APPENDED_BYTES,
                        "Bytes of record batches appended.",
                    ),
                    &["topic"],
                )
            }),
        }
    }

    pub(crate) fn topic(&self, topic: &str) -> TopicCounters {
        TopicCounters {
            records: self.appended_records.with_label_values(&[topic]),
            bytes: self.appended_bytes.with_label_values(&[topic]),
        }
    }
}

/// Reports sizes and offsets of the most recently opened live log at scrape time.
struct BoundsCollector {
    logs: Mutex<Vec<Weak<Published>>>,
    descs: Vec<Desc>,
}

fn bounds_collector() -> &'static BoundsCollector {
    static C: OnceLock<&'static BoundsCollector> = OnceLock::new();
    C.get_or_init(|| {
        let proto = BoundGauges::new();
        let descs = [
            proto.size.desc(),
            proto.start.desc(),
            proto.end.desc(),
            proto.parts.desc(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        let c: &'static BoundsCollector = Box::leak(Box::new(BoundsCollector {
            logs: Mutex::new(Vec::new()),
            descs,
        }));
        weir_metrics::register_collector(names::LOG_END_OFFSET, Box::new(c));
        c
    })
}

/// The bound gauges, built fresh for each scrape (and once for their descriptions).
struct BoundGauges {
    size: IntGaugeVec,
    start: IntGaugeVec,
    end: IntGaugeVec,
    parts: IntGauge,
}

impl BoundGauges {
    fn new() -> Self {
        let g = |name: &str, help: &str, labels: &[&str]| -> IntGaugeVec {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge")
        };
        Self {
            size: g(
                names::LOG_SIZE,
                "Bytes of record batches stored.",
                &["topic"],
            ),
            start: g(
                names::LOG_START_OFFSET,
                "First offset still stored.",
                &["topic", "partition"],
            ),
            end: g(
                names::LOG_END_OFFSET,
                "Next offset to be written (high watermark).",
                &["topic", "partition"],
            ),
            parts: IntGauge::new(names::LOG_PARTITIONS, "Partitions across all topics.")
                .expect("valid gauge"),
        }
    }

    fn families(&self) -> Vec<MetricFamily> {
        let mut out = self.size.collect();
        out.extend(self.start.collect());
        out.extend(self.end.collect());
        out.extend(self.parts.collect());
        out
    }
}

impl Collector for &'static BoundsCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let live = {
            let mut logs = self.logs.lock().expect("collector lock");
            logs.retain(|w| w.strong_count() > 0);
            logs.last().and_then(Weak::upgrade)
        };
        let Some(published) = live else {
            return Vec::new();
        };
        let gauges = BoundGauges::new();
        let BoundGauges {
            size,
            start,
            end,
            parts,
        } = &gauges;
        let map = published
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (name, t) in map.iter() {
            let mut bytes = 0u64;
            for (p, h) in t.parts.iter().enumerate() {
                let p = p.to_string();
                start
                    .with_label_values(&[name, &p])
                    .set(h.log_start.load(Ordering::Acquire));
                end.with_label_values(&[name, &p])
                    .set(*h.high_watermark.borrow());
                bytes += h.bytes.load(Ordering::Acquire);
            }
            size.with_label_values(&[name]).set(bytes as i64);
            parts.add(t.parts.len() as i64);
        }
        drop(map);
        gauges.families()
    }
}

/// Makes a newly opened log the one whose bounds are reported.
pub(crate) fn watch_log(published: &Arc<Published>) {
    bounds_collector()
        .logs
        .lock()
        .expect("collector lock")
        .push(Arc::downgrade(published));
}

#[cfg(test)]
mod tests {
    use crate::{Log, Record, TopicConfig};

    #[test]
    fn appends_and_bounds_show_in_the_scrape() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path()).unwrap();
        log.create_topic("metrics-t", 2, TopicConfig::default())
            .wait()
            .unwrap();
        let recs: Vec<Record> = (0..5).map(|i| Record::value(i, "v")).collect();
        log.append_records("metrics-t", 1, &recs).wait().unwrap();
        let text = weir_metrics::encode_text();
        assert!(
            text.contains("weir_log_appended_records_total{topic=\"metrics-t\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("weir_log_end_offset{partition=\"1\",topic=\"metrics-t\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("weir_log_end_offset{partition=\"0\",topic=\"metrics-t\"} 0"),
            "{text}"
        );
        assert!(text.contains("weir_log_commits_total"), "{text}");
        assert!(
            text.contains("weir_log_commit_duration_seconds_bucket"),
            "{text}"
        );
    }
}
