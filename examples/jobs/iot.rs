//! The IoT job: temperature readings from many sensors; per-device average, minimum and
//! maximum per 10 seconds; an alert when a device's average stays above a threshold for 3
//! consecutive windows; late readings counted and kept in their own topic.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir::stream::{Context, Event, Operator, RestoredState, StateWriter, Tumbling, Windowed};
use weir::{App, Topic};

use crate::common::{self, Arrival, Clock, Gen, Rng, Run};

/// One reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Which sensor.
    pub device: u32,
    /// Degrees Celsius.
    pub celsius: f64,
    /// When, ms since the epoch.
    pub at: i64,
}

/// Window size.
pub const WINDOW_MS: i64 = 10_000;
/// How long after its end a window still takes readings.
pub const GRACE_MS: i64 = 1_000;
/// The watermark trails the latest reading by this much.
pub const OUT_OF_ORDER_MS: i64 = 2_000;
/// A window whose average is above this counts towards an alert.
pub const THRESHOLD: f64 = 60.0;
/// Consecutive hot windows that raise an alert.
pub const STREAK: u32 = 3;
/// Sensors.
pub const DEVICES: u64 = 1_000;

/// Count, sum, minimum and maximum of a window's readings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Readings.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The lowest.
    pub min: f64,
    /// The highest.
    pub max: f64,
}

impl Stats {
    /// No readings yet.
    pub const EMPTY: Stats = Stats {
        count: 0,
        sum: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    /// Adds a reading.
    pub fn add(&mut self, x: f64) {
        self.count += 1;
        self.sum += x;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    /// The mean.
    pub fn avg(&self) -> f64 {
        self.sum / self.count.max(1) as f64
    }
}

/// A device that stayed hot for [`STREAK`] consecutive windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Which sensor.
    pub device: u32,
    /// Start of the first hot window.
    pub from: i64,
    /// End of the last.
    pub to: i64,
    /// The windows' averages.
    pub averages: Vec<f64>,
}

/// Generates readings in the order they are appended. Each device has its own normal
/// temperature; now and then one overheats for about a minute.
pub fn generate(g: &Gen) -> Vec<(Reading, Arrival)> {
    let mut clock = Clock::new(
        g,
        OUT_OF_ORDER_MS / 2,
        WINDOW_MS + GRACE_MS + OUT_OF_ORDER_MS,
    );
    let mut rng = Rng::new(g.seed, 2);
    (0..g.events)
        .map(|_| {
            let (at, arrival) = clock.tick();
            let device = rng.below(DEVICES) as u32;
            let normal = 20.0 + f64::from(device % 20);
            // Whether this device overheats in this minute: decided by the (seed, device,
            // minute) alone, so that all of its readings of that minute agree.
            let minute = (at - common::EPOCH_MS).div_euclid(60_000) as u64;
            let hot = Rng::new(g.seed ^ u64::from(device) << 20, minute).chance(0.01);
            let celsius = normal + if hot { 45.0 } else { 0.0 } + rng.unit() * 4.0 - 2.0;
            let celsius = (celsius * 100.0).round() / 100.0;
            (
                Reading {
                    device,
                    celsius,
                    at,
                },
                arrival,
            )
        })
        .collect()
}

/// Per device: the end of its last window result, and the averages of its current streak
/// of hot windows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Streak {
    last_end: i64,
    averages: Vec<f64>,
}

/// Raises an [`Alert`] when a device's windows are hot [`STREAK`] times in a row (windows
/// that follow each other without a gap); once per streak.
#[derive(Debug, Default)]
pub struct HotStreaks {
    devices: HashMap<u32, Streak>,
    changed: Vec<u32>,
}

impl Operator for HotStreaks {
    type In = (u32, Windowed<u32, Stats>);
    type Out = Alert;

    fn process(
        &mut self,
        input: Vec<Event<Self::In>>,
        out: &mut Vec<Event<Alert>>,
        _cx: &mut Context,
    ) {
        for e in input {
            let w = e.value.1;
            let s = self.devices.entry(w.key).or_default();
            if w.start != s.last_end {
                s.averages.clear();
            }
            s.last_end = w.end;
            let avg = w.value.avg();
            if avg > THRESHOLD {
                s.averages.push(avg);
            } else {
                s.averages.clear();
            }
            if s.averages.len() == STREAK as usize {
                out.push(Event::new(
                    e.time,
                    Alert {
                        device: w.key,
                        from: w.end - i64::from(STREAK) * WINDOW_MS,
                        to: w.end,
                        averages: s.averages.clone(),
                    },
                ));
            }
            self.changed.push(w.key);
        }
    }

    fn on_checkpoint(&mut self, state: &mut StateWriter<'_>) {
        self.changed.sort_unstable();
        self.changed.dedup();
        for d in self.changed.drain(..) {
            if let Some(s) = self.devices.get(&d) {
                state.put(&d.to_be_bytes(), &serde_json::to_vec(s).unwrap_or_default());
            }
        }
    }

