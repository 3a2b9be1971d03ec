//! The `mqtt` destination: MQTT 5 publishes at QoS 1.
//!
//! - `config`: the destination's configuration (`url`, `topic`, `qos`, `auth`), its validation
//!   and its secret.
//! - `transport`: [`MqttTransport`], one session per destination, each publish paired with its
//!   PUBACK.

pub mod config;
mod transport;

pub use transport::MqttTransport;
