//! The `nats` destination: JetStream publishes.
//!
//! - `config`: the destination's configuration (`url`, `subject`, `auth`), its validation and
//!   its secrets.
//! - `transport`: [`NatsTransport`], one connection per destination, one attempt as one
//!   acknowledged publish.

pub mod config;
mod transport;

pub use transport::NatsTransport;
