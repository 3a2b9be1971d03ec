//! Switchyard, the binary's library: configuration, logging, the command line, and the
//! [`Application`] that wires the store, the API and (later) the engine into a running node.
//!
//! `main.rs` only parses the command line and dispatches; integration tests build the same
//! [`Application`] from a [`Config`] made in code:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let mut config = switchyard::Config::default();
//! config.server.listen = "127.0.0.1:0".parse()?;
//! config.database.url = "sqlite://test.db".into();
//! let app = switchyard::Application::build(config).await?;
//! let address = app.local_addr();
//! # let _ = address;
//! app.run_until(async { /* a shutdown signal */ }).await?;
//! # Ok(()) }
//! ```

pub mod cli;
pub mod config;
pub mod secrets;
mod server;
mod startup;
pub mod telemetry;
mod tls;

pub use config::Config;
pub use server::raise_open_files_limit;
pub use startup::{Application, FIRST_ADMIN_KEY_NAME, open_database, shutdown_signal};
