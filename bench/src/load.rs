//! The load generator: N workers, each with one kept-alive HTTP/1.1 connection, posting as fast
//! as the answers come back, until a deadline or a request count is reached.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::net::TcpStream;

use crate::latency::Latencies;

/// Where the load goes.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    pub token: Option<String>,
}

/// One request of a load run: its body and any headers of its own (sent after `Host`,
/// `Authorization` and `Content-Type`).
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    pub body: Bytes,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// When the load stops.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    Elapsed(Duration),
    /// After this many requests in all (every worker takes the next number until none is left).
    Requests(u64),
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// From each request's start until its whole answer was read.
    pub latencies: Latencies,
}

impl LoadResult {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The requests that got a 2xx.
    pub fn accepted(&self) -> u64 {
        self.requests - self.errors
    }
}

/// A one-connection HTTP/1.1 client.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection { sender, host: addr.to_string() })
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        self.send_with(method, path, token, Vec::new(), body).await
    }

    /// [`Connection::send`] with `headers` of the request's own.
    pub async fn send_with(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let answer = self.exchange(method, path, token, headers, body).await?;
        Ok((answer.status, answer.body))
    }

    /// [`Connection::send_with`], answering the headers of the answer too.
    pub async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Bytes,
    ) -> anyhow::Result<Answer> {
        self.sender.ready().await?;
        let mut request = Request::builder().method(method).uri(path).header(HOST, &self.host);
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = self.sender.send_request(request.body(Full::new(body))?).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Answer { status: parts.status, headers: parts.headers, body })
    }
}

/// A whole answer, read.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Runs `connections` workers against `target`; `body(n)` makes the body of the n-th request
/// (numbered from `first`), so every request can carry its own event ids.
pub async fn run<F>(
    target: &Target,
    connections: usize,
    until: Until,
    first: u64,
    label: &str,
    body: F,
) -> anyhow::Result<LoadResult>
where
    F: Fn(u64) -> Bytes + Send + Sync + 'static,
{
    run_with(target, connections, until, first, label, move |n| Outgoing {
        body: body(n),
        headers: Vec::new(),
    })
    .await
}

/// [`run`] where `request(n)` makes the n-th request's body and headers of its own (e.g. a
/// signature over the body), in the worker, just before the request is sent.
pub async fn run_with<F>(
    target: &Target,
    connections: usize,
    until: Until,
    first: u64,
    label: &str,
    request: F,
) -> anyhow::Result<LoadResult>
where
    F: Fn(u64) -> Outgoing + Send + Sync + 'static,
{
    let make = Arc::new(request);
    let next = Arc::new(AtomicU64::new(first));
    let progress = progress_bar(label, until);
    let started = Instant::now();
    let deadline = match until {
        Until::Elapsed(d) => Some(started + d),
        Until::Requests(_) => None,
    };
    let last = match until {
        Until::Requests(n) => first + n,
        Until::Elapsed(_) => u64::MAX,
    };
    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        let target = target.clone();
        let make = Arc::clone(&make);
        let next = Arc::clone(&next);
        let progress = progress.clone();
        workers.push(tokio::spawn(async move {
            let mut connection = Connection::open(target.addr).await?;
            let mut latencies = Vec::with_capacity(4096);
            let mut errors = 0u64;
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= last {
                    break;
                }
                let sent = Instant::now();
                let Outgoing { body, headers } = make(n);
                let (status, answer) = connection
                    .send_with(Method::POST, &target.path, target.token.as_deref(), headers, body)
                    .await?;
                latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                if !status.is_success() {
                    errors += 1;
                    if errors == 1 {
                        eprintln!("{}: {status}: {}", target.path, String::from_utf8_lossy(&answer));
                    }
                }
                progress.inc(1);
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (mine, failed) = worker.await??;
        latencies.extend(mine);
        errors += failed;
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    let requests = latencies.len() as u64;
    if requests == 0 {
        bail!("{label}: no request completed");
    }
    Ok(LoadResult { requests, errors, elapsed, latencies: Latencies::from_micros(latencies) })
}

fn progress_bar(label: &str, until: Until) -> ProgressBar {
    let bar = match until {
        Until::Requests(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
                .expect("a valid template")
                .progress_chars("=> "),
        ),
        Until::Elapsed(d) => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template(&format!(
                "{{prefix:>14}} {{spinner}} {{pos}} requests {{per_sec}} ({}s)",
                d.as_secs_f64()
            ))
            .expect("a valid template"),
        ),
    };
    bar.set_prefix(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
