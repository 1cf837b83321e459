//! Window semantics as properties: random keyed events with random out-of-order times,
//! fed through the test driver, against a brute-force reference written from the rules in
//! `window.rs`'s module docs. Outputs (window, key, value) and late counts must be equal.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use weir_stream::{Hopping, Session, TestDriver, Topic, Tumbling, Windowed};

#[derive(Debug, Clone, Copy)]
enum Kind {
    Time { size: i64, slide: i64 },
    Session { gap: i64 },
}

/// (key, value, event time) in arrival order.
type Events = Vec<(u8, i64, i64)>;

#[derive(Debug, Clone, Default, PartialEq)]
struct Aggs {
    count: u64,
    sum: i64,
    min: i64,
    max: i64,
    avg: f64,
}

/// serde_json parses floats to within an ulp, not exactly.
fn round(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

type Results = BTreeMap<(u8, i64, i64), Aggs>;

fn aggs(values: &[i64]) -> Aggs {
    let sum: i64 = values.iter().sum();
    Aggs {
        count: values.len() as u64,
        sum,
        min: *values.iter().min().unwrap(),
        max: *values.iter().max().unwrap(),
        avg: round(values.iter().map(|v| *v as f64).sum::<f64>() / values.len() as f64),
    }
}

/// The rules, applied one record at a time with the watermark as it stood before it.
fn reference(kind: Kind, bound: i64, grace: i64, events: &Events) -> (Results, u64) {
    let mut wm = i64::MIN;
    let mut late = 0;
    let mut groups: BTreeMap<(u8, i64, i64), Vec<i64>> = BTreeMap::new();
    let mut kept: BTreeMap<u8, Vec<(i64, i64)>> = BTreeMap::new();
    for &(k, v, t) in events {
        match kind {
            Kind::Time { size, slide } => {
                let mut dropped = false;
                let first = (t - size).div_euclid(slide) * slide;
                let mut s = first;
                while s <= t {
                    if s <= t && t < s + size {
                        if s + size + grace <= wm {
                            dropped = true;
                        } else {
                            groups.entry((k, s, s + size)).or_default().push(v);
                        }
                    }
                    s += slide;
                }
                late += u64::from(dropped);
            }
            Kind::Session { .. } => {
                if t + grace < wm {
                    late += 1;
                } else {
                    kept.entry(k).or_default().push((t, v));
                }
            }
        }
        wm = wm.max(t - bound);
    }
    if let Kind::Session { gap } = kind {
        for (k, mut recs) in kept {
            recs.sort_unstable();
            let mut cur: Option<(i64, i64, Vec<i64>)> = None;
            for (t, v) in recs {
                match &mut cur {
                    Some((_, end, vals)) if t < *end => {
                        *end = (*end).max(t + gap);
                        vals.push(v);
                    }
                    _ => {
                        if let Some((s, e, vals)) = cur.take() {
                            groups.insert((k, s, e), vals);
                        }
                        cur = Some((t, t + gap, vec![v]));
                    }
                }
            }
            if let Some((s, e, vals)) = cur {
                groups.insert((k, s, e), vals);
            }
        }
    }
    let results = groups
        .into_iter()
        .map(|(w, vals)| (w, aggs(&vals)))
        .collect();
    (results, late)
}

/// The same through weir-stream: one pipeline per aggregation over one input topic.
fn run(kind: Kind, bound: i64, grace: i64, events: &Events) -> (Results, Vec<u64>) {
    let mut t = TestDriver::new();
    let grace_d = Duration::from_millis(grace as u64);
    for name in ["count", "sum", "min", "max", "avg"] {
        let keyed = t
            .pipeline(name)
            .source::<(u8, i64)>(
                Topic::json("in").out_of_orderness(Duration::from_millis(bound as u64)),
            )
            .key_by(|(k, _)| *k);
        let out = Topic::json(format!("out-{name}"));
        macro_rules! agg {
            ($w:expr) => {{
                let w = keyed.window($w);
                match name {
                    "count" => w.count().map_values(|r| r.map(|v| v as f64)).sink(out),
                    "sum" => w.sum(|v| v.1).map_values(|r| r.map(|v| v as f64)).sink(out),
                    "min" => w.min(|v| v.1).map_values(|r| r.map(|v| v as f64)).sink(out),
                    "max" => w.max(|v| v.1).map_values(|r| r.map(|v| v as f64)).sink(out),
                    _ => w.avg(|v| v.1).sink(out),
                }
            }};
        }
        match kind {
            Kind::Time { size, slide } => agg!(
                Hopping::of(
                    Duration::from_millis(size as u64),
                    Duration::from_millis(slide as u64)
                )
                .grace(grace_d)
            ),
            Kind::Session { gap } => {
                agg!(Session::gap(Duration::from_millis(gap as u64)).grace(grace_d))
            }
        }
    }
    for &(k, v, ts) in events {
        t.pipe_json("in", ts, &(k, v)).unwrap();
    }
    t.advance_watermark(i64::MAX).unwrap();
    let mut results: Results = BTreeMap::new();
    for name in ["count", "sum", "min", "max", "avg"] {
        let out: Vec<Windowed<u8, f64>> = t.read_json(&format!("out-{name}"));
        let mut seen = std::collections::BTreeSet::new();
        for w in out {
            assert!(
                seen.insert((w.key, w.start, w.end)),
                "{name}: window emitted twice: {w:?}"
            );
            let a = results.entry((w.key, w.start, w.end)).or_default();
            match name {
                "count" => a.count = w.value as u64,
                "sum" => a.sum = w.value as i64,
                "min" => a.min = w.value as i64,
                "max" => a.max = w.value as i64,
                _ => a.avg = round(w.value),
            }
        }
    }
    let late = ["count", "sum", "min", "max", "avg"]
        .iter()
        .map(|n| t.metrics(n).unwrap().late_records)
        .collect();
    (results, late)
}

trait MapWindowed<K, A> {
    fn map<B>(self, f: impl Fn(A) -> B) -> Windowed<K, B>;
}

impl<K, A> MapWindowed<K, A> for Windowed<K, A> {
    fn map<B>(self, f: impl Fn(A) -> B) -> Windowed<K, B> {
        Windowed {
            key: self.key,
            start: self.start,
            end: self.end,
            value: f(self.value),
        }
    }
}

/// Event times that mostly advance, with random disorder of up to `jitter`.
fn events(max_len: usize) -> impl Strategy<Value = (Events, i64)> {
    (0i64..80).prop_flat_map(move |jitter| {
        let ev = (0u8..4, -50i64..50, 0i64..30, -jitter..=jitter);
        prop::collection::vec(ev, 0..max_len).prop_map(move |raw| {
            let mut base = 1_000;
            let events = raw
                .into_iter()
                .map(|(k, v, step, j)| {
                    base += step;
                    (k, v, base + j)
                })
                .collect();
            (events, jitter)
        })
    })
}

fn check(kind: Kind, bound: i64, grace: i64, events: &Events) -> Result<(), TestCaseError> {
    let (want, want_late) = reference(kind, bound, grace, events);
    let (got, late) = run(kind, bound, grace, events);
    prop_assert_eq!(got, want);
    for l in late {
        prop_assert_eq!(l, want_late);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn tumbling_windows_match_the_reference(
        (events, _) in events(150), size in 1i64..120, bound in 0i64..60, grace in 0i64..60,
    ) {
        check(Kind::Time { size, slide: size }, bound, grace, &events)?;
    }

    #[test]
    fn hopping_windows_match_the_reference(
        (events, _) in events(150), size in 1i64..120, slide_frac in 1i64..=8, bound in 0i64..60,
        grace in 0i64..60,
    ) {
        let slide = (size / slide_frac).max(1);
        check(Kind::Time { size, slide }, bound, grace, &events)?;
    }

    #[test]
    fn session_windows_match_the_reference(
        (events, _) in events(150), gap in 1i64..80, bound in 0i64..60, grace in 0i64..60,
    ) {
        check(Kind::Session { gap }, bound, grace, &events)?;
    }
}

#[test]
fn tumbling_is_hopping_with_slide_equal_to_size() {
    assert_eq!(
        Tumbling::every(Duration::from_millis(30)),
        Hopping::of(Duration::from_millis(30), Duration::from_millis(30))
    );
}
