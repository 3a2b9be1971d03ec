//! `Recent`: what a hot path read from the store a moment ago, kept for a short time.
//!
//! Every published event needs the caller's API key and its event type's definition; reading
//! both from the database on each request costs more than storing the event. A value is kept
//! for at most its time to live, so a change made on another node (a revoked key, a new
//! schema) is seen within that time; a change made through this node clears the cache at once.
//! The cache is bounded: when it is full it is emptied, so a caller sending ever new keys
//! costs memory only up to the bound.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long API keys and event type definitions are kept.
pub const RECENT_FOR: Duration = Duration::from_secs(1);
/// Entries kept at most.
const CAPACITY: usize = 4_096;

pub struct Recent<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    keep_for: Duration,
    /// Bumped by every `clear`, so a load that started before it does not store what it read.
    generation: Mutex<u64>,
}

impl<K: Eq + Hash + Clone, V: Clone> Recent<K, V> {
    pub fn new(keep_for: Duration) -> Self {
        Self { entries: Mutex::new(HashMap::new()), keep_for, generation: Mutex::new(0) }
    }

    /// The value kept for `key` if it is still fresh; otherwise `load`s it and, if `keep`
    /// says so, keeps it. Errors are never kept.
    pub async fn get_or_load<E, F, Fut>(&self, key: &K, keep: impl Fn(&V) -> bool, load: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if let Some((value, at)) = lock(&self.entries).get(key)
            && at.elapsed() < self.keep_for
        {
            return Ok(value.clone());
        }
        let generation = *lock(&self.generation);
        let loaded_at = Instant::now();
        let value = load().await?;
        if keep(&value) {
            // Held across the insert so a `clear` cannot slip between the check and it.
            let current = lock(&self.generation);
            if *current == generation {
                let mut entries = lock(&self.entries);
                if entries.len() >= CAPACITY {
                    entries.clear();
                }
                entries.insert(key.clone(), (value.clone(), loaded_at));
            }
        }
        Ok(value)
    }

    /// Forgets everything; the next read of each key goes to the store.
    pub fn clear(&self) {
        let mut generation = lock(&self.generation);
        *generation += 1;
        lock(&self.entries).clear();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves a map that is still consistent.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    async fn load_counting(loads: &AtomicUsize, value: u32) -> Result<u32, Infallible> {
        loads.fetch_add(1, Ordering::SeqCst);
        Ok(value)
    }

    #[tokio::test]
    async fn a_fresh_value_is_read_once_and_a_stale_or_cleared_one_again() {
        let recent = Recent::new(Duration::from_millis(50));
        let loads = AtomicUsize::new(0);
        for _ in 0..3 {
            let value = recent.get_or_load(&"k", |_| true, || load_counting(&loads, 7)).await.unwrap();
            assert_eq!(value, 7);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);

        recent.clear();
        recent.get_or_load(&"k", |_| true, || load_counting(&loads, 8)).await.unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 2);

        tokio::time::sleep(Duration::from_millis(60)).await;
        let value = recent.get_or_load(&"k", |_| true, || load_counting(&loads, 9)).await.unwrap();
        assert_eq!((value, loads.load(Ordering::SeqCst)), (9, 3));
    }

    #[tokio::test]
    async fn values_the_caller_will_not_keep_are_read_every_time() {
        let recent = Recent::new(Duration::from_secs(60));
        let loads = AtomicUsize::new(0);
        for _ in 0..3 {
            recent.get_or_load(&"k", |v| *v != 0, || load_counting(&loads, 0)).await.unwrap();
        }
        assert_eq!(loads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_load_that_began_before_a_clear_is_not_kept() {
        let recent = Recent::new(Duration::from_secs(60));
        let loads = AtomicUsize::new(0);
        let stale = recent
            .get_or_load(
                &"k",
                |_| true,
                || async {
                    recent.clear();
                    load_counting(&loads, 1).await
                },
            )
            .await
            .unwrap();
        assert_eq!(stale, 1);
        let fresh = recent.get_or_load(&"k", |_| true, || load_counting(&loads, 2)).await.unwrap();
        assert_eq!((fresh, loads.load(Ordering::SeqCst)), (2, 2));
    }

    #[tokio::test]
    async fn a_full_cache_starts_over_rather_than_grow() {
        let recent = Recent::new(Duration::from_secs(60));
        let loads = AtomicUsize::new(0);
        for key in 0..=CAPACITY {
            recent.get_or_load(&key, |_| true, || load_counting(&loads, 0)).await.unwrap();
        }
        assert_eq!(lock(&recent.entries).len(), 1);
    }
}
