//! The example jobs (`examples/*.rs`), run small on a temporary log, with their results
//! checked against a brute-force computation over the same generated events.
//!
//! The jobs' code lives in `examples/jobs/`, shared by the example binaries and this test.
//! Each check recomputes from the generator's output with plain loops over all events: no
//! watermarks, no state, no weir. Only the events the generator marked late are left out,
//! and only windows the final watermark (latest event time - out-of-orderness) has closed
//! are expected.

#[path = "../examples/jobs/clickstream.rs"]
mod clickstream;
#[path = "../examples/common/mod.rs"]
mod common;
#[path = "../examples/jobs/fraud.rs"]
mod fraud;
#[path = "../examples/jobs/iot.rs"]
mod iot;
#[path = "../examples/jobs/market.rs"]
mod market;
#[path = "../examples/jobs/nexmark.rs"]
mod nexmark;

use std::collections::{BTreeMap, BTreeSet};

use common::{Arrival, Gen, Run};
use weir::App;

fn settings(events: u64, rate: f64, seed: u64) -> Gen {
    Gen { events, rate, seed }
}

async fn fresh_app(example: &str) -> (App, Run, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let app = App::open(dir.path()).expect("opening a log in a temporary directory");
    let run = Run::fresh(app.log(), example).await.expect("a run prefix");
    (app, run, dir)
}

/// The events that are not late, and the final watermark.
fn on_time<T: Clone>(events: &[(T, Arrival)], time: impl Fn(&T) -> i64, ooo: i64) -> (Vec<T>, i64) {
    let max = events
        .iter()
        .map(|(e, _)| time(e))
        .max()
        .unwrap_or(i64::MIN);
    let kept = events
        .iter()
        .filter(|(_, a)| *a != Arrival::Late)
        .map(|(e, _)| e.clone())
        .collect();
    (kept, max - ooo)
}

