//! The `switchyard` binary: parse the command line, load the configuration, dispatch.

use std::process::ExitCode;

use clap::Parser;
use switchyard::cli::{self, Cli, Command, Failure};
use switchyard::config::Config;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // One TLS provider for the whole process, chosen before any client or listener exists.
    switchyard_adapters::install_crypto_provider();
    let outcome = run(Cli::parse()).await;
    // Exporting the last spans blocks; keep it off the runtime's threads.
    let _ = tokio::task::spawn_blocking(switchyard::telemetry::shutdown).await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            failure.report();
            failure.exit_code()
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let file = cli.config.as_deref();
    match cli.command {
        Command::Openapi => cli::print_openapi()?,
        Command::Sink(args) => cli::run_sink(args).await?,
        Command::Serve(args) if args.print_config => {
            cli::print_config(&Config::load(file, &args.overrides())?)?
        }
        Command::Serve(args) => {
            let config = cli::load_and_init_logging(file, &args.overrides())?;
            cli::serve(config).await?;
        }
        Command::Migrate(args) => {
            let config = cli::load_and_init_logging(file, &args.overrides())?;
            cli::migrate(&config).await?;
        }
        Command::Keys(keys) => {
            let config = cli::load_and_init_logging(file, &keys.database.overrides())?;
            cli::run_keys(&config, keys.command).await?;
        }
        Command::Status(args) => {
            let config = cli::load_and_init_logging(file, &Default::default())?;
            cli::run_status(&config, args).await?;
        }
        Command::Dlq(dlq) => {
            let config = cli::load_and_init_logging(file, &dlq.database.overrides())?;
            cli::run_dlq(&config, dlq.command).await?;
        }
    }
    Ok(())
}
