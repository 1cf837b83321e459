//! The market job: trades; volume-weighted average price (VWAP) and volume per symbol per
//! 1-second tumbling window and per 5-second window every second; the top movers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir::stream::{Hopping, TimeWindows, Tumbling, Windowed, millis, secs};
use weir::{App, Topic};

use crate::common::{self, Arrival, Clock, Gen, Rng, Run};

/// One trade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trade {
    /// Ticker symbol.
    pub symbol: String,
    /// Price per share, in cents.
    pub price_cents: u64,
    /// Shares.
    pub qty: u64,
    /// When, ms since the epoch.
    pub at: i64,
}

/// The watermark trails the latest trade by this much.
pub const OUT_OF_ORDER_MS: i64 = 500;
/// How long after its end a window still takes trades.
pub const GRACE_MS: i64 = 200;
/// Symbols traded.
pub const SYMBOLS: [&str; 20] = [
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "AVGO", "JPM", "V", "WMT", "XOM",
    "UNH", "MA", "PG", "JNJ", "HD", "COST", "ORCL", "NFLX",
];

/// Notional (price x quantity) and volume of a window's trades.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Sum of price_cents x qty.
    pub notional: u64,
    /// Sum of qty.
    pub shares: u64,
    /// Trades.
    pub trades: u64,
}

impl Volume {
    /// Adds a trade.
    pub fn add(&mut self, t: &Trade) {
        self.notional += t.price_cents * t.qty;
        self.shares += t.qty;
        self.trades += 1;
    }

    /// The volume-weighted average price, in dollars.
    pub fn vwap(&self) -> f64 {
        self.notional as f64 / self.shares.max(1) as f64 / 100.0
    }
}

/// The 1 s tumbling windows and the 5 s windows every 1 s.
pub fn windows() -> [(&'static str, TimeWindows); 2] {
    [
        (
            "vwap-1s",
            Tumbling::every(secs(1)).grace(millis(GRACE_MS as u64)),
        ),
        (
            "vwap-5s",
            Hopping::of(secs(5), secs(1)).grace(millis(GRACE_MS as u64)),
        ),
    ]
}

/// Generates trades in the order they are appended: each symbol's price walks randomly,
/// some symbols trending up or down; popular symbols trade more.
pub fn generate(g: &Gen) -> Vec<(Trade, Arrival)> {
    let mut clock = Clock::new(g, OUT_OF_ORDER_MS / 2, 5_000 + GRACE_MS + OUT_OF_ORDER_MS);
    let mut rng = Rng::new(g.seed, 3);
    let base: Vec<f64> = (0..SYMBOLS.len())
        .map(|_| 2_000.0 + rng.below(50_000) as f64)
        .collect();
    // Percent per minute of event time, -5 to +5.
    let trend: Vec<f64> = (0..SYMBOLS.len())
        .map(|_| (rng.unit() - 0.5) * 10.0)
        .collect();
    (0..g.events)
        .map(|_| {
            let (at, arrival) = clock.tick();
            let s = rng.skewed(SYMBOLS.len() as u64) as usize;
            let minutes = (at - common::EPOCH_MS) as f64 / 60_000.0;
            let level = base[s] * (1.0 + trend[s] / 100.0 * minutes).max(0.05);
            let price = level * (1.0 + (rng.unit() - 0.5) * 0.004);
            let trade = Trade {
                symbol: SYMBOLS[s].to_string(),
                price_cents: price.round().max(1.0) as u64,
                qty: 1 + rng.skewed(500),
                at,
            };
            (trade, arrival)
        })
        .collect()
}

/// What the job computed, read back from its output topics.
#[derive(Debug)]
pub struct Results {
    /// Per symbol, per closed 1 s window.
    pub tumbling: Vec<Windowed<String, Volume>>,
    /// Per symbol, per closed 5 s window (one starting every second).
    pub hopping: Vec<Windowed<String, Volume>>,
    /// Late trades counted by the pipeline.
    pub late: u64,
    /// Trades generated, by arrival.
    pub generated: [u64; 3],
    /// How long the pipeline took.
    pub took: Duration,
}

/// Appends the trades, runs the pipeline to the end of its input, reads the results.
pub async fn run(
    app: &App,
    run: &Run,
    trades: &[(Trade, Arrival)],
    show: bool,
) -> anyhow::Result<Results> {
    let topic = common::append_generated(app.log(), run, "trades", trades, |t| t.at, show).await?;

    let p = app.pipeline(&run.name("vwap"));
    let trades_in = p.source::<Trade>(
        Topic::json(topic)
            .event_time(|t: &Trade| t.at)
            .out_of_orderness(millis(OUT_OF_ORDER_MS as u64)),
    );
    let (a, b) = common::tee(trades_in);
    let [(name_a, spec_a), (name_b, spec_b)] = windows();
    for (stream, name, spec) in [(a, name_a, spec_a), (b, name_b, spec_b)] {
        stream
            .key_by(|t| t.symbol.clone())
            .window(spec)
            .aggregate(Volume::default(), Volume::add)
            .into_stream()
            .map(|(_, w)| w)
            .sink(Topic::json(run.output(name)));
    }

    let metrics = [p.metrics()];
    let took = common::run_to_end(app, &metrics, trades.len() as u64, show, "running vwap").await?;
    Ok(Results {
        tumbling: common::read_json(app.log(), &run.name(name_a))?,
        hopping: common::read_json(app.log(), &run.name(name_b))?,
        late: metrics[0].snapshot().late_records,
        generated: common::arrivals(trades),
        took,
    })
}

/// A symbol's move over the run: first and last 1 s VWAP, and the change in percent.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    /// Ticker.
    pub symbol: String,
    /// VWAP of its first closed window, dollars.
    pub first: f64,
    /// VWAP of its last closed window, dollars.
    pub last: f64,
    /// Shares traded over the run.
    pub shares: u64,
}

