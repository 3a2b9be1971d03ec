//! The dispatcher: claims due deliveries in batches under a lease and runs them concurrently,
//! bounded by a semaphore; woken by ingest, with a slow poll only as a safety net.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use switchyard_core::delivery::Delivery;
use switchyard_core::event::Event;
use switchyard_core::id::{DeliveryId, SubscriptionId};
use switchyard_core::source::pull::Pullers;
use switchyard_core::store::{Recorded, Store};
use switchyard_core::subscription::Subscription;
use switchyard_core::time::{Millis, now_millis};
use switchyard_core::transport::Transports;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::attempt::{Preloaded, attempt, given_up};
use crate::fast::{FastLane, Handoff};
use crate::gate::{Cleared, Gate};
use crate::ingest::Ingestor;
use crate::lease::{self, RunningGuard};
use crate::metrics::Metrics;
use crate::operational::{Operational, Publisher, PublisherSettings};
use crate::pull::PullSources;
use crate::retention;
use crate::shape::Shaper;
use crate::shutdown::Shutdown;
use crate::{Control, EngineSettings};

/// How long the dispatcher sleeps when the earliest due delivery was not claimable.
const BLOCKED_HEAD_WAIT_MS: i64 = 50;
/// How long the dispatcher pauses at most when nothing it claimed could go, or when the
/// destinations it knows have no free slot.
const GATED_PAUSE: Duration = Duration::from_millis(50);
/// How long shutdown waits for ingests that reserved places in the fast queue to finish, so
/// that what they lease is handed back with the node's other leases.
const FAST_CLOSE_PATIENCE: Duration = Duration::from_secs(5);

/// Wakes the dispatcher when work may have become due (an ingest, a retry, a replay).
#[derive(Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        // A stored permit means a wake-up between two waits is never lost.
        self.0.notify_one();
    }

    /// Whether a wake-up came since the last wait, consuming it.
    fn take(&self) -> bool {
        let notified = self.0.notified();
        tokio::pin!(notified);
        // A stored permit completes a fresh `Notified` at once (`enable` takes it).
        notified.as_mut().enable()
    }
}

