//! The Nexmark job: the Nexmark benchmark's person/auction/bid generator and queries q0,
//! q1, q2, q5 and q7 over the bids, each run as its own pipeline and timed.
//!
//! Result records are JSON objects with a `query` field and, per query:
//! - q0 (pass-through): `auction, bidder, price, channel, url, date_time, extra` (the bid);
//! - q1 (dollars to euros): the bid's fields, `price` multiplied by 0.908 (integer part);
//! - q2 (selection): `auction, price` of bids whose `auction % 123 == 0`;
//! - q5 (hot items): `auction, count, window_start, window_end` for the auction(s) with the
//!   most bids in each 10 s window starting every 2 s;
//! - q7 (highest bid): `auction, bidder, price, date_time, window_start, window_end` for the
//!   bid(s) with the highest price in each 10 s tumbling window.
//!
//! Times are milliseconds since the epoch; prices are in cents.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weir::stream::{Hopping, Pipeline, Stream, Tumbling};
use weir::{App, Topic};

use crate::common::{self, Arrival, Clock, Gen, Rng, Run, TopNOp};

/// A person (seller or bidder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub id: u64,
    pub name: String,
    pub email_address: String,
    pub credit_card: String,
    pub city: String,
    pub state: String,
    pub date_time: i64,
    pub extra: String,
}

/// An auction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auction {
    pub id: u64,
    pub item_name: String,
    pub description: String,
    pub initial_bid: u64,
    pub reserve: u64,
    pub date_time: i64,
    pub expires: i64,
    pub seller: u64,
    pub category: u64,
    pub extra: String,
}

/// A bid, with Nexmark's field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    pub auction: u64,
    pub bidder: u64,
    pub price: u64,
    pub channel: String,
    pub url: String,
    pub date_time: i64,
    #[serde(default)]
    pub extra: String,
}

/// One generated event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NexmarkEvent {
    Person(Person),
    Auction(Auction),
    Bid(Bid),
}

/// The watermark trails the latest bid by this much.
pub const OUT_OF_ORDER_MS: i64 = 2_000;
/// q5's windows: 10 s every 2 s.
pub const Q5_SIZE_MS: i64 = 10_000;
/// q5's slide.
pub const Q5_SLIDE_MS: i64 = 2_000;
/// q7's windows: 10 s tumbling.
pub const Q7_SIZE_MS: i64 = 10_000;
/// The queries, in the order they run.
pub const QUERIES: [&str; 5] = ["q0", "q1", "q2", "q5", "q7"];
/// Nexmark's ids start here.
const FIRST_ID: u64 = 1_000;
const CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const CITIES: [(&str, &str); 6] = [
    ("Phoenix", "AZ"),
    ("Los Angeles", "CA"),
    ("San Francisco", "CA"),
    ("Boise", "ID"),
    ("Portland", "OR"),
    ("Seattle", "WA"),
];

