//! Latency samples, and the send stamps that let the sink time a delivery from the moment its
//! event was published: the load generator and the sink run in this one process, so both read
//! the same monotonic clock, counted from a common epoch.

use std::sync::OnceLock;
use std::time::Instant;

/// The key of an event payload's send stamp, as it appears in a delivery's body.
pub const SENT_AT_KEY: &str = "sent_at_us";
/// [`SENT_AT_KEY`] quoted, as the sink looks for it.
const SENT_AT_QUOTED: &[u8] = br#""sent_at_us""#;

/// Microseconds since the harness's epoch (the first call).
pub fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The send stamp of a delivery body (`"sent_at_us":<integer>` anywhere in it), found without
/// parsing the JSON: the sink reads every delivery and should cost little.
pub fn sent_at_us(body: &[u8]) -> Option<u64> {
    let key = SENT_AT_QUOTED;
    let start = body.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = body[start..].trim_ascii_start().strip_prefix(b":")?.trim_ascii_start();
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Latency samples in microseconds, sorted.
#[derive(Debug, Clone, Default)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    pub fn from_micros(mut micros: Vec<u32>) -> Latencies {
        micros.sort_unstable();
        Latencies(micros)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The latency at `quantile` (0–1) in milliseconds; 0 with no samples.
    pub fn ms(&self, quantile: f64) -> f64 {
        let Some(last) = self.0.len().checked_sub(1) else { return 0.0 };
        let rank = (last as f64 * quantile).round() as usize;
        f64::from(self.0[rank.min(last)]) / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.ms(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_at_is_found_wherever_the_key_sits() {
        assert_eq!(sent_at_us(br#"{"amount_cents":4200,"sent_at_us":123456,"n":7}"#), Some(123_456));
        assert_eq!(sent_at_us(br#"{"n":7,"sent_at_us" : 42}"#), Some(42));
        assert_eq!(sent_at_us(br#"{"n":7}"#), None);
        assert_eq!(sent_at_us(br#"{"sent_at_us":"soon"}"#), None);
        assert_eq!(SENT_AT_QUOTED, format!("\"{SENT_AT_KEY}\"").as_bytes());
    }

    #[test]
    fn quantiles_pick_from_the_sorted_samples() {
        let latencies = Latencies::from_micros(vec![4_000, 1_000, 3_000, 2_000, 100_000]);
        assert_eq!(latencies.ms(0.0), 1.0);
        assert_eq!(latencies.ms(0.5), 3.0);
        assert_eq!(latencies.max_ms(), 100.0);
        assert_eq!(Latencies::default().ms(0.99), 0.0);
    }

    #[test]
    fn now_us_moves_forward() {
        let before = now_us();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(now_us() >= before + 2_000);
    }
}
