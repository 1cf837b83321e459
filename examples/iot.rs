//! IoT sensor monitoring: `cargo run --release --example iot`
//!
//! Generates 2,000,000 temperature readings from 1,000 sensors (`--events N`, `--rate R`
//! readings per second of event time, `--seed S`; 5% arrive out of order, 0.5% late),
//! appends them to `./weir-data` (`--data DIR`), and runs one pipeline until it has read
//! them all: per-device average, minimum and maximum per 10-second tumbling window (to
//! topic `iot.r<N>.device-stats`), an alert when a device's average stays above 60 °C for
//! 3 consecutive windows (`iot.r<N>.alerts`), and late readings counted and written to
//! `iot.r<N>.late-readings`. It prints the hottest windows, the last window and the alerts.
//!
//! Prometheus metrics are served on http://127.0.0.1:9899/metrics while it runs
//! (`--metrics-listen ADDR`, port 0, or `off`). Each run deletes the earlier run's topics.
//!
//! With `--brokers HOST:PORT` the events are produced to topic `iot.readings` at that
//! broker first (created if missing), copied from there into the embedded log, and the
//! result topics are produced back to the broker under the same names.

mod common;
#[path = "jobs/iot.rs"]
mod job;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (args, app, run) = common::start("iot", 2_000_000, 2_000.0).await?;
    let readings = job::generate(&args.gen_settings());
    let results = job::run(&app, &run, &readings, true).await?;
    job::print(&results, &run);
    common::push_outputs(app.log(), &run, true).await?;
    Ok(())
}