/// How many events the generator made late; there must be some for a test to check them.
fn late_count<T>(events: &[(T, Arrival)]) -> u64 {
    let n = events.iter().filter(|(_, a)| *a == Arrival::Late).count() as u64;
    assert!(
        n > 0,
        "the generator made no late events: make the run longer"
    );
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickstream_counts_top_pages_and_sessions_match_brute_force() {
    use clickstream::*;
    // 40,000 clicks at 5/s: 8,000 s of event time, long enough for sessions to close.
    let clicks = generate(&settings(40_000, 5.0, 7));
    let late = late_count(&clicks);
    assert!(clicks.iter().any(|(_, a)| *a == Arrival::OutOfOrder));
    let (app, prefix, _dir) = fresh_app("clickstream").await;
    let r = clickstream::run(&app, &prefix, &clicks, false)
        .await
        .expect("the job runs");

    let (kept, wm) = on_time(&clicks, |c: &Click| c.at, OUT_OF_ORDER_MS);
    // Views per page per minute.
    let mut views: BTreeMap<(i64, String), u64> = BTreeMap::new();
    for c in &kept {
        let start = c.at.div_euclid(WINDOW_MS) * WINDOW_MS;
        if start + WINDOW_MS + GRACE_MS <= wm {
            *views.entry((start, c.page.clone())).or_default() += 1;
        }
    }
    let got: BTreeMap<(i64, String), u64> = r
        .views
        .iter()
        .map(|w| {
            assert_eq!(w.end - w.start, WINDOW_MS);
            ((w.start, w.key.clone()), w.value)
        })
        .collect();
    assert_eq!(got.len(), r.views.len(), "a window was emitted twice");
    assert_eq!(got, views);

    // The top 10 of each minute: the largest counts, ties by page name.
    let mut by_minute: BTreeMap<i64, Vec<(String, u64)>> = BTreeMap::new();
    for ((start, page), n) in &views {
        by_minute
            .entry(*start)
            .or_default()
            .push((page.clone(), *n));
    }
    assert_eq!(r.top.len(), by_minute.len());
    for (t, (start, mut all)) in r.top.iter().zip(by_minute) {
        assert_eq!(t.start, start);
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(TOP);
        assert_eq!(t.top, all, "top pages of the minute at {start}");
    }

    // Sessions: a user's clicks sorted by time, split where the gap reaches 30 minutes.
    let mut by_user: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    for c in &kept {
        by_user.entry(c.user).or_default().push(c.at);
    }
    let mut sessions = BTreeSet::new();
    for (user, mut times) in by_user {
        times.sort_unstable();
        let mut first = times[0];
        let mut n = 0;
        for (i, t) in times.iter().enumerate() {
            if i > 0 && t - times[i - 1] >= SESSION_GAP_MS {
                let end = times[i - 1] + SESSION_GAP_MS;
                if end <= wm {
                    sessions.insert((user, first, end, n));
                }
                first = *t;
                n = 0;
            }
            n += 1;
        }
        let end = times[times.len() - 1] + SESSION_GAP_MS;
        if end <= wm {
            sessions.insert((user, first, end, n));
        }
    }
    let got: BTreeSet<(u32, i64, i64, u64)> = r
        .sessions
        .iter()
        .map(|s| (s.key, s.start, s.end, s.value))
        .collect();
    assert!(
        !sessions.is_empty(),
        "no session closed: make the run longer"
    );
    assert_eq!(got.len(), r.sessions.len(), "a session was emitted twice");
    assert_eq!(got, sessions);

    assert_eq!(r.late_views, late);
    assert_eq!(r.late_sessions, late);
    assert_eq!(r.generated[Arrival::Late as usize], late);
    assert!(!r.took.is_zero());
    clickstream::print(&r, &prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iot_window_stats_alerts_and_late_readings_match_brute_force() {
    use iot::*;
    let readings = generate(&settings(60_000, 200.0, 11));
    let late = late_count(&readings);
    let (app, prefix, _dir) = fresh_app("iot").await;
    let r = iot::run(&app, &prefix, &readings, false)
        .await
        .expect("the job runs");

    let (kept, wm) = on_time(&readings, |x: &Reading| x.at, OUT_OF_ORDER_MS);
    // (device, window start) -> readings, in log order.
    let mut windows: BTreeMap<(u32, i64), Vec<f64>> = BTreeMap::new();
    for x in &kept {
        let start = x.at.div_euclid(WINDOW_MS) * WINDOW_MS;
        if start + WINDOW_MS + GRACE_MS <= wm {
            windows
                .entry((x.device, start))
                .or_default()
                .push(x.celsius);
        }
    }
    assert_eq!(r.stats.len(), windows.len());
    let got: BTreeMap<(u32, i64), &iot::Stats> = r
        .stats
        .iter()
        .map(|w| ((w.key, w.start), &w.value))
        .collect();
    for ((device, start), xs) in &windows {
        let s = got[&(*device, *start)];
        assert_eq!(s.count, xs.len() as u64, "count of {device} at {start}");
        let sum: f64 = xs.iter().sum();
        assert!((s.sum - sum).abs() < 1e-6, "sum of {device} at {start}");
        assert_eq!(s.min, xs.iter().copied().fold(f64::INFINITY, f64::min));
        assert_eq!(s.max, xs.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    }

    // Alerts: runs of windows that follow each other, each with a mean above the threshold;
    // one alert when a run reaches 3.
    let mut alerts = BTreeSet::new();
    let mut run_of = (u32::MAX, 0i64, 0u32);
    for ((device, start), xs) in &windows {
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let follows = run_of.0 == *device && run_of.1 == *start;
        run_of = match (mean > THRESHOLD, follows) {
            (true, true) => (*device, start + WINDOW_MS, run_of.2 + 1),
            (true, false) => (*device, start + WINDOW_MS, 1),
            (false, _) => (*device, start + WINDOW_MS, 0),
        };
        if run_of.2 == STREAK {
            alerts.insert((
                *device,
                start + WINDOW_MS - 3 * WINDOW_MS,
                start + WINDOW_MS,
            ));
        }
    }
    let got: BTreeSet<(u32, i64, i64)> =
        r.alerts.iter().map(|a| (a.device, a.from, a.to)).collect();
    assert!(
        !alerts.is_empty(),
        "no device overheated: make the run longer"
    );
    assert_eq!(got.len(), r.alerts.len(), "an alert was raised twice");
    assert_eq!(got, alerts);
    assert!(
        r.alerts
            .iter()
            .all(|a| a.averages.len() == 3 && a.averages.iter().all(|x| *x > THRESHOLD))
    );

    assert_eq!(r.late, late);
    let late_readings: Vec<&Reading> = readings
        .iter()
        .filter(|(_, a)| *a == Arrival::Late)
        .map(|(x, _)| x)
        .collect();
    assert_eq!(r.late_topic.iter().collect::<Vec<_>>(), late_readings);
    iot::print(&r, &prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_vwap_volume_and_top_movers_match_brute_force() {
    use market::*;
    let trades = generate(&settings(60_000, 1_000.0, 13));
    let late = late_count(&trades);
    let (app, prefix, _dir) = fresh_app("market").await;
    let r = market::run(&app, &prefix, &trades, false)
        .await
        .expect("the job runs");

    let (kept, wm) = on_time(&trades, |t: &Trade| t.at, OUT_OF_ORDER_MS);
    // (symbol, start) -> (notional, shares, trades) for windows of `size` every `slide`.
    let expect = |size: i64, slide: i64| {
        let mut out: BTreeMap<(String, i64), (u64, u64, u64)> = BTreeMap::new();
        for t in &kept {
            let mut start = t.at.div_euclid(slide) * slide;
            while start > t.at - size {
                if start + size + GRACE_MS <= wm {
                    let e = out.entry((t.symbol.clone(), start)).or_default();
                    e.0 += t.price_cents * t.qty;
                    e.1 += t.qty;
                    e.2 += 1;
                }
                start -= slide;
            }
        }
        out
    };
    let got = |ws: &[weir::stream::Windowed<String, Volume>], size: i64| {
        let m: BTreeMap<(String, i64), (u64, u64, u64)> = ws
            .iter()
            .map(|w| {
                assert_eq!(w.end - w.start, size);
                (
                    (w.key.clone(), w.start),
                    (w.value.notional, w.value.shares, w.value.trades),
                )
            })
            .collect();
        assert_eq!(m.len(), ws.len(), "a window was emitted twice");
        m
    };
    let tumbling = expect(1_000, 1_000);
    assert_eq!(got(&r.tumbling, 1_000), tumbling);
    assert_eq!(got(&r.hopping, 5_000), expect(5_000, 1_000));

    // Top movers from the brute-force windows: first and last VWAP per symbol.
    let mut by_symbol: BTreeMap<&str, Vec<(i64, f64, u64)>> = BTreeMap::new();
    for ((s, start), (notional, shares, _)) in &tumbling {
        by_symbol.entry(s).or_default().push((
            *start,
            *notional as f64 / *shares as f64 / 100.0,
            *shares,
        ));
    }
    let mut moves: Vec<(f64, String, f64, f64)> = by_symbol
        .into_iter()
        .map(|(s, ws)| {
            let (first, last) = (ws[0].1, ws[ws.len() - 1].1);
            ((last / first - 1.0).abs(), s.to_string(), first, last)
        })
        .collect();
    moves.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let top = top_movers(&r.tumbling, 5);
    assert_eq!(
        top.iter()
            .map(|m| (m.symbol.clone(), m.first, m.last))
            .collect::<Vec<_>>(),
        moves
            .iter()
            .take(5)
            .map(|m| (m.1.clone(), m.2, m.3))
            .collect::<Vec<_>>()
    );

    // Each late trade is counted by both window operators.
    assert_eq!(r.late, 2 * late);
    market::print(&r, &prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fraud_bursts_and_outliers_match_brute_force() {
    use fraud::*;
    // 100,000 cards, so each card's history is short: 30 transactions/s over 2,000 s.
    let txns = generate(&settings(60_000, 30.0, 17));
    let late = late_count(&txns);
    let (app, prefix, _dir) = fresh_app("fraud").await;
    let r = fraud::run(&app, &prefix, &txns, false)
        .await
        .expect("the job runs");

    // Bursts: each card's on-time transactions by time, split where the gap reaches a
    // minute; sessions closed by the final watermark with 5 or more.
    let (kept, wm) = on_time(&txns, |t: &Txn| t.at, OUT_OF_ORDER_MS);
    let mut by_card: BTreeMap<u32, Vec<(i64, u64)>> = BTreeMap::new();
    for t in &kept {
        by_card
            .entry(t.card)
            .or_default()
            .push((t.at, t.amount_cents));
    }
    let mut bursts = BTreeSet::new();
    for (card, mut ts) in by_card {
        ts.sort_unstable();
        let mut i = 0;
        while i < ts.len() {
            let mut j = i + 1;
            while j < ts.len() && ts[j].0 - ts[j - 1].0 < SESSION_GAP_MS {
                j += 1;
            }
            let s = &ts[i..j];
            let end = s[s.len() - 1].0 + SESSION_GAP_MS;
            if s.len() as u64 >= BURST && end <= wm {
                let total: u64 = s.iter().map(|x| x.1).sum();
                let max = s.iter().map(|x| x.1).max().unwrap_or(0);
                bursts.insert((card, s[0].0, end, s.len() as u64, total, max));
            }
            i = j;
        }
    }
    let got: BTreeSet<(u32, i64, i64, u64, u64, u64)> = r
        .bursts
        .iter()
        .map(|b| {
            (
                b.key,
                b.start,
                b.end,
                b.value.count,
                b.value.total_cents,
                b.value.max_cents,
            )
        })
        .collect();
    assert!(!bursts.is_empty(), "no burst: make the run longer");
    assert_eq!(got.len(), r.bursts.len(), "a burst was reported twice");
    assert_eq!(got, bursts);

    // Outliers: every transaction in log order (late ones too: no window here), against
    // the card's average so far.
    let mut seen: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let mut outliers = Vec::new();
    for (t, _) in &txns {
        let (n, total) = seen.entry(t.card).or_default();
        if *n >= HISTORY && t.amount_cents as f64 > FACTOR as f64 * (*total as f64 / *n as f64) {
            outliers.push((t.clone(), *total / *n, *n));
        }
        *n += 1;
        *total += t.amount_cents;
    }
    let got: Vec<(Txn, u64, u64)> = r
        .outliers
        .iter()
        .map(|o| (o.txn.clone(), o.average_cents, o.history))
        .collect();
    assert!(!outliers.is_empty(), "no outlier: make the run longer");
    assert_eq!(got, outliers);

    assert_eq!(r.late, late);
    fraud::print(&r, &prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_queries_match_brute_force() {
    use nexmark::*;
    use serde_json::Value;
    let events = generate(&settings(60_000, 1_000.0, 19));
    let bids: Vec<(Bid, Arrival)> = bids(&events).map(|(b, a)| (b.clone(), a)).collect();
    assert_eq!(bids.len(), 60_000 / 50 * 46);
    let late = late_count(&bids);
    let (app, prefix, _dir) = fresh_app("nexmark").await;
    let topic = append(&app, &prefix, &events, false)
        .await
        .expect("appending");
    // All results to one topic, as `--output-topic` does (q0's and q1's are kept then).
    let topics = Topics {
        bids: topic,
        output: Some("nexmark-results".into()),
    };
    let runs = nexmark::run(&app, &prefix, &topics, false)
        .await
        .expect("the queries run");
    assert_eq!(runs.iter().map(|r| r.query).collect::<Vec<_>>(), QUERIES);
    let by_query: BTreeMap<&str, Vec<Value>> = QUERIES
        .iter()
        .map(|q| {
            (
                *q,
                results(&app, &prefix, &topics, q).expect("reading results"),
            )
        })
        .collect();
    let out = |q: &str| by_query[q].clone();
    let field = |v: &Value, f: &str| v[f].as_i64().unwrap_or_else(|| panic!("{f} in {v}"));

    // q0: every bid, as generated and in log order (late ones too: no window).
    let q0: Vec<Bid> = out("q0")
        .into_iter()
        .map(|v| {
            assert_eq!(v["query"], "q0");
            serde_json::from_value(v).expect("a q0 result is a bid")
        })
        .collect();
    let all: Vec<Bid> = bids.iter().map(|(b, _)| b.clone()).collect();
    assert_eq!(q0, all);
    // q1: the same with prices in euros.
    let q1: Vec<(u64, i64)> = out("q1")
        .iter()
        .map(|v| (field(v, "price") as u64, field(v, "date_time")))
        .collect();
    let euros: Vec<(u64, i64)> = all
        .iter()
        .map(|b| (b.price * 908 / 1000, b.date_time))
        .collect();
    assert_eq!(q1, euros);
    // q2: auctions divisible by 123.
    let q2: Vec<(i64, i64)> = out("q2")
        .iter()
        .map(|v| (field(v, "auction"), field(v, "price")))
        .collect();
    let chosen: Vec<(i64, i64)> = all
        .iter()
        .filter(|b| b.auction % 123 == 0)
        .map(|b| (b.auction as i64, b.price as i64))
        .collect();
    assert!(!chosen.is_empty());
    assert_eq!(q2, chosen);

    let (kept, wm) = on_time(&bids, |b: &Bid| b.date_time, OUT_OF_ORDER_MS);
    // q5: bids per auction per 10 s window every 2 s; the auctions with the most.
    let mut counts: BTreeMap<i64, BTreeMap<u64, u64>> = BTreeMap::new();
    for b in &kept {
        let mut start = b.date_time.div_euclid(Q5_SLIDE_MS) * Q5_SLIDE_MS;
        while start > b.date_time - Q5_SIZE_MS {
            if start + Q5_SIZE_MS <= wm {
                *counts
                    .entry(start)
                    .or_default()
                    .entry(b.auction)
                    .or_default() += 1;
            }
            start -= Q5_SLIDE_MS;
        }
    }
    let mut hot = BTreeSet::new();
    for (start, per_auction) in &counts {
        let max = per_auction.values().max().copied().unwrap_or(0);
        for (auction, n) in per_auction {
            if *n == max {
                hot.insert((*start, *start + Q5_SIZE_MS, *auction as i64, max as i64));
            }
        }
    }
    let q5 = out("q5");
    let got: BTreeSet<(i64, i64, i64, i64)> = q5
        .iter()
        .map(|v| {
            (
                field(v, "window_start"),
                field(v, "window_end"),
                field(v, "auction"),
                field(v, "count"),
            )
        })
        .collect();
    assert!(hot.len() > 10, "too few q5 windows: make the run longer");
    assert_eq!(got.len(), q5.len());
    assert_eq!(got, hot);
    // q7: the highest bids per 10 s window.
    // Window start -> (highest price, its bids as (auction, bidder, time)).
    type Highest = (u64, BTreeSet<(u64, u64, i64)>);
    let mut highest: BTreeMap<i64, Highest> = BTreeMap::new();
    for b in &kept {
        let start = b.date_time.div_euclid(Q7_SIZE_MS) * Q7_SIZE_MS;
        if start + Q7_SIZE_MS > wm {
            continue;
        }
        let e = highest.entry(start).or_insert((0, BTreeSet::new()));
        if b.price > e.0 {
            *e = (b.price, BTreeSet::new());
        }
        if b.price == e.0 {
            e.1.insert((b.auction, b.bidder, b.date_time));
        }
    }
    let expected: BTreeSet<(i64, i64, i64, i64, i64)> = highest
        .iter()
        .flat_map(|(start, (price, bids))| {
            bids.iter()
                .map(move |(a, who, at)| (*start, *a as i64, *who as i64, *price as i64, *at))
        })
        .collect();
    let q7 = out("q7");
    let got: BTreeSet<(i64, i64, i64, i64, i64)> = q7
        .iter()
        .map(|v| {
            assert_eq!(
                field(v, "window_end") - field(v, "window_start"),
                Q7_SIZE_MS
            );
            (
                field(v, "window_start"),
                field(v, "auction"),
                field(v, "bidder"),
                field(v, "price"),
                field(v, "date_time"),
            )
        })
        .collect();
    assert!(expected.len() >= 3);
    assert_eq!(got.len(), q7.len());
    assert_eq!(got, expected);

    for r in &runs {
        assert_eq!(r.bids, bids.len() as u64, "{} read every bid", r.query);
        assert_eq!(
            r.results,
            out(r.query).len() as u64,
            "results of {}",
            r.query
        );
        let windowed = r.query == "q5" || r.query == "q7";
        assert_eq!(
            r.late,
            if windowed { late } else { 0 },
            "late bids of {}",
            r.query
        );
    }
    nexmark::print(&app, &prefix, &topics, &runs).expect("printing");
}

#[test]
fn options_are_parsed_and_bad_ones_explained() {
    let parse = |args: &[&str]| {
        common::Args::parse_from("nexmark", 10, 5.0, args.iter().map(|s| s.to_string()))
    };
    let a = parse(&[
        "--events",
        "1_000",
        "--rate=250",
        "--seed",
        "9",
        "--metrics-listen",
        "off",
    ])
    .expect("valid options");
    assert_eq!(
        (a.events, a.rate, a.seed, a.metrics_listen),
        (1_000, 250.0, 9, None)
    );
    let a = parse(&["--metrics-listen", "127.0.0.1:0", "--output-topic", "out"]).expect("valid");
    assert_eq!(a.metrics_listen.map(|m| m.port()), Some(0));
    assert_eq!(a.output_topic.as_deref(), Some("out"));
    let err = |args: &[&str]| parse(args).expect_err("invalid options").to_string();
    assert!(
        err(&["--rate", "0"]).contains("positive"),
        "{}",
        err(&["--rate", "0"])
    );
    assert!(err(&["--events"]).contains("--events needs a value"));
    assert!(err(&["--bogus", "1"]).contains("unknown option --bogus"));
    let remote = err(&["--brokers", "127.0.0.1:9092"]);
    assert!(remote.contains("add --input-topic"), "{remote}");
    let a = parse(&["--brokers", "127.0.0.1:9092", "--input-topic", "bids"]).expect("remote");
    assert_eq!(a.brokers.as_deref(), Some("127.0.0.1:9092"));
    let elsewhere = common::Args::parse_from(
        "clickstream",
        10,
        5.0,
        ["--brokers", "127.0.0.1:9092"].map(String::from),
    )
    .expect("every example takes --brokers");
    assert_eq!(elsewhere.brokers.as_deref(), Some("127.0.0.1:9092"));
    let usage =
        common::Args::parse_from("clickstream", 10, 5.0, ["--bogus", "1"].map(String::from))
            .expect_err("an unknown option")
            .to_string();
    assert!(!usage.contains("nexmark only"), "{usage}");
    assert!(usage.contains("topic clickstream.* there"), "{usage}");
    let other = common::Args::parse_from(
        "iot",
        10,
        5.0,
        ["--input-topic".to_string(), "t".to_string()],
    );
    assert!(other.is_err(), "--input-topic is nexmark's alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_gets_fresh_topics_and_deletes_the_earlier_runs() {
    let (app, first, _dir) = fresh_app("iot").await;
    assert_eq!(first.prefix, "iot.r0.");
    let readings = iot::generate(&settings(2_000, 100.0, 1));
    iot::run(&app, &first, &readings, false)
        .await
        .expect("the job runs");
    assert!(app.log().topic("iot.r0.readings").is_some());
    let second = Run::fresh(app.log(), "iot").await.expect("a second run");
    assert_eq!(
        second.prefix, "iot.r1.",
        "the pipeline names of run 0 hold its checkpoint"
    );
    assert!(
        app.log()
            .topics()
            .iter()
            .all(|t| !t.name.starts_with("iot.r0."))
    );
    let again = iot::run(&app, &second, &readings, false)
        .await
        .expect("the job runs again");
    assert!(
        !again.stats.is_empty(),
        "the second run starts from scratch"
    );
    let other = Run::fresh(app.log(), "market")
        .await
        .expect("another example");
    assert_eq!(other.prefix, "market.r0.");
    assert!(
        app.log().topic("iot.r1.readings").is_some(),
        "other examples' topics stay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_without_an_output_topic_counts_q0_and_q1_and_keeps_the_rest() {
    use nexmark::*;
    let events = generate(&settings(5_000, 1_000.0, 3));
    let (app, prefix, _dir) = fresh_app("nexmark").await;
    let topic = append(&app, &prefix, &events, false)
        .await
        .expect("appending");
    let topics = Topics {
        bids: topic,
        output: None,
    };
    let runs = nexmark::run(&app, &prefix, &topics, false)
        .await
        .expect("the queries run");
    let n = bids(&events).count() as u64;
    assert_eq!(
        (runs[0].results, runs[1].results),
        (n, n),
        "q0 and q1 see every bid"
    );
    assert!(
        app.log().topic(&prefix.name("q0")).is_none(),
        "q0's results are dropped"
    );
    for q in ["q2", "q5", "q7"] {
        let r = runs.iter().find(|r| r.query == q).expect("the query ran");
        assert_eq!(
            r.results,
            results(&app, &prefix, &topics, q).expect("reading").len() as u64
        );
    }
    let missing = Topics {
        bids: "no-such-topic".into(),
        output: None,
    };
    let err = nexmark::run(&app, &prefix, &missing, false)
        .await
        .expect_err("no input");
    assert!(
        err.to_string().contains("produce JSON bids to it first"),
        "{err}"
    );
}

#[test]
fn readme_pipeline_is_the_facade_doctest() {
    let lib = include_str!("../src/lib.rs");
    let doctest: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .skip_while(|l| *l != "```")
        .skip(1)
        .take_while(|l| *l != "```")
        .filter(|l| !l.starts_with("# "))
        .collect();
    let readme = include_str!("../README.md");
    let at = readme
        .find("```rust\nuse weir::stream::{Tumbling, Windowed, secs};")
        .expect("the README shows the 20-line pipeline");
    let shown: Vec<&str> = readme[at..]
        .lines()
        .skip(1)
        .take_while(|l| *l != "```")
        .collect();
    assert!(shown.len() >= 20);
    assert_eq!(
        shown, doctest,
        "README.md and the doctest in src/lib.rs differ"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_reads_bids_from_a_broker_and_writes_results_back() {
    use nexmark::*;
    use weir::client::{Client, NewTopic, Producer, ProducerConfig, ProducerRecord};
    let (addr, _served) = broker().await;

    // Someone else produces JSON bids to a topic of two partitions.
    let events = generate(&settings(10_000, 1_000.0, 23));
    let client = Client::connect(&addr).await.expect("connecting");
    client
        .create_topic(NewTopic::new("bids-in", 2))
        .await
        .expect("creating the input topic");
    let producer = Producer::new(client, ProducerConfig::default()).expect("a producer");
    let mut sent = Vec::new();
    for (b, _) in bids(&events) {
        let value = serde_json::to_vec(b).expect("a bid as JSON");
        let record = ProducerRecord::new("bids-in", value).with_timestamp(b.date_time);
        sent.push(producer.send(record).await.expect("sending"));
    }
    producer.flush().await;
    for d in sent {
        d.wait().await.expect("acknowledged");
    }

    let (app, prefix, _dir) = fresh_app("nexmark").await;
    let local = prefix.name("bid");
    let copied = common::bridge::pull(&addr, "bids-in", app.log(), &local, false)
        .await
        .expect("copying the bids in");
    assert_eq!(copied, bids(&events).count() as u64);
    let topics = Topics {
        bids: local,
        output: Some(prefix.name("results")),
    };
    let runs = nexmark::run(&app, &prefix, &topics, false)
        .await
        .expect("the queries run");
    let pushed = common::bridge::push(
        app.log(),
        &prefix.name("results"),
        &addr,
        "results-out",
        false,
    )
    .await
    .expect("copying the results out");
    assert_eq!(pushed, runs.iter().map(|r| r.results).sum::<u64>());

    // The broker holds every result; q2's are exactly the selected bids (in some order:
    // the two input partitions interleave).
    let out = read_broker(&addr, "results-out").await;
    assert_eq!(out.len() as u64, pushed);
    let mut q2: Vec<(u64, u64)> = out
        .iter()
        .filter(|v| v["query"] == "q2")
        .map(|v| {
            (
                v["auction"].as_u64().unwrap_or(0),
                v["price"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let mut selected: Vec<(u64, u64)> = bids(&events)
        .filter(|(b, _)| b.auction % 123 == 0)
        .map(|(b, _)| (b.auction, b.price))
        .collect();
    q2.sort_unstable();
    selected.sort_unstable();
    assert!(!selected.is_empty());
    assert_eq!(q2, selected);
    let q0 = out.iter().filter(|v| v["query"] == "q0").count() as u64;
    assert_eq!(q0, copied);

    let err = common::bridge::pull(&addr, "no-such-topic", app.log(), "elsewhere", false)
        .await
        .expect_err("no such topic");
    assert!(format!("{err:#}").contains("does it exist"), "{err:#}");
}

/// A broker on 127.0.0.1 (any port) serving a temporary log, running until the test ends.
async fn broker() -> (String, tempfile::TempDir) {
    use weir::broker::{Broker, BrokerConfig};
    let served = tempfile::tempdir().expect("a temporary directory");
    let log = weir::log::Log::open(served.path()).expect("the broker's log");
    let config = BrokerConfig {
        listen: "127.0.0.1:0".parse().expect("an address"),
        ..BrokerConfig::default()
    };
    let broker = Broker::bind(log, config)
        .await
        .expect("a broker on 127.0.0.1");
    let addr = broker.local_addr().to_string();
    tokio::spawn(broker.run_until(std::future::pending()));
    (addr, served)
}

/// Every record of every partition of `topic` at `addr`, as JSON.
async fn read_broker(addr: &str, topic: &str) -> Vec<serde_json::Value> {
    use weir::client::{Client, Consumer, ConsumerConfig, Offset};
    let client = Client::connect(addr).await.expect("connecting");
    let mut consumer = Consumer::new(client, ConsumerConfig::default());
    consumer
        .assign_all(topic, Offset::Earliest)
        .await
        .expect("reading a topic at the broker");
    let mut out = Vec::new();
    loop {
        for r in consumer.poll().await.expect("polling") {
            out.push(serde_json::from_slice(r.value.as_deref().unwrap_or_default()).expect("JSON"));
        }
        if consumer.at_end() {
            break;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickstream_with_brokers_goes_through_the_broker_and_writes_the_same_results_back() {
    use clickstream::*;
    let (addr, _served) = broker().await;
    let clicks = generate(&settings(20_000, 5.0, 11));
    let (app, local_run, _dir) = fresh_app("clickstream").await;
    clickstream::run(&app, &local_run, &clicks, false)
        .await
        .expect("the embedded run");

    let (remote_app, run, _remote_dir) = fresh_app("clickstream").await;
    let run = run.remote(Some(addr.clone()));
    let r = clickstream::run(&remote_app, &run, &clicks, false)
        .await
        .expect("the run through the broker");
    // The generated clicks are at the broker for outside consumers, in one partition.
    let at_broker = read_broker(&addr, "clickstream.clicks").await;
    let sent: Vec<serde_json::Value> = clicks
        .iter()
        .map(|(c, _)| serde_json::to_value(c).expect("a click as JSON"))
        .collect();
    assert_eq!(at_broker, sent);
    assert_eq!(r.late_views, late_count(&clicks));

    let pushed = common::push_outputs(remote_app.log(), &run, false)
        .await
        .expect("producing the results back");
    let names: Vec<&str> = pushed.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        names,
        ["views-per-page", "top-pages", "sessions"].map(|t| run.name(t))
    );
    for (topic, n) in &pushed {
        let what = topic
            .strip_prefix(&run.prefix)
            .expect("under the run's prefix");
        let mut embedded: Vec<serde_json::Value> =
            common::read_json(app.log(), &local_run.name(what)).expect("the embedded results");
        let mut remote = read_broker(&addr, topic).await;
        assert!(!embedded.is_empty(), "no {what}: make the run longer");
        assert_eq!(*n, embedded.len() as u64, "{what} produced");
        let order = |v: &mut Vec<serde_json::Value>| v.sort_by_key(|x| x.to_string());
        order(&mut embedded);
        order(&mut remote);
        assert_eq!(
            remote, embedded,
            "{what} at the broker and in the embedded run"
        );
    }

    // A later run appends to the broker's topic but copies only its own events.
    let again = Run::fresh(remote_app.log(), "clickstream")
        .await
        .expect("a second run")
        .remote(Some(addr.clone()));
    let topic =
        common::append_generated(remote_app.log(), &again, "clicks", &clicks, |c| c.at, false)
            .await
            .expect("a second round trip");
    let copied: Vec<serde_json::Value> =
        common::read_json(remote_app.log(), &topic).expect("the copy");
    assert_eq!(copied, sent);
    assert_eq!(
        read_broker(&addr, "clickstream.clicks").await.len(),
        2 * sent.len()
    );
}
