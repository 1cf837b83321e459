//! What the example jobs share: logging (filtered by `RUST_LOG`), the command line, the
//! deterministic event clock and random numbers, appending generated events to the log, the
//! run's topic prefix, the /metrics endpoint, progress bars, a top-N operator and result
//! tables.
//!
//! Each example uses only part of this module.
#![allow(dead_code)]

pub mod bridge;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use weir::App;
use weir::log::{Log, Record, TopicConfig};
use weir::stream::metrics::Metrics;
use weir::stream::{Context, Event, Key, Operator, Stream, Windowed};

/// 2026-01-01T00:00:00Z: where generated event time starts.
pub const EPOCH_MS: i64 = 1_767_225_600_000;

/// Command-line options every example takes.
#[derive(Debug, Clone)]
pub struct Args {
    /// Events to generate.
    pub events: u64,
    /// Events per second of event time.
    pub rate: f64,
    /// Random seed: the same seed gives the same events.
    pub seed: u64,
    /// Where the embedded log lives.
    pub data: PathBuf,
    /// A remote broker: the generated events go there first (nexmark: its input is read
    /// from there), and the results are produced back (see [`bridge`]).
    pub brokers: Option<String>,
    /// Where /metrics listens; `None` when turned off.
    pub metrics_listen: Option<SocketAddr>,
    /// Read events from this topic instead of generating them (nexmark only).
    pub input_topic: Option<String>,
    /// Write results to this topic as JSON (nexmark only).
    pub output_topic: Option<String>,
}

/// How the job reads its input: the generator's settings and the stream's disorder.
#[derive(Debug, Clone, Copy)]
pub struct Gen {
    /// Events to generate.
    pub events: u64,
    /// Events per second of event time.
    pub rate: f64,
    /// Random seed.
    pub seed: u64,
}

impl Args {
    /// Parses `std::env::args`, with the example's own defaults.
    pub fn parse(example: &str, events: u64, rate: f64) -> anyhow::Result<Self> {
        Self::parse_from(example, events, rate, std::env::args().skip(1))
    }

    /// Parses `args` (without the program name).
    pub fn parse_from(
        example: &str,
        events: u64,
        rate: f64,
        args: impl IntoIterator<Item = String>,
    ) -> anyhow::Result<Self> {
        let mut a = Args {
            events,
            rate,
            seed: 42,
            data: PathBuf::from("weir-data"),
            brokers: None,
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], PIPELINE_METRICS_PORT))),
            input_topic: None,
            output_topic: None,
        };
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let (flag, inline) = match flag.split_once('=') {
                Some((f, v)) => (f.to_string(), Some(v.to_string())),
                None => (flag, None),
            };
            if flag == "--help" || flag == "-h" {
                println!("{}", usage(example, events, rate));
                std::process::exit(0);
            }
            let Some(value) = inline.or_else(|| it.next()) else {
                bail!("{flag} needs a value\n\n{}", usage(example, events, rate));
            };
            let bad = |what: &str| {
                anyhow::anyhow!(
                    "{flag} {value:?}: expected {what}\n\n{}",
                    usage(example, events, rate)
                )
            };
            match flag.as_str() {
                "--events" => {
                    a.events = value.replace('_', "").parse().map_err(|_| bad("a count"))?
                }
                "--rate" => {
                    a.rate = value.parse().map_err(|_| bad("events per second"))?;
                    if !(a.rate > 0.0 && a.rate.is_finite()) {
                        return Err(bad("a positive number of events per second"));
                    }
                }
                "--seed" => a.seed = value.parse().map_err(|_| bad("an unsigned integer"))?,
                "--data" => a.data = PathBuf::from(value),
                "--brokers" => a.brokers = Some(value),
                "--metrics-listen" => {
                    a.metrics_listen = if value == "off" {
                        None
                    } else {
                        Some(value.parse().map_err(|_| bad("HOST:PORT or off"))?)
                    }
                }
                "--input-topic" if example == "nexmark" => a.input_topic = Some(value),
                "--output-topic" if example == "nexmark" => a.output_topic = Some(value),
                _ => bail!("unknown option {flag}\n\n{}", usage(example, events, rate)),
            }
        }
        if let (Some(b), "nexmark", None) = (&a.brokers, example, &a.input_topic) {
            bail!(
                "--brokers {b}: nexmark reads bids from the broker in remote mode: add \
                 --input-topic T (a topic of JSON bids there), or leave out --brokers to \
                 generate them into {}",
                a.data.display()
            );
        }
        Ok(a)
    }

    /// The generator's settings.
    pub fn gen_settings(&self) -> Gen {
        Gen {
            events: self.events,
            rate: self.rate,
            seed: self.seed,
        }
    }
}

