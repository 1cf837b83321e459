//! The thin TCP loop: accept connections, cut frames, hand them to the [`Service`], write
//! replies in request order.

use std::future::Future;
use std::net::SocketAddr;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use weir_log::Log;

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::frame::{self, PREFIX_LEN};
use crate::service::{Handled, Reply, Service};

/// A bound broker; [`Broker::run_until`] serves it.
#[derive(Debug)]
pub struct Broker {
    listener: TcpListener,
    local: SocketAddr,
    service: Service,
    config: BrokerConfig,
}

impl Broker {
    /// Binds the listen address; the broker serves once [`Broker::run_until`] runs.
    pub async fn bind(log: Log, config: BrokerConfig) -> Result<Broker, BrokerError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| BrokerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local = listener.local_addr()?;
        let advertised = config.advertised(local);
        tracing::info!(%local, advertised = %format!("{}:{}", advertised.0, advertised.1), "broker bound");
        let service = Service::new(log, config.clone(), advertised);
        Ok(Broker {
            listener,
            local,
            service,
            config,
        })
    }

    /// The address bound (the real port when the listen port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The request handler, for serving frames without a socket.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Serves until `shutdown` resolves; then stops accepting, stops reading new requests and
    /// lets every connection finish its in-flight ones (up to `shutdown_grace`).
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), BrokerError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((sock, peer)) => {
                        let _ = sock.set_nodelay(true);
                        conns.spawn(connection(
                            sock,
                            peer,
                            self.service.clone(),
                            self.config.max_frame_bytes,
                            self.config.max_in_flight_per_connection.max(1),
                            stop_rx.clone(),
                        ));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        tracing::info!(
            connections = conns.len(),
            "shutting down: finishing in-flight requests"
        );
        drop(self.listener);
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(self.config.shutdown_grace, async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                connections = conns.len(),
                "connections still busy after the shutdown grace; closing them"
            );
            conns.abort_all();
        }
        // Every acknowledged produce was committed before its answer; make the rest durable.
        self.service.log().sync().await?;
        Ok(())
    }
}

/// A request read but not yet answered.
enum InFlight {
    Ready(Reply),
    Task(JoinHandle<Reply>),
}

async fn connection(
    sock: TcpStream,
    peer: SocketAddr,
    service: Service,
    max_frame: usize,
    max_in_flight: usize,
    mut stop: watch::Receiver<bool>,
) {
    tracing::debug!(%peer, "connection opened");
    let (mut rd, wr) = sock.into_split();
    let (tx, rx) = mpsc::channel(max_in_flight);
    let writer = tokio::spawn(write_replies(wr, rx, peer));
    let mut buf = BytesMut::with_capacity(64 << 10);
    'conn: loop {
        loop {
            match frame::take_frame(&mut buf, max_frame) {
                Ok(Some(f)) => {
                    let item = match service.handle_from(f, Some(peer)) {
                        Handled::Ready(r) => InFlight::Ready(r),
                        Handled::Later(fut) => InFlight::Task(tokio::spawn(fut)),
                        // Finish it before reading on: later requests may depend on it.
                        Handled::Ordered(fut) => InFlight::Ready(fut.await),
                    };
                    let closing = matches!(item, InFlight::Ready(Reply::Close(_)));
                    if tx.send(item).await.is_err() || closing {
                        break 'conn;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "closing connection");
                    break 'conn;
                }
            }
        }
        // Make room for the frame that is arriving, so it is read in few calls; in steps of
        // at most 8 MiB, so a bare length prefix cannot make us allocate 100 MiB up front.
        if let Ok(Some(len)) = frame::frame_len(&buf, max_frame) {
            let missing = (PREFIX_LEN + len).saturating_sub(buf.len());
            buf.reserve(missing.min(8 << 20));
        } else if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 << 10);
        }
        tokio::select! {
            read = rd.read_buf(&mut buf) => match read {
                Ok(0) => {
                    if !buf.is_empty() {
                        tracing::warn!(%peer, bytes = buf.len(), "connection closed inside a frame");
                    }
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "read failed");
                    break;
                }
            },
            _ = stop.changed() => break,
        }
    }
    drop(tx);
    let _ = writer.await;
    tracing::debug!(%peer, "connection closed");
}

async fn write_replies(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<InFlight>, peer: SocketAddr) {
    while let Some(item) = rx.recv().await {
        let reply = match item {
            InFlight::Ready(r) => r,
            InFlight::Task(t) => t
                .await
                .unwrap_or_else(|e| Reply::Close(format!("request handler failed: {e}"))),
        };
        match reply {
            Reply::Frame(b) => {
                if let Err(e) = wr.write_all(&b).await {
                    tracing::debug!(%peer, error = %e, "write failed");
                    break;
                }
            }
            Reply::Silent => {}
            Reply::Close(why) => {
                tracing::warn!(%peer, reason = %why, "closing connection");
                break;
            }
        }
    }
    let _ = wr.shutdown().await;
}