/// The delivery engine of one node.
pub struct Engine {
    store: Arc<dyn Store>,
    transports: Arc<Transports>,
    settings: EngineSettings,
    waker: Waker,
    node_id: String,
    running: Arc<AtomicBool>,
    /// The deliveries whose leases this node renews: those its workers are running, and those
    /// waiting in the fast queue.
    leased: lease::Running,
    /// Deliveries this node's ingest leased to it, waiting to run.
    fast: FastLane,
    shaper: Arc<Shaper>,
    metrics: Metrics,
    pulls: PullSources,
    /// Where workers and readers report what operators hear of, and the task that publishes
    /// it (taken when the engine runs; none when operational events are off).
    operational: Operational,
    publisher: Option<Publisher>,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, transports: Arc<Transports>, settings: EngineSettings) -> Self {
        let node_id =
            settings.node_id.clone().unwrap_or_else(|| format!("node-{}", uuid::Uuid::now_v7().simple()));
        let shaper = Arc::new(Shaper::new(settings.jq));
        let leased = lease::Running::default();
        let fast = FastLane::new(settings.fast_queue, node_id.clone(), settings.lease_ms, leased.clone());
        let waker = Waker::default();
        let metrics = Metrics::new();
        let (publisher, operational) = if settings.operational_events {
            let publisher_settings = PublisherSettings {
                node_id: node_id.clone(),
                dead_letter_window_ms: settings.dead_letter_alert_window_ms,
                max_payload_bytes: settings.max_payload_bytes,
            };
            let ingestor = Self::ingestor(&store, &settings, &waker, &metrics, &fast);
            let (publisher, operational) = Publisher::new(store.clone(), ingestor, publisher_settings);
            (Some(publisher), operational)
        } else {
            (None, Operational::default())
        };
        let pulls = PullSources::new(
            store.clone(),
            Pullers::default(),
            Self::ingestor(&store, &settings, &waker, &metrics, &fast),
            node_id.clone(),
            settings.max_payload_bytes,
            operational.clone(),
        );
        Self {
            store,
            transports,
            settings,
            waker,
            node_id,
            running: Arc::default(),
            leased,
            fast,
            shaper,
            metrics,
            pulls,
            operational,
            publisher,
        }
    }

    /// Reads pull sources of the kinds `pullers` has (none by default).
    pub fn with_pullers(mut self, pullers: Pullers) -> Self {
        let ingestor = Self::ingestor(&self.store, &self.settings, &self.waker, &self.metrics, &self.fast);
        self.pulls = PullSources::new(
            self.store.clone(),
            pullers,
            ingestor,
            self.node_id.clone(),
            self.settings.max_payload_bytes,
            self.operational.clone(),
        );
        self
    }

    /// The ingest of what pull sources read: the API's, with this node's fast lane.
    fn ingestor(
        store: &Arc<dyn Store>,
        settings: &EngineSettings,
        waker: &Waker,
        metrics: &Metrics,
        fast: &FastLane,
    ) -> Ingestor {
        Ingestor::new(store.clone(), settings.require_registered_types, waker.clone())
            .with_metrics(metrics.clone())
            .with_fast_lane(fast.clone())
    }

    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// The node's metrics; the API renders them.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn control(&self) -> Control {
        Control::new(
            self.store.clone(),
            self.transports.clone(),
            self.waker.clone(),
            self.running.clone(),
            self.metrics.clone(),
            self.fast.clone(),
            self.pulls.clone(),
        )
        .with_operational(self.operational.clone())
    }

    /// Runs until `shutdown`, then drains: in-flight deliveries get `shutdown_grace_ms` to
    /// finish; the leases of the rest are handed back so any node can take them at once.
    pub async fn run(mut self, shutdown: Shutdown) {
        let pruner =
            tokio::spawn(retention::run(self.store.clone(), self.settings.clone(), shutdown.clone()));
        let (stop_renewing, renewer) = lease::spawn_renewer(
            self.store.clone(),
            self.node_id.clone(),
            self.settings.lease_ms,
            self.leased.clone(),
        );
        let _watch = self.watch_other_nodes().await;
        let upkeep = tokio::spawn(self.metrics.clone().run_upkeep(shutdown.clone()));
        let pulls = tokio::spawn(self.pulls.clone().run(shutdown.clone()));
        // Stopped after the drain, so what the last deliveries report is still published.
        let (stop_publishing, publishing) = crate::shutdown::channel();
        let publisher = self.publisher.take().map(|publisher| tokio::spawn(publisher.run(publishing)));
        let mut in_flight = JoinSet::new();
        self.running.store(true, Ordering::Release);
        self.dispatch(&mut in_flight, shutdown).await;
        self.running.store(false, Ordering::Release);
        // Nothing more goes into the fast queue; what is in it is handed back with the rest.
        self.fast.close(FAST_CLOSE_PATIENCE).await;
        self.drain(in_flight).await;
        drop(stop_renewing);
        let _ = renewer.await;
        let _ = pruner.await;
        let _ = upkeep.await;
        let _ = pulls.await;
        stop_publishing.trigger();
        if let Some(publisher) = publisher {
            let _ = publisher.await;
        }
    }

    /// Wakes this node when another one makes work due (a backend shared by several nodes
    /// tells; see `Store::watch_work`). Without it the poll still finds the work, later.
    async fn watch_other_nodes(&self) -> Option<Box<dyn switchyard_core::store::WorkWatch>> {
        let waker = self.waker.clone();
        match self.store.watch_work(Arc::new(move || waker.wake())).await {
            Ok(watch) => watch,
            Err(error) => {
                tracing::warn!(%error, "cannot watch for work from other nodes; relying on the poll");
                None
            }
        }
    }

    async fn dispatch(&self, in_flight: &mut JoinSet<()>, mut shutdown: Shutdown) {
        let permits = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let mut gate = Gate::new(self.store.clone(), self.settings.per_destination_limit());
        let poll = Duration::from_millis(self.settings.poll_interval_ms.max(1));
        // No claim before then unless woken: the last one found nothing due before it.
        let mut claim_after: Millis = 0;
        // Whether the fast queue goes before the claim this round; they take turns, so neither
        // starves the other (retries, replays and expired leases come only through claims).
        let mut fast_first = true;
        while !shutdown.is_requested() {
            while in_flight.try_join_next().is_some() {}
            let free = permits.available_permits().min(self.settings.batch_size as usize);
            if free == 0 {
                tokio::select! {
                    _ = shutdown.requested() => break,
                    _ = in_flight.join_next() => continue,
                }
            }
            let now = now_millis();
            if self.waker.take() {
                claim_after = 0;
            }
            let claim_due = now >= claim_after;
            // Right after deliveries found their destination busy, take only what the known
            // destinations have slots for: what the fast queue holds waits there, leased,
            // instead of being handed back to the store and claimed again.
            let room = gate.claim_size(free, now);
            let mut fast = if fast_first || !claim_due { self.fast.take(room) } else { Vec::new() };
            fast_first = !fast_first;
            let claim_room = if claim_due { room - fast.len() } else { 0 };
            let lease_until = now + self.settings.lease_ms as i64;
            let mut claimed = Vec::new();
            if claim_room > 0 {
                match self.store.claim_deliveries(&self.node_id, now, lease_until, claim_room as u32).await {
                    Ok(found) if found.is_empty() => {
                        claim_after = now_millis() + self.idle_wait(poll).await.as_millis() as Millis;
                    }
                    Ok(found) => claimed = found,
                    Err(error) => {
                        tracing::error!(%error, "claiming deliveries failed; retrying shortly");
                        claim_after = now_millis() + poll.as_millis() as Millis;
                    }
                }
            }
            if fast.len() + claimed.len() < room {
                fast.extend(self.fast.take(room - fast.len() - claimed.len()));
            }
            self.metrics.deliveries_taken("fast", fast.len());
            self.metrics.deliveries_taken("claim", claimed.len());
            if fast.is_empty() && claimed.is_empty() {
                let gated = room == 0;
                if !gated && !self.fast.is_empty() {
                    // Queued since the take: its notice may have been taken by an earlier
                    // wait, so do not wait for one.
                    continue;
                }
                let pause = if gated {
                    let until = gate.cautious_until(now).unwrap_or(now);
                    Duration::from_millis((until - now).max(1) as u64).min(GATED_PAUSE)
                } else {
                    Duration::from_millis((claim_after - now).max(1) as u64).min(poll)
                };
                tokio::select! {
                    _ = shutdown.requested() => break,
                    _ = in_flight.join_next(), if gated && !in_flight.is_empty() => {}
                    _ = self.waker.0.notified() => claim_after = 0,
                    // While no destination has a free slot, what is queued waits for one.
                    _ = self.fast.queued(), if !gated => {}
                    _ = tokio::time::sleep(pause) => {}
                };
                continue;
            }
            let launched = self.launch(&mut gate, &permits, in_flight, claimed, fast, lease_until).await;
            if launched.handed_back {
                // What waits is due again soon (see `gate`), and only claims take it: the next
                // round claims (and, if that is early, learns when it is due).
                claim_after = 0;
            }
            if !launched.started {
                // Everything taken waits: let a delivery finish (or a moment pass) first.
                tokio::select! {
                    _ = shutdown.requested() => break,
                    _ = in_flight.join_next(), if !in_flight.is_empty() => {}
                    _ = self.waker.0.notified() => claim_after = 0,
                    _ = tokio::time::sleep(GATED_PAUSE) => {}
                }
            }
        }
    }

    /// Runs what was claimed and what the fast queue gave, past the crash-loop check and the
    /// gate.
    async fn launch(
        &self,
        gate: &mut Gate,
        permits: &Arc<Semaphore>,
        in_flight: &mut JoinSet<()>,
        claimed: Vec<Delivery>,
        fast: Vec<Handoff>,
        lease_until: Millis,
    ) -> Launched {
        let mut taken = claimed;
        let mut known: HashMap<DeliveryId, Known> = HashMap::with_capacity(fast.len());
        for handoff in fast {
            let Handoff { delivery, event, subscription, running } = handoff;
            known.insert(delivery.id.clone(), Known { event, subscription, running });
            taken.push(delivery);
        }
        // A delivery whose last leases all ended without an outcome may be what stopped the
        // nodes running it: it is recorded dead instead of run again.
        let taken = self.give_up_crash_loops(permits, in_flight, taken);
        if taken.is_empty() {
            return Launched { started: true, handed_back: false };
        }
        let count = taken.len();
        // Isolation, circuit breakers and rate limits: what may not go now waits in the store.
        // Admitted by the clock of now, not of before the claim: a rate limit's tokens are
        // then dated close to when the deliveries go (the claim may take a while on a busy
        // database, and other nodes admit meanwhile).
        let cleared = gate.clear(&self.node_id, taken, now_millis(), lease_until).await;
        let handed_back = cleared.len() < count;
        if cleared.is_empty() {
            return Launched { started: false, handed_back };
        }
        let subscriptions = subscriptions_of(self.store.as_ref(), &cleared, &known).await;
        for cleared in cleared {
            let delivery = cleared.delivery;
            let known = known.remove(&delivery.id);
            let (event, subscription, leased) = match known {
                Some(Known { event, subscription, running }) => (Some(event), subscription, running),
                None => (None, None, self.leased.track(delivery.id.clone())),
            };
            let preloaded = Preloaded {
                destination: cleared.destination,
                subscription: subscription.or_else(|| subscriptions.get(&delivery.subscription_id).cloned()),
                event,
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                // Unreachable while only this loop takes permits; the lease expires and
                // the delivery is claimed again if it ever happens.
                tracing::warn!(delivery_id = %delivery.id, "no free slot for a claimed delivery");
                continue;
            };
            let worker = self.worker();
            let (slot, probe, waker) = (cleared.slot, cleared.probe, self.waker.clone());
            in_flight.spawn(async move {
                run_one(worker, delivery, Task::Attempt { preloaded, slot }, permit).await;
                drop(leased);
                // A probe's verdict may have closed the circuit its destination's backlog
                // waits on.
                if probe {
                    waker.wake();
                }
            });
        }
        Launched { started: true, handed_back }
    }

    /// Starts recording dead, without running them, the claimed deliveries whose earlier
    /// leases ended without an outcome too often (`Delivery::crash_loop`); answers the others.
    /// They pass no gate: nothing is sent.
    fn give_up_crash_loops(
        &self,
        permits: &Arc<Semaphore>,
        in_flight: &mut JoinSet<()>,
        claimed: Vec<Delivery>,
    ) -> Vec<Delivery> {
        let mut runnable = Vec::with_capacity(claimed.len());
        for delivery in claimed {
            let Some(reason) = delivery.crash_loop(self.settings.max_unfinished_attempts) else {
                runnable.push(delivery);
                continue;
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                // As in `dispatch`: the lease expires and the next claim gives it up.
                tracing::warn!(delivery_id = %delivery.id, "no free slot for a claimed delivery");
                continue;
            };
            let worker = self.worker();
            let leased = self.leased.track(delivery.id.clone());
            in_flight.spawn(async move {
                run_one(worker, delivery, Task::GiveUp(reason), permit).await;
                drop(leased);
            });
        }
        runnable
    }

    fn worker(&self) -> Worker {
        Worker {
            store: self.store.clone(),
            transports: self.transports.clone(),
            shaper: self.shaper.clone(),
            waker: self.waker.clone(),
            owner: self.node_id.clone(),
            metrics: self.metrics.clone(),
            operational: self.operational.clone(),
        }
    }

    /// How long to sleep with nothing due: until the next retry falls due or a blocked
    /// destination unblocks, at most `poll`.
    async fn idle_wait(&self, poll: Duration) -> Duration {
        let now = now_millis();
        let due = match self.store.next_due_at(now).await {
            // Due already yet not claimed: a claim that skips blocked destinations passed it
            // over. Do not spin on it; its destination's unblock time comes below.
            Ok(Some(due)) if due <= now => Some(now + BLOCKED_HEAD_WAIT_MS),
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "reading the next due time failed");
                None
            }
        };
        let unblock = self.store.next_unblock_at(now).await.unwrap_or_else(|error| {
            tracing::warn!(%error, "reading the next unblock time failed");
            None
        });
        match due.into_iter().chain(unblock).min() {
            Some(at) => Duration::from_millis((at - now).max(0) as u64).min(poll),
            None => poll,
        }
    }

    async fn drain(&self, mut in_flight: JoinSet<()>) {
        let grace = Duration::from_millis(self.settings.shutdown_grace_ms);
        let left = in_flight.len();
        if left > 0 {
            tracing::info!(
                in_flight = left,
                grace_ms = grace.as_millis() as u64,
                "draining in-flight deliveries"
            );
        }
        let drained =
            tokio::time::timeout(grace, async { while in_flight.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(unfinished = in_flight.len(), "the grace period ended with deliveries in flight");
            in_flight.abort_all();
            while in_flight.join_next().await.is_some() {}
        }
        match self.store.release_leases(&self.node_id, now_millis()).await {
            Ok(0) => {}
            Ok(released) => tracing::info!(released, "handed unfinished deliveries back"),
            Err(error) => tracing::error!(%error, "handing leases back failed; they expire on their own"),
        }
    }
}

