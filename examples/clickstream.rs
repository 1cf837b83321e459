//! Clickstream analytics: `cargo run --release --example clickstream`
//!
//! Generates 2,000,000 page views of a web shop (`--events N`, `--rate R` views per second
//! of event time, `--seed S`; 5% arrive out of order, 0.5% late), appends them to
//! `./weir-data` (`--data DIR`), and runs two pipelines over them until they have read
//! everything:
//! - views: page views per page per 1-minute tumbling window, and the top 10 pages of
//!   each window;
//! - sessions: per-user session windows with a 30-minute gap, with their length and page
//!   count.
//!
//! It prints tables of the results. Prometheus metrics are served on
//! http://127.0.0.1:9899/metrics while it runs (`--metrics-listen ADDR`, port 0, or `off`).
//! Each run writes fresh topics `clickstream.r<N>.*` and deletes the earlier run's.
//!
//! With `--brokers HOST:PORT` the events are produced to topic `clickstream.clicks` at that
//! broker first (created if missing), copied from there into the embedded log, and the
//! result topics are produced back to the broker under the same names.

mod common;
#[path = "jobs/clickstream.rs"]
mod job;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (args, app, run) = common::start("clickstream", 2_000_000, 200.0).await?;
    let clicks = job::generate(&args.gen_settings());
    let results = job::run(&app, &run, &clicks, true).await?;
    job::print(&results, &run);
    common::push_outputs(app.log(), &run, true).await?;
    Ok(())
}
