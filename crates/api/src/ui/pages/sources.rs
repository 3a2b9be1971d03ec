//! `/ui/sources`: every source, with the URL a webhook provider is given.

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::html;
use switchyard_core::page::ListRequest;

use super::viewer;
use crate::ApiState;
use crate::auth::Principal;
use crate::routes::sources::base_url;
use crate::ui::layout::{self, UiResult};
use crate::ui::session::Session;

const PER_PAGE: u32 = 100;

pub async fn list(
    State(state): State<ApiState>,
    principal: Principal,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
) -> UiResult<Response> {
    let base = base_url(&state, &headers);
    let mut sources = Vec::new();
    for page in 1.. {
        let listing = state.store().list_sources(ListRequest::Page { page, per_page: PER_PAGE }).await?;
        let last = listing.items.len() < PER_PAGE as usize;
        sources.extend(listing.items.iter().map(|s| s.view(&base)));
        if last {
            break;
        }
    }
    let content = html! {
        @if sources.is_empty() { p { "No sources yet; create one with the API." } }
        div.table-wrap {
            table #sources {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Enabled" } th scope="col" { "Webhook URL" } } }
                tbody {
                    @for source in &sources {
                        tr.source data-id=(source.id) {
                            td { (source.name) br; code.id { (source.id) } }
                            td { (source.kind) }
                            td { @if source.enabled { "yes" } @else { "no" } }
                            td { @if let Some(url) = &source.url { code.url { (url) } } @else { "–" } }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&viewer(&principal, &session), "/ui/sources", "Sources", None, content).into_response())
}
