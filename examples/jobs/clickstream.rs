//! The clickstream job: page views per page per minute, the top 10 pages of each minute,
//! and user sessions (30 minutes without a click ends one).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir::stream::{Session, Tumbling, Windowed, secs};
use weir::{App, Topic};

use crate::common::{self, Arrival, Clock, Gen, Rng, Run, TopN, TopNOp};

/// One page view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Click {
    /// Who.
    pub user: u32,
    /// Which page.
    pub page: String,
    /// When, ms since the epoch.
    pub at: i64,
}

/// Window size of the page counts.
pub const WINDOW_MS: i64 = 60_000;
/// How long after its end a minute still takes clicks.
pub const GRACE_MS: i64 = 5_000;
/// The watermark trails the latest click by this much.
pub const OUT_OF_ORDER_MS: i64 = 10_000;
/// A session ends after this long without a click of its user.
pub const SESSION_GAP_MS: i64 = 30 * 60_000;
/// Top pages per window.
pub const TOP: usize = 10;

/// The names of a page by rank: a few hot pages, then a long tail of products.
pub fn page_name(n: u64) -> String {
    match n {
        0 => "/".into(),
        1 => "/search".into(),
        2 => "/cart".into(),
        3 => "/checkout".into(),
        4 => "/deals".into(),
        n => format!("/product/{n}"),
    }
}

/// Generates clicks in the order they are appended. Users visit in waves: every 2 minutes
/// of event time another 1,000 users arrive, each browses for up to 6 minutes, and a user
/// comes back about 100 minutes later (a new session).
pub fn generate(g: &Gen) -> Vec<(Click, Arrival)> {
    let mut clock = Clock::new(
        g,
        OUT_OF_ORDER_MS / 2,
        WINDOW_MS + GRACE_MS + OUT_OF_ORDER_MS,
    );
    let mut rng = Rng::new(g.seed, 1);
    (0..g.events)
        .map(|_| {
            let (at, arrival) = clock.tick();
            let wave = ((at - common::EPOCH_MS) / 120_000) as u64;
            let user = ((wave * 1_000 + rng.below(3_000)) % 50_000) as u32;
            let page = page_name(rng.skewed(400));
            (Click { user, page, at }, arrival)
        })
        .collect()
}

/// What the job computed, read back from its output topics.
#[derive(Debug)]
pub struct Results {
    /// Clicks per page per closed minute.
    pub views: Vec<Windowed<String, u64>>,
    /// The top pages of each closed minute.
    pub top: Vec<TopN<String>>,
    /// Closed sessions: key = user, value = clicks; length = end - start - gap.
    pub sessions: Vec<Windowed<u32, u64>>,
    /// Late clicks counted by the page-count pipeline.
    pub late_views: u64,
    /// Late clicks counted by the session pipeline.
    pub late_sessions: u64,
    /// Clicks generated, by arrival.
    pub generated: [u64; 3],
    /// How long the pipelines took.
    pub took: Duration,
}

/// Appends the clicks, runs both pipelines to the end of their input, reads the results.
pub async fn run(
    app: &App,
    run: &Run,
    clicks: &[(Click, Arrival)],
    show: bool,
) -> anyhow::Result<Results> {
    let topic = common::append_generated(app.log(), run, "clicks", clicks, |c| c.at, show).await?;
    let source = || {
        Topic::json(topic.clone())
            .event_time(|c: &Click| c.at)
            .out_of_orderness(Duration::from_millis(OUT_OF_ORDER_MS as u64))
    };

    let views = app.pipeline(&run.name("views"));
    let counts = views
        .source::<Click>(source())
        .key_by(|c| c.page.clone())
        .window(Tumbling::every(secs(60)).grace(secs(5)))
        .count()
        .into_stream();
    let (counts, for_top) = common::tee(counts);
    counts
        .map(|(_, w)| w)
        .sink(Topic::json(run.output("views-per-page")));
    for_top
        .operator(TopNOp::new(TOP))
        .sink(Topic::json(run.output("top-pages")));

    let sessions = app.pipeline(&run.name("sessions"));
    sessions
        .source::<Click>(source())
        .key_by(|c| c.user)
        .window(Session::gap(Duration::from_millis(SESSION_GAP_MS as u64)))
        .count()
        .into_stream()
        .map(|(_, w)| w)
        .sink(Topic::json(run.output("sessions")));

    let metrics = [views.metrics(), sessions.metrics()];
    let took = common::run_to_end(
        app,
        &metrics,
        2 * clicks.len() as u64,
        show,
        "running views + sessions",
    )
    .await?;
    Ok(Results {
        views: common::read_json(app.log(), &run.name("views-per-page"))?,
        top: common::read_json(app.log(), &run.name("top-pages"))?,
        sessions: common::read_json(app.log(), &run.name("sessions"))?,
        late_views: metrics[0].snapshot().late_records,
        late_sessions: metrics[1].snapshot().late_records,
        generated: common::arrivals(clicks),
        took,
    })
}

