//! The `webhookd` command: parse the command line, load the config, run the service.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use webhookd::config::{Config, ConfigError};
use webhookd::listen::ListenOptions;

/// A self-hosted, drop-in replacement for Segment's Webhooks destination.
#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The configuration file.
    #[arg(long, env = "WEBHOOKD_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    /// Validate this configuration file, print every problem, and exit (0 valid, 2 invalid).
    #[arg(long, value_name = "PATH", conflicts_with = "config")]
    check_config: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// A receiver to try webhookd with: prints each request and whether its signatures
    /// verify.
    Listen {
        /// The port on 127.0.0.1 (0 picks one; printed).
        #[arg(long, default_value_t = 9000)]
        port: u16,
        /// Check `X-Signature` with this secret (a destination's `shared_secret`).
        #[arg(long, value_name = "SECRET")]
        shared_secret: Option<String>,
        /// Check Standard Webhooks signatures with this `whsec_…` secret.
        #[arg(long, value_name = "WHSEC")]
        signing_secret: Option<String>,
        /// Answer every request with this status (try 503 to watch retries).
        #[arg(long, default_value_t = 200)]
        status: u16,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    if let Some(Command::Listen {
        port,
        shared_secret,
        signing_secret,
        status,
    }) = cli.command
    {
        let options = ListenOptions {
            shared_secret,
            signing_secret,
            status,
        };
        return match listen(port, options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("webhookd listen: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(path) = cli.check_config {
        return match Config::load(&path) {
            Ok(_) => {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                ExitCode::from(2)
            }
        };
    }
    let Some(path) = cli.config else {
        eprintln!("webhookd: --config PATH (or WEBHOOKD_CONFIG) is required; see --help");
        return ExitCode::from(2);
    };
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(e @ ConfigError::Invalid(_)) | Err(e @ ConfigError::Read { .. }) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    match run(path, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn listen(port: u16, options: ListenOptions) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    actix_web::rt::System::new().block_on(webhookd::listen::run(listener, options))?;
    Ok(())
}

fn run(path: PathBuf, config: Config) -> anyhow::Result<()> {
    if config
        .server
        .admin_token
        .as_ref()
        .is_some_and(|t| t.matches("change-me"))
    {
        log::warn!("server.admin_token is the example's \"change-me\": set your own");
    } else if config
        .server
        .admin_token
        .as_ref()
        .is_some_and(|t| t.expose().chars().count() < 16)
    {
        log::warn!("server.admin_token is shorter than 16 characters: use a long random one");
    }
    let listener = TcpListener::bind(config.server.listen)
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    actix_web::rt::System::new()
        .block_on(webhookd::app::run(path, config, listener))
        .context("webhookd stopped on an error")
}
