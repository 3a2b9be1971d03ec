//! The integration tests of the adapters, built as one binary: one module per destination
//! kind, and one per source kind (`*_source`).

mod amqp;
mod amqp_source;
mod http;
mod mqtt;
mod nats;
mod nats_source;
mod outbox_source;
mod redis;
