//! `/ui/destinations`: every destination with its health, and (operator and up) the buttons
//! the API's destination actions have: pause, resume, test send, rotate the signing secret.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde_json::Value;
use switchyard_core::api_key::Role;
use switchyard_core::destination::Destination;
use switchyard_core::flow::DestinationHealth;
use switchyard_core::page::ListRequest;
use switchyard_core::time::now_millis;

use super::overview::{circuit_word, ms, percent};
use super::{Notice, link, segment, viewer};
use crate::ApiState;
use crate::auth::Principal;
use crate::routes::destination_actions::{SIGNING_SECRET, rotate, store_enabled};
use crate::routes::destinations::load;
use crate::ui::layout::{self, UiResult, Viewer, redirect, require};
use crate::ui::session::Session;

const PER_PAGE: u32 = 100;

pub async fn list(
    State(state): State<ApiState>,
    principal: Principal,
    Extension(session): Extension<Session>,
    Query(notice): Query<Notice>,
) -> UiResult<Response> {
    let viewer = viewer(&principal, &session);
    let now = now_millis();
    let mut rows = Vec::new();
    for page in 1.. {
        let listing = state.store().list_destinations(ListRequest::Page { page, per_page: PER_PAGE }).await?;
        let last = listing.items.len() < PER_PAGE as usize;
        for destination in listing.items {
            let flow = state.store().destination_flow(&destination.id).await?;
            let health = DestinationHealth::of(
                destination.id.clone(),
                flow.as_ref(),
                &destination.circuit_breaker,
                now,
            );
            rows.push((destination, health));
        }
        if last {
            break;
        }
    }
    let operator = viewer.may(Role::Operator);
    let content = html! {
        @if rows.is_empty() { p { "No destinations yet; create one with the API." } }
        div.table-wrap {
            table #destinations {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "State" }
                    th scope="col" { "Circuit" } th scope="col" { "Success rate" } th scope="col" { "Latency p50 / p99" }
                    @if operator { th scope="col" { "Actions" } }
                } }
                tbody {
                    @for (destination, health) in &rows {
                        tr.destination data-id=(destination.id) {
                            td { (destination.name) br; code.id { (destination.id) } }
                            td { (destination.kind) }
                            td.state { @if destination.enabled { "active" } @else { "paused" } }
                            td.circuit {
                                (circuit_word(health.circuit.state))
                                @if let Some(reason) = &health.circuit.reason { br; span.hint { (reason) } }
                            }
                            td { (percent(health.success_rate)) }
                            td { (ms(health.latency_ms.p50)) " / " (ms(health.latency_ms.p99)) }
                            @if operator { td.actions { (actions(&viewer, destination)) } }
                        }
                    }
                }
            }
        }
    };
    let notice = notice.notice.as_deref();
    Ok(layout::page(&viewer, "/ui/destinations", "Destinations", notice, content).into_response())
}

fn actions(viewer: &Viewer<'_>, destination: &Destination) -> maud::Markup {
    let base = format!("/ui/destinations/{}", segment(destination.id.as_str()));
    let name = &destination.name;
    html! {
        @if destination.enabled {
            form method="post" action=(format!("{base}/pause")) {
                (viewer.csrf_field())
                button.pause type="submit" aria-label=(format!("Pause {name}")) { "Pause" }
            }
        } @else {
            form method="post" action=(format!("{base}/resume")) {
                (viewer.csrf_field())
                button.resume type="submit" aria-label=(format!("Resume {name}")) { "Resume" }
            }
        }
        form method="post" action=(format!("{base}/test")) {
            (viewer.csrf_field())
            button.test-send type="submit" aria-label=(format!("Send a test to {name}")) { "Test send" }
        }
        @if destination.secrets.contains_key(SIGNING_SECRET) {
            form method="post" action=(format!("{base}/rotate-secret")) {
                (viewer.csrf_field())
                button.rotate-secret type="submit" aria-label=(format!("Rotate the signing secret of {name}")) { "Rotate secret" }
            }
        }
    }
}

fn back(notice: &str) -> Response {
    redirect(&link("/ui/destinations", &[("notice", Some(notice))]))
}

pub async fn pause(
    State(state): State<ApiState>,
    principal: Principal,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> UiResult<Response> {
    require(&viewer(&principal, &session), Role::Operator)?;
    let stored = store_enabled(&state, &id, false).await?;
    Ok(back(&format!("{} is paused: nothing is sent to it until it is resumed.", stored.name)))
}

pub async fn resume(
    State(state): State<ApiState>,
    principal: Principal,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> UiResult<Response> {
    require(&viewer(&principal, &session), Role::Operator)?;
    let stored = store_enabled(&state, &id, true).await?;
    Ok(back(&format!("{} is resumed.", stored.name)))
}

pub async fn test_send(
    State(state): State<ApiState>,
    principal: Principal,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> UiResult<Response> {
    require(&viewer(&principal, &session), Role::Operator)?;
    let destination = load(&state, &id).await?;
    let result = state.control().test_destination(&destination).await;
    let code = result.status_code.map_or_else(|| "no answer".to_owned(), |c| format!("HTTP {c}"));
    let verdict = if result.success { "succeeded" } else { "failed" };
    let error = result.error.map(|e| format!(": {e}")).unwrap_or_default();
    Ok(back(&format!(
        "Test send to {} {verdict} ({code}, {} ms){error}",
        destination.name, result.duration_ms
    )))
}

/// The new secret is shown on this answer only, never in a URL or a later page.
pub async fn rotate_secret(
    State(state): State<ApiState>,
    principal: Principal,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> UiResult<Response> {
    let viewer = viewer(&principal, &session);
    require(&viewer, Role::Operator)?;
    let stored = rotate(&state, &id).await?;
    let secret = stored.secrets.get(SIGNING_SECRET).and_then(Value::as_str).unwrap_or_default();
    let content = html! {
        p { "The signing secret of " strong { (stored.name) } " is rotated. The previous one stays valid for 24 hours, so receivers can switch over." }
        p { "Copy the new secret now; it is not shown again here:" }
        pre #new-secret tabindex="0" { (secret) }
        p { a href="/ui/destinations" { "Back to destinations" } }
    };
    Ok(layout::page(&viewer, "/ui/destinations", "Signing secret rotated", None, content).into_response())
}
