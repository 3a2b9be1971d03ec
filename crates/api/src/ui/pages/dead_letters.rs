//! `/ui/dead-letters`: what could not be delivered, filtered, and (operator and up) replayed
//! by selection or by filter, as `POST /v1/deliveries/{id}/retry` and
//! `POST /v1/dead-letters/replay` do; the page then follows the replayed deliveries until each
//! has had its new attempt.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use maud::html;
use serde::{Deserialize, Serialize};
use switchyard_core::ValidationError;
use switchyard_core::api_key::Role;
use switchyard_core::delivery::{DeliveryFilter, DeliveryStatus};
use switchyard_core::event::EventType;
use switchyard_core::id::{DeliveryId, DestinationId};
use switchyard_core::page::ListRequest;

use super::{given, link, local_time, segment, viewer};
use crate::ApiState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::ui::layout::{self, UiError, UiResult, redirect, require, when};
use crate::ui::session::{Session, field, form_pairs};

/// Rows on the page, and replayed deliveries followed by its progress bar.
const LIMIT: u32 = 100;

#[derive(Deserialize, Default)]
pub struct Search {
    destination_id: Option<String>,
    event_type: Option<String>,
    since: Option<String>,
    until: Option<String>,
    notice: Option<String>,
    /// The deliveries a replay made due, comma-separated, to follow.
    replayed: Option<String>,
}

struct Filter<'a> {
    destination_id: Option<&'a str>,
    event_type: Option<&'a str>,
    since: Option<&'a str>,
    until: Option<&'a str>,
}

impl Filter<'_> {
    fn parse(&self) -> Result<DeliveryFilter, UiError> {
        let event_type = self.event_type.map(EventType::parse).transpose().map_err(UiError::from)?;
        let time = |name: &str, raw: Option<&str>| match raw {
            None => Ok(None),
            Some(raw) => local_time(Some(raw))
                .map(Some)
                .ok_or_else(|| UiError::from(ValidationError::single(name, "must be a date and time"))),
        };
        Ok(DeliveryFilter {
            status: Some(DeliveryStatus::Dead),
            event_id: None,
            destination_id: self.destination_id.map(DestinationId::from_trusted),
            subscription_id: None,
            event_type,
            since: time("since", self.since)?,
            until: time("until", self.until)?,
        })
    }
}

pub async fn list(
    State(state): State<ApiState>,
    principal: Principal,
    Extension(session): Extension<Session>,
    Query(search): Query<Search>,
) -> UiResult<Response> {
    let viewer = viewer(&principal, &session);
    let wanted = Filter {
        destination_id: given(&search.destination_id),
        event_type: given(&search.event_type),
        since: given(&search.since),
        until: given(&search.until),
    };
    let filter = wanted.parse()?;
    let listing =
        state.store().list_deliveries(&filter, ListRequest::Page { page: 1, per_page: LIMIT }).await?;
    let total = listing.total.unwrap_or(listing.items.len() as u64);
    let destinations =
        state.store().list_destinations(ListRequest::Page { page: 1, per_page: 100 }).await?.items;
    let mut events = Vec::with_capacity(listing.items.len());
    for delivery in &listing.items {
        events.push(state.store().get_event(&delivery.event_id).await?.map(|e| e.event_type.to_string()));
    }
    let operator = viewer.may(Role::Operator);
    let replayed: Vec<&str> =
        given(&search.replayed).map(|r| r.split(',').filter(|s| !s.is_empty()).collect()).unwrap_or_default();
    let done = if replayed.is_empty() { 0 } else { settled(&state, &replayed).await?.done };
    let table = html! {
        div.table-wrap {
            table #dead-letters {
                caption { (total) " dead letters match" @if total > u64::from(LIMIT) { "; the first " (LIMIT) " are shown" } "." }
                thead { tr {
                    @if operator { th scope="col" { span.visually-hidden { "Select" } } }
                    th scope="col" { "Delivery" } th scope="col" { "Event" } th scope="col" { "Type" }
                    th scope="col" { "Destination" } th scope="col" { "Attempts" } th scope="col" { "Last error" } th scope="col" { "Updated" }
                } }
                tbody {
                    @for (delivery, event_type) in listing.items.iter().zip(&events) {
                        tr.dead-letter data-id=(delivery.id) {
                            @if operator {
                                td {
                                    input type="checkbox" name="delivery_id" value=(delivery.id) id=(format!("select-{}", delivery.id));
                                    label.visually-hidden for=(format!("select-{}", delivery.id)) { "Select " (delivery.id) }
                                }
                            }
                            td { code { (delivery.id) } }
                            td { a href=(format!("/ui/events/{}", segment(delivery.event_id.as_str()))) { (delivery.event_id) } }
                            td { (event_type.as_deref().unwrap_or("–")) }
                            td { (delivery.destination_id) }
                            td { (delivery.attempt_count) }
                            td.error { (delivery.last_error.as_deref().unwrap_or("")) }
                            td { (when(delivery.updated_at)) }
                        }
                    }
                }
            }
        }
    };
    let content = html! {
        form.search method="get" action="/ui/dead-letters" role="search" {
            div.field {
                label for="destination_id" { "Destination" }
                select id="destination_id" name="destination_id" {
                    option value="" { "Any" }
                    @for d in &destinations {
                        option value=(d.id) selected[wanted.destination_id == Some(d.id.as_str())] { (d.name) }
                    }
                }
            }
            div.field {
                label for="event_type" { "Event type" }
                input type="text" id="event_type" name="event_type" value=[wanted.event_type];
            }
            div.field {
                label for="since" { "From (UTC)" }
                input type="datetime-local" id="since" name="since" value=[wanted.since];
            }
            div.field {
                label for="until" { "Until (UTC)" }
                input type="datetime-local" id="until" name="until" value=[wanted.until];
            }
            button type="submit" { "Filter" }
        }
        @if !replayed.is_empty() {
            section #replay-status data-ids=(replayed.join(",")) aria-live="polite" {
                label for="replay-progress" { "Replay progress" }
                progress #replay-progress max=(replayed.len()) value=(done) { (done) " of " (replayed.len()) }
                span #replay-text { (done) " of " (replayed.len()) " replayed" }
            }
        }
        @if operator {
            form #replay method="post" action="/ui/dead-letters/replay" {
                (viewer.csrf_field())
                input type="hidden" name="destination_id" value=[wanted.destination_id];
                input type="hidden" name="event_type" value=[wanted.event_type];
                input type="hidden" name="since" value=[wanted.since];
                input type="hidden" name="until" value=[wanted.until];
                (table)
                div.buttons {
                    button #replay-selected type="submit" name="action" value="selected" { "Replay selected" }
                    button #replay-matching type="submit" name="action" value="matching" { "Replay all " (total) " matching" }
                }
            }
        } @else {
            (table)
        }
    };
    let notice = search.notice.as_deref();
    Ok(layout::page(&viewer, "/ui/dead-letters", "Dead letters", notice, content).into_response())
}

