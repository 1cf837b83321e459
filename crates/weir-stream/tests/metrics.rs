//! A parallel pipeline's metrics: its tasks count into one set of series per operator
//! (the repartition topic's writer and reader included), and the window gauges of its tasks
//! add up while they run and return to zero once they stop.

use std::sync::{Arc, Mutex};

use weir_log::{Record, TopicConfig};
use weir_stream::{App, Topic, Tumbling, secs};

/// The value of the sample whose line starts with `line_start`, if the scrape has it.
fn sample(scrape: &str, line_start: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_pipeline_counts_per_operator_over_all_its_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(dir.path()).unwrap();
    app.log()
        .create_topic("m-in", 2, TopicConfig::default())
        .await
        .unwrap();
    for p in 0..2 {
        // Keys 0..4 in both partitions, 10 s of event time each.
        let recs: Vec<Record> = (0..100i64)
            .map(|i| Record::value(i * 100, (i % 4).to_string()))
            .collect();
        app.log().append_records("m-in", p, &recs).await.unwrap();
    }
    let metrics = Arc::new(Mutex::new(None));
    let seen = metrics.clone();
    app.parallel("m-par", move |p| {
        *seen.lock().unwrap() = Some(p.metrics());
        p.source::<u32>(Topic::json("m-in"))
            .key_by(|k| *k)
            .repartition()
            .window(Tumbling::every(secs(1)))
            .count()
            .sink(Topic::json("m-out"));
    });
    app.run_to_end().await.unwrap();

    let scrape = weir_metrics::encode_text();
    let ops = |dir: &str, op: &str| {
        let line =
            format!("weir_stream_records_{dir}_total{{operator=\"{op}\",pipeline=\"m-par\"}}");
        sample(&scrape, &line).unwrap_or_else(|| panic!("no {line} in:\n{scrape}"))
    };
    assert_eq!(ops("in", "source:m-in"), 200.0, "both tasks' inputs");
    assert_eq!(ops("out", "sink:m-par.repartition-1"), 200.0);
    assert_eq!(
        ops("in", "source:m-par.repartition-1"),
        200.0,
        "markers are not records"
    );
    assert_eq!(ops("in", "2-time-window"), 200.0);
    // Windows [0, 1 s) .. [8 s, 9 s) closed for 4 keys; [9 s, 10 s) stays open in state.
    assert_eq!(ops("out", "2-time-window"), 36.0);
    assert_eq!(ops("in", "sink:m-out"), 36.0);
    let snapshot = metrics.lock().unwrap().as_ref().unwrap().snapshot();
    assert_eq!(snapshot.records_in, 200);
    assert_eq!(snapshot.records_out, 36);
    assert!(snapshot.checkpoints >= 2, "{snapshot:?}");
    // The tasks have stopped: their window operators took their share of the gauges.
    for gauge in ["open_windows", "state_entries", "state_bytes"] {
        let line = format!("weir_stream_{gauge}{{pipeline=\"m-par\"}}");
        assert_eq!(sample(&scrape, &line), Some(0.0), "{line}");
    }
}