/// Generates Nexmark events in the order they are appended: of every 50, 1 person, 3
/// auctions and 46 bids (Nexmark's proportions). Bids go mostly to recent auctions, from
/// recent people; prices are log-uniform from $1 to $1,000,000.
pub fn generate(g: &Gen) -> Vec<(NexmarkEvent, Arrival)> {
    let mut clock = Clock::new(g, OUT_OF_ORDER_MS / 2, Q5_SIZE_MS + OUT_OF_ORDER_MS);
    let mut rng = Rng::new(g.seed, 5);
    let (mut persons, mut auctions) = (0u64, 0u64);
    (0..g.events)
        .map(|i| {
            let (at, arrival) = clock.tick();
            let event = match i % 50 {
                0 => {
                    let id = FIRST_ID + persons;
                    persons += 1;
                    let (city, state) = CITIES[rng.below(CITIES.len() as u64) as usize];
                    NexmarkEvent::Person(Person {
                        id,
                        name: format!("person {id}"),
                        email_address: format!("p{id}@example.com"),
                        credit_card: format!("{:016}", rng.below(10_000_000_000_000_000)),
                        city: city.into(),
                        state: state.into(),
                        date_time: at,
                        extra: String::new(),
                    })
                }
                1..=3 => {
                    let id = FIRST_ID + auctions;
                    auctions += 1;
                    let initial_bid = 100 + rng.below(10_000);
                    NexmarkEvent::Auction(Auction {
                        id,
                        item_name: format!("item {id}"),
                        description: "a thing".into(),
                        initial_bid,
                        reserve: initial_bid * 2,
                        date_time: at,
                        expires: at + 60_000 + rng.below(600_000) as i64,
                        seller: FIRST_ID + rng.below(persons),
                        category: 10 + rng.below(5),
                        extra: String::new(),
                    })
                }
                _ => {
                    let recent = |rng: &mut Rng, n: u64| {
                        if rng.chance(0.9) {
                            FIRST_ID + n - 1 - rng.below(n.min(100))
                        } else {
                            FIRST_ID + rng.below(n)
                        }
                    };
                    let channel = CHANNELS[rng.below(CHANNELS.len() as u64) as usize];
                    NexmarkEvent::Bid(Bid {
                        auction: recent(&mut rng, auctions),
                        bidder: recent(&mut rng, persons),
                        price: (10f64.powf(rng.unit() * 6.0) * 100.0).round() as u64,
                        channel: channel.into(),
                        url: format!(
                            "https://www.nexmark.com/{}/item.htm",
                            channel.to_lowercase()
                        ),
                        date_time: at,
                        extra: String::new(),
                    })
                }
            };
            (event, arrival)
        })
        .collect()
}

/// The bids of generated events, with how they arrive.
pub fn bids(events: &[(NexmarkEvent, Arrival)]) -> impl Iterator<Item = (&Bid, Arrival)> + Clone {
    events.iter().filter_map(|(e, a)| match e {
        NexmarkEvent::Bid(b) => Some((b, *a)),
        _ => None,
    })
}

/// Where the job reads bids and writes results.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Bids.
    pub bids: String,
    /// Results of every query; `None`: q2, q5 and q7 to one topic each (`<prefix>q5`,
    /// ...), q0 and q1 counted and dropped.
    pub output: Option<String>,
}

/// Appends generated events: persons, auctions and bids to their own topics.
pub async fn append(
    app: &App,
    run: &Run,
    events: &[(NexmarkEvent, Arrival)],
    show: bool,
) -> anyhow::Result<String> {
    let mut persons = Vec::new();
    let mut auctions = Vec::new();
    let mut bids = Vec::new();
    for (e, _) in events {
        match e {
            NexmarkEvent::Person(p) => persons.push((p.date_time, p)),
            NexmarkEvent::Auction(a) => auctions.push((a.date_time, a)),
            NexmarkEvent::Bid(b) => bids.push((b.date_time, b)),
        }
    }
    common::append_json(app.log(), &run.name("person"), &persons, show).await?;
    common::append_json(app.log(), &run.name("auction"), &auctions, show).await?;
    let topic = run.name("bid");
    common::append_json(app.log(), &topic, &bids, show).await?;
    Ok(topic)
}

/// A bid in q0's and q1's results: the bid's fields and the query's name.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TaggedBid {
    query: String,
    #[serde(flatten)]
    bid: Bid,
}

