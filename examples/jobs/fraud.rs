//! The fraud job: card transactions; a per-card session window (a minute without a
//! transaction ends it) flags bursts of 5 or more, and a per-card running average flags
//! amounts far above what the card usually spends.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir::stream::{Context, Event, Operator, RestoredState, Session, StateWriter, Windowed};
use weir::{App, Topic};

use crate::common::{self, Arrival, Clock, Gen, Rng, Run};

/// One card transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    /// Card number (an id here).
    pub card: u32,
    /// Amount in cents.
    pub amount_cents: u64,
    /// Merchant id.
    pub merchant: u32,
    /// When, ms since the epoch.
    pub at: i64,
}

/// A session ends after this long without a transaction of its card.
pub const SESSION_GAP_MS: i64 = 60_000;
/// Transactions in one session that make a burst.
pub const BURST: u64 = 5;
/// The watermark trails the latest transaction by this much.
pub const OUT_OF_ORDER_MS: i64 = 5_000;
/// An amount above this many times the card's running average is flagged...
pub const FACTOR: u64 = 5;
/// ...once the card has at least this many earlier transactions.
pub const HISTORY: u64 = 3;
/// Cards.
pub const CARDS: u64 = 100_000;

/// A session's transactions: count, total and largest amount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Burst {
    /// Transactions.
    pub count: u64,
    /// Their total, cents.
    pub total_cents: u64,
    /// The largest, cents.
    pub max_cents: u64,
}

/// An amount far above the card's running average.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outlier {
    /// The transaction.
    pub txn: Txn,
    /// The card's average before it, cents.
    pub average_cents: u64,
    /// The card's transactions before it.
    pub history: u64,
}

/// Generates transactions in the order they are appended. Cards spend around their own
/// typical amount now and then; a few cards are hit by bursts (6 to 10 transactions a few
/// seconds apart), and 0.1% of transactions are many times the card's usual amount.
pub fn generate(g: &Gen) -> Vec<(Txn, Arrival)> {
    let mut clock = Clock::new(g, OUT_OF_ORDER_MS / 2, SESSION_GAP_MS + OUT_OF_ORDER_MS);
    let mut rng = Rng::new(g.seed, 4);
    // Burst transactions due: (due time, card).
    let mut due: BinaryHeap<Reverse<(i64, u32)>> = BinaryHeap::new();
    (0..g.events)
        .map(|_| {
            let (at, arrival) = clock.tick();
            let card = match due.peek() {
                Some(Reverse((t, card))) if *t <= at => {
                    let card = *card;
                    due.pop();
                    card
                }
                _ => {
                    let card = rng.below(CARDS) as u32;
                    if rng.chance(0.000_5) {
                        let mut t = at;
                        for _ in 0..6 + rng.below(5) {
                            t += 2_000 + rng.below(10_000) as i64;
                            due.push(Reverse((t, card)));
                        }
                    }
                    card
                }
            };
            let usual = 500 + u64::from(card).wrapping_mul(7_919) % 20_000;
            let mut amount = usual / 2 + rng.below(usual);
            if rng.chance(0.001) {
                amount *= 8 + rng.below(20);
            }
            let txn = Txn {
                card,
                amount_cents: amount,
                merchant: rng.skewed(5_000) as u32,
                at,
            };
            (txn, arrival)
        })
        .collect()
}

/// Per card: transactions seen and their total.
#[derive(Debug, Default)]
pub struct RunningAverage {
    cards: HashMap<u32, (u64, u64)>,
    changed: Vec<u32>,
}

impl Operator for RunningAverage {
    type In = Txn;
    type Out = Outlier;

    fn process(
        &mut self,
        input: Vec<Event<Txn>>,
        out: &mut Vec<Event<Outlier>>,
        _cx: &mut Context,
    ) {
        for e in input {
            let txn = e.value;
            let (n, total) = self.cards.entry(txn.card).or_default();
            if *n >= HISTORY && txn.amount_cents * *n > FACTOR * *total {
                out.push(Event::new(
                    e.time,
                    Outlier {
                        average_cents: *total / *n,
                        history: *n,
                        txn: txn.clone(),
                    },
                ));
            }
            *n += 1;
            *total += txn.amount_cents;
            self.changed.push(txn.card);
        }
    }

    fn on_checkpoint(&mut self, state: &mut StateWriter<'_>) {
        self.changed.sort_unstable();
        self.changed.dedup();
        for card in self.changed.drain(..) {
            if let Some((n, total)) = self.cards.get(&card) {
                let mut v = n.to_be_bytes().to_vec();
                v.extend_from_slice(&total.to_be_bytes());
                state.put(&card.to_be_bytes(), &v);
            }
        }
    }