    fn on_restore(&mut self, state: &RestoredState) -> weir::stream::Result<()> {
        for (k, v) in state.entries() {
            let device = u32::from_be_bytes(
                k.as_slice()
                    .try_into()
                    .map_err(|_| state.error("a device key is not 4 bytes"))?,
            );
            let s: Streak = serde_json::from_slice(v).map_err(|e| state.error(e))?;
            self.devices.insert(device, s);
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "hot-streaks"
    }
}

/// What the job computed, read back from its output topics.
#[derive(Debug)]
pub struct Results {
    /// Per device and closed window: count, sum, min, max.
    pub stats: Vec<Windowed<u32, Stats>>,
    /// Alerts raised.
    pub alerts: Vec<Alert>,
    /// Late readings counted by the pipeline.
    pub late: u64,
    /// Readings in the late topic.
    pub late_topic: Vec<Reading>,
    /// Readings generated, by arrival.
    pub generated: [u64; 3],
    /// How long the pipeline took.
    pub took: Duration,
}

/// Appends the readings, runs the pipeline to the end of its input, reads the results.
pub async fn run(
    app: &App,
    run: &Run,
    readings: &[(Reading, Arrival)],
    show: bool,
) -> anyhow::Result<Results> {
    let topic =
        common::append_generated(app.log(), run, "readings", readings, |r| r.at, show).await?;

    let p = app.pipeline(&run.name("device-stats"));
    let stats = p
        .source::<Reading>(
            Topic::json(topic)
                .event_time(|r: &Reading| r.at)
                .out_of_orderness(Duration::from_millis(OUT_OF_ORDER_MS as u64)),
        )
        .key_by(|r| r.device)
        .window(
            Tumbling::every(Duration::from_millis(WINDOW_MS as u64))
                .grace(Duration::from_millis(GRACE_MS as u64)),
        )
        .late(Topic::json(run.output("late-readings")))
        .aggregate(Stats::EMPTY, |s, r| s.add(r.celsius))
        .into_stream();
    let (stats, for_alerts) = common::tee(stats);
    stats
        .map(|(_, w)| w)
        .sink(Topic::json(run.output("device-stats")));
    for_alerts
        .operator(HotStreaks::default())
        .sink(Topic::json(run.output("alerts")));

    let metrics = [p.metrics()];
    let took = common::run_to_end(
        app,
        &metrics,
        readings.len() as u64,
        show,
        "running device-stats",
    )
    .await?;
    Ok(Results {
        stats: common::read_json(app.log(), &run.name("device-stats"))?,
        alerts: common::read_json(app.log(), &run.name("alerts"))?,
        late: metrics[0].snapshot().late_records,
        late_topic: common::read_json(app.log(), &run.name("late-readings"))?,
        generated: common::arrivals(readings),
        took,
    })
}

/// Prints the results as tables.
pub fn print(r: &Results, run: &Run) {
    let n: u64 = r.generated.iter().sum();
    println!(
        "\niot: {} of {} sensors in {:.2?} ({} readings/s)",
        common::described("readings", r.generated),
        common::thousands(DEVICES),
        r.took,
        common::per_sec(n, r.took),
    );
    println!(
        "late readings counted: {} ({} in topic {}late-readings); topics {}{{readings, device-stats, alerts, late-readings}}",
        common::thousands(r.late),
        common::thousands(r.late_topic.len()),
        run.prefix,
        run.prefix
    );
    let mut hottest: Vec<&Windowed<u32, Stats>> = r.stats.iter().collect();
    hottest.sort_by(|a, b| {
        b.value
            .max
            .total_cmp(&a.value.max)
            .then((a.start, a.key).cmp(&(b.start, b.key)))
    });
    let row = |w: &Windowed<u32, Stats>| {
        vec![
            format!("sensor {}", w.key),
            format!("{}-{}", common::clock(w.start), common::clock(w.end)),
            w.value.count.to_string(),
            format!("{:.2}", w.value.avg()),
            format!("{:.2}", w.value.min),
            format!("{:.2}", w.value.max),
        ]
    };
    let headers = [
        "device",
        "window (UTC)",
        "readings",
        "avg °C",
        "min °C",
        "max °C",
    ];
    common::print_table(
        &format!(
            "Hottest of {} device windows (10 s tumbling)",
            common::thousands(r.stats.len())
        ),
        &headers,
        &hottest.iter().take(5).map(|w| row(w)).collect::<Vec<_>>(),
    );
    let last_start = r.stats.iter().map(|w| w.start).max().unwrap_or(0);
    common::print_table(
        "The last closed window, first 5 devices",
        &headers,
        &r.stats
            .iter()
            .filter(|w| w.start == last_start)
            .take(5)
            .map(row)
            .collect::<Vec<_>>(),
    );
    let rows: Vec<Vec<String>> = r
        .alerts
        .iter()
        .take(10)
        .map(|a| {
            vec![
                format!("sensor {}", a.device),
                format!("{}-{}", common::clock(a.from), common::clock(a.to)),
                a.averages
                    .iter()
                    .map(|x| format!("{x:.1}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    common::print_table(
        &format!(
            "Alerts: average above {THRESHOLD} °C for {STREAK} consecutive windows ({} in all, first 10)",
            r.alerts.len()
        ),
        &["device", "hot from-to (UTC)", "window averages °C"],
        &rows,
    );
}
