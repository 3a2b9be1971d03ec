//! The `redis` destination: entries added to Redis Streams.
//!
//! - `config`: the destination's configuration (`url`, `stream`, `max_len`, `auth`), its
//!   validation and its secret.
//! - `transport`: [`RedisTransport`], one connection per destination, one `XADD` per attempt.

pub mod config;
mod transport;

pub use transport::RedisTransport;
