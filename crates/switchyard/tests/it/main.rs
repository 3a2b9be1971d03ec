//! Integration tests: the real application over HTTP on a real SQLite file.

mod api_keys;
mod audit_log;
mod bench_smoke;
mod cli;
mod delivery;
mod dlq;
mod encryption;
mod errors;
mod events;
mod flow_control;
mod helpers;
mod idempotency;
mod jq;
mod jwt;
mod limits;
mod openapi;
mod ordering;
mod process;
mod rate_limit;
mod resources;
mod sink;
mod ssrf;
mod tls;
