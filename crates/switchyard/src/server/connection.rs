//! One accepted connection, on its own task: the TLS handshake when there is one, then HTTP/1
//! requests handed to the router, under a watchdog that cuts the connection off when a
//! deadline of [`Activity`] passes. On shutdown the connection finishes the request in flight
//! and closes.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use switchyard_engine::shutdown::Shutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tower::Service as _;
use tracing::debug;

use super::activity::{Activity, ConnectionLimits, TrackedIo, Verdict};

/// What every connection of a listener shares.
pub(super) struct Served {
    pub(super) router: Router,
    pub(super) http: http1::Builder,
    pub(super) limits: ConnectionLimits,
    pub(super) tls: Option<TlsAcceptor>,
}

/// Serves `stream` until the client leaves, a deadline passes, or shutdown lets it finish.
pub(super) async fn run(stream: TcpStream, peer: SocketAddr, served: &Served, mut stopping: Shutdown) {
    let activity = Activity::accepted();
    let io = TrackedIo::new(stream, activity.clone());
    let verdict = match &served.tls {
        None => serve_http(io, peer, served, &activity, &mut stopping).await,
        Some(acceptor) => {
            // The handshake counts against the request head's deadline.
            let handshake = tokio::select! {
                handshake = acceptor.accept(io) => handshake,
                verdict = activity.overdue(&served.limits) => {
                    debug!(%peer, "TLS handshake cut off: {}", verdict.describe());
                    return;
                }
                () = stopping.requested() => return,
            };
            match handshake {
                Ok(tls) => serve_http(tls, peer, served, &activity, &mut stopping).await,
                Err(err) => {
                    debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
            }
        }
    };
    if let Some(verdict) = verdict {
        debug!(%peer, "connection cut off: {}", verdict.describe());
    }
}

/// Runs hyper's HTTP/1 connection beside the watchdog; the verdict says why it was cut off.
async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    served: &Served,
    activity: &Activity,
    stopping: &mut Shutdown,
) -> Option<Verdict>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = ConnectionService { router: served.router.clone(), peer, activity: activity.clone() };
    let connection = served.http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(err) = served {
                    debug!(%peer, error = %err, "connection ended with an error");
                }
                return None;
            }
            // Dropping the connection closes it, whatever it was doing.
            verdict = activity.overdue(&served.limits) => return Some(verdict),
            () = stopping.requested(), if !draining => {
                // Closes at once when idle, else after the answer in progress.
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}

/// The router, seen from one connection: tells [`Activity`] when a request starts and when
/// its answer has been written, and gives handlers the peer address (`ConnectInfo`).
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    peer: SocketAddr,
    activity: Activity,
}

type ServiceFuture = Pin<Box<dyn Future<Output = Result<Response<AnswerBody>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<AnswerBody>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::start(self.activity.clone());
        request.extensions_mut().insert(ConnectInfo(self.peer));
        // `Router` is always ready; a clone is a reference count.
        let answer = self.router.clone().call(request.map(Body::new));
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| AnswerBody { inner: body, _in_flight: in_flight }))
        })
    }
}

/// A request between its head and the end of its answer; dropped with the answer's body (or
/// with the handler, when the connection goes away first).
struct InFlight(Activity);

impl InFlight {
    fn start(activity: Activity) -> Self {
        activity.request_started();
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// An answer's body, holding its request [`InFlight`] until hyper has written it whole.
struct AnswerBody {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for AnswerBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
