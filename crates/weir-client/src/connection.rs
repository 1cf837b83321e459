//! One TCP connection to a broker: framing, ApiVersions negotiation and
//! pipelined requests matched to responses by correlation id.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
use kafka_protocol::messages::api_versions_response::ApiVersionsResponse;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{ClientError, Result};
use crate::versions::{self, VersionTable};

/// Settings of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// The client id sent in every request header.
    pub client_id: String,
    /// How long to wait for a TCP connection.
    pub connect_timeout: Duration,
    /// How long to wait for any one response (a fetch adds its own max wait to this).
    pub request_timeout: Duration,
    /// Largest response frame accepted.
    pub max_response_bytes: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            client_id: "weir-client".into(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_response_bytes: 512 << 20,
        }
    }
}

type Reply = oneshot::Sender<Result<Bytes>>;

struct Outgoing {
    correlation_id: i32,
    frame: Bytes,
    reply: Option<Reply>,
}

struct Shared {
    addr: SocketAddr,
    pending: Mutex<HashMap<i32, Reply>>,
    closed: AtomicBool,
    close_reason: Mutex<Option<String>>,
}

impl Shared {
    fn fail_all(&self, reason: String) {
        self.closed.store(true, Ordering::Release);
        let mut slot = self.close_reason.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(reason.clone());
        }
        drop(slot);
        let pending: Vec<Reply> = {
            let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            map.drain().map(|(_, r)| r).collect()
        };
        for reply in pending {
            let _ = reply.send(Err(ClientError::Disconnected {
                addr: self.addr,
                reason: reason.clone(),
            }));
        }
    }

    fn disconnected(&self) -> ClientError {
        let reason = self
            .close_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "connection closed".into());
        ClientError::Disconnected {
            addr: self.addr,
            reason,
        }
    }
}

