//! The sans-io core: one request frame in, one response frame (or none) out.
//!
//! [`Service::handle`] decodes the header, checks the body's shape, decodes it with
//! kafka-protocol and runs its handler. Whatever must reach the log in request order (the
//! appends of a produce) is submitted before `handle` returns; the rest (waiting for the
//! commit, a fetch's long poll) is the returned future, awaited by the connection in order.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
use weir_log::{Log, LogError, TopicConfig, TopicMeta};

use crate::config::BrokerConfig;
use crate::frame::{PREFIX_LEN, seal};
use crate::group::{self, Groups};
use crate::handlers;
use crate::shape;

/// A boxed future that the connection awaits for a response.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What to send back for one request.
#[derive(Debug)]
pub enum Reply {
    /// A whole response frame, length prefix included.
    Frame(Bytes),
    /// Nothing (a produce with acks=0).
    Silent,
    /// Close the connection: the request could not be understood. Says why, for the log.
    Close(String),
}

/// A request handled now, or a future that finishes it.
pub enum Handled {
    /// The reply is ready.
    Ready(Reply),
    /// The reply comes when this future resolves; later requests may be handled meanwhile.
    Later(BoxFuture<Reply>),
    /// The reply comes when this future resolves, and the connection's next request must
    /// wait for it (it changes which topics exist, which later requests may depend on).
    Ordered(BoxFuture<Reply>),
}

impl std::fmt::Debug for Handled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ready(r) => f.debug_tuple("Ready").field(r).finish(),
            Self::Later(_) => f.write_str("Later(..)"),
            Self::Ordered(_) => f.write_str("Ordered(..)"),
        }
    }
}

/// What a handler produces: a response now, later, or none.
pub(crate) enum Outcome<R> {
    Now(R),
    Later(BoxFuture<R>),
    /// Like `Later`, but the connection waits for it before its next request.
    Ordered(BoxFuture<R>),
    /// No response (a produce with acks=0). The future names a failure, if any, which
    /// closes the connection as Kafka does, so the producer notices and refreshes.
    Unanswered {
        ordered: bool,
        outcome: BoxFuture<Option<String>>,
    },
}

/// The APIs and versions weir serves, as ApiVersions reports them.
pub const SERVED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
];

/// The versions of `api` weir serves, if any.
pub fn served_versions(api: ApiKey) -> Option<(i16, i16)> {
    SERVED
        .iter()
        .find(|(k, _, _)| *k == api)
        .map(|&(_, lo, hi)| (lo, hi))
}

/// Shared state of every connection of one broker.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub log: Log,
    pub config: BrokerConfig,
    pub host: String,
    pub port: i32,
    pub groups: Groups,
}

impl AsRef<Groups> for Ctx {
    fn as_ref(&self) -> &Groups {
        &self.groups
    }
}

impl Ctx {
    /// A topic by its Kafka id.
    pub fn topic_by_id(&self, id: uuid::Uuid) -> Option<TopicMeta> {
        self.log.topic_by_uuid(id.as_bytes())
    }

    /// Creates `names` with the default partition count; an existing topic counts as done.
    /// Returns each name with the error that kept it from existing, if any.
    pub async fn create_missing(
        self: Arc<Self>,
        names: Vec<String>,
    ) -> Vec<(String, Option<LogError>)> {
        let pending: Vec<_> = names
            .into_iter()
            .map(|n| {
                let p =
                    self.log
                        .create_topic(&n, self.config.num_partitions, TopicConfig::default());
                (n, p)
            })
            .collect();
        let mut out = Vec::with_capacity(pending.len());
        let mut raced = false;
        for (name, p) in pending {
            match p.await {
                Ok(_) => tracing::info!(topic = %name, "auto-created topic"),
                // Another connection created it; its commit may still be publishing.
                Err(LogError::TopicExists(_)) => raced = true,
                Err(e) => {
                    out.push((name, Some(e)));
                    continue;
                }
            }
            out.push((name, None));
        }
        if raced {
            // The writer answers a sync after publishing everything committed before it.
            let _ = self.log.sync().await;
        }
        out
    }
}

