//! How the agent words a failure, and ends on one.

use nix::sys::signal::Signal;

/// Bad input (flags, a manifest): exit 2 after one line.
pub const BAD_INPUT: i32 = 2;
/// The role itself failed: workers that never came up, a program that
/// cannot run, a missing tool.
pub const FAILED: i32 = 1;

/// How a role ends before its main child does: the exit code and the one
/// line that says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    pub line: String,
    /// Ended by this signal rather than by a failure.
    pub signal: Option<Signal>,
}

impl Exit {
    pub fn bad_input(line: impl Into<String>) -> Exit {
        Exit {
            code: BAD_INPUT,
            line: line.into(),
            signal: None,
        }
    }

    pub fn failed(line: impl Into<String>) -> Exit {
        Exit {
            code: FAILED,
            line: line.into(),
            signal: None,
        }
    }

    /// [`Exit::failed`] with an error's whole chain on one line.
    pub fn error(e: anyhow::Error) -> Exit {
        Exit::failed(format!("{e:#}").replace('\n', " "))
    }

    /// Stopped by `sig`: 128 + the signal.
    pub fn signal(sig: Signal, line: impl Into<String>) -> Exit {
        Exit {
            code: 128 + sig as i32,
            line: line.into(),
            signal: Some(sig),
        }
    }
}

/// An I/O error's reason in words, without Rust's "(os error N)".
pub fn io_reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_lowercase(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_reasons_read_as_words() {
        let e = std::io::Error::from_raw_os_error(13);
        assert_eq!(io_reason(&e), "permission denied");
    }

    #[test]
    fn exits_carry_their_codes() {
        assert_eq!(Exit::bad_input("x").code, 2);
        assert_eq!(Exit::error(anyhow::anyhow!("a\nb")).line, "a b");
        let stopped = Exit::signal(Signal::SIGTERM, "received SIGTERM");
        assert_eq!((stopped.code, stopped.signal), (143, Some(Signal::SIGTERM)));
    }
}