/// A connection to one broker; cheap to share behind an `Arc`, safe to use
/// from many tasks at once (requests are pipelined).
pub struct Connection {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Outgoing>,
    next_correlation_id: AtomicI32,
    versions: VersionTable,
    config: ConnectionConfig,
    client_id: StrBytes,
    reader: JoinHandle<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.shared.addr)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Connection {
    /// Connects to `addr` and negotiates API versions.
    pub async fn connect(addr: SocketAddr, config: ConnectionConfig) -> Result<Connection> {
        let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Connect {
                addr: addr.to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connect timed out after {:?}", config.connect_timeout),
                ),
            })?
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let shared = Arc::new(Shared {
            addr,
            pending: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            close_reason: Mutex::new(None),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(write, rx, shared.clone()));
        let reader = tokio::spawn(read_loop(read, shared.clone(), config.max_response_bytes));
        let mut conn = Connection {
            shared,
            tx,
            next_correlation_id: AtomicI32::new(1),
            versions: VersionTable::default(),
            client_id: StrBytes::from_string(config.client_id.clone()),
            config,
            reader,
        };
        conn.versions = conn.negotiate().await?;
        Ok(conn)
    }

    /// The broker's address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Whether the connection has failed or been closed by the broker.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// The negotiated version table.
    pub fn versions(&self) -> &VersionTable {
        &self.versions
    }

    /// The version this connection uses for `key`: the highest both sides support.
    pub fn version_for(&self, key: ApiKey) -> Result<i16> {
        self.versions.pick(key, self.shared.addr)
    }

    async fn negotiate(&self) -> Result<VersionTable> {
        let ours = versions::client_range(ApiKey::ApiVersions);
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("weir-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut version = ours.max;
        for _ in 0..2 {
            let frame = self
                .roundtrip_raw::<ApiVersionsRequest>(&request, version, None)
                .await?;
            let mut buf = frame.clone();
            // The response header of ApiVersions is always v0: just the correlation id.
            buf.advance(4);
            let decoded = ApiVersionsResponse::decode(&mut buf.clone(), version);
            let response = match decoded {
                Ok(r) if r.error_code == 0 => r,
                _ => {
                    // KIP-511: a broker that does not speak our version answers in v0
                    // with UNSUPPORTED_VERSION and the ranges it does speak.
                    let v0 = ApiVersionsResponse::decode(&mut buf, 0).map_err(|e| {
                        ClientError::Protocol {
                            addr: self.addr(),
                            api: "ApiVersions",
                            reason: e.to_string(),
                        }
                    })?;
                    if v0.error_code != 35 {
                        crate::error::check(
                            v0.error_code,
                            || format!("ApiVersions from {}", self.addr()),
                            None,
                        )?;
                    }
                    let theirs = v0
                        .api_keys
                        .iter()
                        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                        .map(|k| k.max_version)
                        .unwrap_or(0);
                    let next = theirs.min(ours.max);
                    if v0.error_code == 0 || next == version {
                        return Ok(VersionTable::from_response(&v0));
                    }
                    version = next;
                    continue;
                }
            };
            return Ok(VersionTable::from_response(&response));
        }
        Err(ClientError::Protocol {
            addr: self.addr(),
            api: "ApiVersions",
            reason: "broker rejected every ApiVersions version offered".into(),
        })
    }

    /// Sends `request` at the negotiated version and waits for its response.
    pub async fn send<R: Request>(&self, request: &R) -> Result<R::Response> {
        let key = api_key_of::<R>();
        let version = self.version_for(key)?;
        self.send_at(request, version, None).await
    }

    /// Like [`send`](Self::send) but allows `extra` time beyond the request timeout
    /// (for long-polling fetches).
    pub async fn send_with_extra_time<R: Request>(
        &self,
        request: &R,
        extra: Duration,
    ) -> Result<R::Response> {
        let key = api_key_of::<R>();
        let version = self.version_for(key)?;
        self.send_at(request, version, Some(extra)).await
    }

    /// Sends `request` at an explicit `version`.
    pub async fn send_at<R: Request>(
        &self,
        request: &R,
        version: i16,
        extra: Option<Duration>,
    ) -> Result<R::Response> {
        let frame = self.roundtrip_raw(request, version, extra).await?;
        decode_response::<R>(frame, version, self.addr())
    }

    /// Sends `request` without expecting a response (Produce with acks=0).
    pub fn send_no_response<R: Request>(&self, request: &R) -> Result<()> {
        let version = self.version_for(api_key_of::<R>())?;
        let (id, frame) = self.encode(request, version)?;
        self.enqueue(id, frame, None)
    }

    async fn roundtrip_raw<R: Request>(
        &self,
        request: &R,
        version: i16,
        extra: Option<Duration>,
    ) -> Result<Bytes> {
        self.start_raw(request, version, extra)?.frame().await
    }

    /// Queues `request` at the negotiated version and returns a handle on its
    /// response. Requests queued one after another are sent in that order.
    pub fn start<R: Request>(&self, request: &R) -> Result<InFlight<R>> {
        let version = self.version_for(api_key_of::<R>())?;
        Ok(InFlight {
            raw: self.start_raw(request, version, None)?,
            version,
            _request: std::marker::PhantomData,
        })
    }

    fn start_raw<R: Request>(
        &self,
        request: &R,
        version: i16,
        extra: Option<Duration>,
    ) -> Result<RawInFlight> {
        let (id, frame) = self.encode(request, version)?;
        let (reply, rx) = oneshot::channel();
        self.enqueue(id, frame, Some(reply))?;
        Ok(RawInFlight {
            rx,
            id,
            shared: self.shared.clone(),
            timeout: self.config.request_timeout + extra.unwrap_or_default(),
            api: versions::api_name(api_key_of::<R>()),
        })
    }

    fn enqueue(&self, correlation_id: i32, frame: Bytes, reply: Option<Reply>) -> Result<()> {
        if self.is_closed() {
            return Err(self.shared.disconnected());
        }
        self.tx
            .send(Outgoing {
                correlation_id,
                frame,
                reply,
            })
            .map_err(|_| self.shared.disconnected())
    }

    fn encode<R: Request>(&self, request: &R, version: i16) -> Result<(i32, Bytes)> {
        let id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(self.client_id.clone()));
        let frame = encode_frame(&header, request, version)?;
        Ok((id, frame))
    }
}

/// A request that was sent and whose response is awaited.
pub struct InFlight<R: Request> {
    raw: RawInFlight,
    version: i16,
    _request: std::marker::PhantomData<fn() -> R>,
}

impl<R: Request> std::fmt::Debug for InFlight<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("api", &self.raw.api)
            .field("correlation_id", &self.raw.id)
            .finish()
    }
}

impl<R: Request> InFlight<R> {
    /// Waits for the response and decodes it.
    pub async fn response(self) -> Result<R::Response> {
        let addr = self.raw.shared.addr;
        let frame = self.raw.frame().await?;
        decode_response::<R>(frame, self.version, addr)
    }
}

struct RawInFlight {
    rx: oneshot::Receiver<Result<Bytes>>,
    id: i32,
    shared: Arc<Shared>,
    timeout: Duration,
    api: &'static str,
}

