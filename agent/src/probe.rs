//! `mpijob-agent probe`: exit 0 only when an SSH server answers with its
//! banner. Usable as a Kubernetes exec readiness probe.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::banner::{self, NoBanner};

/// Connect to `host:port` and return the server's SSH banner line.
pub fn banner(host: IpAddr, port: u16, timeout: Duration) -> Result<String> {
    let addr = SocketAddr::new(host, port);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let start = Instant::now();
        let mut stream = banner::connect(addr, timeout).await.map_err(|why| {
            anyhow!("no SSH server on {addr}: {why}; is the worker running with --port {port}?")
        })?;
        let left = timeout
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(1));
        banner::read(&mut stream, left).await.map_err(|e| match e {
            NoBanner::Closed | NoBanner::TooLong => {
                anyhow!("{addr} is not an SSH server (no SSH- banner); check --port")
            }
            why => anyhow!(
                "{addr} accepted the connection but sent no SSH banner: {why}; is sshd overloaded (MaxStartups)?"
            ),
        })
    })
}
