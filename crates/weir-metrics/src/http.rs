//! The `/metrics` endpoint, on hyper.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// The listen address could not be bound.
    #[error(
        "cannot listen for /metrics on {addr}: {source} (is another weir using the port? pass another --metrics-listen, or port 0)"
    )]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// An HTTP server answering `GET /metrics` with the registry in Prometheus' text format.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
}

async fn answer(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => Response::builder()
            .header(hyper::header::CONTENT_TYPE, crate::CONTENT_TYPE)
            .body(Full::new(Bytes::from(crate::encode_text()))),
        (&Method::GET, "/") => Response::builder()
            .header(hyper::header::CONTENT_TYPE, "text/plain")
            .body(Full::new(Bytes::from_static(
                b"weir: metrics are at /metrics\n",
            ))),
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(
                b"not found: try GET /metrics\n",
            ))),
    };
    Ok(resp.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

impl MetricsServer {
    /// Binds the endpoint; port 0 picks a free port (see [`MetricsServer::local_addr`]).
    pub async fn bind(addr: SocketAddr) -> Result<Self, MetricsError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsError::Bind { addr, source })?;
        Ok(Self { listener })
    }

    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                accepted = self.listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    tokio::spawn(async move {
                        let conn = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), hyper::service::service_fn(answer));
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "metrics connection ended");
                        }
                    });
                }
            }
        }
    }

    /// Serves in a background task until the runtime ends; returns the bound address.
    pub fn spawn(self) -> SocketAddr {
        let addr = self.local_addr();
        tokio::spawn(self.run_until(std::future::pending()));
        addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_the_registry_as_text_format() {
        let c = crate::register("weir_test_http_total", || {
            prometheus::IntCounter::new("weir_test_http_total", "A test counter.")
        });
        c.inc_by(7);
        let addr = MetricsServer::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap()
            .spawn();
        let resp = get(addr, "/metrics").await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(
            resp.to_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{resp}"
        );
        assert!(resp.contains("weir_test_http_total 7"), "{resp}");
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
    }
}
