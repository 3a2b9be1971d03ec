//! The `http` destination: webhooks and HTTP APIs.

pub mod config;
