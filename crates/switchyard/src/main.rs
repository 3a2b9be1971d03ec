//! The `switchyard` binary: parse the command line, load the configuration, dispatch.

use std::process::ExitCode;

use clap::Parser;
use switchyard::cli::{self, Cli, Command, Failure};
use switchyard::config::Config;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` and `mi_option_purge_delay` in mimalloc 3's `mi_option_e`
/// (`mimalloc.h`); the bindings name neither.
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Commits arena memory only as it is used and gives freed memory back at once: with
/// mimalloc's defaults a large batch or a drained backlog left the resident set near its peak
/// (97 MiB against 54 MiB over a backlog of a million; docs/benchmarks.md).
fn tune_allocator() {
    // SAFETY: `mi_option_set` only stores an option's value; both are valid options.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tune_allocator();
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
