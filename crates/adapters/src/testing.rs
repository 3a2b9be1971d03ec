//! What the crate's unit tests share.

use serde_json::Value;
use switchyard_core::destination::{CircuitBreakerPolicy, Destination, DestinationKind, RetryPolicy};
use switchyard_core::id::DestinationId;

/// Destination `dst_1` of `kind` at `version`, its config as given and no secrets.
pub(crate) fn destination(kind: DestinationKind, config: Value, version: i64) -> Destination {
    Destination {
        id: DestinationId::from_trusted("dst_1"),
        name: "test".into(),
        kind,
        config,
        secrets: serde_json::Map::new(),
        timeout_ms: 1_000,
        connect_timeout_ms: 1_000,
        retry: RetryPolicy::default(),
        rate_limit: None,
        circuit_breaker: CircuitBreakerPolicy::default(),
        enabled: true,
        version,
        created_at: 0,
        updated_at: 0,
    }
}
