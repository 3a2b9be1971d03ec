//! Integration tests: the real application over HTTP on a real SQLite file, and (in
//! `multi_node`) several real processes on one PostgreSQL database.

mod api_keys;
mod audit_log;
mod bench_smoke;
mod cli;
mod connections;
mod correlation;
mod delivery;
mod destination_config;
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
mod logs;
mod metrics;
mod multi_node;
mod openapi;
mod ordering;
mod otlp;
mod out_of_space;
mod poison;
mod process;
mod rate_limit;
mod resources;
mod security_headers;
mod sink;
mod ssrf;
mod status;
mod strict_json;
mod tls;