/// Defines query `query` on pipeline `p`, reading `bids` and writing to `out`; with no
/// `out`, q0's and q1's results are counted in `discarded` and dropped (Nexmark's
/// "blackhole" sink: they are as large as the input).
fn define(
    query: &str,
    p: &Pipeline,
    bids: &str,
    out: Option<String>,
    discarded: &Arc<AtomicU64>,
    run: &Run,
) -> anyhow::Result<()> {
    let source: Stream<Bid> = p.source::<Bid>(
        Topic::json(bids)
            .event_time(|b: &Bid| b.date_time)
            .out_of_orderness(Duration::from_millis(OUT_OF_ORDER_MS as u64)),
    );
    let tag = |query: &str, bid: Bid| TaggedBid {
        query: query.into(),
        bid,
    };
    let bid_results = |s: Stream<TaggedBid>| match &out {
        Some(t) => s.sink(Topic::json(t.clone())),
        None => {
            let n = discarded.clone();
            s.inspect(move |_| {
                n.fetch_add(1, Ordering::Relaxed);
            });
        }
    };
    let sink = Topic::<Value>::json(out.clone().unwrap_or_else(|| run.name(query)));
    match query {
        "q0" => bid_results(source.map(move |b| tag("q0", b))),
        "q1" => bid_results(source.map(move |mut b| {
            b.price = b.price * 908 / 1000;
            tag("q1", b)
        })),
        "q2" => source
            .filter(|b| b.auction % 123 == 0)
            .map(|b| json!({"query": "q2", "auction": b.auction, "price": b.price}))
            .sink(sink),
        "q5" => source
            .key_by(|b| b.auction)
            .window(Hopping::of(
                Duration::from_millis(Q5_SIZE_MS as u64),
                Duration::from_millis(Q5_SLIDE_MS as u64),
            ))
            .count()
            .into_stream()
            .operator(TopNOp::ties_at_top())
            .flat_map(|t| {
                t.top
                    .into_iter()
                    .map(|(auction, count)| {
                        json!({"query": "q5", "auction": auction, "count": count,
                               "window_start": t.start, "window_end": t.end})
                    })
                    .collect::<Vec<_>>()
            })
            .sink(sink),
        "q7" => source
            .key_by(|_| ())
            .window(Tumbling::every(Duration::from_millis(Q7_SIZE_MS as u64)))
            .aggregate(Vec::<Bid>::new(), |top, b| {
                match top.first().map(|t| t.price) {
                    Some(p) if p > b.price => {}
                    Some(p) if p == b.price => top.push(b.clone()),
                    _ => *top = vec![b.clone()],
                }
            })
            .into_stream()
            .flat_map(|(_, w)| {
                w.value
                    .into_iter()
                    .map(|b| {
                        json!({"query": "q7", "auction": b.auction, "bidder": b.bidder,
                               "price": b.price, "date_time": b.date_time,
                               "window_start": w.start, "window_end": w.end})
                    })
                    .collect::<Vec<_>>()
            })
            .sink(sink),
        other => anyhow::bail!("no query {other}: the queries are {QUERIES:?}"),
    }
    Ok(())
}

/// One query's run.
#[derive(Debug, Clone)]
pub struct QueryRun {
    /// q0, q1, ...
    pub query: &'static str,
    /// Bids read.
    pub bids: u64,
    /// Result records written.
    pub results: u64,
    /// Late bids counted.
    pub late: u64,
    /// How long it took.
    pub took: Duration,
}

/// Runs each query as its own pipeline over the whole bid topic, one after the other.
pub async fn run(
    app: &App,
    run: &Run,
    topics: &Topics,
    show: bool,
) -> anyhow::Result<Vec<QueryRun>> {
    let total = app
        .log()
        .topic(&topics.bids)
        .map(|_| app.log().bounds(&topics.bids, 0).map(|b| b.high_watermark))
        .transpose()?;
    let Some(total) = total else {
        anyhow::bail!(
            "topic {:?} is not in the log: produce JSON bids to it first (fields auction, \
             bidder, price, channel, url, date_time, extra), or leave out --input-topic",
            topics.bids
        );
    };
    let mut runs = Vec::new();
    for query in QUERIES {
        let p = app.pipeline(&run.name(query));
        let discarded = Arc::new(AtomicU64::new(0));
        define(
            query,
            &p,
            &topics.bids,
            topics.output.clone(),
            &discarded,
            run,
        )?;
        let metrics = [p.metrics()];
        let took = common::run_to_end(
            app,
            &metrics,
            total as u64,
            show,
            &format!("running {query}"),
        )
        .await?;
        let m = metrics[0].snapshot();
        runs.push(QueryRun {
            query,
            bids: m.records_in,
            results: m.records_out + discarded.load(Ordering::Relaxed),
            late: m.late_records,
            took,
        });
    }
    Ok(runs)
}

