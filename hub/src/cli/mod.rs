//! The `hub` command line: running the hub, and the administration commands of the exchange
//! (PKI, broker, registry, operators' views). Each command family lives in its own module;
//! this one parses and dispatches. Exit codes: 0 success, 1 failure, 2 usage.

mod broker;
mod certs;
mod ops;
mod output;
mod schools;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::config::Settings;

#[derive(Parser)]
#[command(name = "hub", version, about = "The cross-province student-record exchange hub")]
struct Cli {
    /// The hub's settings (TOML); also HUB_CONFIG. Needed by every command that reaches the
    /// database or the broker.
    #[arg(long, env = "HUB_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// How commands print what they answer: a table, or the JSON (for scripts).
    #[arg(long, value_enum, default_value_t = output::Format::Table, global = true)]
    output: output::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub until SIGTERM/SIGINT. It first checks what `check --offline` checks and
    /// refuses to start on a problem; a database or broker that refuses it stops it with the
    /// reason; one that is down is waited for.
    Run,
    /// Check the set-up and exit: the hub's certificate (role, validity, chain to the exchange
    /// CA), that its key is the certificate's and private, the operator API's TLS files, the
    /// PKI paths, the calendar and rules, then the database (and pending migrations), the broker
    /// (TLS, the EXTERNAL login, the vhost) and its management API. Each problem is named with
    /// its fix; exit status 1 if any.
    Check {
        /// Skip the database and the broker (check the files only).
        #[arg(long)]
        offline: bool,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// The exchange PKI: the CA, requests and certificates, the registry, revocation.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// The broker: topology, and admitting provinces.
    #[command(subcommand)]
    Broker(broker::BrokerCommand),
    /// Ask the provinces to send again what they sent since a time (after the hub's database
    /// was restored from a backup): each adapter queues those messages again under their own
    /// ids, so what the restored database holds is recognized and the rest is processed.
    /// Audited.
    Replay {
        /// From when (RFC 3339), e.g. an hour before the backup was taken.
        #[arg(long)]
        since: chrono::DateTime<chrono::Utc>,
        /// Only this province (GB/T 2260 code); repeatable. Default: every admitted province.
        #[arg(long = "province")]
        provinces: Vec<schemas::ids::ProvinceCode>,
    },
    /// The school registry.
    #[command(subcommand)]
    Schools(schools::SchoolsCommand),
    /// The message log (报文日志): export a case's evidence bundle, checked with
    /// `sh <dir>/verify.sh` and standard tools alone.
    #[command(subcommand)]
    Log(LogCommand),
    /// Operators' views and actions, through the operator API (client certificate).
    Ops(ops::OpsArgs),
}

#[derive(Subcommand)]
enum LogCommand {
    /// Writes the bundle of a case, a problem group, or what was logged in a time range: the selected
    /// messages with their bytes and signatures, the entries in between by their text alone,
    /// the signers' certificates, the hub's checkpoint sealing the last and its signed statement
    /// of where the bundle starts, and verify.sh. Needs the hub's key (the one in [broker]).
    Export {
        /// The case (its id).
        #[arg(long, conflicts_with_all = ["group", "from", "until"], required_unless_present_any = ["group", "from"])]
        case: Option<uuid::Uuid>,
        /// The problem group (its id): the messages naming it, and the index updates that
        /// opened it.
        #[arg(long, conflicts_with_all = ["case", "from", "until"])]
        group: Option<uuid::Uuid>,
        /// The messages logged from this instant (RFC 3339)…
        #[arg(long, requires = "until")]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// …until before this one.
        #[arg(long, requires = "from")]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// The directory to write (made if missing; must be empty).
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

/// Parses the command line, runs the command, and turns its outcome into the exit code.
pub fn main() -> ExitCode {
    sigpipe(true);
    let cli = Cli::parse();
    if matches!(cli.command, Command::Run) {
        sigpipe(false);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hub: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("Failed to start the runtime")?;
    let config = cli.config.as_deref();
    match cli.command {
        Command::Run => {
            crate::telemetry::init();
            let settings = load(config)?;
            tracing::info!(
                version = env!("CARGO_PKG_VERSION"),
                config = %config.map(|p| p.display().to_string()).unwrap_or_default(),
                broker = %settings.broker.url,
                vhost = %settings.broker.vhost,
                database = %settings.database.target(),
                "Hub starting."
            );
            runtime.block_on(crate::startup::run(settings))
        }
        Command::Check { offline } => {
            let settings = load(config)?;
            let report = if offline {
                crate::check::offline(&settings)
            } else {
                runtime.block_on(crate::check::online(&settings))
            };
            print!("{report}");
            if !report.passed() {
                anyhow::bail!("the set-up has problems (above)");
            }
            println!("ready: {}", config.map(|p| p.display().to_string()).unwrap_or_default());
            Ok(())
        }
        Command::Migrate => {
            crate::telemetry::init();
            let settings = load(config)?;
            runtime.block_on(async {
                let pool = crate::store::pool(&settings.database)?;
                crate::store::migrate(&pool).await?;
                println!("Migrations applied.");
                Ok(())
            })
        }
        Command::Certs(cmd) => certs::run(cmd, config, &runtime),
        Command::Broker(cmd) => {
            crate::telemetry::init();
            runtime.block_on(broker::run(cmd, &load(config)?))
        }
        Command::Schools(cmd) => runtime.block_on(schools::run(cmd, &load(config)?)),
        Command::Log(LogCommand::Export { case, group, from, until, out }) => {
            let selection = match (case, group, from, until) {
                (Some(c), ..) => crate::message_log::Selection::Case(c),
                (None, Some(g), ..) => crate::message_log::Selection::Group(g),
                (None, None, Some(f), Some(u)) if f < u => crate::message_log::Selection::Logged(f, u),
                _ => anyhow::bail!("give --case, --group, or --from and --until (from before until)"),
            };
            let settings = load(config)?;
            runtime.block_on(async {
                if out.read_dir().is_ok_and(|mut d| d.next().is_some()) {
                    anyhow::bail!("{} is not empty: export into a new directory", out.display());
                }
                let signer = ::certs::signature::Signer::load(&settings.broker.cert, &settings.broker.key)?;
                let pool = crate::store::pool(&settings.database)?;
                let ctx = crate::context::Context::new(pool, settings)?;
                let w = crate::message_log::export(&ctx, &signer, selection, &out).await?;
                println!(
                    "Exported {} entries ({} selected, positions {} to {}) to {}; check with: sh {}/verify.sh",
                    w.entries,
                    w.selected,
                    w.from,
                    w.to,
                    out.display(),
                    out.display()
                );
                anyhow::Ok(())
            })
        }
        Command::Replay { since, provinces } => {
            let settings = load(config)?;
            runtime.block_on(async {
                let pool = crate::store::pool(&settings.database)?;
                let actor = format!("command line ({})", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
                let asked = crate::handlers::delivery::ask_replay(&pool, since, &provinces, &actor).await?;
                let names: Vec<String> = asked.iter().map(ToString::to_string).collect();
                println!("Asked {} to send again what they sent since {since}.", names.join(", "));
                anyhow::Ok(())
            })
        }
        Command::Ops(args) => runtime.block_on(ops::run(args, cli.output)),
    }
}

/// The settings, for the commands that need them.
fn load(config: Option<&Path>) -> Result<Settings> {
    let path = config.context("this command needs the hub's settings: --config FILE (or HUB_CONFIG)")?;
    Settings::load(path)
}

/// A command whose output is piped into `head` ends quietly when the reader leaves, as Unix
/// tools do (`true`: SIGPIPE's default), instead of failing on the closed pipe; the daemon
/// ignores it (`false`, Rust's default), so that a peer closing a socket never kills it.
pub fn sigpipe(default: bool) {
    let disposition = if default { libc::SIG_DFL } else { libc::SIG_IGN };
    // SAFETY: setting a signal's disposition, before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, disposition);
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every option and argument of every command, with the command's path.
    fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id != "help" && id != "version" && arg.get_help().is_none() && arg.get_long_help().is_none() {
                out.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_about().is_none() && sub.get_long_about().is_none() {
                out.push(format!("{path} {} (the command)", sub.get_name()));
            }
            undocumented(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_command_and_option_has_help_text() {
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        undocumented(&cmd, "hub", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
