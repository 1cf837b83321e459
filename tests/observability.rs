//! Metrics as Prometheus sees them: a live scrape of a broker under load passes
//! `promtool check metrics`; a real Prometheus server scrapes it with the shipped config;
//! and every query of the shipped Grafana dashboards parses, names metrics that the scrape
//! has, and sits under a title that says what it shows.
//!
//! promtool and prometheus come from Debian's `prometheus` package (`.ci/run` installs it).
//! With `WEIR_INTEROP_REQUIRED=1` a missing tool fails the test; elsewhere it is skipped
//! loudly.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir_broker::{Broker, BrokerConfig};
use weir_log::{CommittedOffset, Log, Record, TopicConfig, Unit};
use weir_metrics::MetricsServer;

/// A broker and its /metrics endpoint, served from a background runtime.
struct Observed {
    broker: SocketAddr,
    metrics: SocketAddr,
    log: Log,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Observed {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path()).unwrap();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = log.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
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
        });
        let (broker, metrics) = addr_rx.recv().unwrap();
        Self {
            broker,
            metrics,
            log,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn required() -> bool {
    std::env::var("WEIR_INTEROP_REQUIRED").is_ok_and(|v| v == "1")
}

fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found || !required(),
        "{tool} is missing and WEIR_INTEROP_REQUIRED=1: run .ci/run's install steps"
    );
    if !found {
        eprintln!(
            "\n*** SKIPPED: {tool} is not installed (CI installs Debian's prometheus package) ***\n"
        );
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
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(repo().join("dashboards/prometheus.yml")).unwrap();
    // The shipped config with the ports this test picked, and a faster scrape.
    let config = shipped
        .replace("127.0.0.1:9898", &o.metrics.to_string())
        .replace("scrape_interval: 5s", "scrape_interval: 1s");
    assert_ne!(
        config, shipped,
        "the shipped config no longer scrapes 127.0.0.1:9898"
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
        let (_, body) = http_get(
            web,
            "/api/v1/query?query=weir_log_appended_records_total%7Btopic%3D%22obs%22%7D",
        );
        last = body;
        if last.contains("\"status\":\"success\"") && last.contains("\"topic\":\"obs\"") {
            break true;
        }
    };
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        found,
        "Prometheus found no weir samples within 60 s; last answer: {last}"
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