/// The results of `query`, read back from its own topic or the shared output topic.
pub fn results(app: &App, run: &Run, topics: &Topics, query: &str) -> anyhow::Result<Vec<Value>> {
    let Some(t) = &topics.output else {
        return common::read_json(app.log(), &run.name(query));
    };
    let all: Vec<Value> = common::read_json(app.log(), t)?;
    Ok(all.into_iter().filter(|v| v["query"] == query).collect())
}

/// Prints the results as tables.
pub fn print(app: &App, run: &Run, topics: &Topics, runs: &[QueryRun]) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.query.to_string(),
                common::thousands(r.bids),
                common::thousands(r.results),
                common::thousands(r.late),
                format!("{:.2}", r.took.as_secs_f64()),
                common::per_sec(r.bids, r.took),
            ]
        })
        .collect();
    common::print_table(
        &format!("Nexmark queries over {}, one pipeline each", topics.bids),
        &["query", "bids", "results", "late", "seconds", "bids/s"],
        &rows,
    );
    if let Some(t) = &topics.output {
        println!("\nresults are in topic {t} (JSON with a \"query\" field)");
        return Ok(());
    }
    println!("(q0 and q1 results are counted and dropped; --output-topic T keeps them)");
    let q5 = results(app, run, topics, "q5")?;
    let mut windows: Vec<(i64, i64, Vec<String>, String)> = Vec::new();
    for v in &q5 {
        let (start, end) = (
            v["window_start"].as_i64().unwrap_or(0),
            v["window_end"].as_i64().unwrap_or(0),
        );
        if windows.last().is_none_or(|w| w.0 != start) {
            windows.push((start, end, Vec::new(), v["count"].to_string()));
        }
        if let Some(w) = windows.last_mut() {
            w.2.push(v["auction"].to_string());
        }
    }
    let rows: Vec<Vec<String>> = windows
        .iter()
        .rev()
        .take(5)
        .rev()
        .map(|(start, end, auctions, count)| {
            let mut list = auctions
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if auctions.len() > 3 {
                list.push_str(&format!(" and {} more", auctions.len() - 3));
            }
            vec![
                format!("{}-{}", common::clock(*start), common::clock(*end)),
                count.clone(),
                list,
            ]
        })
        .collect();
    common::print_table(
        "q5 hot items: the most bid-on auctions of the last 5 windows (10 s every 2 s)",
        &["window (UTC)", "bids", "auctions"],
        &rows,
    );
    let q7 = results(app, run, topics, "q7")?;
    let rows: Vec<Vec<String>> = q7
        .iter()
        .rev()
        .take(5)
        .rev()
        .map(|v| {
            vec![
                format!(
                    "{}-{}",
                    common::clock(v["window_start"].as_i64().unwrap_or(0)),
                    common::clock(v["window_end"].as_i64().unwrap_or(0))
                ),
                v["auction"].to_string(),
                v["bidder"].to_string(),
                format!("{:.2}", v["price"].as_u64().unwrap_or(0) as f64 / 100.0),
            ]
        })
        .collect();
    common::print_table(
        "q7 highest bid of the last 5 windows (10 s tumbling)",
        &["window (UTC)", "auction", "bidder", "price $"],
        &rows,
    );
    println!(
        "\ntopics {}{{person, auction, bid, q2, q5, q7}}",
        run.prefix
    );
    Ok(())
}
