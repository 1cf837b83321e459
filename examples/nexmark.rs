//! The Nexmark benchmark's queries: `cargo run --release --example nexmark`
//!
//! Generates 1,000,000 Nexmark events (`--events N`, `--rate R` events per second of event
//! time, `--seed S`; 5% out of order, 0.5% late): persons, auctions and bids in Nexmark's
//! 1:3:46 proportions, appended as JSON to topics `nexmark.r<N>.{person,auction,bid}` of
//! `./weir-data` (`--data DIR`). Then it runs the queries over the bids, each as its own
//! pipeline, and prints each one's bids/s:
//! - q0 pass-through, q1 dollars to euros, q2 selection (`auction % 123 == 0`),
//! - q5 hot items (the auction(s) with the most bids per 10 s window every 2 s),
//! - q7 highest bid (per 10 s tumbling window).
//!
//! q8 (a join of persons and auctions) waits for joins in weir-stream.
//!
//! `--input-topic T` reads bids from topic T of the log instead of generating them: JSON
//! objects with Nexmark's field names `auction`, `bidder`, `price`, `channel`, `url`,
//! `date_time` (epoch milliseconds, the event time) and `extra`.
//! `--output-topic T` writes every query's results to T instead of one topic per query
//! (`nexmark.r<N>.q0`, ...). Result records are JSON objects with a `query` field and:
//! - q0: `auction, bidder, price, channel, url, date_time, extra` (the bid as read);
//! - q1: the same, with `price` times 0.908, rounded down (dollars to euros);
//! - q2: `auction, price`;
//! - q5: `auction, count, window_start, window_end` (window times in epoch ms);
//! - q7: `auction, bidder, price, date_time, window_start, window_end`.
//!
//! Prometheus metrics are served on http://127.0.0.1:9898/metrics while it runs
//! (`--metrics-listen ADDR`, port 0, or `off`), per query under `pipeline="nexmark.r<N>.qX"`.

mod common;
#[path = "jobs/nexmark.rs"]
mod job;

use anyhow::Context;
use weir::App;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = common::Args::parse("nexmark", 1_000_000, 10_000.0)?;
    common::serve_metrics(args.metrics_listen).await?;
    let app = App::open(&args.data).with_context(|| format!("opening {}", args.data.display()))?;
    let run = common::Run::fresh(app.log(), "nexmark").await?;
    let bids = match &args.input_topic {
        Some(t) => t.clone(),
        None => {
            let events = job::generate(&args.gen_settings());
            let bids = job::bids(&events);
            let late = bids
                .iter()
                .filter(|(_, a)| *a == common::Arrival::Late)
                .count();
            println!(
                "generated {} events: {} bids ({} of them late)",
                common::thousands(events.len()),
                common::thousands(bids.len()),
                common::thousands(late)
            );
            job::append(&app, &run, &events, true).await?
        }
    };
    let topics = job::Topics {
        bids,
        output: args.output_topic.clone(),
    };
    let runs = job::run(&app, &run, &topics, true).await?;
    job::print(&app, &run, &topics, &runs)?;
    Ok(())
}
