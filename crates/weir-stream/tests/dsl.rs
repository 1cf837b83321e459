//! The stateless operators, event time and idle inputs, through the test driver.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_stream::{
    Context, Event, Operator, Session, StreamError, TestDriver, Topic, Tumbling, Windowed, secs,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Bid {
    auction: u64,
    price: u64,
    at: i64,
}

fn bid(auction: u64, price: u64, at: i64) -> Bid {
    Bid { auction, price, at }
}

#[test]
fn stateless_operators_transform_as_named() -> Result<(), StreamError> {
    let mut t = TestDriver::new();
    let p = t.pipeline("ops");
    let bids = p.source::<Bid>(Topic::json("bids"));
    let (cheap, dear) = bids.branch(|b| b.price < 100);
    cheap
        .map(|b| b.price * 2)
        .filter(|p| *p != 20)
        .sink(Topic::json("doubled-cheap"));
    dear.flat_map(|b| vec![b.auction; 2])
        .filter_map(|a| (a != 9).then_some(a + 1000))
        .sink(Topic::json("dear-auctions"));
    for b in [
        bid(1, 5, 0),
        bid(2, 10, 0),
        bid(3, 500, 0),
        bid(9, 900, 0),
        bid(4, 99, 0),
    ] {
        t.pipe_json("bids", 0, &b)?;
    }
    assert_eq!(t.read_json::<u64>("doubled-cheap"), vec![10, 198]);
    assert_eq!(t.read_json::<u64>("dear-auctions"), vec![1003, 1003]);
    Ok(())
}

#[test]
fn merge_joins_two_sources_and_inspect_sees_event_times() -> Result<(), StreamError> {
    let mut t = TestDriver::new();
    let p = t.pipeline("merged");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let a = p.source::<u64>(Topic::json("a"));
    let b = p.source::<u64>(Topic::json("b"));
    a.merge(b)
        .inspect(move |e| s2.lock().unwrap().push((e.time, e.value)))
        .sink(Topic::json("both"));
    t.pipe_json("a", 10, &1u64)?;
    t.pipe_json("b", 20, &2u64)?;
    t.pipe_json("a", 30, &3u64)?;
    assert_eq!(t.read_json::<u64>("both"), vec![1, 2, 3]);
    assert_eq!(*seen.lock().unwrap(), vec![(10, 1), (20, 2), (30, 3)]);
    Ok(())
}