/// What became of one round's deliveries.
struct Launched {
    /// Whether any was started (or given up).
    started: bool,
    /// Whether the gate handed any back to the store to wait.
    handed_back: bool,
}

/// What this node's ingest knew of a delivery it leased (the fast path).
struct Known {
    event: Arc<Event>,
    subscription: Option<Arc<Subscription>>,
    /// Its lease renewal, since it was queued.
    running: RunningGuard,
}

/// The subscriptions of a cleared batch that the ingest did not hand over (`known`), each
/// read once. One that cannot be read is left out: its deliveries' attempts read it
/// themselves, and record why it failed.
async fn subscriptions_of(
    store: &dyn Store,
    cleared: &[Cleared],
    known: &HashMap<DeliveryId, Known>,
) -> HashMap<SubscriptionId, Arc<Subscription>> {
    let mut subscriptions = HashMap::new();
    for cleared in cleared {
        let id = &cleared.delivery.subscription_id;
        let handed_over = known.get(&cleared.delivery.id).is_some_and(|k| k.subscription.is_some());
        if handed_over || subscriptions.contains_key(id) {
            continue;
        }
        if let Ok(Some(subscription)) = store.get_subscription(id).await {
            subscriptions.insert(id.clone(), Arc::new(subscription));
        }
    }
    subscriptions
}

