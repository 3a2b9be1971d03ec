//! What a connection is doing, as its reads, its requests and its writes tell, and the deadline
//! that follows from it.
//!
//! hyper's own `header_read_timeout` starts again as soon as a kept-alive connection goes idle,
//! so it would also close idle connections after the (shorter) header timeout; the phases here
//! keep "waiting for the next request" and "receiving a request head" apart instead.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// How long each phase of a connection may last.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// From the accept (or the first byte of a later request) to a complete request head.
    pub(crate) header_read: Duration,
    /// Between two requests; also how long an answer may wait for its client to read it.
    pub(crate) idle: Duration,
}

impl ConnectionLimits {
    /// The longest the watchdog sleeps between two looks: short enough that a deadline
    /// starting meanwhile (a request head after an idle spell, say) is never checked late.
    fn recheck(&self) -> Duration {
        self.header_read.min(self.idle)
    }
}

/// Why a connection was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Its request head (or TLS handshake) did not arrive within `header_read_timeout_ms`.
    HeadTooSlow,
    /// No request came for `idle_timeout_ms`.
    Idle,
    /// Its client read nothing of an answer for `idle_timeout_ms`.
    ReaderStalled,
}

impl Verdict {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::HeadTooSlow => "the request head did not arrive within server.header_read_timeout_ms",
            Self::Idle => "idle for server.idle_timeout_ms",
            Self::ReaderStalled => "the client read nothing of its answer for server.idle_timeout_ms",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A request head is on its way (or the connection was just accepted).
    Head,
    /// Requests are being served: bodies read, handlers run, answers written.
    Busy,
    /// Between requests.
    Idle,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// When the phase began.
    since: Instant,
    in_flight: usize,
    /// When a write first found the client's receive window full, until a write gets through.
    write_blocked_since: Option<Instant>,
}

/// Shared by a connection's IO, its service and its watchdog (all on the connection's task,
/// so the lock is never contended).
#[derive(Debug, Clone)]
pub(crate) struct Activity(Arc<Mutex<State>>);

impl Activity {
    /// A connection accepted now: its first request head is due.
    pub(crate) fn accepted() -> Self {
        let state =
            State { phase: Phase::Head, since: Instant::now(), in_flight: 0, write_blocked_since: None };
        Self(Arc::new(Mutex::new(state)))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn bytes_read(&self) {
        let mut state = self.state();
        if state.phase == Phase::Idle {
            state.phase = Phase::Head;
            state.since = Instant::now();
        }
    }

    /// A request head was parsed and handed to the router.
    pub(crate) fn request_started(&self) {
        let mut state = self.state();
        state.in_flight += 1;
        state.phase = Phase::Busy;
    }

    /// An answer was written whole (or abandoned).
    pub(crate) fn request_finished(&self) {
        let mut state = self.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.phase = Phase::Idle;
            state.since = Instant::now();
        }
    }

    fn write_blocked(&self) {
        self.state().write_blocked_since.get_or_insert_with(Instant::now);
    }

    fn write_progressed(&self) {
        self.state().write_blocked_since = None;
    }

    /// The earliest deadline running now and what passing it means; `None` while requests are
    /// served and their answers flow.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<(Instant, Verdict)> {
        let state = self.state();
        let phase = match state.phase {
            Phase::Head => Some((state.since + limits.header_read, Verdict::HeadTooSlow)),
            Phase::Idle => Some((state.since + limits.idle, Verdict::Idle)),
            Phase::Busy => None,
        };
        let stalled = state.write_blocked_since.map(|since| (since + limits.idle, Verdict::ReaderStalled));
        match (phase, stalled) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// Completes when a deadline passes, with the reason to cut the connection off.
    pub(crate) async fn overdue(&self, limits: &ConnectionLimits) -> Verdict {
        loop {
            let now = Instant::now();
            let next_look = now + limits.recheck();
            match self.deadline(limits) {
                Some((at, verdict)) if at <= now => return verdict,
                Some((at, _)) => tokio::time::sleep_until(at.min(next_look)).await,
                None => tokio::time::sleep_until(next_look).await,
            }
        }
    }
}

/// A connection's byte stream, reporting to its [`Activity`]: a byte read after an idle spell
/// starts the next request head's deadline, and a write that cannot proceed starts the stalled
/// reader's.
#[derive(Debug)]
pub(crate) struct TrackedIo<S> {
    inner: S,
    activity: Activity,
}

impl<S> TrackedIo<S> {
    pub(crate) fn new(inner: S, activity: Activity) -> Self {
        Self { inner, activity }
    }

    fn after_write(&self, result: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match &result {
            Poll::Pending => self.activity.write_blocked(),
            Poll::Ready(Ok(written)) if *written > 0 => self.activity.write_progressed(),
            Poll::Ready(_) => {}
        }
        result
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TrackedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TrackedIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after_write(result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnectionLimits =
        ConnectionLimits { header_read: Duration::from_millis(100), idle: Duration::from_millis(1_000) };

    fn verdict(activity: &Activity) -> Option<Verdict> {
        activity.deadline(&LIMITS).map(|(_, verdict)| verdict)
    }

    #[test]
    fn phases_follow_reads_requests_and_answers() {
        let activity = Activity::accepted();
        assert_eq!(verdict(&activity), Some(Verdict::HeadTooSlow), "a new connection owes a head");
        activity.request_started();
        assert_eq!(verdict(&activity), None, "no deadline while a request is served");
        activity.request_finished();
        let (idle_until, why) = activity.deadline(&LIMITS).expect("an idle deadline");
        assert_eq!(why, Verdict::Idle);
        assert!(idle_until >= Instant::now() + LIMITS.idle - Duration::from_millis(50));
        activity.bytes_read();
        let (head_until, why) = activity.deadline(&LIMITS).expect("a head deadline");
        assert_eq!(why, Verdict::HeadTooSlow, "the next request's first byte starts its head timeout");
        assert!(head_until < idle_until);
        activity.bytes_read();
        assert_eq!(
            activity.deadline(&LIMITS).map(|(at, _)| at),
            Some(head_until),
            "later bytes do not extend it"
        );
    }

    #[test]
    fn a_blocked_write_starts_the_stalled_reader_deadline_until_one_gets_through() {
        let activity = Activity::accepted();
        activity.request_started();
        activity.write_blocked();
        assert_eq!(verdict(&activity), Some(Verdict::ReaderStalled));
        activity.write_progressed();
        assert_eq!(verdict(&activity), None);
    }

    #[tokio::test]
    async fn overdue_completes_once_the_head_deadline_passes() {
        let activity = Activity::accepted();
        let started = Instant::now();
        assert_eq!(activity.overdue(&LIMITS).await, Verdict::HeadTooSlow);
        assert!(started.elapsed() >= LIMITS.header_read);
    }

    #[tokio::test]
    async fn a_head_starting_during_an_idle_spell_is_timed_from_its_first_byte() {
        let activity = Activity::accepted();
        activity.request_started();
        activity.request_finished();
        let watchdog = {
            let activity = activity.clone();
            tokio::spawn(async move { activity.overdue(&LIMITS).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let first_byte = Instant::now();
        activity.bytes_read();
        let verdict = tokio::time::timeout(LIMITS.idle, watchdog).await.expect("before the idle deadline");
        assert_eq!(verdict.expect("the watchdog"), Verdict::HeadTooSlow);
        assert!(first_byte.elapsed() >= LIMITS.header_read);
    }
}
