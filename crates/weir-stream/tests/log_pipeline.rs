//! Pipelines over the real embedded log: dead letters, checkpoints and restarts.

mod common;

use common::read_all;
use weir_log::{Log, Record, TopicConfig};
use weir_stream::{App, StreamError, Topic, Tumbling, Windowed, secs};

async fn create(log: &Log, topic: &str, partitions: i32) {
    let config = TopicConfig {
        retention_ms: -1,
        ..TopicConfig::default()
    };
    log.create_topic(topic, partitions, config).await.unwrap();
}

async fn append(log: &Log, from: i64, to: i64) {
    let recs: Vec<Record> = (from..to)
        .map(|i| Record::value(i * 100, (i % 3).to_string()))
        .collect();
    log.append_records("in", 0, &recs).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_go_to_dead_letters_and_the_rest_is_processed() -> Result<(), StreamError> {
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(dir.path())?;
    create(app.log(), "numbers", 2).await;
    let mut poison = 0;
    for p in 0..2 {
        let records: Vec<Record> = (0..500)
            .map(|i| {
                if i % 50 == 7 {
                    poison += 1;
                    Record::value(i, format!("{{\"broken\": {i}"))
                } else {
                    Record::value(i, i.to_string())
                }
            })
            .collect();
        app.log().append_records("numbers", p, &records).await?;
    }
    app.pipeline("squares")
        .source::<i64>(Topic::json("numbers"))
        .map(|n| n * n)
        .sink(Topic::json("squares"));
    app.run_to_end().await?;

    let squares = read_all(app.log(), "squares");
    assert_eq!(squares.len(), 1000 - poison);
    let mut got: Vec<i64> = squares
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().unwrap()).unwrap())
        .collect();
    got.sort_unstable();
    let mut want: Vec<i64> = (0..2)
        .flat_map(|_| (0..500i64).filter(|i| i % 50 != 7).map(|i| i * i))
        .collect();
    want.sort_unstable();
    assert_eq!(got, want);

    let dead = read_all(app.log(), "squares.dead-letters");
    assert_eq!(dead.len(), poison);
    for d in &dead {
        let error = d
            .headers
            .iter()
            .find(|(k, _)| k == weir_stream::ERROR_HEADER)
            .and_then(|(_, v)| v.as_deref())
            .expect("every dead letter says why");
        assert!(String::from_utf8_lossy(error).contains("invalid JSON"));
        assert!(d.value.as_deref().unwrap().starts_with(b"{\"broken\""));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_windows_and_offsets_from_the_last_checkpoint() -> Result<(), StreamError>
{
    let dir = tempfile::tempdir().unwrap();
    let define = |app: &App| {
        app.pipeline("per-key")
            .source::<u32>(Topic::json("in"))
            .key_by(|k| *k)
            .window(Tumbling::every(secs(10)))
            .count()
            .sink(Topic::json("out"));
    };
    {
        let app = App::open(dir.path())?;
        create(app.log(), "in", 1).await;
        // 0..15 s: the first 10 s window closes, the second stays open in state.
        append(app.log(), 0, 150).await;
        define(&app);
        app.run_to_end().await?;
        assert_eq!(read_all(app.log(), "out").len(), 3);
    }
    let app = App::open(dir.path())?;
    append(app.log(), 150, 301).await;
    define(&app);
    app.run_to_end().await?;
    let out: Vec<Windowed<u32, u64>> = read_all(app.log(), "out")
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().unwrap()).unwrap())
        .collect();
    let mut want = Vec::new();
    for w in 0..3 {
        for k in 0..3 {
            let n = (w * 100..(w + 1) * 100).filter(|i| i % 3 == k).count() as u64;
            want.push(Windowed {
                key: k as u32,
                start: w * 10_000,
                end: (w + 1) * 10_000,
                value: n,
            });
        }
    }
    assert_eq!(out, want);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_finishes_the_current_checkpoint() -> Result<(), StreamError> {
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(dir.path())?;
    create(app.log(), "in", 1).await;
    append(app.log(), 0, 5_000).await;
    let p = app
        .pipeline("copy")
        // No checkpoint comes by itself before the stop.
        .checkpoint_interval(secs(3600))
        .checkpoint_records(u64::MAX);
    let metrics = p.metrics();
    p.source::<u32>(Topic::json("in"))
        .sink(Topic::json("copied"));
    let log = app.log().clone();
    let visible_before_stop = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = visible_before_stop.clone();
    let stop = async move {
        while metrics.snapshot().records_in < 5_000 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        *seen.lock().unwrap() = Some(read_all(&log, "copied").len());
    };
    app.run_until(stop).await?;
    // Readers saw nothing before the checkpoint, everything after it.
    assert_eq!(*visible_before_stop.lock().unwrap(), Some(0));
    assert_eq!(read_all(app.log(), "copied").len(), 5_000);
    let committed = app
        .log()
        .committed_offset("copy", "in", 0)?
        .expect("an offset");
    assert_eq!(committed.offset, 5_000);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_hopping_windows_survive_a_restart_unchanged() -> Result<(), StreamError> {
    // The same input, once in one run and once split over two runs with a restart between:
    // the outputs must be equal.
    async fn run(dir: &std::path::Path, split: i64) -> (Vec<String>, Vec<String>) {
        for (from, to) in [(0, split), (split, 400)] {
            let app = App::open(dir).unwrap();
            if app.log().topic("in").is_none() {
                create(app.log(), "in", 1).await;
            }
            if from < to {
                // A pause of a second after every 50 records ends the sessions.
                let recs: Vec<Record> = (from..to)
                    .map(|i| Record::value(i * 100 + (i / 50) * 1000, (i % 3).to_string()))
                    .collect();
                app.log().append_records("in", 0, &recs).await.unwrap();
            }
            let keyed = app
                .pipeline("both")
                .source::<u32>(Topic::json("in"))
                .key_by(|k| *k);
            let (a, b) = keyed.into_stream().branch(|(_, v)| *v != 1);
            a.map(|kv| kv.1)
                .key_by(|k| *k)
                .window(weir_stream::Session::gap(std::time::Duration::from_millis(
                    400,
                )))
                .aggregate_merge(0u64, |n, v| *n += u64::from(*v) + 1, |a, b| *a += b)
                .sink(Topic::json("sessions"));
            b.map(|kv| kv.1)
                .key_by(|k| *k)
                .window(weir_stream::Hopping::of(secs(5), secs(1)))
                .count()
                .sink(Topic::json("hops"));
            app.run_to_end().await.unwrap();
        }
        let log = Log::open(dir).unwrap();
        let text = |t| {
            read_all(&log, t)
                .iter()
                .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned())
                .collect::<Vec<_>>()
        };
        (text("sessions"), text("hops"))
    }
    let whole = tempfile::tempdir().unwrap();
    let split = tempfile::tempdir().unwrap();
    let (sessions, hops) = run(whole.path(), 400).await;
    // 8 pauses close 7 sessions per key (the last stays open), for keys 0 and 2.
    assert_eq!(sessions.len(), 14, "{sessions:?}");
    assert!(!hops.is_empty());
    assert_eq!(run(split.path(), 173).await, (sessions, hops));
    Ok(())
}
