//! Metrics as Prometheus sees them: a live scrape of a broker under load, and of a running
//! pipeline, passes `promtool check metrics`; a real Prometheus server scrapes each with the
//! shipped config; and every query of the shipped Grafana dashboards parses, names metrics
//! that the scrape has, and sits under a title that says what it shows.
//!
//! promtool and prometheus come from Debian's `prometheus` package (`.ci/run` installs it).
//! With `WEIR_INTEROP_REQUIRED=1` a missing tool fails the test; elsewhere it is skipped
//! loudly.

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use weir_broker::{Broker, BrokerConfig};
use weir_log::{CommittedOffset, Log, Record, TopicConfig, Unit};
use weir_metrics::MetricsServer;
use weir_stream::metrics::{Metrics, MetricsSnapshot};
use weir_stream::{App, Topic, Tumbling, secs};

/// A tokio runtime on a thread of its own, serving until dropped.
struct Background {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Runs `serve` on the runtime; it sends what the caller needs (its addresses) on the
    /// channel, which `start` returns, and stops when the receiver resolves.
    fn start<A, F>(
        serve: impl FnOnce(mpsc::Sender<A>, oneshot::Receiver<()>) -> F + Send + 'static,
    ) -> (Self, A)
    where
        A: Send + 'static,
        F: Future<Output = ()>,
    {
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(serve(addr_tx, stopped));
        });
        let sent = addr_rx.recv().unwrap();
        let bg = Self {
            stop: Some(stop),
            thread: Some(thread),
        };
        (bg, sent)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A broker and its /metrics endpoint, served from a background runtime.
struct Observed {
    broker: SocketAddr,
    metrics: SocketAddr,
    log: Log,
    _served: Background,
    _dir: tempfile::TempDir,
}

impl Observed {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path()).unwrap();
        let served = log.clone();
        let (bg, (broker, metrics)) = Background::start(|addr_tx, stopped| async move {
            let metrics = MetricsServer::bind("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap()
                .spawn();
            let config = BrokerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                ..BrokerConfig::default()
            };
            let broker = Broker::bind(served, config).await.unwrap();
            addr_tx.send((broker.local_addr(), metrics)).unwrap();
            broker
                .run_until(async { drop(stopped.await) })
                .await
                .unwrap();
        });
        Self {
            broker,
            metrics,
            log,
            _served: bg,
            _dir: dir,
        }
    }
}

/// Whether `tool` runs; in CI a missing one fails the test, elsewhere it is skipped loudly.
fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        common::missing(&format!("{tool} (Debian's prometheus package)"));
    }
    found
}

fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (head.to_string(), body.to_string())
}