impl RawInFlight {
    async fn frame(self) -> Result<Bytes> {
        match tokio::time::timeout(self.timeout, self.rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.shared.disconnected()),
            Err(_) => {
                self.shared
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&self.id);
                Err(ClientError::Timeout {
                    api: self.api,
                    addr: self.shared.addr,
                    timeout_ms: self.timeout.as_millis() as u64,
                })
            }
        }
    }
}

/// The api key of a request type.
pub(crate) fn api_key_of<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions)
}

/// Encodes a length-prefixed request frame (sans-io).
pub fn encode_frame<R: Request>(
    header: &RequestHeader,
    request: &R,
    version: i16,
) -> Result<Bytes> {
    let encode_error = |e: &dyn std::fmt::Display| ClientError::Encode {
        api: versions::api_name(api_key_of::<R>()),
        reason: e.to_string(),
    };
    let header_version = R::header_version(version);
    let size = header
        .compute_size(header_version)
        .and_then(|h| Ok(h + request.compute_size(version)?))
        .map_err(|e| encode_error(&e))?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header
        .encode(&mut buf, header_version)
        .and_then(|()| request.encode(&mut buf, version))
        .map_err(|e| encode_error(&e))?;
    Ok(buf.freeze())
}

/// Decodes a response frame (without its length prefix) for request type `R` (sans-io).
pub fn decode_response<R: Request>(
    mut frame: Bytes,
    version: i16,
    addr: SocketAddr,
) -> Result<R::Response> {
    let key = api_key_of::<R>();
    let protocol = |e: String| ClientError::Protocol {
        addr,
        api: versions::api_name(key),
        reason: e,
    };
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    ResponseHeader::decode(&mut frame, header_version).map_err(|e| protocol(e.to_string()))?;
    let response = R::Response::decode(&mut frame, version).map_err(|e| protocol(e.to_string()))?;
    Ok(response)
}

async fn write_loop(
    write: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
) {
    let mut out = BufWriter::with_capacity(256 << 10, write);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        // Write everything queued, then flush once.
        while let Some(msg) = next.take() {
            if let Some(reply) = msg.reply {
                shared
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(msg.correlation_id, reply);
            }
            if let Err(e) = out.write_all(&msg.frame).await {
                shared.fail_all(format!("write failed: {e}"));
                return;
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = out.flush().await {
            shared.fail_all(format!("write failed: {e}"));
            return;
        }
    }
    let _ = out.shutdown().await;
}

async fn read_loop(read: OwnedReadHalf, shared: Arc<Shared>, max_bytes: usize) {
    let mut read = BufReader::with_capacity(64 << 10, read);
    let reason = loop {
        let len = match read.read_i32().await {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break "broker closed the connection".to_string();
            }
            Err(e) => break format!("read failed: {e}"),
        };
        if len < 4 || len as usize > max_bytes {
            break format!("response frame of {len} bytes (limit {max_bytes})");
        }
        let len = len as usize;
        // Read into uninitialised capacity: zeroing multi-MiB fetch responses first costs.
        let mut buf = BytesMut::with_capacity(len);
        let mut failed = None;
        while buf.len() < len {
            let want = len - buf.len();
            match read.read_buf(&mut (&mut buf).limit(want)).await {
                Ok(0) => {
                    failed = Some("broker closed the connection mid-frame".to_string());
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    failed = Some(format!("read failed mid-frame: {e}"));
                    break;
                }
            }
        }
        if let Some(reason) = failed {
            break reason;
        }
        let frame = buf.freeze();
        let id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let reply = shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        match reply {
            Some(reply) => {
                let _ = reply.send(Ok(frame));
            }
            None => tracing::debug!(
                addr = %shared.addr,
                correlation_id = id,
                "response for an unknown or timed-out request"
            ),
        }
    };
    shared.fail_all(reason);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::MetadataRequest;
    use kafka_protocol::protocol::decode_request_header_from_buffer;

    #[test]
    fn frame_round_trips_through_the_broker_side_decoder() {
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Metadata as i16)
            .with_request_api_version(12)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("t")));
        let req = MetadataRequest::default().with_topics(None);
        let frame = encode_frame(&header, &req, 12).unwrap();
        let mut body = frame.slice(4..);
        assert_eq!(
            i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            body.len()
        );
        let h = decode_request_header_from_buffer(&mut body).unwrap();
        assert_eq!(h.correlation_id, 7);
        assert_eq!(h.request_api_version, 12);
        let back = MetadataRequest::decode(&mut body, 12).unwrap();
        assert_eq!(back.topics, None);
        assert!(body.is_empty());
    }
}
