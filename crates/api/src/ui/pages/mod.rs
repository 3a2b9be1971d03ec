//! One module per page (or family of pages) of the dashboard.

pub mod audit;
pub mod dead_letters;
pub mod destinations;
pub mod event;
pub mod events;
pub mod overview;
pub mod sources;

use serde::Deserialize;

use super::layout::Viewer;
use super::session::Session;
use crate::auth::Principal;

pub fn viewer<'a>(principal: &'a Principal, session: &'a Session) -> Viewer<'a> {
    Viewer { principal, session }
}

/// `?notice=`: what the action before a redirect did, shown once at the top.
#[derive(Deserialize, Default)]
pub struct Notice {
    pub notice: Option<String>,
}

/// Blank fields of a GET form arrive as empty strings: the same as absent.
pub fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// A `datetime-local` value (`2026-01-02T03:04`, no zone) read as UTC, or an RFC 3339 time.
pub fn local_time(raw: Option<&str>) -> Option<i64> {
    let raw = raw?;
    if let Some(at) = switchyard_core::time::parse_rfc3339(raw) {
        return Some(at);
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|format| chrono::NaiveDateTime::parse_from_str(raw, format).ok())
        .map(|t| t.and_utc().timestamp_millis())
}

/// Builds `path?k=v&…` from the values that are set.
pub fn link(path: &str, params: &[(&str, Option<&str>)]) -> String {
    let query: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", super::session::encode_query(v))))
        .collect();
    if query.is_empty() { path.to_owned() } else { format!("{path}?{}", query.join("&")) }
}

/// An id as one path segment (ids from clients may hold anything).
pub fn segment(id: &str) -> String {
    super::session::encode_query(id).replace('/', "%2F")
}