impl Move {
    /// Change from first to last, percent.
    pub fn change(&self) -> f64 {
        (self.last / self.first - 1.0) * 100.0
    }
}

/// The symbols that moved most (by absolute change), from their 1 s windows.
pub fn top_movers(tumbling: &[Windowed<String, Volume>], n: usize) -> Vec<Move> {
    let mut by_symbol: BTreeMap<&str, Vec<&Windowed<String, Volume>>> = BTreeMap::new();
    for w in tumbling {
        by_symbol.entry(&w.key).or_default().push(w);
    }
    let mut moves: Vec<Move> = by_symbol
        .into_iter()
        .filter_map(|(s, mut ws)| {
            ws.sort_by_key(|w| w.start);
            Some(Move {
                symbol: s.to_string(),
                first: ws.first()?.value.vwap(),
                last: ws.last()?.value.vwap(),
                shares: ws.iter().map(|w| w.value.shares).sum(),
            })
        })
        .collect();
    moves.sort_by(|a, b| {
        b.change()
            .abs()
            .total_cmp(&a.change().abs())
            .then(a.symbol.cmp(&b.symbol))
    });
    moves.truncate(n);
    moves
}

/// Prints the results as tables.
pub fn print(r: &Results, run: &Run) {
    let n: u64 = r.generated.iter().sum();
    println!(
        "\nmarket: {} in {:.2?} ({} trades/s); late trades counted: {} (by each of the 2 window operators)",
        common::described("trades", r.generated),
        r.took,
        common::per_sec(n, r.took),
        common::thousands(r.late / 2),
    );
    println!(
        "topics {}{{trades, vwap-1s, vwap-5s}}: {} and {} symbol-windows",
        run.prefix,
        common::thousands(r.tumbling.len()),
        common::thousands(r.hopping.len())
    );
    let last_end = r.tumbling.iter().map(|w| w.end).max().unwrap_or(0);
    let five: BTreeMap<&str, &Windowed<String, Volume>> = r
        .hopping
        .iter()
        .filter(|w| w.end == last_end)
        .map(|w| (w.key.as_str(), w))
        .collect();
    let mut last: Vec<&Windowed<String, Volume>> =
        r.tumbling.iter().filter(|w| w.end == last_end).collect();
    last.sort_by(|a, b| b.value.shares.cmp(&a.value.shares).then(a.key.cmp(&b.key)));
    let rows: Vec<Vec<String>> = last
        .iter()
        .take(8)
        .map(|w| {
            let f = five.get(w.key.as_str());
            vec![
                w.key.clone(),
                format!("{:.2}", w.value.vwap()),
                common::thousands(w.value.shares),
                f.map_or("-".into(), |f| format!("{:.2}", f.value.vwap())),
                f.map_or("-".into(), |f| common::thousands(f.value.shares)),
            ]
        })
        .collect();
    common::print_table(
        &format!(
            "The second ending {} (UTC): the 8 busiest symbols, and their last 5 seconds",
            common::clock(last_end)
        ),
        &["symbol", "VWAP 1s $", "volume 1s", "VWAP 5s $", "volume 5s"],
        &rows,
    );
    let rows: Vec<Vec<String>> = top_movers(&r.tumbling, 5)
        .into_iter()
        .map(|m| {
            vec![
                m.symbol.clone(),
                format!("{:.2}", m.first),
                format!("{:.2}", m.last),
                format!("{:+.2}%", m.change()),
                common::thousands(m.shares),
            ]
        })
        .collect();
    common::print_table(
        "Top movers: first vs last 1 s VWAP of the run",
        &["symbol", "first $", "last $", "change", "volume"],
        &rows,
    );
}
