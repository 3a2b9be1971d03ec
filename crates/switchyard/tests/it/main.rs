//! Integration tests: the real application over HTTP on a real SQLite file.

mod api_keys;
mod cli;
mod delivery;
mod errors;
mod events;
mod helpers;
mod idempotency;
mod openapi;
mod process;
mod resources;
mod sink;