/// Load: kcat produces and consumes if it is there; the log is written directly too, and a
/// group commits an offset behind the end, so lag has something to show.
fn load(o: &Observed) {
    o.log
        .create_topic("obs", 2, TopicConfig::default())
        .wait()
        .unwrap();
    let records: Vec<Record> = (0..100)
        .map(|i| Record::keyed(i, format!("k{i}"), "v"))
        .collect();
    for p in 0..2 {
        o.log.append_records("obs", p, &records).wait().unwrap();
    }
    let mut unit = Unit::new();
    let at = CommittedOffset {
        offset: 40,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp: 0,
    };
    unit.commit_offset("obs-readers", "obs", 0, at);
    o.log.commit(unit).wait().unwrap();
    if Command::new("kcat")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok()
    {
        let b = o.broker.to_string();
        let mut p = Command::new("kcat")
            .args(["-b", &b, "-P", "-t", "obs-kcat"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let lines: String = (0..500).map(|i| format!("line {i}\n")).collect();
        p.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
        assert!(p.wait().unwrap().success());
        let out = Command::new("kcat")
            .args([
                "-b",
                &b,
                "-C",
                "-t",
                "obs-kcat",
                "-o",
                "beginning",
                "-e",
                "-q",
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 500);
        // A request weir refuses, so the error counters have a sample.
        let _ = Command::new("kcat")
            .args([
                "-b",
                &b,
                "-C",
                "-t",
                "obs-kcat",
                "-p",
                "7",
                "-o",
                "beginning",
                "-e",
                "-q",
            ])
            .output();
    }
}

#[test]
fn a_live_scrape_passes_promtool_check_metrics() {
    if !have("promtool") {
        return;
    }
    let o = Observed::start();
    load(&o);
    let (head, body) = http_get(o.metrics, "/metrics");
    assert!(
        head.to_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    for name in [
        "weir_broker_requests_total",
        "weir_log_commit_duration_seconds",
        "weir_group_lag",
    ] {
        assert!(
            body.contains(&format!("# TYPE {name} ")),
            "{name} missing from the scrape:\n{body}"
        );
    }
    promtool_check_metrics(&body);
}

/// `promtool check metrics` on a scrape says nothing (no error, no lint).
fn promtool_check_metrics(body: &str) {
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics:\n{said}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn prometheus_scrapes_the_broker_with_the_shipped_config() {
    if !have("prometheus") {
        return;
    }
    let o = Observed::start();
    load(&o);
    let last = prometheus_query(
        ("127.0.0.1:9898", o.metrics),
        "weir_log_appended_records_total%7Btopic%3D%22obs%22%7D",
        "\"topic\":\"obs\"",
    );
    // The counter is the process's: other tests here append too, so at least this one's 200.
    let value: f64 = last
        .rsplit(",\"")
        .next()
        .and_then(|v| v.split('"').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        value >= 200.0,
        "Prometheus should see at least the 200 appended records: {last}"
    );
}

/// Runs Prometheus on loopback with the shipped config, its `target` (as the config has
/// it) pointed at `metrics`, until the instant query `query` (URL-encoded) answers with
/// `want` in it; returns that answer. Fails after 60 s.
fn prometheus_query(target: (&str, SocketAddr), query: &str, want: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(repo().join("dashboards/prometheus.yml")).unwrap();
    // The shipped config with the port this test picked, and a faster scrape.
    let config = shipped
        .replace(target.0, &target.1.to_string())
        .replace("scrape_interval: 5s", "scrape_interval: 1s");
    assert!(
        shipped.contains(target.0),
        "the shipped config no longer scrapes {}",
        target.0
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut server = Command::new("prometheus")
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let found = loop {
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(500));
        if TcpStream::connect(web).is_err() {
            continue;
        }
        let (_, body) = http_get(web, &format!("/api/v1/query?query={query}"));
        last = body;
        if last.contains("\"status\":\"success\"") && last.contains(want) {
            break true;
        }
    };
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        found,
        "Prometheus found no sample of {query} with {want} within 60 s; last answer: {last}"
    );
    last
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every (title, expr) of a dashboard's panels.
fn panels(file: &str) -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(repo().join("dashboards").join(file)).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vars = json["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "{file} needs a Prometheus datasource variable"
    );
    json["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{file}: panel {} ignores the datasource variable",
                p["title"]
            );
            let exprs = p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["expr"].as_str().unwrap().to_string())
                .collect();
            (p["title"].as_str().unwrap().to_string(), exprs)
        })
        .collect()
}

/// The weir metric families an expression reads (histogram series folded to their family).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("weir_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(family.to_string());
        rest = &tail[end..];
    }
    out
}

/// The words of a metric name that say what it measures: not the prefix, the component or
/// the unit.
fn subject_words(metric: &str) -> Vec<String> {
    const NOISE: [&str; 10] = [
        "weir",
        "broker",
        "log",
        "stream",
        "total",
        "seconds",
        "bytes",
        "timestamp",
        "to",
        "by",
    ];
    metric
        .split('_')
        .filter(|w| w.len() > 2 && !NOISE.contains(w))
        .map(str::to_string)
        .collect()
}

/// A title mentions a word if it holds the word's first five letters ("produced" and
/// "Produce" match; "fetched" and "Fetch" too).
fn mentions(title: &str, word: &str) -> bool {
    let stem: String = word.chars().take(5).collect();
    title.to_lowercase().contains(&stem)
}