/// The Kafka protocol over a log, without sockets. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Service {
    ctx: Arc<Ctx>,
}

impl Service {
    /// A service over `log`, telling clients to connect to `advertised`.
    ///
    /// Inside a tokio runtime it starts the task that expires silent group members; outside
    /// one, they expire when the next group request comes in.
    pub fn new(log: Log, config: BrokerConfig, advertised: (String, u16)) -> Self {
        let groups = Groups::load(config.groups.clone(), log.clone());
        let ctx = Arc::new(Ctx {
            log,
            config,
            host: advertised.0,
            port: i32::from(advertised.1),
            groups,
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(group::drive(Arc::downgrade(&ctx)));
        }
        crate::metrics::watch_groups(&ctx);
        Self { ctx }
    }

    /// The log served.
    pub fn log(&self) -> &Log {
        &self.ctx.log
    }

    /// Handles one request frame (without its length prefix).
    ///
    /// Never panics on any input; a frame that cannot be understood gives
    /// [`Reply::Close`].
    pub fn handle(&self, frame: Bytes) -> Handled {
        self.handle_from(frame, None)
    }

    /// [`Service::handle`] for a request from `peer` (group members are described with it).
    pub fn handle_from(&self, frame: Bytes, peer: Option<SocketAddr>) -> Handled {
        let Some(fixed) = frame.get(..8) else {
            return close(format!(
                "request of {} bytes is shorter than a request header",
                frame.len()
            ));
        };
        let api_key = i16::from_be_bytes([fixed[0], fixed[1]]);
        let version = i16::from_be_bytes([fixed[2], fixed[3]]);
        let correlation_id = i32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let Ok(api) = ApiKey::try_from(api_key) else {
            return close(format!("unknown api key {api_key}"));
        };
        if api == ApiKey::ApiVersions && served_versions(api).is_some_and(|r| version > r.1) {
            // KIP-511: answer in v0 so the client learns what we serve and retries.
            let resp = handlers::api_versions::unsupported();
            return Handled::Ready(encode(correlation_id, 0, &resp));
        }
        let Some((lo, hi)) = served_versions(api) else {
            return handlers::unserved::reply(api, version, correlation_id);
        };
        if !(lo..=hi).contains(&version) {
            return close(format!(
                "{api:?} v{version} is not supported (weir serves v{lo}-v{hi})"
            ));
        }
        let (header, body) = match parse_header(api, version, frame) {
            Ok(x) => x,
            Err(e) => return close(e),
        };
        let c = &self.ctx;
        let corr = header.correlation_id;
        match api {
            ApiKey::ApiVersions => run(corr, version, body, |r| {
                handlers::api_versions::handle(version, r)
            }),
            ApiKey::Metadata => run(corr, version, body, |r| {
                handlers::metadata::handle(c, version, r)
            }),
            ApiKey::Produce => run(corr, version, body, |r| {
                handlers::produce::handle(c, version, r)
            }),
            ApiKey::Fetch => run(corr, version, body, |r| {
                handlers::fetch::handle(c, version, r)
            }),
            ApiKey::ListOffsets => run(corr, version, body, |r| {
                handlers::list_offsets::handle(c, r)
            }),
            ApiKey::CreateTopics => run(corr, version, body, |r| {
                handlers::admin::create_topics(c, version, r)
            }),
            ApiKey::DeleteTopics => run(corr, version, body, |r| {
                handlers::admin::delete_topics(c, version, r)
            }),
            ApiKey::DescribeConfigs => run(corr, version, body, |r| {
                handlers::admin::describe_configs(c, version, r)
            }),
            ApiKey::InitProducerId => {
                run(corr, version, body, |r| handlers::producer_id::handle(c, r))
            }
            ApiKey::DeleteRecords => run(corr, version, body, |r| {
                handlers::delete_records::handle(c, r)
            }),
            ApiKey::FindCoordinator => run(corr, version, body, |r| {
                handlers::find_coordinator::handle(c, version, r)
            }),
            ApiKey::JoinGroup => run(corr, version, body, |r| {
                let client = header.client_id.as_deref().unwrap_or_default();
                handlers::membership::join(c, version, r, client, peer)
            }),
            ApiKey::SyncGroup => run(corr, version, body, |r| {
                handlers::membership::sync(c, version, r)
            }),
            ApiKey::Heartbeat => run(corr, version, body, |r| {
                handlers::membership::heartbeat(c, r)
            }),
            ApiKey::LeaveGroup => run(corr, version, body, |r| {
                handlers::membership::leave(c, version, r)
            }),
            ApiKey::OffsetCommit => run(corr, version, body, |r| handlers::offsets::commit(c, r)),
            ApiKey::OffsetFetch => run(corr, version, body, |r| {
                handlers::offsets::fetch(c, version, r)
            }),
            ApiKey::DescribeGroups => run(corr, version, body, |r| {
                handlers::group_admin::describe(c, version, r)
            }),
            ApiKey::ListGroups => run(corr, version, body, |r| {
                handlers::group_admin::list(c, version, r)
            }),
            ApiKey::DeleteGroups => {
                run(corr, version, body, |r| handlers::group_admin::delete(c, r))
            }
            other => close(format!("{other:?} is listed as served but has no handler")),
        }
    }
}

fn close(why: String) -> Handled {
    Handled::Ready(Reply::Close(why))
}

/// Splits a frame into its decoded header and the body after it.
pub(crate) fn parse_header(
    api: ApiKey,
    version: i16,
    mut frame: Bytes,
) -> Result<(RequestHeader, Bytes), String> {
    let hv = api.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, hv)
        .map_err(|e| format!("malformed {api:?} v{version} request header: {e}"))?;
    Ok((header, frame))
}