/// What one delivery's task needs of the engine.
struct Worker {
    store: Arc<dyn Store>,
    transports: Arc<Transports>,
    shaper: Arc<Shaper>,
    waker: Waker,
    owner: String,
    metrics: Metrics,
    operational: Operational,
}

/// What a worker does with its claimed delivery.
enum Task {
    /// Attempt it, with what the dispatcher read for its batch, in its slot among the node's
    /// deliveries in flight to its destination (`gate`); the slot is free again once the
    /// send returns, before its outcome is recorded: the destination is done with it.
    Attempt { preloaded: Preloaded, slot: OwnedSemaphorePermit },
    /// Record it dead without running it, for this reason (`Delivery::crash_loop`).
    GiveUp(String),
}

async fn run_one(worker: Worker, delivery: Delivery, task: Task, permit: OwnedSemaphorePermit) {
    // The correlation and request ids are filled in once the event is loaded (`attempt`).
    let span = tracing::info_span!(
        "delivery",
        delivery_id = %delivery.id,
        event_id = %delivery.event_id,
        destination_id = %delivery.destination_id,
        correlation_id = tracing::field::Empty,
        request_id = tracing::field::Empty,
    );
    settle(&worker, &delivery, task).instrument(span).await;
    drop(permit);
    // A delivery with an ordering key may have held the next of its key back: now that it is
    // settled, that one may be due, and the dispatcher may be asleep.
    if delivery.ordering_key.is_some() {
        worker.waker.wake();
    }
}

