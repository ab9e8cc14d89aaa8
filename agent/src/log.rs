//! Logging: human-readable on a terminal, JSON in a cluster
//! (`MPIJOB_LOG_FORMAT=json`), always on stderr.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn init(format: Format) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        // Colour on a terminal only, and never under NO_COLOR (no-color.org).
        Format::Text => builder
            .with_ansi(
                std::io::stderr().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            )
            .init(),
        Format::Json => builder.json().flatten_event(true).init(),
    }
}

/// The one-line summary Kubernetes shows as the container's termination
/// message. Written only where the kubelet provides the file: never create
/// files in /dev.
pub fn termination_message(line: &str) {
    let path = std::path::Path::new(mpijob_api::contract::TERMINATION_LOG);
    if path.exists() {
        let _ = std::fs::write(path, format!("{line}\n"));
    }
}
