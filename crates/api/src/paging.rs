//! Turning `page`, `per_page` and `after` query parameters into a `ListRequest`.

use switchyard_core::ValidationError;
use switchyard_core::error::Violations;
use switchyard_core::page::{Cursor, DEFAULT_PER_PAGE, ListRequest, MAX_PER_PAGE};
use switchyard_core::time::{Millis, parse_rfc3339};

/// Collections that are only ever appended to accept keyset cursors as well as page numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    Mutable,
    AppendOnly,
}

pub fn list_request(
    page: Option<u32>,
    per_page: Option<u32>,
    after: Option<&str>,
    collection: Collection,
) -> Result<ListRequest, ValidationError> {
    let mut v = Violations::default();
    let per_page = per_page.unwrap_or(DEFAULT_PER_PAGE);
    if !(1..=MAX_PER_PAGE).contains(&per_page) {
        v.push("per_page", format!("must be between 1 and {MAX_PER_PAGE}"));
    }
    if page == Some(0) {
        v.push("page", "must be 1 or more");
    }
    let request = match (after, collection) {
        (Some(_), Collection::Mutable) => {
            v.push("after", "this collection is paged by page number only");
            None
        }
        (Some(_), Collection::AppendOnly) if page.is_some() => {
            v.push("after", "use either page or after, not both");
            None
        }
        (Some(raw), Collection::AppendOnly) => {
            v.check(Cursor::decode(raw)).map(|cursor| ListRequest::After { after: Some(cursor), per_page })
        }
        (None, _) => Some(ListRequest::Page { page: page.unwrap_or(1), per_page }),
    };
    v.into_result()?;
    Ok(request.unwrap_or_default())
}

/// Parses an optional RFC 3339 query parameter.
pub fn instant(field: &str, raw: Option<&str>) -> Result<Option<Millis>, ValidationError> {
    raw.map(|text| {
        parse_rfc3339(text).ok_or_else(|| ValidationError::single(field, "must be an RFC 3339 date-time"))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_the_first_page_of_twenty() {
        assert_eq!(
            list_request(None, None, None, Collection::Mutable).unwrap(),
            ListRequest::Page { page: 1, per_page: 20 }
        );
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(list_request(Some(0), None, None, Collection::Mutable).is_err());
        assert!(list_request(None, Some(101), None, Collection::Mutable).is_err());
        assert!(list_request(None, Some(0), None, Collection::Mutable).is_err());
    }

    #[test]
    fn cursors_only_on_append_only_collections_and_not_with_page() {
        let cursor = Cursor::at(7).encode();
        assert!(list_request(None, None, Some(&cursor), Collection::Mutable).is_err());
        assert!(list_request(Some(2), None, Some(&cursor), Collection::AppendOnly).is_err());
        assert_eq!(
            list_request(None, Some(5), Some(&cursor), Collection::AppendOnly).unwrap(),
            ListRequest::After { after: Some(Cursor::at(7)), per_page: 5 }
        );
    }
}