pub async fn replay(
    State(state): State<ApiState>,
    principal: Principal,
    Extension(session): Extension<Session>,
    body: axum::body::Bytes,
) -> UiResult<Response> {
    require(&viewer(&principal, &session), Role::Operator)?;
    let pairs = form_pairs(&body).unwrap_or_default();
    let (ids, count) = if field(&pairs, "action") == Some("matching") {
        let wanted = Filter {
            destination_id: field(&pairs, "destination_id"),
            event_type: field(&pairs, "event_type"),
            since: field(&pairs, "since"),
            until: field(&pairs, "until"),
        };
        let filter = wanted.parse()?;
        let followed =
            state.store().list_deliveries(&filter, ListRequest::Page { page: 1, per_page: LIMIT }).await?;
        let count = state.control().replay_dead(filter).await?;
        (followed.items.into_iter().map(|d| d.id.to_string()).collect::<Vec<_>>(), count)
    } else {
        let mut ids = Vec::new();
        for (_, id) in pairs.iter().filter(|(k, _)| k == "delivery_id").take(LIMIT as usize) {
            // One that is no longer dead (replayed meanwhile) is not an error for a batch.
            if let Ok(Some(delivery)) = state.control().retry(&DeliveryId::from_trusted(id.clone())).await {
                ids.push(delivery.id.to_string());
            }
        }
        let count = ids.len() as u64;
        (ids, count)
    };
    let notice = match count {
        0 => "Nothing was replayed: no dead letter was selected or matched.".to_owned(),
        1 => "1 dead letter replayed.".to_owned(),
        n => format!("{n} dead letters replayed."),
    };
    let joined = ids.join(",");
    Ok(redirect(&link(
        "/ui/dead-letters",
        &[("notice", Some(&notice)), ("replayed", (!joined.is_empty()).then_some(&joined))],
    )))
}

#[derive(Serialize)]
pub struct Progress {
    /// Replayed deliveries that have had their new attempt (or attempts) settled.
    done: usize,
    total: usize,
    succeeded: usize,
    dead: usize,
}

#[derive(Deserialize)]
pub struct Followed {
    ids: Option<String>,
}

pub async fn progress(
    State(state): State<ApiState>,
    principal: Principal,
    Extension(session): Extension<Session>,
    Query(followed): Query<Followed>,
) -> UiResult<Json<Progress>> {
    let _ = viewer(&principal, &session);
    let ids: Vec<&str> =
        given(&followed.ids).map(|r| r.split(',').take(LIMIT as usize).collect()).unwrap_or_default();
    Ok(Json(settled(&state, &ids).await?))
}

async fn settled(state: &ApiState, ids: &[&str]) -> Result<Progress, ApiError> {
    let mut progress = Progress { done: 0, total: ids.len(), succeeded: 0, dead: 0 };
    for id in ids {
        let status = state.store().get_delivery(&DeliveryId::from_trusted(*id)).await?.map(|d| d.status);
        match status {
            Some(DeliveryStatus::Pending | DeliveryStatus::InFlight) => {}
            Some(DeliveryStatus::Succeeded) => {
                progress.done += 1;
                progress.succeeded += 1;
            }
            Some(DeliveryStatus::Dead) => {
                progress.done += 1;
                progress.dead += 1;
            }
            _ => progress.done += 1,
        }
    }
    Ok(progress)
}
