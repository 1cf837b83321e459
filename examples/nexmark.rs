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
//! `date_time` (epoch milliseconds, the event time) and `extra`. With `--brokers
//! HOST:PORT --input-topic T` it reads T from that broker (weir or Kafka; every partition,
//! from the start to its end when the copy catches up) into the embedded log, runs the
//! queries there, and with `--output-topic T2` produces the results to T2 at the broker.
//! `--output-topic T` writes every query's results to T instead of one topic per query
//! (`nexmark.r<N>.q0`, ...). Result records are JSON objects with a `query` field and:
//! - q0: `auction, bidder, price, channel, url, date_time, extra` (the bid as read);
//! - q1: the same, with `price` times 0.908, rounded down (dollars to euros);
//! - q2: `auction, price`;
//! - q5: `auction, count, window_start, window_end` (window times in epoch ms);
//! - q7: `auction, bidder, price, date_time, window_start, window_end`.
//!
//! Prometheus metrics are served on http://127.0.0.1:9899/metrics while it runs
//! (`--metrics-listen ADDR`, port 0, or `off`), per query under `pipeline="nexmark.r<N>.qX"`.

mod common;
#[path = "jobs/nexmark.rs"]
mod job;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (args, app, run) = common::start("nexmark", 1_000_000, 10_000.0).await?;
    let topics = job::Topics {
        bids: match (&args.brokers, &args.input_topic) {
            (Some(brokers), Some(t)) => {
                let local = run.name("bid");
                let n = common::bridge::pull(brokers, t, app.log(), &local, true).await?;
                println!("copied {} bids from {t} at {brokers}", common::thousands(n));
                local
            }
            (None, Some(t)) => t.clone(),
            _ => {
                let events = job::generate(&args.gen_settings());
                let bids = job::bids(&events);
                let late = bids
                    .clone()
                    .filter(|(_, a)| *a == common::Arrival::Late)
                    .count();
                println!(
                    "generated {} events: {} bids ({} of them late)",
                    common::thousands(events.len()),
                    common::thousands(bids.count()),
                    common::thousands(late)
                );
                job::append(&app, &run, &events, true).await?
            }
        },
        // In remote mode the results are written locally first, then copied out.
        output: match (&args.brokers, &args.output_topic) {
            (Some(_), Some(_)) => Some(run.name("results")),
            (_, t) => t.clone(),
        },
    };
    let runs = job::run(&app, &run, &topics, true).await?;
    job::print(&app, &run, &topics, &runs)?;
    if let (Some(brokers), Some(t), Some(local)) =
        (&args.brokers, &args.output_topic, &topics.output)
    {
        let n = common::bridge::push(app.log(), local, brokers, t, true).await?;
        println!("wrote {} results to {t} at {brokers}", common::thousands(n));
    }
    Ok(())
}