/// Prints the results as tables.
pub fn print(r: &Results, run: &Run) {
    let n: u64 = r.generated.iter().sum();
    println!(
        "\nclickstream: {} through 2 pipelines in {:.2?} ({} clicks/s over both)",
        common::described("clicks", r.generated),
        r.took,
        common::per_sec(2 * n, r.took),
    );
    println!(
        "late clicks counted: {} by the page counts, {} by the sessions; topics {}{{clicks, views-per-page, top-pages, sessions}}",
        common::thousands(r.late_views),
        common::thousands(r.late_sessions),
        run.prefix
    );
    let rows: Vec<Vec<String>> = r
        .top
        .iter()
        .rev()
        .take(2)
        .rev()
        .flat_map(|t| {
            t.top.iter().enumerate().map(move |(i, (page, views))| {
                vec![
                    if i == 0 {
                        format!("{}-{}", common::clock(t.start), common::clock(t.end))
                    } else {
                        String::new()
                    },
                    (i + 1).to_string(),
                    page.clone(),
                    common::thousands(views),
                ]
            })
        })
        .collect();
    common::print_table(
        &format!(
            "Top {TOP} pages of the last 2 of {} closed minutes (1-minute tumbling windows)",
            r.top.len()
        ),
        &["minute (UTC)", "rank", "page", "views"],
        &rows,
    );

    let mut totals = std::collections::BTreeMap::<&str, u64>::new();
    for w in &r.views {
        *totals.entry(&w.key).or_default() += w.value;
    }
    let all: Vec<(&str, u64)> = totals.into_iter().collect();
    let rows: Vec<Vec<String>> = common::top_n(all, 5)
        .into_iter()
        .map(|(p, v)| vec![p.to_string(), common::thousands(v)])
        .collect();
    common::print_table(
        &format!(
            "Most viewed pages over all closed minutes ({} page-minute counts)",
            common::thousands(r.views.len())
        ),
        &["page", "views"],
        &rows,
    );

    let lengths: Vec<i64> = r
        .sessions
        .iter()
        .map(|s| s.end - s.start - SESSION_GAP_MS)
        .collect();
    let count = r.sessions.len().max(1) as f64;
    let mut longest: Vec<&Windowed<u32, u64>> = r.sessions.iter().collect();
    longest.sort_by_key(|s| (std::cmp::Reverse(s.end - s.start), s.key));
    let mut rows = vec![vec![
        "all".to_string(),
        common::thousands(r.sessions.len()),
        format!(
            "{:.1} min",
            lengths.iter().sum::<i64>() as f64 / count / 60_000.0
        ),
        format!(
            "{:.1}",
            r.sessions.iter().map(|s| s.value).sum::<u64>() as f64 / count
        ),
    ]];
    for s in longest.iter().take(3) {
        rows.push(vec![
            format!("user {} from {}", s.key, common::clock(s.start)),
            "1".into(),
            format!(
                "{:.1} min",
                (s.end - s.start - SESSION_GAP_MS) as f64 / 60_000.0
            ),
            s.value.to_string(),
        ]);
    }
    common::print_table(
        "Closed user sessions (30-minute gap): count, mean length and pages; the longest 3",
        &["sessions", "count", "length", "pages"],
        &rows,
    );
}
