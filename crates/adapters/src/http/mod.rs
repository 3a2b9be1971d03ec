//! The `http` destination: webhooks and HTTP APIs.
//!
//! - `config`: the destination's configuration, its validation and its secrets.
//! - `adapter`: [`HttpAdapter`], one attempt as one request and its classified outcome.
//! - `client`: the pooled clients (one per connect timeout), deadlines, bounded body reads.
//! - `prepared`: what attempts share of a destination's configuration, per version.
//! - `signing`: Standard Webhooks signatures, with a second secret during rotation.
//! - `auth`: bearer and basic headers, and the OAuth2 client-credentials token cache.

mod adapter;
mod auth;
mod client;
pub mod config;
mod prepared;
mod signing;

pub use adapter::{HttpAdapter, HttpSettings, MAX_RESPONSE_BODY};
