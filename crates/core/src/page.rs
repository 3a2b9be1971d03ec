//! Pagination: numbered pages for every list, keyset cursors for append-only collections.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::ValidationError;

pub const DEFAULT_PER_PAGE: u32 = 20;
pub const MAX_PER_PAGE: u32 = 100;

/// A position in an append-only collection: the ingest sequence of the last item seen.
/// Opaque to clients, so the encoding can change without breaking them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor(i64);

impl Cursor {
    pub fn at(seq: i64) -> Self {
        Self(seq)
    }

    pub fn seq(self) -> i64 {
        self.0
    }

    pub fn encode(self) -> String {
        URL_SAFE_NO_PAD.encode(format!("c1:{}", self.0))
    }

    pub fn decode(raw: &str) -> Result<Self, ValidationError> {
        let invalid = || ValidationError::single("after", "is not a cursor this API returned");
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
        let seq = text.strip_prefix("c1:").ok_or_else(invalid)?;
        seq.parse::<i64>().ok().filter(|s| *s >= 0).map(Self).ok_or_else(invalid)
    }
}

/// How one list request wants its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListRequest {
    /// Numbered page (1-based) with totals.
    Page { page: u32, per_page: u32 },
    /// Keyset page: the items after `after` (from the start when `None`), no totals.
    After { after: Option<Cursor>, per_page: u32 },
}

impl ListRequest {
    pub fn per_page(&self) -> u32 {
        match *self {
            Self::Page { per_page, .. } | Self::After { per_page, .. } => per_page,
        }
    }

    pub fn offset(&self) -> u64 {
        match *self {
            Self::Page { page, per_page } => u64::from(page.saturating_sub(1)) * u64::from(per_page),
            Self::After { .. } => 0,
        }
    }
}

impl Default for ListRequest {
    fn default() -> Self {
        Self::Page { page: 1, per_page: DEFAULT_PER_PAGE }
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing<T> {
    pub items: Vec<T>,
    /// Total matching items; known for numbered pages only.
    pub total: Option<u64>,
    /// Where the next keyset page starts; `None` at the end (append-only collections only).
    pub next_cursor: Option<Cursor>,
}

impl<T> Listing<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Listing<U> {
        Listing {
            items: self.items.into_iter().map(f).collect(),
            total: self.total,
            next_cursor: self.next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn cursors_round_trip() {
        for seq in [0, 1, 42, i64::MAX] {
            assert_eq!(Cursor::decode(&Cursor::at(seq).encode()).unwrap(), Cursor::at(seq));
        }
    }

    #[test]
    fn foreign_cursors_are_refused() {
        for bad in ["", "abc", "!!!", &URL_SAFE_NO_PAD.encode("c1:-4"), &URL_SAFE_NO_PAD.encode("x:1")] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn offsets_follow_page_numbers() {
        assert_eq!(ListRequest::Page { page: 1, per_page: 20 }.offset(), 0);
        assert_eq!(ListRequest::Page { page: 3, per_page: 20 }.offset(), 40);
    }

    /// What a cursor's text must be, spelled out: `c1:` and a non-negative 64-bit decimal
    /// (with the signs `str::parse` allows: `+`, and `-` before a zero, which is still zero).
    fn reference_position(text: &str) -> Option<i64> {
        let digits = text.strip_prefix("c1:")?;
        let (negative, digits) = match digits.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, digits.strip_prefix('+').unwrap_or(digits)),
        };
        let zero = !digits.is_empty() && digits.bytes().all(|b| b == b'0');
        if negative && !zero {
            return None;
        }
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let significant = digits.trim_start_matches('0');
        let fits =
            significant.len() < 19 || (significant.len() == 19 && significant <= "9223372036854775807");
        fits.then(|| significant.bytes().fold(0, |n, b| n * 10 + i64::from(b - b'0')))
    }

    /// Texts near a cursor's: the prefix, then digits, signs and other characters.
    fn cursor_like_text() -> impl Strategy<Value = String> {
        let tail = prop_oneof!["[0-9]{1,20}", "[+-]?[0-9]{0,19}", "[0-9a-z :+-]{0,8}", any::<String>()];
        (prop_oneof![Just("c1:"), Just("c2:"), Just("c1"), Just("")], tail)
            .prop_map(|(p, t)| format!("{p}{t}"))
    }

    proptest! {
        #[test]
        fn every_position_round_trips_through_url_safe_text(seq in 0..=i64::MAX) {
            let encoded = Cursor::at(seq).encode();
            prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{}", encoded);
            prop_assert_eq!(Cursor::decode(&encoded).ok(), Some(Cursor::at(seq)));
        }

        #[test]
        fn negative_positions_do_not_come_back(seq in i64::MIN..0) {
            prop_assert!(Cursor::decode(&Cursor::at(seq).encode()).is_err());
        }

        #[test]
        fn encoded_texts_decode_as_the_reference_says(text in cursor_like_text()) {
            let decoded = Cursor::decode(&URL_SAFE_NO_PAD.encode(&text)).ok().map(Cursor::seq);
            prop_assert_eq!(decoded, reference_position(&text), "{:?}", text);
        }

        #[test]
        fn garbage_is_refused_without_panicking(raw in any::<String>(), bytes in any::<Vec<u8>>()) {
            // Any string: an error unless it is the encoding of a cursor's text.
            let as_text = URL_SAFE_NO_PAD.decode(&raw).ok().and_then(|b| String::from_utf8(b).ok());
            let expected = as_text.as_deref().and_then(reference_position);
            prop_assert_eq!(Cursor::decode(&raw).ok().map(Cursor::seq), expected);
            // Bytes that are no UTF-8, encoded as a client might forge them.
            if std::str::from_utf8(&bytes).is_err() {
                prop_assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode(&bytes)).is_err());
            }
        }
    }
}
