//! `mpijob-agent probe`: exit 0 only when an SSH server answers with its
//! banner. Usable as a Kubernetes exec readiness probe.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::errors::io_reason;

/// Connect to `host:port` and return the server's SSH banner line.
pub fn banner(host: IpAddr, port: u16, timeout: Duration) -> Result<String> {
    let addr = SocketAddr::new(host, port);
    let start = Instant::now();
    let mut stream = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => bail!(
            "no SSH server on {addr}: {}; is the worker running with --port {port}?",
            io_reason(&e)
        ),
    };
    let left = timeout
        .saturating_sub(start.elapsed())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(left))?;
    // RFC 4253: the identification line ends in CRLF and is at most 255
    // bytes; a server may send other lines before it.
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while got.len() < 8192 {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => {
                got.push(byte[0]);
                if byte[0] == b'\n' {
                    let line = String::from_utf8_lossy(&got).trim_end().to_string();
                    if line.starts_with("SSH-") {
                        return Ok(line);
                    }
                    got.clear();
                }
            }
            Err(e) => bail!(
                "{addr} accepted the connection but sent no SSH banner: {}; is sshd overloaded (MaxStartups)?",
                io_reason(&e)
            ),
        }
    }
    bail!("{addr} is not an SSH server (no SSH- banner); check --port")
}
