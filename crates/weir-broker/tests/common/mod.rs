//! Helpers shared by the broker's tests: request frames, replies, a log in a temp dir.
#![allow(dead_code)]

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use weir_broker::{BrokerConfig, Handled, Reply, Service};
use weir_log::{Log, Record};

/// A request frame without its length prefix.
pub fn request_frame<R: Request>(version: i16, correlation_id: i32, req: &R) -> Bytes {
    let api = ApiKey::try_from(R::KEY).unwrap();
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("weir-test")));
    let mut b = BytesMut::new();
    header
        .encode(&mut b, api.request_header_version(version))
        .unwrap();
    req.encode(&mut b, version).unwrap();
    b.freeze()
}

/// The same with its length prefix, as it goes on the wire.
pub fn wire_frame<R: Request>(version: i16, correlation_id: i32, req: &R) -> Vec<u8> {
    let body = request_frame(version, correlation_id, req);
    let mut out = (body.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

pub async fn reply(h: Handled) -> Reply {
    match h {
        Handled::Ready(r) => r,
        Handled::Later(f) | Handled::Ordered(f) => f.await,
    }
}

/// Decodes a response frame (length prefix included); returns its correlation id too.
pub fn decode_response<R: Request>(version: i16, frame: Bytes) -> (i32, R::Response) {
    let mut b = frame;
    let len = b.get_i32() as usize;
    assert_eq!(len, b.len(), "length prefix matches the frame");
    let header = ResponseHeader::decode(&mut b, R::Response::header_version(version)).unwrap();
    let r = R::Response::decode(&mut b, version).unwrap();
    assert!(b.is_empty(), "{} bytes left after the response", b.len());
    (header.correlation_id, r)
}

/// Sends one request through the service and decodes its response.
pub async fn call<R: Request>(svc: &Service, version: i16, req: &R) -> R::Response {
    match reply(svc.handle(request_frame(version, 77, req))).await {
        Reply::Frame(f) => {
            let (corr, r) = decode_response::<R>(version, f);
            assert_eq!(corr, 77, "correlation id echoed");
            r
        }
        other => panic!(
            "expected a response to {:?} v{version}, got {other:?}",
            R::KEY
        ),
    }
}

pub fn service(config: BrokerConfig) -> (tempfile::TempDir, Service) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let svc = Service::new(log, config, ("127.0.0.1".into(), 9092));
    (dir, svc)
}

/// An uncompressed v2 batch of `n` records valued `v0..`, keyed `k0..`, at timestamp `ts`.
pub fn batch(n: usize, ts: i64) -> Bytes {
    let recs: Vec<Record> = (0..n)
        .map(|i| Record::keyed(ts, format!("k{i}"), format!("v{i}")))
        .collect();
    Bytes::from(weir_log::batch::encode(&recs))
}
