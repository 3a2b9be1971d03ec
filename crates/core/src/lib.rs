//! The domain of Switchyard: events, event types, destinations, subscriptions, deliveries and
//! API keys; the policies that govern them; and the store traits the rest of the system
//! implements. This crate does no I/O.

pub mod api_key;
pub mod audit;
pub mod circuit;
pub mod delivery;
pub mod destination;
pub mod digest;
pub mod error;
pub mod event;
pub mod event_type;
pub mod flow;
pub mod id;
pub mod json;
pub mod operational;
pub mod page;
pub mod pattern;
pub mod rate;
pub mod retry;
pub mod secret_paths;
pub mod source;
pub mod store;
pub mod stream;
pub mod subscription;
pub mod time;
pub mod trace;
pub mod transport;

pub use error::{FieldError, ValidationError};