    fn on_restore(&mut self, state: &RestoredState) -> weir::stream::Result<()> {
        for (k, v) in state.entries() {
            let bad = || state.error("a card entry is not 4 + 16 bytes");
            let card = u32::from_be_bytes(k.as_slice().try_into().map_err(|_| bad())?);
            let (n, total) = v.split_at_checked(8).ok_or_else(bad)?;
            let n = u64::from_be_bytes(n.try_into().map_err(|_| bad())?);
            let total = u64::from_be_bytes(total.try_into().map_err(|_| bad())?);
            self.cards.insert(card, (n, total));
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "running-average"
    }
}

/// What the job computed, read back from its output topics.
#[derive(Debug)]
pub struct Results {
    /// Closed sessions of [`BURST`] or more transactions.
    pub bursts: Vec<Windowed<u32, Burst>>,
    /// Amounts far above their card's running average.
    pub outliers: Vec<Outlier>,
    /// Late transactions counted by the session window.
    pub late: u64,
    /// Transactions generated, by arrival.
    pub generated: [u64; 3],
    /// How long the pipeline took.
    pub took: Duration,
}

/// Appends the transactions, runs the pipeline to the end of its input, reads the results.
pub async fn run(
    app: &App,
    run: &Run,
    txns: &[(Txn, Arrival)],
    show: bool,
) -> anyhow::Result<Results> {
    let topic =
        common::append_generated(app.log(), run, "transactions", txns, |t| t.at, show).await?;

    let p = app.pipeline(&run.name("fraud"));
    let source = p.source::<Txn>(
        Topic::json(topic)
            .event_time(|t: &Txn| t.at)
            .out_of_orderness(Duration::from_millis(OUT_OF_ORDER_MS as u64)),
    );
    let (for_sessions, for_average) = common::tee(source);
    for_sessions
        .key_by(|t| t.card)
        .window(Session::gap(Duration::from_millis(SESSION_GAP_MS as u64)))
        .aggregate_merge(
            Burst::default(),
            |b, t| {
                b.count += 1;
                b.total_cents += t.amount_cents;
                b.max_cents = b.max_cents.max(t.amount_cents);
            },
            |b, o| {
                b.count += o.count;
                b.total_cents += o.total_cents;
                b.max_cents = b.max_cents.max(o.max_cents);
            },
        )
        .filter(|_, w| w.value.count >= BURST)
        .into_stream()
        .map(|(_, w)| w)
        .sink(Topic::json(run.output("bursts")));
    for_average
        .operator(RunningAverage::default())
        .sink(Topic::json(run.output("outliers")));

    let metrics = [p.metrics()];
    let took = common::run_to_end(app, &metrics, txns.len() as u64, show, "running fraud").await?;
    Ok(Results {
        bursts: common::read_json(app.log(), &run.name("bursts"))?,
        outliers: common::read_json(app.log(), &run.name("outliers"))?,
        late: metrics[0].snapshot().late_records,
        generated: common::arrivals(txns),
        took,
    })
}

fn dollars(cents: u64) -> String {
    format!("{}.{:02}", common::thousands(cents / 100), cents % 100)
}

/// Prints the results as tables.
pub fn print(r: &Results, run: &Run) {
    let n: u64 = r.generated.iter().sum();
    println!(
        "\nfraud: {} of {} cards in {:.2?} ({} transactions/s); late transactions counted: {}",
        common::described("transactions", r.generated),
        common::thousands(CARDS),
        r.took,
        common::per_sec(n, r.took),
        common::thousands(r.late),
    );
    println!(
        "{} bursts, {} outlier amounts; topics {}{{transactions, bursts, outliers}}",
        common::thousands(r.bursts.len()),
        common::thousands(r.outliers.len()),
        run.prefix
    );
    let mut bursts: Vec<&Windowed<u32, Burst>> = r.bursts.iter().collect();
    bursts.sort_by_key(|b| (Reverse(b.value.count), b.start, b.key));
    let rows: Vec<Vec<String>> = bursts
        .iter()
        .take(8)
        .map(|b| {
            vec![
                format!("card {}", b.key),
                common::clock(b.start),
                format!("{} s", (b.end - SESSION_GAP_MS - b.start) / 1000),
                b.value.count.to_string(),
                dollars(b.value.total_cents),
            ]
        })
        .collect();
    common::print_table(
        &format!(
            "Bursts: {BURST}+ transactions with under a minute between them (largest 8 of {})",
            r.bursts.len()
        ),
        &["card", "from (UTC)", "span", "txns", "total $"],
        &rows,
    );
    let mut outliers: Vec<&Outlier> = r.outliers.iter().collect();
    let ratio = |o: &Outlier| o.txn.amount_cents as f64 / o.average_cents.max(1) as f64;
    outliers.sort_by(|a, b| ratio(b).total_cmp(&ratio(a)).then(a.txn.at.cmp(&b.txn.at)));
    let rows: Vec<Vec<String>> = outliers
        .iter()
        .take(8)
        .map(|o| {
            vec![
                format!("card {}", o.txn.card),
                common::clock(o.txn.at),
                dollars(o.txn.amount_cents),
                dollars(o.average_cents),
                format!("{:.1}x", ratio(o)),
                o.history.to_string(),
            ]
        })
        .collect();
    common::print_table(
        &format!(
            "Amounts over {FACTOR}x the card's running average (largest 8 of {})",
            r.outliers.len()
        ),
        &[
            "card",
            "at (UTC)",
            "amount $",
            "average $",
            "ratio",
            "history",
        ],
        &rows,
    );
}
