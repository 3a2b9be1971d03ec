//! The rate limit of `switchyard.delivery.dead`, per destination and per node: the first dead
//! delivery of a destination is reported at once and opens a window; the ones that follow
//! within it are reported together when it ends (their count, the first ids, the last in
//! full), which opens the next window. A window that ends with nothing to report closes, so
//! the next dead delivery is reported at once again. A mass failure so costs one event at once
//! and one per window after, whatever its size.

use std::collections::HashMap;

use switchyard_core::id::{DeliveryId, DestinationId};
use switchyard_core::operational::MAX_LISTED_DELIVERIES;
use switchyard_core::time::Millis;

use super::DeadDelivery;

/// Dead deliveries of one destination reported by one event.
#[derive(Debug, Clone)]
pub(super) struct Report {
    pub count: u64,
    /// The first of them, at most [`MAX_LISTED_DELIVERIES`].
    pub delivery_ids: Vec<DeliveryId>,
    pub first_dead_at: Millis,
    /// The last of them.
    pub last: DeadDelivery,
}

impl Report {
    fn of(dead: DeadDelivery) -> Self {
        Self { count: 1, delivery_ids: vec![dead.delivery_id.clone()], first_dead_at: dead.at, last: dead }
    }

    fn add(&mut self, dead: DeadDelivery) {
        self.count += 1;
        if self.delivery_ids.len() < MAX_LISTED_DELIVERIES {
            self.delivery_ids.push(dead.delivery_id.clone());
        }
        self.last = dead;
    }
}

struct Window {
    ends_at: Millis,
    /// What came since the window opened.
    held: Option<Report>,
}

/// The open windows of this node, one per destination with a recent dead delivery.
pub(super) struct DeadLetters {
    window_ms: Millis,
    windows: HashMap<DestinationId, Window>,
}

impl DeadLetters {
    pub fn new(window_ms: u64) -> Self {
        Self { window_ms: Millis::try_from(window_ms).unwrap_or(Millis::MAX), windows: HashMap::new() }
    }

    /// Takes `dead` in at `now`: the report to publish at once when no window of its
    /// destination is open, else nothing (it waits for the window's end). Call [`Self::due`]
    /// first, so a window that ended is closed before.
    pub fn dead(&mut self, dead: DeadDelivery, now: Millis) -> Option<Report> {
        match self.windows.get_mut(&dead.destination_id) {
            Some(window) => {
                match &mut window.held {
                    Some(held) => held.add(dead),
                    None => window.held = Some(Report::of(dead)),
                }
                None
            }
            None => {
                let ends_at = now.saturating_add(self.window_ms);
                self.windows.insert(dead.destination_id.clone(), Window { ends_at, held: None });
                Some(Report::of(dead))
            }
        }
    }

    /// The reports of the windows that ended by `now`; those with a report open the next
    /// window, the others close.
    pub fn due(&mut self, now: Millis) -> Vec<Report> {
        let mut due = Vec::new();
        let next_end = now.saturating_add(self.window_ms);
        self.windows.retain(|_, window| {
            if window.ends_at > now {
                return true;
            }
            match window.held.take() {
                Some(report) => {
                    due.push(report);
                    window.ends_at = next_end;
                    true
                }
                None => false,
            }
        });
        due
    }

    /// When the first open window ends.
    pub fn next_due_at(&self) -> Option<Millis> {
        self.windows.values().map(|w| w.ends_at).min()
    }

    /// Every report still held, ending every window (the node stops).
    pub fn drain(&mut self) -> Vec<Report> {
        self.windows.drain().filter_map(|(_, window)| window.held).collect()
    }
}

#[cfg(test)]
mod tests {
    use switchyard_core::event::EventId;
    use switchyard_core::id::SubscriptionId;

    use super::*;

    const T: Millis = 1_700_000_000_000;

    fn dead(destination: &str, at: Millis) -> DeadDelivery {
        DeadDelivery {
            delivery_id: DeliveryId::generate(),
            event_id: EventId::generate(),
            subscription_id: SubscriptionId::generate(),
            destination_id: DestinationId::from_trusted(destination),
            last_error: Some("HTTP 500".into()),
            attempt_count: 3,
            at,
            event: None,
        }
    }

    #[test]
    fn the_first_goes_at_once_and_the_rest_of_the_window_in_one_report() {
        let mut letters = DeadLetters::new(1_000);
        assert_eq!(letters.dead(dead("dst_a", T), T).map(|r| r.count), Some(1));
        for i in 0..25 {
            assert!(letters.dead(dead("dst_a", T + i), T + i).is_none());
        }
        assert!(letters.due(T + 999).is_empty());
        let reports = letters.due(T + 1_000);
        assert_eq!(reports.len(), 1);
        assert_eq!((reports[0].count, reports[0].delivery_ids.len()), (25, MAX_LISTED_DELIVERIES));
        // The next window is open: a later one waits too, and a quiet window closes.
        assert!(letters.dead(dead("dst_a", T + 1_500), T + 1_500).is_none());
        assert_eq!(letters.due(T + 2_000).len(), 1);
        assert!(letters.due(T + 3_000).is_empty());
        assert_eq!(letters.next_due_at(), None);
        assert!(letters.dead(dead("dst_a", T + 3_001), T + 3_001).is_some());
    }

    #[test]
    fn destinations_have_windows_of_their_own_and_a_stop_reports_what_is_held() {
        let mut letters = DeadLetters::new(1_000);
        assert!(letters.dead(dead("dst_a", T), T).is_some());
        assert!(letters.dead(dead("dst_b", T + 10), T + 10).is_some());
        assert!(letters.dead(dead("dst_a", T + 20), T + 20).is_none());
        assert_eq!(letters.next_due_at(), Some(T + 1_000));
        let held = letters.drain();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].last.destination_id.as_str(), "dst_a");
    }
}
