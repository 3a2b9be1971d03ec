//! Logging: `tracing` events written to stderr, one line each, human-readable or JSON; with the
//! `otlp` feature and `log.otlp_endpoint`, spans are also exported over OTLP/HTTP.
//!
//! Stderr, because stdout carries command output that scripts read (a new API key's token, the
//! OpenAPI document, `--print-config`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::ParseError;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

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
    #[error("log.otlp_endpoint: {0}")]
    Otlp(String),
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
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match log.format {
        LogFormat::Pretty => {
            lines.with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()).boxed()
        }
        LogFormat::Json => lines.json().with_ansi(false).with_current_span(true).with_span_list(true).boxed(),
    };
    tracing_subscriber::registry()
        .with(filter(log)?)
        .with(lines)
        .with(otlp::layer(log.otlp_endpoint.as_deref())?)
        .try_init()
        .map_err(|e| TelemetryError::AlreadyInstalled(e.into()))
}

/// Sends the spans not exported yet; call before the process exits.
pub fn shutdown() {
    otlp::shutdown();
}

#[cfg(feature = "otlp")]
mod otlp {
    use std::sync::OnceLock;

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::Layer;
    use tracing_subscriber::registry::LookupSpan;

    use super::TelemetryError;

    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

    /// The layer exporting spans to `endpoint`; none without one.
    pub fn layer<S>(endpoint: Option<&str>) -> Result<Option<impl Layer<S>>, TelemetryError>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        let Some(endpoint) = endpoint else { return Ok(None) };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name("switchyard").build())
            .build();
        let tracer = provider.tracer("switchyard");
        let _ = PROVIDER.set(provider);
        Ok(Some(tracing_opentelemetry::layer().with_tracer(tracer)))
    }

    pub fn shutdown() {
        if let Some(provider) = PROVIDER.get()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("warning: exporting the last spans failed: {error}");
        }
    }
}

#[cfg(not(feature = "otlp"))]
mod otlp {
    use tracing_subscriber::layer::Identity;

    use super::TelemetryError;

    /// Without the `otlp` feature an endpoint is a configuration error, not silently ignored.
    pub fn layer(endpoint: Option<&str>) -> Result<Identity, TelemetryError> {
        match endpoint {
            None => Ok(Identity::new()),
            Some(_) => Err(TelemetryError::Otlp(
                "this build cannot export traces; build with `--features otlp`".into(),
            )),
        }
    }

    pub fn shutdown() {}
}

#[cfg(all(test, not(feature = "otlp")))]
mod tests {
    #[test]
    fn an_otlp_endpoint_without_the_feature_is_refused() {
        assert!(super::otlp::layer(None).is_ok());
        let refused = super::otlp::layer(Some("http://127.0.0.1:4318/v1/traces")).unwrap_err();
        assert!(refused.to_string().contains("--features otlp"), "{refused}");
    }
}
