//! The `amqp` destination: persistent publishes to a RabbitMQ exchange, confirmed by the broker.
//!
//! - `config`: the destination's configuration (`url`, `exchange`, `routing_key`), its
//!   validation and its secret (the URL's password).
//! - `transport`: [`AmqpTransport`], one connection and confirming channel per destination.

pub mod config;
mod transport;

pub use transport::AmqpTransport;