fn usage(example: &str, events: u64, rate: f64) -> String {
    let mut s = format!(
        "usage: cargo run --release --example {example} -- [options]\n\
         \x20 --events N              events to generate (default {events})\n\
         \x20 --rate R                events per second of event time (default {rate})\n\
         \x20 --seed S                random seed (default 42)\n\
         \x20 --data DIR              the embedded log (default ./weir-data)\n\
         \x20 --metrics-listen ADDR   /metrics address, port 0 picks one, or off (default 127.0.0.1:9899)\n\
         \x20 --brokers HOST:PORT     a remote broker: "
    );
    if example == "nexmark" {
        s.push_str("read bids from it (with --input-topic), results back to it");
    } else {
        s.push_str(&format!(
            "events go to topic {example}.* there, results back to it"
        ));
    }
    if example == "nexmark" {
        s.push_str(
            "\n  --input-topic T         read JSON bids from topic T instead of generating\n\
             \x20 --output-topic T        write each query's results to T as JSON",
        );
    }
    s
}

/// A small deterministic random generator (SplitMix64): the same seed gives the same
/// events on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`; `stream` separates the draws of different purposes.
    pub fn new(seed: u64, stream: u64) -> Self {
        Self(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Skewed towards 0 in `0..n`: a few keys get most of the events, as pages and
    /// symbols do.
    pub fn skewed(&mut self, n: u64) -> u64 {
        let u = self.unit();
        ((u * u * u) * n as f64) as u64 % n.max(1)
    }
}

/// Whether a generated event arrives in order, a little out of order (within the stream's
/// out-of-orderness, so never late), or late (behind every window it falls in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Arrival {
    /// In event-time order.
    InOrder,
    /// Behind the latest event by less than the out-of-orderness bound.
    OutOfOrder,
    /// Far behind: its windows have closed by the time it arrives.
    Late,
}

/// The event clock of a generated stream: event times at `rate` per second, 5% of them
/// out of order by up to `disorder_ms`, 0.5% late by more than `late_ms`.
#[derive(Debug, Clone)]
pub struct Clock {
    rng: Rng,
    step_ms: f64,
    disorder_ms: i64,
    late_ms: i64,
    i: u64,
}

impl Clock {
    /// A clock for `g`. `disorder_ms` must stay below the stream's out-of-orderness;
    /// `late_ms` above any window size plus grace plus out-of-orderness.
    pub fn new(g: &Gen, disorder_ms: i64, late_ms: i64) -> Self {
        // A batch the pipeline reads spans a few thousand events; late events are at least
        // that far behind too, so the watermark has passed them whichever batch they are in.
        let step_ms = 1000.0 / g.rate;
        let late_ms = late_ms + (5_000.0 * step_ms) as i64;
        Self {
            rng: Rng::new(g.seed, 0xC10C),
            step_ms,
            disorder_ms,
            late_ms,
            i: 0,
        }
    }

