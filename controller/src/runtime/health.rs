//! A small HTTP endpoint for the Deployment's probes and for metrics:
//! `/healthz` (the process is alive), `/readyz` (the caches have synced, or
//! this replica stands by for the lease) and `/metrics` (Prometheus text).
//!
//! A replica standing by is ready: it is healthy and will take over when the
//! leader goes. Were it unready, a Deployment rollout (max unavailable 0,
//! surge 1) would wait forever for the new pod, which waits for the old
//! pod's lease.
//!
//! Each connection serves one request and is closed, and a client gets
//! [`HEADER_TIMEOUT`] to send its request and [`CONNECTION_DEADLINE`] in
//! all: a stalled or idle client cannot hold a connection open.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::core::metrics::Metrics;

/// How long a client has to send its request line and headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may last, whatever it is doing.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(15);

/// What the probes report.
#[derive(Default)]
pub struct Health {
    pub ready: AtomicBool,
    /// Waiting for another replica's lease.
    pub standby: AtomicBool,
}

#[derive(Clone)]
struct Shared {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

/// Serve until the process ends.
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "health and metrics endpoint listening");
    serve_on(listener, health, metrics, HEADER_TIMEOUT).await
}

async fn serve_on(
    listener: TcpListener,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    header_timeout: Duration,
) -> std::io::Result<()> {
    let app = router(Shared { health, metrics });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(false);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it
                // was accepted: the next accept may well succeed.
                tracing::warn!(error = %e, "health endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let conn =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECTION_DEADLINE, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "health endpoint: connection dropped"),
                Err(_) => tracing::debug!("health endpoint: connection outlived its deadline"),
            }
        });
    }
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(shared)
}

async fn readyz(State(s): State<Shared>) -> (StatusCode, &'static str) {
    readiness(&s.health)
}

fn readiness(health: &Health) -> (StatusCode, &'static str) {
    if health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n")
    } else if health.standby.load(Ordering::Relaxed) {
        (
            StatusCode::OK,
            "standing by: another replica holds the lease\n",
        )
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet\n")
    }
}

async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, Metrics::CONTENT_TYPE)],
        s.metrics.encode(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    #[test]
    fn ready_once_synced_or_while_standing_by() {
        let h = Health::default();
        assert_eq!(readiness(&h).0, StatusCode::SERVICE_UNAVAILABLE);
        h.standby.store(true, Ordering::Relaxed);
        assert_eq!(
            readiness(&h),
            (
                StatusCode::OK,
                "standing by: another replica holds the lease\n"
            )
        );
        h.standby.store(false, Ordering::Relaxed);
        assert_eq!(readiness(&h).0, StatusCode::SERVICE_UNAVAILABLE);
        h.ready.store(true, Ordering::Relaxed);
        assert_eq!(readiness(&h), (StatusCode::OK, "ok\n"));
    }

    /// A server on a free loopback port, with a short header timeout.
    async fn start(health: Arc<Health>, metrics: Arc<Metrics>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_on(
            listener,
            health,
            metrics,
            Duration::from_millis(300),
        ));
        addr
    }

    /// Send `request` and read until the server closes the connection, as
    /// the benchmark's client does (HTTP/1.1, no `connection: close`).
    async fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .expect("the server closes the connection after one response")
            .unwrap();
        String::from_utf8(buf).unwrap()
    }

    fn get(path: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n")
    }

    #[tokio::test]
    async fn serves_the_probes_and_the_metrics_one_request_per_connection() {
        let health = Arc::new(Health::default());
        let metrics = Arc::new(Metrics::default());
        let addr = start(health.clone(), metrics.clone()).await;

        let r = exchange(addr, &get("/healthz")).await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nok\n"), "{r}");

        let r = exchange(addr, &get("/readyz")).await;
        assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
        assert!(r.ends_with("\r\n\r\ncaches not synced yet\n"), "{r}");
        health.standby.store(true, Ordering::Relaxed);
        let r = exchange(addr, &get("/readyz")).await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nstanding by: another replica holds the lease\n"));

        metrics.wrote(crate::core::metrics::Write::Create);
        let r = exchange(addr, &get("/metrics")).await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("content-type: text/plain; version=0.0.4"), "{r}");
        assert!(
            r.contains("\nmpijob_api_writes_total{kind=\"create\"} 1\n"),
            "{r}"
        );

        let r = exchange(addr, &get("/nope")).await;
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_dropped() {
        let addr = start(Default::default(), Default::default()).await;
        for request in ["", "GET /healthz HTTP/1.1\r\nhost: x\r\n"] {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let mut buf = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("{request:?}: still open after 5 s"));
            // Closed, or reset: either way without a response.
            if let Ok(n) = read {
                assert!(
                    !String::from_utf8_lossy(&buf[..n]).contains(" 200 "),
                    "{request:?}: answered"
                );
            }
        }
    }
}
