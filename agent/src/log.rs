//! Logging: human-readable on a terminal, JSON in a cluster
//! (`MPIJOB_LOG_FORMAT=json`), always on stderr.

use std::io::IsTerminal;
use std::path::Path;

use clap::ValueEnum;
use mpijob_api::contract;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn init(format: Format) {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        // Colour on a terminal only, and never under NO_COLOR (no-color.org).
        Format::Text => registry
            .with(layer.with_ansi(
                std::io::stderr().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            ))
            .init(),
        Format::Json => registry.with(layer.json().flatten_event(true)).init(),
    }
}

/// `RUST_LOG` as `level` and `target=level` directives, comma-separated
/// (`info,mpijob_agent::local=debug`); `info` when unset or not that.
fn filter(rust_log: Option<&str>) -> Targets {
    rust_log
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

/// The one-line summary Kubernetes shows as the container's termination
/// message, in the kubelet's file.
pub fn termination_message(line: &str) {
    termination_message_to(Path::new(contract::TERMINATION_LOG), line);
}

/// [`termination_message`] into `path` (the launcher's `--termination-log`).
/// A file under /dev is written only when it exists, as the kubelet's
/// does: never create files in /dev. Any other path is created.
pub fn termination_message_to(path: &Path, line: &str) {
    if path.exists() || !path.starts_with("/dev") {
        let _ = std::fs::write(path, format!("{line}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn rust_log_takes_levels_and_targets() {
        let f = filter(Some("info,mpijob_agent::local=debug"));
        assert!(f.would_enable("mpijob_agent::local", &Level::DEBUG));
        assert!(f.would_enable("mpijob_agent::local::net", &Level::DEBUG));
        assert!(!f.would_enable("mpijob_agent::launcher", &Level::DEBUG));
        assert!(f.would_enable("mpijob_agent::launcher", &Level::INFO));
        let warn = filter(Some("warn"));
        assert!(!warn.would_enable("mpijob_agent::worker", &Level::INFO));
        assert!(warn.would_enable("mpijob_agent::worker", &Level::WARN));
        // Unset, empty or unreadable: info.
        for unset in [None, Some(""), Some("info,[span]=x")] {
            let f = filter(unset);
            assert!(
                f.would_enable("mpijob_agent::worker", &Level::INFO),
                "{unset:?}"
            );
            assert!(
                !f.would_enable("mpijob_agent::worker", &Level::DEBUG),
                "{unset:?}"
            );
        }
    }

    #[test]
    fn termination_messages_never_create_files_in_dev() {
        termination_message_to(Path::new("/dev/mpijob-test-termination-log"), "x");
        assert!(!Path::new("/dev/mpijob-test-termination-log").exists());
        let dir = std::env::temp_dir().join(format!("mpijob-log-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("termination-log");
        termination_message_to(&file, "launcher: mpirun succeeded; exit code 0");
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(text, "launcher: mpirun succeeded; exit code 0\n");
    }
}
