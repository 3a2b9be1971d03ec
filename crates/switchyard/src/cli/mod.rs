//! The command line: what `switchyard` accepts (clap) and the commands behind it.
//!
//! Stdout carries only what a command produces (a token, the OpenAPI document, the printed
//! config, the key table), so scripts can read it; logs and errors go to stderr.

mod dlq;
mod keys;
mod sink;
mod status;
mod table;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

pub use dlq::{DlqCommand, FilterArgs, run as run_dlq};
pub use keys::{KeysCommand, RoleArg, render_key_table, run as run_keys};
pub use sink::{SinkArgs, run as run_sink};
pub use status::{StatusArgs, StatusFormat, run as run_status};

use crate::config::{Config, ConfigError, Overrides};
use crate::startup::{Application, open_database};
use crate::telemetry::{self, TelemetryError};

/// Switchyard: an integration hub that stores domain events and delivers them to the services
/// that subscribed.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, propagate_version = true)]
pub struct Cli {
    /// Configuration file (TOML) [default: ./switchyard.toml, if present]
    ///
    /// Without it, `switchyard.toml` in the working directory is read if present.
    /// `SWITCHYARD_*` environment variables (`__` between nested keys, as in
    /// `SWITCHYARD_DATABASE__URL`) override the file, and flags override both.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API. On first run (no active API key) creates an admin key and prints
    /// its token once.
    Serve(ServeArgs),
    /// Apply the database migrations and exit.
    ///
    /// Run it with a database role allowed to change the schema (DDL); `serve` then needs no
    /// more than read and write rights on the tables once the schema is current.
    Migrate(DatabaseArgs),
    /// Manage API keys directly in the configured database (no running server needed).
    Keys(KeysArgs),
    /// List and replay dead deliveries directly in the configured database (no running server
    /// needed; a running one picks replayed deliveries up within its poll interval).
    Dlq(DlqArgs),
    /// Print the OpenAPI document of the HTTP API (JSON).
    Openapi,
    /// Receive webhooks on a local port and print each one (for trying Switchyard out).
    Sink(SinkArgs),
    /// Print the integration status report of a running node (`GET /v1/status`).
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 0.0.0.0:8080 (overrides `server.listen`).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Print the effective configuration as TOML, secrets masked, and exit.
    #[arg(long)]
    pub print_config: bool,
}

impl ServeArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides { listen: self.listen, database_url: self.database.database.clone() }
    }
}

#[derive(Debug, Clone, Default, Args)]
pub struct DatabaseArgs {
    /// Database URL, e.g. sqlite://switchyard.db (overrides `database.url`).
    #[arg(long, global = true, value_name = "URL")]
    pub database: Option<String>,
}

impl DatabaseArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides { database_url: self.database.clone(), ..Overrides::default() }
    }
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(subcommand)]
    pub command: DlqCommand,
}

/// Why a command failed; decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// The configuration (or the log filter) cannot be used: exit code 2.
    Config(Vec<String>),
    /// The command was asked for something it must not do as given (flags that contradict
    /// each other, a confirmation that cannot be asked): exit code 2, like a clap usage error.
    Usage(anyhow::Error),
    /// The command itself failed: exit code 1.
    Command(anyhow::Error),
}

impl Failure {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config(_) | Self::Usage(_) => ExitCode::from(2),
            Self::Command(_) => ExitCode::FAILURE,
        }
    }

    /// Writes the failure to stderr: one line per configuration problem, or the error and its
    /// causes on one line. Never a backtrace.
    pub fn report(&self) {
        let mut stderr = io::stderr().lock();
        // Nothing better to do if stderr itself is gone.
        let _ = match self {
            Self::Config(problems) => problems
                .iter()
                .try_for_each(|problem| writeln!(stderr, "error: invalid configuration: {problem}")),
            Self::Command(err) | Self::Usage(err) => writeln!(stderr, "error: {err:#}"),
        };
    }
}

impl From<ConfigError> for Failure {
    fn from(err: ConfigError) -> Self {
        Self::Config(err.problems().to_vec())
    }
}

impl From<TelemetryError> for Failure {
    fn from(err: TelemetryError) -> Self {
        Self::Config(vec![err.to_string()])
    }
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Self::Command(err)
    }
}

/// Loads the configuration for a command and installs logging as it says.
pub fn load_and_init_logging(file: Option<&Path>, overrides: &Overrides) -> Result<Config, Failure> {
    let config = Config::load(file, overrides)?;
    telemetry::init(&config.log)?;
    Ok(config)
}

/// `serve --print-config`.
pub fn print_config(config: &Config) -> anyhow::Result<()> {
    let text = config.to_masked_toml().context("rendering the configuration as TOML")?;
    write_stdout(&text)
}

/// `serve`: builds the node, shows the first admin token if one was just created, and serves
/// until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    if let Some(token) = app.first_admin_token() {
        write_stdout(&first_admin_notice(token))?;
    }
    app.run_until_stopped().await
}

/// The framed notice `serve` prints when it created the first admin key.
pub fn first_admin_notice(token: &str) -> String {
    let rule = "=".repeat(78);
    format!(
        "{rule}\n\
         No active API key was found, so an admin key was created.\n\
         Its token is shown ONLY THIS ONCE; store it somewhere safe now:\n\
         \n    {token}\n\n\
         Send it as `Authorization: Bearer <token>`. Create more keys with\n\
         `switchyard keys create --role ROLE` or POST /v1/api-keys.\n\
         {rule}\n"
    )
}

/// `migrate`.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    open_database(config).await?;
    tracing::info!("migrations applied; the database schema is current");
    Ok(())
}

/// `openapi`.
pub fn print_openapi() -> anyhow::Result<()> {
    let json = switchyard_api::openapi().to_pretty_json().context("rendering the OpenAPI document")?;
    write_stdout(&format!("{json}\n"))
}

/// Writes to stdout without panicking as `print!` would. A reader that stopped early
/// (`switchyard openapi | head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(err) if err.kind() != io::ErrorKind::BrokenPipe => Err(err).context("writing to stdout"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("switchyard").chain(args.iter().copied()))
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_flags_become_overrides() {
        let cli =
            parse(&["--config", "x.toml", "serve", "--listen", "127.0.0.1:0", "--database", "sqlite://t.db"])
                .expect("valid");
        assert_eq!(cli.config.as_deref(), Some(Path::new("x.toml")));
        let Command::Serve(args) = cli.command else { panic!("not serve: {:?}", cli.command) };
        let overrides = args.overrides();
        assert_eq!(overrides.listen, Some("127.0.0.1:0".parse().expect("addr")));
        assert_eq!(overrides.database_url.as_deref(), Some("sqlite://t.db"));
        assert!(!args.print_config);
    }

    #[test]
    fn a_bad_listen_address_is_a_usage_error() {
        let err = parse(&["serve", "--listen", "localhost"]).expect_err("invalid");
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn the_config_flag_is_global() {
        let cli = parse(&["keys", "list", "--config", "y.toml"]).expect("valid");
        assert_eq!(cli.config.as_deref(), Some(Path::new("y.toml")));
    }

    #[test]
    fn the_first_admin_notice_frames_the_token() {
        let notice = first_admin_notice("sy_abc");
        assert!(notice.contains("\n    sy_abc\n"));
        assert!(notice.contains("ONLY THIS ONCE"));
        assert!(notice.starts_with("====") && notice.trim_end().ends_with("===="));
    }
}
