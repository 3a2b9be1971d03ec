//! The frame every page shares (head, navigation, sign-out), and the answers that are not a
//! page of their own: redirects and error pages.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use switchyard_core::api_key::Role;

use super::session::Session;
use crate::auth::Principal;
use crate::error::ApiError;

const PAGES: [(&str, &str); 6] = [
    ("/ui", "Overview"),
    ("/ui/events", "Events"),
    ("/ui/destinations", "Destinations"),
    ("/ui/dead-letters", "Dead letters"),
    ("/ui/sources", "Sources"),
    ("/ui/audit-log", "Audit log"),
];

/// Who is looking, and what the pages need of the session.
pub struct Viewer<'a> {
    pub principal: &'a Principal,
    pub session: &'a Session,
}

impl Viewer<'_> {
    pub fn may(&self, role: Role) -> bool {
        self.principal.role.includes(role)
    }

    /// The hidden field every form that writes carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.session.csrf()); }
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Switchyard" }
            // Without one, browsers ask for /favicon.ico and log its 404 as a console error.
            link rel="icon" href="data:,";
            link rel="stylesheet" href="/ui/assets/app.css";
            script src="/ui/assets/app.js" defer {}
        }
    }
}

/// A page of the signed-in dashboard; `current` is its path in the navigation.
pub fn page(
    viewer: &Viewer<'_>,
    current: &str,
    title: &str,
    notice: Option<&str>,
    content: Markup,
) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    a.brand href="/ui" { "Switchyard" }
                    nav aria-label="Pages" {
                        ul {
                            @for (path, label) in PAGES {
                                li {
                                    @if path == current {
                                        a href=(path) aria-current="page" { (label) }
                                    } @else {
                                        a href=(path) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    form #sign-out method="post" action="/ui/sign-out" {
                        (viewer.csrf_field())
                        span.who { (viewer.principal.name) " (" (viewer.principal.role) ")" }
                        button type="submit" { "Sign out" }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(notice) = notice {
                        p.notice role="status" { (notice) }
                    }
                    (content)
                }
            }
        }
    };
    Html(markup.into_string())
}

/// A page outside the signed-in frame (sign-in, errors before a session exists).
pub fn bare(title: &str, content: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { (content) }
        }
    };
    Html(markup.into_string())
}

pub fn error_page(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = html! {
        main.narrow {
            h1 { (title) }
            p { (message) }
            p { a href="/ui" { "Back to the overview" } }
        }
    };
    (status, bare(title, body)).into_response()
}

/// 303 See Other, so the browser follows with a GET.
pub fn redirect(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// What a page could not do, answered as an HTML page with the API's status code.
pub struct UiError(ApiError);

pub type UiResult<T = Response> = Result<T, UiError>;

impl<E: Into<ApiError>> From<E> for UiError {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

impl UiError {
    pub fn forbidden(role: Role) -> Self {
        Self(ApiError::Forbidden(format!("This page or action needs the {role} role.")))
    }

    pub fn not_found(what: &str) -> Self {
        Self(ApiError::NotFound(format!("There is no {what} with that id.")))
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let message = match &self.0 {
            ApiError::Internal(error) => {
                tracing::error!(%error, "a dashboard page failed");
                "Something went wrong on the server; see its log.".to_owned()
            }
            other => other.to_string(),
        };
        error_page(status, &message)
    }
}

pub fn require(viewer: &Viewer<'_>, role: Role) -> Result<(), UiError> {
    if viewer.may(role) { Ok(()) } else { Err(UiError::forbidden(role)) }
}

/// A time as the pages show it: RFC 3339 to the second, in UTC.
pub fn when(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}
