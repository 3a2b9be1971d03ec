//! Logging: `tracing` events written to stderr, one line each, human-readable or JSON.
//!
//! Stderr, because stdout carries command output that scripts read (a new API key's token, the
//! OpenAPI document, `--print-config`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::ParseError;

use crate::config::{LogConfig, LogFormat};

/// The variable that, when set, replaces `log.level`.
pub const LOG_ENV: &str = EnvFilter::DEFAULT_ENV;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{origin}: `{directive}` is not a valid log filter: {source}")]
    Filter {
        origin: &'static str,
        directive: String,
        #[source]
        source: ParseError,
    },
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The filter in force: `RUST_LOG` when set, otherwise `log.level`.
pub fn filter(log: &LogConfig) -> Result<EnvFilter, TelemetryError> {
    let (origin, directive) = match std::env::var(LOG_ENV) {
        Ok(value) if !value.trim().is_empty() => (LOG_ENV, value),
        _ => ("log.level", log.level.clone()),
    };
    EnvFilter::try_new(&directive).map_err(|source| TelemetryError::Filter { origin, directive, source })
}

/// Installs the process-wide subscriber described by `[log]`. Call once, early in `main`.
pub fn init(log: &LogConfig) -> Result<(), TelemetryError> {
    let builder = tracing_subscriber::fmt().with_env_filter(filter(log)?).with_writer(std::io::stderr);
    let installed = match log.format {
        LogFormat::Pretty => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .try_init(),
        LogFormat::Json => {
            builder.json().with_ansi(false).with_current_span(true).with_span_list(true).try_init()
        }
    };
    installed.map_err(TelemetryError::AlreadyInstalled)
}
