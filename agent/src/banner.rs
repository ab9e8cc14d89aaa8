//! The SSH identification line, the "banner" (RFC 4253, section 4.2):
//! connect to a server and read it. The launcher's wait for the workers and
//! the readiness probe both read it here.

use std::fmt;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::errors::io_reason;

/// The longest line read before giving up: the identification line is at
/// most 255 bytes, and lines a server sends before it are short too.
pub const MAX_LINE: usize = 8192;

/// Why no banner came from a server that accepted the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoBanner {
    /// It closed the connection first.
    Closed,
    /// A line ran past [`MAX_LINE`] without being one.
    TooLong,
    TimedOut(Duration),
    /// Reading failed: the reason in words.
    Failed(String),
}

impl fmt::Display for NoBanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoBanner::Closed => f.write_str("the connection was closed"),
            NoBanner::TooLong => write!(f, "no SSH- line in the first {MAX_LINE} bytes"),
            NoBanner::TimedOut(d) => write!(f, "none within {}", mpijob_api::duration::format(*d)),
            NoBanner::Failed(why) => f.write_str(why),
        }
    }
}

/// What a server sent so far, scanned for the identification line. A
/// server may send other lines before it.
#[derive(Debug, Default)]
pub struct Scan {
    line: Vec<u8>,
}

impl Scan {
    /// Take the next bytes; the banner once it is there. A line that starts
    /// with `SSH-` and holds a protocol version counts before its line end
    /// arrives.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<String>, NoBanner> {
        for &b in bytes {
            if b == b'\n' {
                if self.line.starts_with(b"SSH-") {
                    return Ok(Some(self.banner()));
                }
                self.line.clear();
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            } else {
                return Err(NoBanner::TooLong);
            }
        }
        if self.line.starts_with(b"SSH-") && self.line.len() >= "SSH-2.0-".len() {
            return Ok(Some(self.banner()));
        }
        Ok(None)
    }

    fn banner(&self) -> String {
        String::from_utf8_lossy(&self.line).trim_end().to_string()
    }
}

/// Connect within `timeout`; the error is the reason in words.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(format!("no answer on port {}", addr.port())),
        Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => {
            Err("connection refused".to_string())
        }
        Ok(Err(e)) => Err(io_reason(&e)),
        Ok(Ok(stream)) => Ok(stream),
    }
}

/// Read the banner from a connected server within `timeout`.
pub async fn read(stream: &mut TcpStream, timeout: Duration) -> Result<String, NoBanner> {
    let read = async {
        let mut scan = Scan::default();
        let mut buf = [0u8; 512];
        loop {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| NoBanner::Failed(io_reason(&e)))?;
            if n == 0 {
                return Err(NoBanner::Closed);
            }
            if let Some(banner) = scan.feed(&buf[..n])? {
                return Ok(banner);
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(NoBanner::TimedOut(timeout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_may_follow_other_lines_and_come_in_pieces() {
        let mut scan = Scan::default();
        assert_eq!(scan.feed(b"Welcome\r\nSS"), Ok(None));
        assert_eq!(scan.feed(b"H-2."), Ok(None));
        assert_eq!(
            scan.feed(b"0-OpenSSH_9.2p1 Debian-2\r\n"),
            Ok(Some("SSH-2.0-OpenSSH_9.2p1 Debian-2".into()))
        );
    }

    #[test]
    fn a_versioned_banner_counts_before_its_line_end() {
        let mut scan = Scan::default();
        assert_eq!(scan.feed(b"SSH-2.0-"), Ok(Some("SSH-2.0-".into())));
    }

    #[test]
    fn other_servers_are_not_ssh() {
        let mut scan = Scan::default();
        assert_eq!(scan.feed(b"HTTP/1.1 400 Bad Request\r\n\r\n"), Ok(None));
        let mut scan = Scan::default();
        assert_eq!(scan.feed(&[b'x'; MAX_LINE + 1]), Err(NoBanner::TooLong));
        assert_eq!(
            NoBanner::TimedOut(Duration::from_secs(2)).to_string(),
            "none within 2s"
        );
    }
}
