//! A small HTTP endpoint for the Deployment's probes and for metrics:
//! `/healthz` (the process is alive), `/readyz` (the caches have synced, or
//! this replica stands by for the lease) and `/metrics` (Prometheus text).
//!
//! A replica standing by is ready: it is healthy and will take over when the
//! leader goes. Were it unready, a Deployment rollout (max unavailable 0,
//! surge 1) would wait forever for the new pod, which waits for the old
//! pod's lease.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// What the endpoint reports.
#[derive(Default)]
pub struct Health {
    pub ready: AtomicBool,
    /// Waiting for another replica's lease.
    pub standby: AtomicBool,
}

/// Serve until the process ends.
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "health and metrics endpoint listening");
    loop {
        let (mut conn, _) = listener.accept().await?;
        let health = health.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = conn.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (code, body) = match path {
                "/healthz" => (200, "ok\n".to_string()),
                "/readyz" => readyz(&health),
                "/metrics" => (200, metrics.encode()),
                _ => (404, "not found\n".to_string()),
            };
            let status = match code {
                200 => "200 OK",
                503 => "503 Service Unavailable",
                _ => "404 Not Found",
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(response.as_bytes()).await;
        });
    }
}

fn readyz(health: &Health) -> (u16, String) {
    if health.ready.load(Ordering::Relaxed) {
        (200, "ok\n".to_string())
    } else if health.standby.load(Ordering::Relaxed) {
        (
            200,
            "standing by: another replica holds the lease\n".to_string(),
        )
    } else {
        (503, "caches not synced yet\n".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_synced_or_while_standing_by() {
        let h = Health::default();
        assert_eq!(readyz(&h).0, 503);
        h.standby.store(true, Ordering::Relaxed);
        assert_eq!(
            readyz(&h),
            (
                200,
                "standing by: another replica holds the lease\n".to_string()
            )
        );
        h.standby.store(false, Ordering::Relaxed);
        assert_eq!(readyz(&h).0, 503);
        h.ready.store(true, Ordering::Relaxed);
        assert_eq!(readyz(&h), (200, "ok\n".to_string()));
    }
}
