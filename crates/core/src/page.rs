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
}
