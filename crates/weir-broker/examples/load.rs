//! Produce and fetch throughput of an in-process broker over TCP, with raw Kafka requests.
//!
//! Run: `cargo run --release -p weir-broker --example load -- [RECORDS] [SIZE] [BATCH] [CONNS]`
//! (defaults 1000000 records of 100 bytes, 1000 records per batch, 4 connections, acks=-1,
//! fsync on every commit). Prints one JSON line with the figures and parameters.

use std::time::Instant;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ProduceRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_broker::{Broker, BrokerConfig};
use weir_log::{Log, Record};

const TOPIC: &str = "load";

fn frame<R: Request>(version: i16, corr: i32, req: &R) -> Vec<u8> {
    let api = ApiKey::try_from(R::KEY).expect("known key");
    let mut b = BytesMut::new();
    b.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .encode(&mut b, api.request_header_version(version))
        .expect("header encodes");
    req.encode(&mut b, version).expect("request encodes");
    let len = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&len.to_be_bytes());
    b.to_vec()
}

async fn read_frame(s: &mut (impl AsyncReadExt + Unpin)) -> Bytes {
    let len = s.read_i32().await.expect("response length") as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.expect("response body");
    body.into()
}

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (records, size, per_batch, conns) =
        (arg(1, 1_000_000), arg(2, 100), arg(3, 1000), arg(4, 4));
    let dir = tempfile::tempdir()?;
    let log = Log::open(dir.path())?;
    log.create_topic(TOPIC, 1, weir_log::TopicConfig::default())
        .await?;
    let config = BrokerConfig {
        listen: "127.0.0.1:0".parse()?,
        ..BrokerConfig::default()
    };
    let broker = Broker::bind(log, config).await?;
    let addr = broker.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(broker.run_until(async {
        let _ = stopped.await;
    }));

    let value = vec![b'x'; size];
    let batch: Vec<Record> = (0..per_batch)
        .map(|i| Record::keyed(1_700_000_000_000, format!("{i}"), value.clone()))
        .collect();
    let batch = Bytes::from(weir_log::batch::encode(&batch));
    let requests = records / per_batch;
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partition_data(vec![
                    PartitionProduceData::default().with_records(Some(batch.clone())),
                ]),
        ]);
    let wire = frame(9, 0, &produce);

    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let n = requests / conns + usize::from(c < requests % conns);
        let wire = wire.clone();
        tasks.push(tokio::spawn(async move {
            let s = TcpStream::connect(addr).await.expect("connect");
            s.set_nodelay(true).expect("nodelay");
            let (mut rd, mut wr) = s.into_split();
            let writer = tokio::spawn(async move {
                for _ in 0..n {
                    wr.write_all(&wire).await.expect("send");
                }
                wr
            });
            for _ in 0..n {
                read_frame(&mut rd).await;
            }
            drop(writer.await);
        }));
    }
    for t in tasks {
        t.await?;
    }
    let produce_secs = started.elapsed().as_secs_f64();
    let produced = requests * per_batch;

    let mut s = TcpStream::connect(addr).await?;
    let started = Instant::now();
    let (mut offset, mut fetched, mut corr) = (0i64, 0usize, 0);
    while fetched < produced {
        let req = FetchRequest::default()
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(16 << 20)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(16 << 20),
                    ]),
            ]);
        corr += 1;
        s.write_all(&frame(11, corr, &req)).await?;
        let mut body = read_frame(&mut s).await;
        ResponseHeader::decode(&mut body, FetchResponse::header_version(11))?;
        let resp = FetchResponse::decode(&mut body, 11)?;
        let mut recs = resp.responses[0].partitions[0]
            .records
            .clone()
            .unwrap_or_default();
        while recs.len() >= 61 {
            let base = (&recs[0..8]).get_i64();
            let len = (&recs[8..12]).get_i32() as usize + 12;
            let count = (&recs[57..61]).get_i32() as usize;
            fetched += count;
            offset = base + count as i64;
            recs.advance(len.min(recs.len()));
        }
    }
    let fetch_secs = started.elapsed().as_secs_f64();
    let _ = stop.send(());
    server.await??;

    let mb = |n: usize, secs: f64| (n * size) as f64 / secs / 1e6;
    println!(
        "{{\"records\":{produced},\"size\":{size},\"batch\":{per_batch},\"connections\":{conns},\
         \"acks\":-1,\"durability\":\"fsync\",\"cpus\":{},\
         \"produce_records_per_s\":{:.0},\"produce_mb_per_s\":{:.1},\
         \"fetch_records_per_s\":{:.0},\"fetch_mb_per_s\":{:.1}}}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        produced as f64 / produce_secs,
        mb(produced, produce_secs),
        fetched as f64 / fetch_secs,
        mb(fetched, fetch_secs),
    );
    Ok(())
}
