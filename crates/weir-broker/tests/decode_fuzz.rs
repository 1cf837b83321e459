//! Random bytes into the request decoding path: no panic, no hang, no huge allocation.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{batch, request_frame, service};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use proptest::prelude::*;
use weir_broker::{BrokerConfig, Handled, Reply, SERVED, Service};

/// Runs one frame through the service; awaits a deferred reply for a short while.
fn drive(rt: &tokio::runtime::Runtime, svc: &Service, frame: Bytes) -> Option<Reply> {
    match svc.handle(frame) {
        Handled::Ready(r) => Some(r),
        Handled::Later(f) | Handled::Ordered(f) => rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(50), f)
                .await
                .ok()
        }),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn valid_frames() -> Vec<Vec<u8>> {
    let topic = TopicName(StrBytes::from_static_str("fz"));
    let produce = ProduceRequest::default().with_acks(1).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(topic.clone())
            .with_partition_data(vec![
                PartitionProduceData::default().with_records(Some(batch(2, 1))),
            ]),
    ]);
    let fetch = FetchRequest::default()
        .with_max_wait_ms(10)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(topic)
                .with_partitions(vec![
                    FetchPartition::default().with_partition_max_bytes(1 << 20),
                ]),
        ]);
    vec![
        request_frame(9, 1, &produce).to_vec(),
        request_frame(3, 1, &produce).to_vec(),
        request_frame(12, 2, &fetch).to_vec(),
        request_frame(4, 2, &fetch).to_vec(),
        request_frame(9, 3, &MetadataRequest::default()).to_vec(),
        request_frame(3, 4, &ApiVersionsRequest::default()).to_vec(),
    ]
}

#[test]
fn huge_array_counts_are_refused_before_allocation() {
    let rt = runtime();
    let (_d, svc) = service(BrokerConfig::default());
    // Metadata v0, client id "x", then a topic array claiming i32::MAX elements.
    let frame = [
        0, 3, 0, 0, 0, 0, 0, 1, 0, 1, b'x', 0x7f, 0xff, 0xff, 0xff, 0, 1,
    ];
    let r = drive(&rt, &svc, Bytes::copy_from_slice(&frame));
    assert!(
        matches!(r, Some(Reply::Close(ref why)) if why.contains("claims more")),
        "{r:?}"
    );
    // Produce v9 (flexible): a compact array claiming 2^28 topics.
    let mut frame = vec![0, 0, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 0];
    frame.extend_from_slice(&[0, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x01]);
    let r = drive(&rt, &svc, Bytes::from(frame));
    assert!(matches!(r, Some(Reply::Close(_))), "{r:?}");
}

/// Runs `cases` random inputs against one service (opening a log per case is slow).
fn fuzz<S: Strategy>(strategy: S, to_frame: impl Fn(S::Value) -> Vec<u8>)
where
    S::Value: std::fmt::Debug,
{
    let rt = runtime();
    let (_d, svc) = service(BrokerConfig::default());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 2000,
        ..ProptestConfig::default()
    });
    runner
        .run(&strategy, |v| {
            drive(&rt, &svc, Bytes::from(to_frame(v)));
            Ok(())
        })
        .unwrap();
}

#[test]
fn random_frames_never_panic() {
    fuzz(proptest::collection::vec(any::<u8>(), 0..512), |f| f);
}

#[test]
fn random_bodies_behind_valid_headers_never_panic() {
    let strategy = (
        0..SERVED.len(),
        any::<u16>(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..512),
    );
    fuzz(strategy, |(api, version_pick, flexible_header, body)| {
        let (key, lo, hi) = SERVED[api];
        let version = lo + (version_pick % (hi - lo + 1) as u16) as i16;
        let mut frame = Vec::new();
        frame.extend_from_slice(&(key as i16).to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&1i32.to_be_bytes());
        frame.extend_from_slice(&[0, 1, b'c']);
        if flexible_header {
            frame.push(0);
        }
        frame.extend_from_slice(&body);
        frame
    });
}

#[test]
fn mutated_valid_requests_never_panic() {
    let frames = valid_frames();
    let strategy = (
        any::<prop::sample::Index>(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        any::<prop::sample::Index>(),
        any::<bool>(),
    );
    fuzz(strategy, move |(pick, flips, cut, truncate)| {
        let mut f = pick.get(&frames).clone();
        for (at, byte) in flips {
            let i = at.index(f.len());
            f[i] ^= byte;
        }
        if truncate {
            f.truncate(cut.index(f.len() + 1));
        }
        f
    });
}
