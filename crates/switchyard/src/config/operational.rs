//! `[operational]`: the events the hub publishes about itself (`switchyard.*`).

use serde::{Deserialize, Serialize};

/// `[operational]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OperationalConfig {
    /// Whether this node publishes operational events and registers their types at start-up.
    pub enabled: bool,
    /// After a destination's first dead delivery is reported, how long its next ones are
    /// gathered into one `switchyard.delivery.dead` event (per node).
    pub dead_letter_window_ms: u64,
}

impl Default for OperationalConfig {
    fn default() -> Self {
        Self { enabled: true, dead_letter_window_ms: 60_000 }
    }
}

impl OperationalConfig {
    pub(super) fn validate(&self, problems: &mut Vec<String>) {
        if self.dead_letter_window_ms == 0 {
            problems.push("operational.dead_letter_window_ms: must be greater than 0".to_owned());
        }
    }
}
