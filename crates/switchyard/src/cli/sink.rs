//! `switchyard sink`: a small HTTP receiver that prints what it receives, for trying
//! Switchyard out on one machine and for watching deliveries arrive.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use clap::Args;

#[derive(Debug, Args)]
pub struct SinkArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Status code to answer every request with.
    #[arg(long, default_value_t = 204, value_parser = clap::value_parser!(u16).range(200..=599))]
    pub status: u16,
}

/// Serves until Ctrl-C, printing one line per request on stdout.
pub async fn run(args: SinkArgs) -> anyhow::Result<()> {
    let status = StatusCode::from_u16(args.status).context("an HTTP status code")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!("receiving on http://{}/ and answering {status}; Ctrl-C stops", listener.local_addr()?);
    let app = Router::new().fallback(receive).with_state(status);
    axum::serve(listener, app).with_graceful_shutdown(crate::startup::shutdown_signal()).await?;
    Ok(())
}

async fn receive(
    State(status): State<StatusCode>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    let line = format!(
        "{method} {uri} webhook-id={} type={} correlation={} body={}\n",
        header("webhook-id"),
        header("x-event-type"),
        header("x-correlation-id"),
        String::from_utf8_lossy(&body),
    );
    // A closed stdout (e.g. `| head`) must not take the receiver down.
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
    status
}