    /// The next event's time and how it arrives.
    pub fn tick(&mut self) -> (i64, Arrival) {
        let now = EPOCH_MS + (self.i as f64 * self.step_ms) as i64;
        self.i += 1;
        let elapsed = now - EPOCH_MS;
        if elapsed > 2 * self.late_ms && self.rng.chance(0.005) {
            let behind = self.late_ms + self.rng.below(self.late_ms as u64) as i64;
            return (now - behind, Arrival::Late);
        }
        if self.disorder_ms > 0 && self.rng.chance(0.05) {
            let behind = 1 + self.rng.below(self.disorder_ms as u64) as i64;
            return ((now - behind).max(EPOCH_MS), Arrival::OutOfOrder);
        }
        (now, Arrival::InOrder)
    }
}

/// A run's names: topics and pipelines are prefixed `<example>.r<N>.` so that examples do
/// not collide, and each run starts fresh (a pipeline's checkpoint is kept under its name).
///
/// In remote mode (`brokers`) the generated input goes through the broker (see
/// [`append_generated`]) and the topics named with [`Run::output`] are produced back to it
/// by [`push_outputs`].
#[derive(Debug, Clone)]
pub struct Run {
    /// The prefix, ending in a dot.
    pub prefix: String,
    /// The example's name.
    pub example: String,
    /// The remote broker, if any.
    pub brokers: Option<String>,
    /// The result topics named so far.
    outputs: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Run {
    /// Picks the next run number for `example` and deletes the topics of its earlier runs.
    pub async fn fresh(log: &Log, example: &str) -> anyhow::Result<Self> {
        let mine = format!("{example}.r");
        let number = |name: &str| -> Option<u64> {
            name.strip_prefix(&mine)?.split('.').next()?.parse().ok()
        };
        let mut next = 0;
        for g in log.groups_with_offsets()? {
            if let Some(n) = number(&g) {
                next = next.max(n + 1);
            }
        }
        for t in log.topics() {
            if let Some(n) = number(&t.name) {
                next = next.max(n + 1);
                log.delete_topic(&t.name)
                    .await
                    .with_context(|| format!("deleting {} of an earlier run", t.name))?;
            }
        }
        Ok(Self {
            prefix: format!("{example}.r{next}."),
            example: example.to_string(),
            brokers: None,
            outputs: Arc::default(),
        })
    }

    /// This run in remote mode: through the broker at `brokers`.
    pub fn remote(mut self, brokers: Option<String>) -> Self {
        self.brokers = brokers;
        self
    }

    /// The name of a result topic under this run's prefix, remembered for
    /// [`push_outputs`].
    pub fn output(&self, what: &str) -> String {
        let name = self.name(what);
        let mut outputs = self.outputs.lock().unwrap_or_else(|e| e.into_inner());
        if !outputs.contains(&name) {
            outputs.push(name.clone());
        }
        name
    }

    /// The result topics named with [`Run::output`], in the order named.
    pub fn outputs(&self) -> Vec<String> {
        self.outputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A name under this run's prefix.
    pub fn name(&self, what: &str) -> String {
        format!("{}{what}", self.prefix)
    }
}

/// Appends `(event time, value)` pairs as JSON records to partition 0 of `topic`, in log
/// order, showing progress if `show`.
pub async fn append_json<T: Serialize>(
    log: &Log,
    topic: &str,
    events: &[(i64, T)],
    show: bool,
) -> anyhow::Result<()> {
    if log.topic(topic).is_none() {
        log.create_topic(topic, 1, TopicConfig::default()).await?;
    }
    let bar = progress(show, events.len() as u64, &format!("writing {topic}"));
    // Batches of 1,000 keep each read of the pipeline short in event time (late events are
    // generated behind by more than a few reads). Several appends are in flight at once so
    // that they share commits; the writer applies them in the order they were sent.
    let mut inflight = std::collections::VecDeque::new();
    for chunk in events.chunks(1_000) {
        let records = chunk
            .iter()
            .map(|(t, v)| Ok(Record::value(*t, serde_json::to_vec(v)?)))
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        inflight.push_back((log.append_records(topic, 0, &records), chunk.len() as u64));
        if inflight.len() >= 32
            && let Some((p, n)) = inflight.pop_front()
        {
            p.await?;
            bar.inc(n);
        }
    }
    for (p, n) in inflight {
        p.await?;
        bar.inc(n);
    }
    bar.finish_and_clear();
    Ok(())
}

/// Appends generated events (in their order, with their event times) to the run's topic
/// `input` and returns its name. In remote mode they are produced as JSON to topic
/// `<example>.<input>` at the broker first (where outside consumers see them) and copied
/// from there.
pub async fn append_generated<T: Serialize>(
    log: &Log,
    run: &Run,
    input: &str,
    events: &[(T, Arrival)],
    time: impl Fn(&T) -> i64,
    show: bool,
) -> anyhow::Result<String> {
    let topic = run.name(input);
    let Some(brokers) = &run.brokers else {
        let records: Vec<(i64, &T)> = events.iter().map(|(e, _)| (time(e), e)).collect();
        append_json(log, &topic, &records, show).await?;
        return Ok(topic);
    };
    let records = events
        .iter()
        .map(|(e, _)| Ok(Record::value(time(e), serde_json::to_vec(e)?)))
        .collect::<Result<Vec<_>, serde_json::Error>>()?;
    let remote = format!("{}.{input}", run.example);
    let n = bridge::round_trip(records, brokers, &remote, log, &topic, show).await?;
    if show {
        println!(
            "produced {} events to {remote} at {brokers} and copied them into {topic}",
            thousands(n)
        );
    }
    Ok(topic)
}

/// In remote mode, produces each result topic of the run ([`Run::output`]) to the broker
/// under the same name and says where they went; returns (topic, records) of each. Does
/// nothing without a broker.
pub async fn push_outputs(log: &Log, run: &Run, show: bool) -> anyhow::Result<Vec<(String, u64)>> {
    let Some(brokers) = &run.brokers else {
        return Ok(Vec::new());
    };
    let mut pushed = Vec::new();
    for topic in run.outputs() {
        let n = bridge::push(log, &topic, brokers, &topic, show).await?;
        pushed.push((topic, n));
    }
    if show {
        println!("\nresults produced to the broker at {brokers}:");
        for (topic, n) in &pushed {
            println!("  {topic} ({} records)", thousands(n));
        }
    }
    Ok(pushed)
}

/// How many events arrived in order, out of order and late.
pub fn arrivals<T>(events: &[(T, Arrival)]) -> [u64; 3] {
    let mut n = [0; 3];
    for (_, a) in events {
        n[*a as usize] += 1;
    }
    n
}

/// "2,000 clicks (1,890 in order, 99 out of order, 11 late)".
pub fn described(what: &str, arrivals: [u64; 3]) -> String {
    format!(
        "{} {what} ({} in order, {} out of order, {} late)",
        thousands(arrivals.iter().sum::<u64>()),
        thousands(arrivals[0]),
        thousands(arrivals[1]),
        thousands(arrivals[2])
    )
}

/// Reads every record of partition 0 of `topic` (none if there is no such topic).
pub fn read_all(log: &Log, topic: &str) -> anyhow::Result<Vec<Record>> {
    let mut out = Vec::new();
    if log.topic(topic).is_none() {
        return Ok(out);
    }
    let end = log.bounds(topic, 0)?.high_watermark;
    let mut offset = log.bounds(topic, 0)?.log_start;
    while offset < end {
        let records = log.read(topic, 0, offset, 4 << 20)?.decode_from(offset)?;
        let Some(last) = records.last() else { break };
        offset = last.offset + 1;
        out.extend(records.into_iter().map(|r| Record {
            key: r.key,
            value: r.value,
            headers: r.headers,
            timestamp: r.timestamp,
        }));
    }
    Ok(out)
}

/// Reads every JSON value of partition 0 of `topic`.
pub fn read_json<T: serde::de::DeserializeOwned>(log: &Log, topic: &str) -> anyhow::Result<Vec<T>> {
    read_all(log, topic)?
        .iter()
        .map(|r| {
            serde_json::from_slice(r.value.as_deref().unwrap_or_default())
                .with_context(|| format!("a record of {topic} is not the JSON expected"))
        })
        .collect()
}

/// A progress bar on stderr (hidden when `show` is false or stderr is not a terminal).
pub fn progress(show: bool, total: u64, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:<32} [{bar:30}] {human_pos}/{human_len} ({elapsed}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// What every example does first: parse the command line (with its default event count
/// and rate), serve /metrics, open the log and pick a fresh run.
pub async fn start(example: &str, events: u64, rate: f64) -> anyhow::Result<(Args, App, Run)> {
    init_logging();
    let args = Args::parse(example, events, rate)?;
    serve_metrics(args.metrics_listen).await?;
    let app = App::open(&args.data).with_context(|| format!("opening {}", args.data.display()))?;
    let run = Run::fresh(app.log(), example)
        .await?
        .remote(args.brokers.clone());
    Ok((args, app, run))
}

/// Where the examples serve /metrics by default: the pipelines' target in
/// dashboards/prometheus.yml (a broker has 9898).
pub const PIPELINE_METRICS_PORT: u16 = 9899;

/// Logs to stderr at `RUST_LOG`'s levels: `warn` if unset, so that the progress bars stay
/// readable; `RUST_LOG=info` adds a line per checkpoint (its pipeline, records, bytes and
/// duration), `RUST_LOG=weir_stream=debug` more.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Starts /metrics if asked to, and says where it is.
pub async fn serve_metrics(addr: Option<SocketAddr>) -> anyhow::Result<()> {
    if let Some(addr) = addr {
        let server = weir::metrics::MetricsServer::bind(addr).await?;
        let at = server.spawn();
        println!("metrics: http://{at}/metrics (while the job runs)");
    }
    Ok(())
}

/// Runs the app's pipelines to the end of their inputs, with a progress bar fed by their
/// input counters (`expected` records in all); returns how long it took.
pub async fn run_to_end(
    app: &App,
    metrics: &[Arc<Metrics>],
    expected: u64,
    show: bool,
    what: &str,
) -> anyhow::Result<Duration> {
    let bar = progress(show, expected, what);
    let ticker = {
        let bar = bar.clone();
        let metrics = metrics.to_vec();
        tokio::spawn(async move {
            loop {
                let n: u64 = metrics.iter().map(|m| m.snapshot().records_in).sum();
                bar.set_position(n.min(bar.length().unwrap_or(n)));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let t = Instant::now();
    let result = app.run_to_end().await;
    let took = t.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    result?;
    Ok(took)
}

/// The `n` largest counts of one window, largest first (ties by key).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct TopN<K> {
    /// Window start, ms.
    pub start: i64,
    /// Window end, ms.
    pub end: i64,
    /// (key, count), largest first.
    pub top: Vec<(K, u64)>,
}

/// An operator that turns each window's per-key counts into its top `n`.
///
/// Window results of one window all arrive in the same watermark step, before this
/// operator's `on_watermark`; so nothing is held across checkpoints and it needs no state.
#[derive(Debug)]
pub struct TopNOp<K> {
    /// How many to keep; `None`: all that share the largest count.
    n: Option<usize>,
    pending: BTreeMap<(i64, i64), Vec<(K, u64)>>,
}

impl<K> TopNOp<K> {
    /// The top `n` of each window.
    pub fn new(n: usize) -> Self {
        Self {
            n: Some(n),
            pending: BTreeMap::new(),
        }
    }

    /// Every key with the largest count of each window (Nexmark q5's ties).
    pub fn ties_at_top() -> Self {
        Self {
            n: None,
            pending: BTreeMap::new(),
        }
    }
}

/// Sorts counts largest first, ties by key, and keeps `n`.
pub fn top_n<K: Ord>(mut all: Vec<(K, u64)>, n: usize) -> Vec<(K, u64)> {
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(n);
    all
}

impl<K: Key> Operator for TopNOp<K> {
    type In = (K, Windowed<K, u64>);
    type Out = TopN<K>;

    fn process(
        &mut self,
        input: Vec<Event<Self::In>>,
        _out: &mut Vec<Event<TopN<K>>>,
        _cx: &mut Context,
    ) {
        for e in input {
            let w = e.value.1;
            self.pending
                .entry((w.start, w.end))
                .or_default()
                .push((w.key, w.value));
        }
    }

    fn on_watermark(&mut self, out: &mut Vec<Event<TopN<K>>>, _cx: &mut Context) {
        for ((start, end), all) in std::mem::take(&mut self.pending) {
            out.push(Event::new(
                end - 1,
                TopN {
                    start,
                    end,
                    top: match self.n {
                        Some(n) => top_n(all, n),
                        None => {
                            let max = all.iter().map(|(_, c)| *c).max().unwrap_or(0);
                            top_n(
                                all.into_iter().filter(|(_, c)| *c == max).collect(),
                                usize::MAX,
                            )
                        }
                    },
                },
            ));
        }
    }

    fn name(&self) -> &'static str {
        "top-n"
    }
}

/// Two copies of a stream (weir-stream has no tee yet: `branch` splits, it does not copy).
pub fn tee<T: weir::stream::Data>(s: Stream<T>) -> (Stream<T>, Stream<T>) {
    let (a, b) = s
        .flat_map(|v: T| [(true, v.clone()), (false, v)])
        .branch(|(first, _)| *first);
    (a.map(|(_, v)| v), b.map(|(_, v)| v))
}

/// Prints a table: a header row, a rule, and the rows; columns that look numeric are
/// right-aligned.
pub fn print_table(title: &str, headers: &[&str], rows: &[Vec<String>]) {
    println!("\n{title}");
    let mut width: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < width.len() {
                width[i] = width[i].max(c.chars().count());
            }
        }
    }
    let numeric: Vec<bool> = (0..headers.len())
        .map(|i| {
            !rows.is_empty()
                && rows.iter().all(|r| {
                    r.get(i).is_some_and(|c| {
                        c.trim_end_matches('%')
                            .replace([',', '.', '-', '+'], "")
                            .chars()
                            .all(|ch| ch.is_ascii_digit())
                    })
                })
        })
        .collect();
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if numeric[i] {
                    format!("{c:>w$}", w = width[i])
                } else {
                    format!("{c:<w$}", w = width[i])
                }
            })
            .collect();
        println!("  {}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    println!(
        "  {}",
        width
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("  ")
    );
    for r in rows {
        line(r.clone());
    }
    if rows.is_empty() {
        println!("  (none)");
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: impl Display) -> String {
    let s = n.to_string();
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    format!("{sign}{out}")
}

/// An event time as `HH:MM:SS.mmm` (UTC), enough for runs that span hours.
pub fn clock(ms: i64) -> String {
    let in_day = ms.rem_euclid(86_400_000);
    let day = (ms - EPOCH_MS).div_euclid(86_400_000);
    let (h, m, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    let base = format!("{h:02}:{m:02}:{s:02}");
    let base = if milli == 0 {
        base
    } else {
        format!("{base}.{milli:03}")
    };
    if day == 0 {
        base
    } else {
        format!("d{day} {base}")
    }
}

/// Events per second.
pub fn per_sec(n: u64, took: Duration) -> String {
    thousands((n as f64 / took.as_secs_f64().max(1e-9)) as u64)
}