/// Checks, decodes and handles a body, then encodes what the handler produced.
fn run<Q, R>(
    correlation_id: i32,
    version: i16,
    mut body: Bytes,
    handler: impl FnOnce(Q) -> Outcome<R>,
) -> Handled
where
    Q: Decodable + kafka_protocol::protocol::Request,
    R: Encodable + HeaderVersion + Send + 'static,
{
    let api = ApiKey::try_from(Q::KEY).expect("a request type has a known key");
    if let Err(e) = shape::check(api, version, &body) {
        return close(e);
    }
    let req = match Q::decode(&mut body, version) {
        Ok(r) => r,
        Err(e) => return close(format!("malformed {api:?} v{version} request: {e}")),
    };
    match handler(req) {
        Outcome::Now(r) => Handled::Ready(encode(correlation_id, version, &r)),
        Outcome::Later(fut) => Handled::Later(Box::pin(async move {
            let r = fut.await;
            encode(correlation_id, version, &r)
        })),
        Outcome::Unanswered { ordered, outcome } => {
            let fut: BoxFuture<Reply> = Box::pin(async move {
                match outcome.await {
                    None => Reply::Silent,
                    Some(why) => Reply::Close(format!("acks=0 produce failed: {why}")),
                }
            });
            if ordered {
                Handled::Ordered(fut)
            } else {
                Handled::Later(fut)
            }
        }
        Outcome::Ordered(fut) => Handled::Ordered(Box::pin(async move {
            let r = fut.await;
            encode(correlation_id, version, &r)
        })),
    }
}

/// Encodes a response frame: length prefix, response header, body.
pub(crate) fn encode<R: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    resp: &R,
) -> Reply {
    let hv = R::header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header.compute_size(hv).unwrap_or(8) + resp.compute_size(version).unwrap_or(64);
    let mut out = BytesMut::with_capacity(PREFIX_LEN + size);
    out.put_i32(0);
    let done = header
        .encode(&mut out, hv)
        .and_then(|()| resp.encode(&mut out, version));
    match done {
        Ok(()) => {
            seal(&mut out);
            Reply::Frame(out.freeze())
        }
        // A bug in weir (a field set that the version lacks); the client cannot act on it.
        Err(e) => Reply::Close(format!("cannot encode a v{version} response: {e}")),
    }
}