async fn settle(worker: &Worker, delivery: &Delivery, task: Task) {
    let Worker { store, transports, shaper, owner, metrics, operational, .. } = worker;
    let settled = match task {
        Task::Attempt { preloaded, slot } => {
            let attempted = attempt(store.as_ref(), transports, shaper, delivery, preloaded).await;
            drop(slot);
            match attempted {
                Ok(settled) => settled,
                Err(error) => {
                    tracing::error!(%error, "loading the delivery failed; its lease will expire and it will be retried");
                    return;
                }
            }
        }
        Task::GiveUp(reason) => {
            tracing::warn!(%reason, "recording the delivery dead without running it");
            given_up(delivery, reason)
        }
    };
    let next = settled.next;
    match store.record_attempt_observed(owner, &settled.attempt, next, now_millis()).await {
        Ok(Recorded { settled: true, circuit }) => {
            let recorded_at = now_millis();
            let ingest_latency = settled
                .event
                .as_ref()
                .map(|event| Duration::from_millis((recorded_at - event.received_at).max(0) as u64));
            metrics.attempt_recorded(
                delivery.destination_id.as_str(),
                settled.attempt.outcome,
                Duration::from_millis(settled.attempt.duration_ms),
                next,
                ingest_latency,
            );
            operational.attempt_recorded(delivery, &settled, circuit, recorded_at);
            tracing::debug!(outcome = settled.attempt.outcome.as_str(), ?next, "attempt recorded")
        }
        Ok(Recorded { settled: false, .. }) => {
            tracing::warn!("the lease was lost before the attempt was recorded; another node owns it")
        }
        Err(error) => tracing::error!(%error, "recording the attempt failed; the delivery will be retried"),
    }
}
