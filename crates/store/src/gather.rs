//! How a group writer gathers its group.
//!
//! A group writer wakes as soon as the first call is queued. Taking only what is queued at
//! that moment makes small groups: the requests whose calls would join were often read from
//! their sockets already, and their tasks are ready to run, but have not run yet. Letting
//! the runtime turn a few times first gives them the chance to queue their calls, so they
//! share this group's transaction and fsync instead of waiting for the next. Under `e2e`
//! load on SQLite that took groups from about 25 calls to about 48; the store's CPU per event
//! fell by about a sixth, PostgreSQL's `e2e` delivered 12-16 % more (docs/benchmarks.md,
//! "Groups that wait three turns"). When nothing else is ready, the turns cost microseconds.

use tokio::sync::mpsc;

/// Turns of the runtime a group writer lets pass between its first call and taking the rest.
/// Fewer gathered less (one: about 35 calls a group); more gathered no more.
const TURNS: usize = 3;

/// Lets the tasks that are ready to run have their turns, so that the calls they are about
/// to make are queued before the group is taken.
pub(crate) async fn let_ready_callers_queue() {
    for _ in 0..TURNS {
        tokio::task::yield_now().await;
    }
}

/// The next group from `calls`: the first call, waited for, then, after
/// [`let_ready_callers_queue`], every call queued behind it while the group holds fewer than
/// `max_calls` calls and less than `max_weight` of `weight`. What is left stays queued for the
/// next group. `None` once every sender is gone and nothing is queued.
pub(crate) async fn gather<T>(
    calls: &mut mpsc::Receiver<T>,
    max_calls: usize,
    max_weight: usize,
    weight: impl Fn(&T) -> usize,
) -> Option<Vec<T>> {
    let first = calls.recv().await?;
    Some(gather_after(first, calls, max_calls, max_weight, weight).await)
}

/// The group [`gather`] takes once `first` came.
pub(crate) async fn gather_after<T>(
    first: T,
    calls: &mut mpsc::Receiver<T>,
    max_calls: usize,
    max_weight: usize,
    weight: impl Fn(&T) -> usize,
) -> Vec<T> {
    let mut weighed = weight(&first);
    let mut group = Vec::with_capacity(max_calls);
    group.push(first);
    let_ready_callers_queue().await;
    while group.len() < max_calls && weighed < max_weight {
        let Ok(call) = calls.try_recv() else { break };
        weighed += weight(&call);
        group.push(call);
    }
    group
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_group_takes_the_calls_of_tasks_that_were_ready_when_the_first_came() {
        let (sender, mut calls) = mpsc::channel(16);
        sender.send(1).await.unwrap();
        // Ready to run, but on this one thread they run only when the writer lets them.
        for n in 2..=4 {
            let sender = sender.clone();
            tokio::spawn(async move { sender.send(n).await.unwrap() });
        }
        let group = gather(&mut calls, 16, 100, |_| 1).await.unwrap();
        assert_eq!(group, vec![1, 2, 3, 4]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_group_stops_at_its_bounds_and_leaves_the_rest_queued() {
        let (sender, mut calls) = mpsc::channel(16);
        for n in 1..=6 {
            sender.send(n).await.unwrap();
        }
        assert_eq!(gather(&mut calls, 2, 100, |_| 1).await.unwrap(), vec![1, 2]);
        // By weight: the call that reaches the bound is the group's last.
        assert_eq!(gather(&mut calls, 16, 7, |&n| n).await.unwrap(), vec![3, 4]);
        drop(sender);
        assert_eq!(gather(&mut calls, 16, 100, |_| 1).await.unwrap(), vec![5, 6]);
        assert_eq!(gather(&mut calls, 16, 100, |_| 1).await, None);
    }
}
