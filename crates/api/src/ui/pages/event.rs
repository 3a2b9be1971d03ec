//! `/ui/events/{id}`: one event: its payload and metadata, each delivery with its attempts,
//! and the causation trace of its flow.

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use switchyard_core::event::EventId;

use super::{segment, viewer};
use crate::ApiState;
use crate::auth::Principal;
use crate::routes::event_trace::{MAX_TRACE_EVENTS, TraceNode, build_tree};
use crate::ui::layout::{self, UiError, UiResult, when};
use crate::ui::session::Session;

/// How much of a receiver's answer the page repeats.
const SNIPPET_CHARS: usize = 300;

pub async fn page(
    State(state): State<ApiState>,
    principal: Principal,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> UiResult<Response> {
    let id = EventId::from_trusted(id);
    let event = state.store().get_event(&id).await?.ok_or_else(|| UiError::not_found("event"))?;
    let deliveries = state.store().deliveries_of_event(&id).await?;
    let mut attempts = Vec::with_capacity(deliveries.len());
    for delivery in &deliveries {
        attempts.push(state.store().attempts_of(&delivery.id).await?);
    }
    let mut links =
        state.store().links_of_flow(&event.metadata.correlation_id, MAX_TRACE_EVENTS as u32 + 1).await?;
    let truncated = links.len() > MAX_TRACE_EVENTS;
    links.truncate(MAX_TRACE_EVENTS);
    let trace = build_tree(links);
    let payload = serde_json::to_string_pretty(&event.payload).unwrap_or_default();
    let content = html! {
        section aria-labelledby="meta-title" {
            h2 #meta-title { "Metadata" }
            dl.facts #metadata {
                dt { "Id" } dd { code { (event.event_id) } }
                dt { "Type" } dd { (event.event_type) }
                dt { "Source" } dd { (event.source.as_str()) }
                dt { "Time" } dd { (when(event.timestamp)) }
                dt { "Received" } dd { (when(event.received_at)) }
                dt { "Correlation id" } dd {
                    a href=(super::link("/ui/events", &[("correlation_id", Some(&event.metadata.correlation_id))])) { (event.metadata.correlation_id) }
                }
                @if let Some(cause) = &event.metadata.causation_id {
                    dt { "Caused by" } dd { a href=(format!("/ui/events/{}", segment(cause))) { (cause) } }
                }
                @if let Some(key) = &event.ordering_key { dt { "Ordering key" } dd { (key) } }
                @if let Some(by) = &event.published_by { dt { "Published by" } dd { (by.principal) } }
            }
        }
        section aria-labelledby="payload-title" {
            h2 #payload-title { "Payload" }
            pre #payload tabindex="0" { (payload) }
        }
        section aria-labelledby="deliveries-title" {
            h2 #deliveries-title { "Deliveries" }
            @if deliveries.is_empty() { p { "No subscription routed this event." } }
            div.table-wrap {
                table #deliveries {
                    thead { tr { th scope="col" { "Delivery" } th scope="col" { "Destination" } th scope="col" { "Status" } th scope="col" { "Attempts" } } }
                    tbody {
                        @for (delivery, tries) in deliveries.iter().zip(&attempts) {
                            tr.delivery data-id=(delivery.id) {
                                td { code { (delivery.id) } }
                                td { (delivery.destination_id) }
                                td.status { (delivery.status.as_str()) }
                                td {
                                    @if tries.is_empty() { "none yet" }
                                    ol.attempts {
                                        @for attempt in tries {
                                            li.attempt {
                                                span.outcome { (outcome_word(attempt.outcome)) }
                                                " · " span.code { @if let Some(code) = attempt.status_code { "HTTP " (code) } @else { "no answer" } }
                                                " · " span.duration { (attempt.duration_ms) " ms" }
                                                " · " (when(attempt.started_at))
                                                @if let Some(error) = &attempt.error { div.error { (error) } }
                                                @if let Some(body) = &attempt.response_body {
                                                    pre.snippet { (body.chars().take(SNIPPET_CHARS).collect::<String>()) }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="trace-title" {
            h2 #trace-title { "Causation trace" }
            @if truncated { p { "The flow is longer than " (MAX_TRACE_EVENTS) " events; the first are shown." } }
            ul.trace #trace { @for node in &trace { (tree(node, event.event_id.as_str())) } }
        }
    };
    let title = format!("Event {}", event.event_id);
    Ok(layout::page(&viewer(&principal, &session), "/ui/events", &title, None, content).into_response())
}

fn outcome_word(outcome: switchyard_core::delivery::AttemptOutcome) -> String {
    serde_json::to_value(outcome).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn tree(node: &TraceNode, current: &str) -> Markup {
    html! {
        li {
            @if node.event_id == current {
                strong aria-current="true" { (node.event_id) } " " (node.event_type)
            } @else {
                a href=(format!("/ui/events/{}", segment(&node.event_id))) { (node.event_id) } " " (node.event_type)
            }
            @if !node.children.is_empty() {
                ul { @for child in &node.children { (tree(child, current)) } }
            }
        }
    }
}
