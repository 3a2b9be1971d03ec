//! Typed identifiers. Resource ids are a short prefix naming the resource and a UUIDv7, so they
//! sort by creation time and a misplaced id is recognisable at a glance.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest correlation, causation or request id.
pub const MAX_LINK_ID: usize = 128;

/// Whether `value` may serve as a correlation, causation or request id: 1 to [`MAX_LINK_ID`]
/// visible ASCII characters, no spaces. They travel as HTTP headers (`X-Correlation-ID`,
/// `X-Causation-ID`, `X-Request-ID`) and land in logs and audit entries, so nothing else is
/// taken.
pub fn is_link_id(value: &str) -> bool {
    (1..=MAX_LINK_ID).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic())
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, example = json!(concat!($prefix, "_0193d5a1e7f87c3a9a3b1c2d3e4f5a6b")))]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                Self(format!("{}_{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            /// Wraps an id read back from the store or a path; unknown ids simply match nothing.
            pub fn from_trusted(raw: impl Into<String>) -> Self {
                Self(raw.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Whether `raw` has the shape of an id this hub generates (`<prefix>_` and 32
            /// lowercase hex digits), so a guessed one can be refused before any look-up.
            pub fn is_well_formed(raw: &str) -> bool {
                raw.strip_prefix($prefix)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// Identifies a destination.
    DestinationId, "dst"
);
prefixed_id!(
    /// Identifies a subscription.
    SubscriptionId, "sub"
);
prefixed_id!(
    /// Identifies a delivery; it is also the `webhook-id` receivers dedupe on.
    DeliveryId, "dlv"
);
prefixed_id!(
    /// Identifies an API key (not its secret token).
    ApiKeyId, "key"
);
prefixed_id!(
    /// Identifies a source (a webhook endpoint of the hub).
    SourceId, "src"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_well_formed_and_guesses_are_not() {
        assert!(SourceId::is_well_formed(SourceId::generate().as_str()));
        for bad in [
            "",
            "src_",
            "dst_0193d5a1e7f87c3a9a3b1c2d3e4f5a6b",
            "src_0193D5A1E7F87C3A9A3B1C2D3E4F5A6B",
            "src_0193d5a1e7f87c3a9a3b1c2d3e4f5a6",
        ] {
            assert!(!SourceId::is_well_formed(bad), "{bad}");
        }
    }

    #[test]
    fn link_ids_are_short_visible_ascii() {
        for ok in ["a", "checkout/42:a_b", "\"quoted\"", &"x".repeat(MAX_LINK_ID)] {
            assert!(is_link_id(ok), "{ok:?}");
        }
        for bad in ["", "with space", "tab\there", "caf\u{e9}", "line\nbreak", &"x".repeat(MAX_LINK_ID + 1)] {
            assert!(!is_link_id(bad), "{bad:?}");
        }
    }
}