#[test]
fn poison_json_goes_to_dead_letters_with_its_error_and_the_rest_flows() -> Result<(), StreamError> {
    let mut t = TestDriver::new();
    t.pipeline("poison")
        .source::<Bid>(Topic::json("bids"))
        .map(|b| b.price)
        .sink(Topic::json("prices"));
    t.pipe_json("bids", 1, &bid(1, 7, 0))?;
    t.pipe_raw("bids", 0, 2, Some(b"k"), b"{not json")?;
    t.pipe_json("bids", 3, &bid(2, 8, 0))?;
    assert_eq!(t.read_json::<u64>("prices"), vec![7, 8]);
    let dead = t.read_output("poison.dead-letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(&dead[0].value[..], b"{not json");
    assert_eq!(dead[0].key.as_deref(), Some(&b"k"[..]));
    let error = dead[0]
        .headers
        .iter()
        .find(|(k, _)| k == weir_stream::ERROR_HEADER)
        .and_then(|(_, v)| v.clone())
        .expect("error header");
    assert!(String::from_utf8_lossy(&error).contains("invalid JSON"));
    assert_eq!(t.metrics("poison").unwrap().dead_letters, 1);
    Ok(())
}

#[test]
fn event_time_extractor_and_out_of_orderness_drive_the_watermark() -> Result<(), StreamError> {
    let mut t = TestDriver::new();
    t.pipeline("wm")
        .source::<Bid>(
            Topic::json("bids")
                .event_time(|b: &Bid| b.at)
                .out_of_orderness(Duration::from_millis(100)),
        )
        .key_by(|b| b.auction)
        .window(Tumbling::every(Duration::from_millis(1000)))
        .count()
        .sink(Topic::json("counts"));
    // Record timestamps say nothing; the extractor decides.
    t.pipe_json("bids", 999_999, &bid(1, 1, 500))?;
    assert_eq!(t.watermark("wm"), Some(400));
    t.pipe_json("bids", 0, &bid(1, 1, 1050))?;
    assert!(t.read_json::<Windowed<u64, u64>>("counts").is_empty());
    t.pipe_json("bids", 0, &bid(1, 1, 1100))?;
    assert_eq!(
        t.read_json::<Windowed<u64, u64>>("counts"),
        vec![Windowed {
            key: 1,
            start: 0,
            end: 1000,
            value: 1
        }]
    );
    Ok(())
}

#[test]
fn an_idle_partition_stops_holding_the_watermark_back() -> Result<(), StreamError> {
    let mut t = TestDriver::new();
    t.pipeline("idle")
        .idle_timeout(secs(5))
        .source::<u64>(Topic::json("in").partitions(2))
        .key_by(|v| *v)
        .window(Tumbling::every(secs(1)))
        .count()
        .sink(Topic::json("out"));
    t.pipe_raw("in", 0, 100, None, b"7")?;
    t.pipe_raw("in", 0, 5_000, None, b"7")?;
    // Partition 1 has seen nothing: the watermark waits for it.
    assert_eq!(t.watermark("idle"), Some(i64::MIN));
    t.advance_wall_time(secs(6))?;
    assert_eq!(t.watermark("idle"), Some(5_000));
    assert_eq!(
        t.read_json::<Windowed<u64, u64>>("out"),
        vec![Windowed {
            key: 7,
            start: 0,
            end: 1000,
            value: 1
        }]
    );
    Ok(())
}

#[test]
fn late_records_are_counted_and_go_to_the_late_topic() -> Result<(), StreamError> {
    let mut t = TestDriver::new();
    t.pipeline("late")
        .source::<u64>(Topic::json("in"))
        .key_by(|v| *v)
        .window(Session::gap(Duration::from_millis(10)))
        .late(Topic::json("late-in"))
        .count()
        .sink(Topic::json("out"));
    t.pipe_raw("in", 0, 100, None, b"1")?;
    t.pipe_raw("in", 0, 200, None, b"1")?;
    t.pipe_raw("in", 0, 150, None, b"2")?;
    assert_eq!(t.read_json::<u64>("late-in"), vec![2]);
    assert_eq!(t.metrics("late").unwrap().late_records, 1);
    Ok(())
}

/// A user operator: running total per batch, with state.
struct RunningTotal(u64);

impl Operator for RunningTotal {
    type In = u64;
    type Out = u64;

    fn process(&mut self, input: Vec<Event<u64>>, out: &mut Vec<Event<u64>>, _cx: &mut Context) {
        for e in input {
            self.0 += e.value;
            out.push(Event::new(e.time, self.0));
        }
    }

    fn on_checkpoint(&mut self, state: &mut weir_stream::StateWriter<'_>) {
        state.put(b"total", &self.0.to_be_bytes());
    }
}

#[test]
fn user_operators_process_and_checkpoint() -> Result<(), StreamError> {
    let mut t = TestDriver::new();
    t.pipeline("custom")
        .source::<u64>(Topic::json("in"))
        .operator(RunningTotal(0))
        .sink(Topic::json("out"));
    for v in [1, 2, 3] {
        t.pipe_json("in", 0, &v)?;
    }
    assert_eq!(t.read_json::<u64>("out"), vec![1, 3, 6]);
    // The operator's entry and the input's event-time position.
    assert_eq!(t.checkpoint()?, 3);
    Ok(())
}

#[test]
fn a_pipeline_without_a_source_is_refused_with_a_reason() {
    let mut t = TestDriver::new();
    let _ = t.pipeline("empty");
    let err = t.advance_wall_time(secs(1)).unwrap_err();
    assert!(err.to_string().contains("no source"), "{err}");
}

#[test]
fn emit_updates_sends_the_current_result_after_each_change() -> Result<(), StreamError> {
    let mut t = TestDriver::new();
    t.pipeline("updates")
        .source::<u64>(Topic::json("in"))
        .key_by(|v| *v)
        .window(Tumbling::every(Duration::from_millis(100)).emit_updates())
        .count()
        .sink(Topic::json("out"));
    for ts in [10, 20, 30, 150] {
        t.pipe_raw("in", 0, ts, None, b"5")?;
    }
    t.advance_watermark(i64::MAX)?;
    let w = |start, value| Windowed {
        key: 5u64,
        start,
        end: start + 100,
        value,
    };
    assert_eq!(
        t.read_json::<Windowed<u64, u64>>("out"),
        vec![w(0, 1), w(0, 2), w(0, 3), w(100, 1)]
    );
    Ok(())
}

#[test]
fn records_too_large_for_their_topic_are_counted_not_fatal() -> Result<(), StreamError> {
    let mut t = TestDriver::new();
    t.pipeline("big")
        .source::<String>(Topic::json("in"))
        .map(|s| s.repeat(1000))
        .sink(Topic::json("out"));
    t.pipe_json("in", 0, &"x".repeat(900))?; // 900 KB out: more than a 1 MiB batch can hold
    t.pipe_json("in", 0, &"y".to_string())?;
    assert_eq!(t.read_json::<String>("out").len(), 1);
    assert_eq!(t.metrics("big").unwrap().encode_errors, 1);

    // A 900 KB dead letter is cut to fit, and says how long it was.
    let junk = vec![b'{'; 900_000];
    t.pipe_raw("in", 0, 0, None, &junk)?;
    let dead = t.read_output("big.dead-letters");
    assert_eq!(dead.len(), 1);
    assert!(dead[0].value.len() < junk.len());
    let truncated = dead[0]
        .headers
        .iter()
        .find(|(k, _)| k == weir_stream::TRUNCATED_HEADER)
        .and_then(|(_, v)| v.clone());
    assert_eq!(truncated.as_deref(), Some(&b"900000"[..]));
    Ok(())
}

/// A user codec: values are little-endian u32s.
struct U32Le;

impl weir_stream::Codec<u32> for U32Le {
    fn decode(&self, b: &[u8]) -> Result<u32, weir_stream::CodecError> {
        let b: [u8; 4] = b
            .try_into()
            .map_err(|_| weir_stream::CodecError(format!("a u32 is 4 bytes, got {}", b.len())))?;
        Ok(u32::from_le_bytes(b))
    }

    fn encode(&self, v: &u32, out: &mut Vec<u8>) -> Result<(), weir_stream::CodecError> {
        out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
}

#[test]
fn raw_bytes_and_user_codecs_round_trip() -> Result<(), StreamError> {
    let mut t = TestDriver::new();
    t.pipeline("codecs")
        .source(Topic::raw("raw-in"))
        .map(|b: bytes::Bytes| u32::try_from(b.len()).unwrap_or(u32::MAX))
        .sink(Topic::with_codec("lengths", U32Le));
    t.pipe_raw("raw-in", 0, 0, None, b"hello")?;
    t.pipe_raw("raw-in", 0, 0, None, b"")?;
    let out: Vec<u32> = t
        .read_output("lengths")
        .iter()
        .map(|r| weir_stream::Codec::decode(&U32Le, &r.value).unwrap())
        .collect();
    assert_eq!(out, vec![5, 0]);
    Ok(())
}
