//! Page views per minute with weir-stream: `cargo run --release --example views_per_page`
//!
//! Appends a million generated clicks (JSON, one per 10 ms of event time, 5% of them
//! malformed on purpose) to topic `clicks` in `./weir-data`, runs a pipeline that counts
//! views per page in one-minute windows until it has read all input, and prints the counts
//! of the first windows and how many bad records went to the dead-letter topic. Run it
//! again: the pipeline resumes from its checkpoint and counts only the new clicks.
//!
//! While it runs, its metrics are at http://127.0.0.1:9899/metrics (dashboards/prometheus.yml
//! scrapes that port). `RUST_LOG` filters the logs (warnings only by default;
//! `RUST_LOG=info` adds a line per checkpoint).

mod common;

use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use weir::log::{Record, TopicConfig};
use weir::stream::{Tumbling, Windowed, secs};
use weir::{App, Topic};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Click {
    page: String,
    kind: String,
    at: i64,
}

const CLICKS: i64 = 1_000_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    common::init_logging();
    let app = App::open("weir-data").context("opening ./weir-data")?;
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], common::PIPELINE_METRICS_PORT));
    match app.serve_metrics(listen).await {
        Ok(at) => println!("metrics at http://{at}/metrics"),
        // The example is worth running without its metrics.
        Err(e) => eprintln!("{e}; running without /metrics"),
    }
    let log = app.log().clone();
    if log.topic("clicks").is_none() {
        log.create_topic("clicks", 1, TopicConfig::default())
            .await?;
    }
    let start = log.bounds("clicks", 0)?.high_watermark;
    let base = 1_800_000_000_000 + start * 10;
    for chunk in (0..CLICKS).collect::<Vec<_>>().chunks(10_000) {
        let records: Vec<Record> = chunk
            .iter()
            .map(|i| {
                let at = base + i * 10;
                if i % 20 == 7 {
                    return Ok(Record::value(at, format!("{{\"page\": \"/p{i}\"")));
                }
                let click = Click {
                    page: format!("/p{}", i % 7),
                    kind: if i % 3 == 0 { "buy" } else { "view" }.into(),
                    at,
                };
                Ok(Record::value(at, serde_json::to_vec(&click)?))
            })
            .collect::<Result<_, serde_json::Error>>()?;
        log.append_records("clicks", 0, &records).await?;
    }

    app.pipeline("views-per-page")
        .source::<Click>(Topic::json("clicks").event_time(|c: &Click| c.at))
        .filter(|c| c.kind == "view")
        .key_by(|c| c.page.clone())
        .window(Tumbling::every(secs(60)).grace(secs(5)))
        .count()
        .sink(Topic::json("views-per-page"));
    let t = Instant::now();
    app.run_to_end().await?;
    println!("processed {CLICKS} clicks in {:.2?}", t.elapsed());

    let out = log.read("views-per-page", 0, 0, 1 << 20)?.decode_from(0)?;
    for r in out.iter().take(7) {
        let w: Windowed<String, u64> =
            serde_json::from_slice(r.value.as_deref().unwrap_or_default())?;
        println!("{} [{}, {}): {} views", w.key, w.start, w.end, w.value);
    }
    let dead = log.bounds("views-per-page.dead-letters", 0)?.high_watermark;
    println!("dead letters so far: {dead}");
    Ok(())
}
