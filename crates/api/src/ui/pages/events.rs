//! `/ui/events`: the newest events first, searchable, with a live tail of new ones.
//!
//! The store lists events oldest first; a page here is the slice of that order that ends
//! `after` events before the newest, read as at most two numbered pages.

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use switchyard_core::event::{Event, EventFilter, EventType};
use switchyard_core::page::ListRequest;
use switchyard_core::stream::StreamKind;

use super::{given, link, local_time, segment, viewer};
use crate::ApiState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::ui::layout::{self, UiResult, when};
use crate::ui::session::Session;

const PER_PAGE: u64 = 25;

#[derive(Deserialize, Default)]
pub struct Search {
    event_type: Option<String>,
    correlation_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// How many newer events the page skips (the "Older" link's position).
    after: Option<String>,
}

pub async fn list(
    State(state): State<ApiState>,
    principal: Principal,
    Extension(session): Extension<Session>,
    Query(search): Query<Search>,
) -> UiResult<Response> {
    let mut problems = Vec::new();
    let event_type = given(&search.event_type).and_then(|raw| match EventType::parse(raw) {
        Ok(t) => Some(t),
        Err(error) => {
            problems.push(format!("Event type: {error}"));
            None
        }
    });
    let mut time = |name: &str, raw: Option<&str>| {
        let at = local_time(raw);
        if raw.is_some() && at.is_none() {
            problems.push(format!("{name} is not a date and time"));
        }
        at
    };
    let since = time("From", given(&search.since));
    let until = time("Until", given(&search.until));
    let skip: u64 = given(&search.after).and_then(|a| a.parse().ok()).unwrap_or(0);
    let filter = EventFilter {
        event_type,
        correlation_id: given(&search.correlation_id).map(str::to_owned),
        since,
        until,
    };
    // Taken before the list is read, so the live tail starts no later than the page: an event
    // committed in between shows in both, and the script keeps one row per id.
    let tail_from = state.store().stream_head_events().await?.encode(StreamKind::Events);
    let (events, older) =
        if problems.is_empty() { newest(&state, &filter, skip).await? } else { (Vec::new(), false) };
    let filtered = [&search.event_type, &search.correlation_id, &search.since, &search.until]
        .iter()
        .any(|v| given(v).is_some());
    let live = if filtered || skip > 0 { "off" } else { "on" };
    let older_link = older.then(|| {
        let after = (skip + PER_PAGE).to_string();
        link(
            "/ui/events",
            &[
                ("event_type", given(&search.event_type)),
                ("correlation_id", given(&search.correlation_id)),
                ("since", given(&search.since)),
                ("until", given(&search.until)),
                ("after", Some(&after)),
            ],
        )
    });
    let content = html! {
        form.search method="get" action="/ui/events" role="search" {
            div.field {
                label for="event_type" { "Event type" }
                input type="text" id="event_type" name="event_type" placeholder="order.created" value=[given(&search.event_type)];
            }
            div.field {
                label for="correlation_id" { "Correlation id" }
                input type="text" id="correlation_id" name="correlation_id" value=[given(&search.correlation_id)];
            }
            div.field {
                label for="since" { "From (UTC)" }
                input type="datetime-local" id="since" name="since" value=[given(&search.since)];
            }
            div.field {
                label for="until" { "Until (UTC)" }
                input type="datetime-local" id="until" name="until" value=[given(&search.until)];
            }
            button type="submit" { "Search" }
            @if filtered { a.reset href="/ui/events" { "Clear" } }
        }
        @for problem in &problems {
            p.notice.error role="alert" { (problem) }
        }
        p #live-status .live-status aria-live="polite" {}
        div.table-wrap {
            table #events data-live=(live) data-after=(tail_from) {
                caption { @if live == "on" { "Newest first; new events appear as they arrive." } @else { "Newest first." } }
                thead { tr { th scope="col" { "Event" } th scope="col" { "Type" } th scope="col" { "Source" } th scope="col" { "Correlation id" } th scope="col" { "Time" } } }
                tbody {
                    @for event in &events {
                        tr.event data-id=(event.event_id) {
                            td { a href=(format!("/ui/events/{}", segment(event.event_id.as_str()))) { (event.event_id) } }
                            td { (event.event_type) }
                            td { (source_name(event)) }
                            td { (event.metadata.correlation_id) }
                            td { time datetime=(switchyard_core::time::format_rfc3339(event.timestamp)) { (when(event.timestamp)) } }
                        }
                    }
                }
            }
        }
        @if events.is_empty() { p.empty { "No events match." } }
        nav.pager aria-label="Pages of events" {
            @if skip > 0 { a href="/ui/events" { "Newest" } }
            @if let Some(href) = older_link { a rel="next" href=(href) { "Older" } }
        }
    };
    Ok(layout::page(&viewer(&principal, &session), "/ui/events", "Events", None, content).into_response())
}

pub fn source_name(event: &Event) -> &str {
    event.source.as_str()
}

/// The page of events `skip` events before the newest, newest first, and whether older exist.
async fn newest(state: &ApiState, filter: &EventFilter, skip: u64) -> Result<(Vec<Event>, bool), ApiError> {
    let per_page = PER_PAGE as u32;
    let total = state
        .store()
        .list_events(filter, ListRequest::Page { page: 1, per_page: 1 })
        .await?
        .total
        .unwrap_or(0);
    let end = total.saturating_sub(skip);
    let start = end.saturating_sub(PER_PAGE);
    if end == 0 {
        return Ok((Vec::new(), false));
    }
    let first = (start / PER_PAGE) as u32 + 1;
    let last = ((end - 1) / PER_PAGE) as u32 + 1;
    let mut items = Vec::new();
    for page in first..=last {
        items.extend(state.store().list_events(filter, ListRequest::Page { page, per_page }).await?.items);
    }
    let offset = u64::from(first - 1) * PER_PAGE;
    let from = (start - offset) as usize;
    let to = ((end - offset) as usize).min(items.len());
    let mut slice: Vec<Event> = items.drain(from.min(to)..to).collect();
    slice.reverse();
    Ok((slice, start > 0))
}
