//! `/ui/audit-log`: who changed what, newest first (admins only, as `GET /v1/audit-log`).

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use switchyard_core::api_key::Role;
use switchyard_core::audit::AuditFilter;
use switchyard_core::page::ListRequest;

use super::viewer;
use crate::ApiState;
use crate::auth::Principal;
use crate::ui::layout::{self, UiResult, require, when};
use crate::ui::session::Session;

const PER_PAGE: u64 = 50;

#[derive(Deserialize)]
pub struct Paging {
    /// How many newer entries the page skips.
    after: Option<u64>,
}

pub async fn list(
    State(state): State<ApiState>,
    principal: Principal,
    Extension(session): Extension<Session>,
    Query(paging): Query<Paging>,
) -> UiResult<Response> {
    let viewer = viewer(&principal, &session);
    require(&viewer, Role::Admin)?;
    let filter = AuditFilter::default();
    let skip = paging.after.unwrap_or(0);
    let total = state
        .store()
        .list_audit_log(&filter, ListRequest::Page { page: 1, per_page: 1 })
        .await?
        .total
        .unwrap_or(0);
    let end = total.saturating_sub(skip);
    let start = end.saturating_sub(PER_PAGE);
    let mut entries = Vec::new();
    if end > 0 {
        let first = (start / PER_PAGE) as u32 + 1;
        let last = ((end - 1) / PER_PAGE) as u32 + 1;
        for page in first..=last {
            let listing = state
                .store()
                .list_audit_log(&filter, ListRequest::Page { page, per_page: PER_PAGE as u32 })
                .await?;
            entries.extend(listing.items);
        }
        let offset = u64::from(first - 1) * PER_PAGE;
        let to = ((end - offset) as usize).min(entries.len());
        entries = entries.drain(((start - offset) as usize).min(to)..to).rev().collect();
    }
    let content = html! {
        @if entries.is_empty() { p { "Nothing recorded yet." } }
        div.table-wrap {
            table #audit-log {
                thead { tr { th scope="col" { "Time" } th scope="col" { "Actor" } th scope="col" { "Role" } th scope="col" { "Action" } th scope="col" { "Request" } } }
                tbody {
                    @for entry in &entries {
                        tr.audit-entry data-id=(entry.id) {
                            td { (when(entry.at)) }
                            td { (entry.actor) }
                            td { (entry.role) }
                            td { (entry.action) }
                            td { code { (entry.method) " " (entry.route) } }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages of the audit log" {
            @if skip > 0 { a href="/ui/audit-log" { "Newest" } }
            @if start > 0 { a rel="next" href=(format!("/ui/audit-log?after={}", skip + PER_PAGE)) { "Older" } }
        }
    };
    Ok(layout::page(&viewer, "/ui/audit-log", "Audit log", None, content).into_response())
}
