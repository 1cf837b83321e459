//! Market data: `cargo run --release --example market`
//!
//! Generates 2,000,000 stock trades over 20 symbols (`--events N`, `--rate R` trades per
//! second of event time, `--seed S`; 5% arrive out of order, 0.5% late), appends them to
//! `./weir-data` (`--data DIR`), and runs one pipeline until it has read them all: VWAP and
//! volume per symbol per 1-second tumbling window (topic `market.r<N>.vwap-1s`) and per
//! 5-second window starting every second (`market.r<N>.vwap-5s`). It prints the last
//! second's busiest symbols and the top movers of the run.
//!
//! Prometheus metrics are served on http://127.0.0.1:9899/metrics while it runs
//! (`--metrics-listen ADDR`, port 0, or `off`). Each run deletes the earlier run's topics.
//!
//! With `--brokers HOST:PORT` the events are produced to topic `market.trades` at that
//! broker first (created if missing), copied from there into the embedded log, and the
//! result topics are produced back to the broker under the same names.

mod common;
#[path = "jobs/market.rs"]
mod job;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (args, app, run) = common::start("market", 2_000_000, 10_000.0).await?;
    let trades = job::generate(&args.gen_settings());
    let results = job::run(&app, &run, &trades, true).await?;
    job::print(&results, &run);
    common::push_outputs(app.log(), &run, true).await?;
    Ok(())
}
