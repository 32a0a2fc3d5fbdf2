//! The command line of README.md ("Administer it") (a stable contract: extend it, don't break it).

mod admin;
mod cert;
mod config;
mod jwt;
mod prompt;
pub mod serve;
mod status;
pub mod store;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::assembly::Assembly;
use crate::clock::SystemClock;
use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "vedauth",
    version = crate::version::VERSION,
    about = "A VEDauth-compatible token authorization server"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct GlobalOpts {
    /// Configuration file (default: <data-dir>/vedauth.toml if it exists).
    #[arg(long, global = true, env = "VEDAUTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the embedded database, generated TLS files and configuration.
    #[arg(
        long,
        global = true,
        env = "VEDAUTH_DATA_DIR",
        default_value = "./vedauth-data"
    )]
    pub data_dir: PathBuf,
    /// PostgreSQL URL; without it the embedded SQLite database is used.
    #[arg(long, global = true, env = "VEDAUTH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format: human (default) or json (one object per line).
    #[arg(
        long,
        global = true,
        env = "VEDAUTH_LOG_FORMAT",
        value_enum,
        default_value = "human"
    )]
    pub log_format: crate::telemetry::LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Manage local users.
    #[command(subcommand)]
    User(admin::UserCmd),
    /// Manage applications (API integrations) and their rules.
    #[command(subcommand)]
    App(admin::AppCmd),
    /// List and revoke grants.
    #[command(subcommand)]
    Grant(admin::GrantCmd),
    /// Assign and list OAuth roles for the administration API.
    #[command(subcommand)]
    Role(admin::RoleCmd),
    /// The configuration file and the global token settings.
    #[command(subcommand)]
    Config(config::ConfigCmd),
    /// The running server's health and version, the store and its counts, the providers.
    Status(status::StatusArgs),
    /// Whole-store operations: copy between SQLite and PostgreSQL.
    #[command(subcommand)]
    Store(store::StoreCmd),
    /// JWT mappings for the JWT grant, and a dry run that explains a token's refusal.
    #[command(subcommand)]
    Jwt(jwt::JwtCmd),
    /// Client-certificate authentication: trusted issuers, and a dry run on a certificate.
    #[command(subcommand)]
    Cert(cert::CertCmd),
}

impl GlobalOpts {
    /// The configuration: defaults, then the file, then command-line overrides.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        let (path, must_exist) = match &self.config {
            Some(p) => (p.clone(), true),
            None => (self.data_dir.join("vedauth.toml"), false),
        };
        let mut cfg = Config::load(&path, must_exist)?;
        if let Some(url) = &self.database_url {
            cfg.database_url = Some(url.clone());
        }
        Ok(cfg)
    }

    pub async fn open_assembly(&self) -> anyhow::Result<Assembly> {
        let cfg = self.load_config()?;
        Assembly::open(cfg, &self.data_dir, Arc::new(SystemClock), None)
            .await
            .context("opening the store")
    }
}

/// An administration refusal with its API result code (e.g. 17, an invalid scope), kept apart
/// so that `--json` can report the code as a number.
#[derive(Debug, thiserror::Error)]
#[error("{message} (result {code})")]
pub struct Refusal {
    pub code: i32,
    pub message: String,
}

/// Already reported (as a log event): `main` only sets the exit status.
#[derive(Debug, thiserror::Error)]
#[error("reported")]
pub struct Reported;

/// The error as `--json` reports it: one object on stderr, `{"error": "..."}`, with `result`
/// for administration refusals and `usage` for command-line mistakes.
fn json_error(e: &anyhow::Error) -> serde_json::Value {
    match e.downcast_ref::<Refusal>() {
        Some(r) => serde_json::json!({"error": r.message, "result": r.code}),
        None => serde_json::json!({"error": format!("{e:#}")}),
    }
}

/// A command-line mistake (clap) with `--json` or JSON logs asked for: the message and the
/// usage line as JSON. Help and version requests are not errors and print as usual.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    // Asked for JSON output, or JSON logs (a collector reading `serve`'s output).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let wants_json = args
        .iter()
        .any(|a| a == "--json" || a == "--log-format=json")
        || args
            .windows(2)
            .any(|w| w[0] == "--log-format" && w[1] == "json")
        || std::env::var("VEDAUTH_LOG_FORMAT").is_ok_and(|v| v == "json");
    if !wants_json
        || matches!(
            e.kind(),
            ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        )
    {
        e.exit()
    }
    // clap's text: "error: ..." (possibly over several lines), tips, then "Usage: ...".
    let text = e.render().to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let message = lines
        .iter()
        .take_while(|l| !l.starts_with("Usage:"))
        .filter(|l| !l.starts_with("tip:"))
        .map(|l| l.trim_start_matches("error:").trim())
        .collect::<Vec<_>>()
        .join(" ");
    let usage = lines
        .iter()
        .find_map(|l| l.strip_prefix("Usage:"))
        .map(|u| u.trim().to_string());
    eprintln!("{}", serde_json::json!({"error": message, "usage": usage}));
    ExitCode::from(2)
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let json = cli.global.json;
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vedauth: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(&cli.global, args).await,
            Command::User(cmd) => admin::user(&cli.global, cmd).await,
            Command::App(cmd) => admin::app(&cli.global, cmd).await,
            Command::Grant(cmd) => admin::grant(&cli.global, cmd).await,
            Command::Role(cmd) => admin::roles(&cli.global, cmd).await,
            Command::Config(cmd) => config::run(&cli.global, cmd).await,
            Command::Status(args) => status::run(&cli.global, args).await,
            Command::Store(cmd) => store::store(&cli.global, cmd).await,
            Command::Jwt(cmd) => jwt::run(&cli.global, cmd).await,
            Command::Cert(cmd) => cert::run(&cli.global, cmd).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Reported>() => ExitCode::FAILURE,
        Err(e) => {
            // Errors go to stderr either way, so stdout only ever carries results.
            if json {
                eprintln!("{}", json_error(&e));
            } else {
                eprintln!("vedauth: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}
