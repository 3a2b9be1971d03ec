//! The integration tests of the adapters, one module per destination kind, built as one
//! binary.

mod amqp;
mod http;
mod mqtt;
mod nats;
mod redis;
