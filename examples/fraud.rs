//! Card fraud signals: `cargo run --release --example fraud`
//!
//! Generates 2,000,000 card transactions over 100,000 cards (`--events N`, `--rate R`
//! transactions per second of event time, `--seed S`; 5% arrive out of order, 0.5% late),
//! appends them to `./weir-data` (`--data DIR`), and runs one pipeline until it has read
//! them all: per-card session windows (a minute without a transaction ends a session) flag
//! bursts of 5 or more transactions (topic `fraud.r<N>.bursts`), and a per-card running
//! average flags amounts over 5 times what the card usually spends
//! (`fraud.r<N>.outliers`). It prints the largest of both.
//!
//! Prometheus metrics are served on http://127.0.0.1:9899/metrics while it runs
//! (`--metrics-listen ADDR`, port 0, or `off`). Each run deletes the earlier run's topics.
//!
//! With `--brokers HOST:PORT` the events are produced to topic `fraud.transactions` at that
//! broker first (created if missing), copied from there into the embedded log, and the
//! result topics are produced back to the broker under the same names.

mod common;
#[path = "jobs/fraud.rs"]
mod job;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (args, app, run) = common::start("fraud", 2_000_000, 100.0).await?;
    let txns = job::generate(&args.gen_settings());
    let results = job::run(&app, &run, &txns, true).await?;
    job::print(&results, &run);
    common::push_outputs(app.log(), &run, true).await?;
    Ok(())
}
