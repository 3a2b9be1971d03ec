//! `/ui`: the status report as a page: what blocks delivery, then each destination's health
//! with a small chart of its recent throughput and error rate.

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use switchyard_core::flow::DestinationHealth;
use switchyard_core::id::DestinationId;
use switchyard_core::time::now_millis;

use super::viewer;
use crate::ApiState;
use crate::auth::Principal;
use crate::routes::status::{ExternalService, report};
use crate::ui::layout::{self, UiResult};
use crate::ui::session::Session;

/// Columns of each chart: the health window in tenths, as the store keeps it.
const SLICES: i64 = 10;

pub async fn page(
    State(state): State<ApiState>,
    principal: Principal,
    Extension(session): Extension<Session>,
) -> UiResult<Response> {
    let report = report(&state).await;
    let now = now_millis();
    let mut cards = Vec::new();
    for service in &report.external_services {
        cards.push(card(&state, service, now).await);
    }
    let content = html! {
        section #blockers aria-labelledby="blockers-title" {
            h2 #blockers-title { "Blockers" }
            @if report.blockers.is_empty() {
                p.ok { "Nothing is blocking delivery." }
            } @else {
                ul.blockers {
                    @for blocker in &report.blockers {
                        li.blocker data-kind=(blocker.kind) { (blocker.reason) }
                    }
                }
            }
        }
        section #status aria-labelledby="status-title" {
            h2 #status-title { "Status" }
            dl.facts {
                dt { "API" } dd { (report.api) }
                dt { "Database" } dd { (report.database) }
                dt { "Requests (last minute)" } dd { (report.performance.requests) }
            }
        }
        section #health aria-labelledby="health-title" {
            h2 #health-title { "Destinations" }
            @if cards.is_empty() {
                p { "No destinations yet." }
            }
            div.cards {
                @for card in cards { (card) }
            }
        }
    };
    Ok(layout::page(&viewer(&principal, &session), "/ui", "Overview", None, content).into_response())
}

async fn card(state: &ApiState, service: &ExternalService, now: i64) -> Markup {
    let id = DestinationId::from_trusted(service.destination_id.clone());
    let destination = state.store().get_destination(&id).await.ok().flatten();
    let flow = state.store().destination_flow(&id).await.ok().flatten();
    let health = destination
        .as_ref()
        .map(|d| DestinationHealth::of(id.clone(), flow.as_ref(), &d.circuit_breaker, now));
    let window_ms = health.as_ref().map_or(60_000, |h| h.window_ms);
    let step = (window_ms as i64 / SLICES).max(1);
    let slices: Vec<(u64, u64)> = (0..SLICES)
        .rev()
        .map(|back| match &flow {
            Some(flow) => {
                let t = flow.outcomes.totals(step as u64, now - back * step);
                (t.attempts(), t.attempts() - t.succeeded)
            }
            None => (0, 0),
        })
        .collect();
    html! {
        article.card.destination-health data-id=(service.destination_id) {
            h3 { (service.name) }
            dl.facts {
                dt { "Circuit" } dd.circuit { (circuit_word(service.circuit)) }
                dt { "State" } dd { (service.state) }
                dt { "Success rate" } dd { (percent(service.success_rate)) }
                @if let Some(health) = &health {
                    dt { "Latency p50 / p99" }
                    dd { (ms(health.latency_ms.p50)) " / " (ms(health.latency_ms.p99)) }
                }
                dt { "Pending" } dd { (service.pending) }
                dt { "Dead" } dd { (service.dead) }
            }
            (chart(&service.name, &slices, window_ms))
        }
    }
}

/// The state as the API spells it (`half_open`).
pub fn circuit_word(state: switchyard_core::circuit::CircuitState) -> String {
    serde_json::to_value(state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

pub fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "–".to_owned(), |r| format!("{:.1} %", r * 100.0))
}

pub fn ms(value: Option<u64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v} ms"))
}

/// Bars of attempts per slice of the window, with the part that did not succeed (failed, or
/// refused by the receiver without tripping the circuit) in a second colour.
fn chart(name: &str, slices: &[(u64, u64)], window_ms: u64) -> Markup {
    const W: u64 = 200;
    const H: u64 = 48;
    let peak = slices.iter().map(|(n, _)| *n).max().unwrap_or(0).max(1);
    let bar = W / slices.len().max(1) as u64;
    let attempts: u64 = slices.iter().map(|(n, _)| n).sum();
    let failed: u64 = slices.iter().map(|(_, f)| f).sum();
    let summary =
        format!("{name}: {attempts} attempts, {failed} failed, over the last {} s", window_ms / 1000);
    html! {
        svg.chart viewBox=(format!("0 0 {W} {H}")) role="img" width=(W) height=(H) {
            title { (summary) }
            @for (i, (n, f)) in slices.iter().enumerate() {
                @let x = i as u64 * bar;
                @let total_h = n * H / peak;
                @let failed_h = f * H / peak;
                rect.throughput x=(x + 1) y=(H - total_h) width=(bar - 2) height=(total_h) {}
                @if failed_h > 0 {
                    rect.errors x=(x + 1) y=(H - failed_h) width=(bar - 2) height=(failed_h) {}
                }
            }
        }
        p.chart-legend { (summary) }
    }
}