fn check_dashboard(file: &str, scrape: &str) {
    let promtool = have("promtool");
    let panels = panels(file);
    assert!(panels.len() >= 8, "{file} has only {} panels", panels.len());
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (title, exprs)) in panels.iter().enumerate() {
        assert!(!exprs.is_empty(), "{file}: panel {title:?} queries nothing");
        for (j, e) in exprs.iter().enumerate() {
            let names = metric_names(e);
            assert!(
                !names.is_empty(),
                "{file}: {title:?} queries no weir metric: {e}"
            );
            for n in &names {
                assert!(
                    scrape.contains(&format!("# TYPE {n} ")),
                    "{file}: {title:?} uses {n}, which the live scrape does not have"
                );
                for w in subject_words(n) {
                    assert!(
                        mentions(title, &w),
                        "{file}: panel {title:?} queries {n} but its title does not say {w:?}"
                    );
                }
            }
            let e = e.replace("$__rate_interval", "1m");
            rules.push_str(&format!(
                "      - record: dashboard:panel{i}_{j}\n        expr: '{e}'\n"
            ));
        }
    }
    if promtool {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.yml");
        std::fs::write(&path, &rules).unwrap();
        let out = Command::new("promtool")
            .args(["check", "rules"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool check rules on {file}'s queries:\n{}{}\n{rules}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn broker_dashboard_queries_parse_and_name_live_metrics() {
    let o = Observed::start();
    load(&o);
    let (_, scrape) = http_get(o.metrics, "/metrics");
    check_dashboard("broker.json", &scrape);
}

#[test]
fn titles_are_checked_against_what_panels_query() {
    // The check itself must be able to fail.
    assert!(mentions("Produced records per second", "produced"));
    assert!(!mentions("Fetched records per second", "produced"));
    assert_eq!(
        subject_words("weir_broker_request_duration_seconds"),
        ["request", "duration"]
    );
    assert_eq!(
        metric_names(
            "rate(weir_log_commit_records_sum[1m]) / rate(weir_log_commit_records_count[1m])"
        )
        .len(),
        1
    );
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Click {
    page: String,
    at: i64,
}

/// A windowed pipeline over an embedded log in a tempdir, running in a background runtime
/// with its /metrics endpoint (served by `App::serve_metrics`), fed in-order, late and
/// malformed records.
struct RunningPipeline {
    metrics: SocketAddr,
    /// Event time of the first click: a minute ago, on a window boundary.
    base: i64,
    _running: Background,
    _dir: tempfile::TempDir,
}

fn clicks(times: impl Iterator<Item = i64>) -> Vec<Record> {
    times
        .map(|at| {
            let click = Click {
                page: format!("/p{}", at % 3),
                at,
            };
            Record::value(at, serde_json::to_vec(&click).unwrap())
        })
        .collect()
}

/// Waits up to 30 s for the pipeline's counters to satisfy `done`.
fn wait_for(metrics: &Metrics, what: &str, done: impl Fn(&MetricsSnapshot) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(&metrics.snapshot()) {
        assert!(
            Instant::now() < deadline,
            "the pipeline did not get to {what} in 30 s: {:?}",
            metrics.snapshot()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl RunningPipeline {
    /// Pipeline `name` counts clicks per page in one-second windows.
    fn start(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path()).unwrap();
        log.create_topic("clicks", 1, TopicConfig::default())
            .wait()
            .unwrap();
        let app = App::with_log(log.clone());
        let pipeline = app
            .pipeline(name)
            .checkpoint_interval(Duration::from_millis(100));
        let metrics = pipeline.metrics();
        pipeline
            .source::<Click>(Topic::json("clicks").event_time(|c: &Click| c.at))
            .filter(|c| !c.page.is_empty())
            .key_by(|c| c.page.clone())
            .window(Tumbling::every(secs(1)))
            .late(Topic::json(format!("{name}.late")))
            .count()
            .sink(Topic::json(format!("{name}.counts")));
        let (running, metrics_addr) = Background::start(|addr_tx, stopped| async move {
            let at = app
                .serve_metrics("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            addr_tx.send(at).unwrap();
            app.run_until(async { drop(stopped.await) }).await.unwrap();
        });
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let base = (now - 60_000) / 1000 * 1000;
        // Ten seconds of clicks, in order: the first nine windows close.
        log.append_records("clicks", 0, &clicks((0..200).map(|i| base + i * 50)))
            .wait()
            .unwrap();
        wait_for(&metrics, "its first 200 records", |m| {
            m.records_in >= 200 && m.records_out > 0 && m.checkpoints > 0
        });
        // Late: their window closed a while ago. Malformed: not a click.
        log.append_records("clicks", 0, &clicks((0..3).map(|i| base + i)))
            .wait()
            .unwrap();
        let bad: Vec<Record> = (0..2)
            .map(|i| Record::value(base + 9_999, format!("{{not json {i}")))
            .collect();
        log.append_records("clicks", 0, &bad).wait().unwrap();
        wait_for(&metrics, "the late and malformed records", |m| {
            m.late_records >= 3 && m.dead_letters >= 2
        });
        // More input while it runs, so that the latest checkpoint holds late records too.
        log.append_records("clicks", 0, &clicks((200..220).map(|i| base + i * 50)))
            .wait()
            .unwrap();
        let checkpoints = metrics.snapshot().checkpoints;
        wait_for(&metrics, "a checkpoint after everything", |m| {
            m.records_in >= 225 && m.checkpoints > checkpoints
        });
        Self {
            metrics: metrics_addr,
            base,
            _running: running,
            _dir: dir,
        }
    }
}

/// The value of the one sample `line_start` (name and labels, as the scrape prints them).
fn sample(scrape: &str, line_start: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {line_start} in the scrape:\n{scrape}"))
}

#[test]
fn a_running_pipeline_scrape_passes_promtool_check_metrics() {
    let p = RunningPipeline::start("obs-promtool");
    let (head, body) = http_get(p.metrics, "/metrics");
    assert!(
        head.to_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let pl = "pipeline=\"obs-promtool\"";
    // What the pipeline was fed shows, per operator and per pipeline.
    assert_eq!(
        sample(
            &body,
            &format!("weir_stream_records_in_total{{operator=\"source:clicks\",{pl}}}")
        ),
        225.0
    );
    assert_eq!(
        sample(
            &body,
            &format!("weir_stream_records_out_total{{operator=\"source:clicks\",{pl}}}")
        ),
        223.0,
        "the two malformed records go to the dead letters, not downstream"
    );
    assert!(
        sample(
            &body,
            &format!("weir_stream_records_out_total{{operator=\"sink:obs-promtool.counts\",{pl}}}")
        ) >= 9.0 * 3.0
    );
    assert_eq!(
        sample(&body, &format!("weir_stream_late_records_total{{{pl}}}")),
        3.0
    );
    assert_eq!(
        sample(&body, &format!("weir_stream_dead_letters_total{{{pl}}}")),
        2.0
    );
    assert!(sample(&body, &format!("weir_stream_checkpoints_total{{{pl}}}")) >= 2.0);
    assert_eq!(
        sample(
            &body,
            &format!("weir_stream_checkpoint_failures_total{{{pl}}}")
        ),
        0.0
    );
    // The watermark is the newest event time, 10.95 s after the first.
    assert_eq!(
        sample(
            &body,
            &format!("weir_stream_watermark_timestamp_seconds{{{pl}}}")
        ),
        (p.base + 219 * 50) as f64 / 1000.0
    );
    // The window [10 s, 11 s) is open for each of the three pages.
    assert_eq!(
        sample(&body, &format!("weir_stream_open_windows{{{pl}}}")),
        3.0
    );
    assert_eq!(
        sample(&body, &format!("weir_stream_state_entries{{{pl}}}")),
        3.0
    );
    assert!(sample(&body, &format!("weir_stream_state_bytes{{{pl}}}")) > 0.0);
    assert_eq!(
        sample(
            &body,
            &format!("weir_stream_input_lag{{partition=\"0\",{pl},topic=\"clicks\"}}")
        ),
        0.0
    );
    for histogram in [
        "weir_stream_processing_duration_seconds",
        "weir_stream_end_to_end_latency_seconds",
        "weir_stream_checkpoint_duration_seconds",
        "weir_stream_checkpoint_size_bytes",
    ] {
        assert!(
            sample(&body, &format!("{histogram}_count{{{pl}}}")) > 0.0,
            "{histogram} has no observations"
        );
    }
    // Window results reach the sink at least a minute after their event time (a minute is
    // how old the clicks are), and less than an hour.
    let e2e = "weir_stream_end_to_end_latency_seconds";
    let mean = sample(&body, &format!("{e2e}_sum{{{pl}}}"))
        / sample(&body, &format!("{e2e}_count{{{pl}}}"));
    assert!((45.0..3600.0).contains(&mean), "mean latency {mean} s");
    assert_eq!(
        sample(&body, &format!("{e2e}_bucket{{{pl},le=\"30\"}}")),
        0.0
    );
    if have("promtool") {
        promtool_check_metrics(&body);
    }
}

#[test]
fn prometheus_scrapes_a_pipeline_with_the_shipped_config() {
    if !have("prometheus") {
        return;
    }
    let p = RunningPipeline::start("obs-prometheus");
    let last = prometheus_query(
        ("127.0.0.1:9899", p.metrics),
        "weir_stream_records_in_total%7Bpipeline%3D%22obs-prometheus%22%7D",
        "\"job\":\"weir-pipelines\"",
    );
    assert!(last.contains("\"operator\":\"source:clicks\""), "{last}");
}

#[test]
fn pipelines_dashboard_queries_parse_and_name_live_metrics() {
    let p = RunningPipeline::start("obs-dashboard");
    let (_, scrape) = http_get(p.metrics, "/metrics");
    check_dashboard("pipelines.json", &scrape);
}
