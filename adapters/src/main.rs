//! `adapter`: the province-side daemon, and a simulated provincial system.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "adapter", version, about = "The province's authenticated, durable pipe to the exchange hub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the adapter until SIGTERM/SIGINT. It first checks what `check --offline` checks and
    /// refuses to start on a problem; a broker that refuses its certificate or has no vhost for
    /// it stops it with the reason; an unreachable broker is retried.
    Run {
        /// The adapter's settings (TOML).
        #[arg(long, env = "ADAPTER_CONFIG")]
        config: PathBuf,
    },
    /// Make this province's key and certificate signing request here, beside the adapter: the
    /// key (owner-only) never leaves this machine; send the request (.csr) to the exchange
    /// operator, who signs it (`hub certs sign`) and returns the certificate.
    Request {
        /// GB/T 2260 code of this province.
        #[arg(long)]
        province: String,
        /// Directory for the key and the request (e.g. where `broker.key` points).
        #[arg(long)]
        out: PathBuf,
        /// File name stem; default prov-NN.
        #[arg(long)]
        stem: Option<String>,
    },
    /// Check the set-up and exit: the certificate (role, validity, chain to the exchange CA),
    /// that the key is the certificate's and private, the local API's TLS files, the store's
    /// directory, and the broker (TLS, the EXTERNAL login, the vhost). Each problem is named with
    /// its fix; exit status 1 if any.
    Check {
        /// The adapter's settings (TOML).
        #[arg(long, env = "ADAPTER_CONFIG")]
        config: PathBuf,
        /// Skip the broker (check the files only).
        #[arg(long)]
        offline: bool,
    },
    /// Take a consistent copy of the store while the adapter runs (SQLite `VACUUM INTO`).
    Backup {
        /// The adapter's settings (TOML).
        #[arg(long, env = "ADAPTER_CONFIG")]
        config: PathBuf,
        /// The copy to write (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Put a backup in place of the store; the adapter must be stopped. The current files are
    /// kept aside; at its next start the adapter asks the hub to send again what it sent since
    /// shortly before the backup (each message is kept once).
    Restore {
        /// The adapter's settings (TOML).
        #[arg(long, env = "ADAPTER_CONFIG")]
        config: PathBuf,
        /// The backup (from `adapter backup`).
        #[arg(long)]
        from: PathBuf,
    },
    /// Run a simulated provincial system against an adapter's local API. An option given
    /// twice takes its last value.
    #[command(args_override_self = true)]
    Simulate {
        /// The adapter's local API.
        #[arg(long, default_value = "http://127.0.0.1:8437")]
        adapter: String,
        /// The province's own database (SQLite), created and filled on first run.
        #[arg(long)]
        data: PathBuf,
        /// GB/T 2260 code of the simulated province.
        #[arg(long)]
        province: String,
        /// Students of the simulated province (generated on first run).
        #[arg(long, default_value_t = 300)]
        students: usize,
        /// The generator's seed. Every province of one exchange uses the same seed, so that a
        /// simulator knows its peers' students and the hub's school registry matches them.
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// Other provinces (codes), generated from the same seed: looked up (the first) and
        /// applied for (all). Repeat the option for several.
        #[arg(long = "peer")]
        peers: Vec<String>,
        /// Students in each peer province.
        #[arg(long, default_value_t = 300)]
        peer_students: usize,
        /// Lookups of the first peer's students to make (some by a wrong name).
        #[arg(long, default_value_t = 0)]
        lookups: usize,
        /// Transfers to apply for (students of the peers coming to this province).
        #[arg(long, default_value_t = 0)]
        transfers: usize,
        /// Post-graduation enrollments to apply for (the peers' junior-high graduates).
        #[arg(long, default_value_t = 0)]
        enrollments: usize,
        /// Reviewers take between these many milliseconds…
        #[arg(long, default_value_t = 0)]
        review_delay_min_ms: u64,
        /// …and these many.
        #[arg(long, default_value_t = 0)]
        review_delay_max_ms: u64,
        /// Share of review decisions that reject (0–1).
        #[arg(long, default_value_t = 0.0)]
        reject_rate: f64,
        /// Share of archive requests left unanswered (0–1).
        #[arg(long, default_value_t = 0.0)]
        export_failure_rate: f64,
        /// Share of archive imports that fail (0–1).
        #[arg(long, default_value_t = 0.0)]
        import_failure_rate: f64,
        /// Milliseconds the archive work (export, import, commit) takes.
        #[arg(long, default_value_t = 0)]
        archive_delay_ms: u64,
        /// Evidence files per application…
        #[arg(long, default_value_t = 1)]
        evidence_files: usize,
        /// …of this many bytes each (like real scans; 0: a few bytes).
        #[arg(long, default_value_t = 0)]
        evidence_bytes: usize,
        /// Scanned files each exported archive carries (1 to 20)…
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=20))]
        archive_attachments: u8,
        /// …of this many bytes each (0: a few bytes).
        #[arg(long, default_value_t = 0)]
        archive_attachment_bytes: usize,
        /// How this province answers problem-record tasks: attest or delete (default:
        /// it leaves them unanswered, to people).
        #[arg(long, value_parser = ["attest", "delete"])]
        problem_mode: Option<String>,
        /// How long its registrars take to confirm an organization-code change (确认变动), at
        /// least, in milliseconds; with --orgcode-confirm-max-ms. Unset: left to people.
        #[arg(long)]
        orgcode_confirm_min_ms: Option<u64>,
        /// … and at most, in milliseconds.
        #[arg(long, default_value_t = 0)]
        orgcode_confirm_max_ms: u64,
        /// Print the schools of this province and its peers as the hub's registry CSV (for
        /// `hub schools load`) and exit, instead of running.
        #[arg(long)]
        export_schools: bool,
    },
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if std::env::var("ADAPTER_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

certs::allocator!();

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Usage errors exit 2 (clap); every other error 1, said once: a running adapter logs it,
    // a command prints it (and its report: the connection library's own log lines would only
    // repeat it).
    // A command piped into `head` ends quietly when the reader leaves (SIGPIPE's default); the
    // daemons ignore it, so that a closed socket never kills them.
    // SAFETY: setting a signal's disposition, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let logs = matches!(cli.command, Command::Run { .. } | Command::Simulate { export_schools: false, .. });
    if logs {
        // SAFETY: as above.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    }
    init_logging(if logs { "info,sqlx=warn,lapin=warn" } else { "warn,lapin=off" });
    if let Err(e) = dispatch(cli) {
        if logs {
            tracing::error!("{e:#}");
        } else {
            eprintln!("adapter: {e:#}");
        }
        std::process::exit(1);
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Run { config } => {
            let settings = adapters::config::Settings::load(&config)?;
            tracing::info!(
                version = env!("CARGO_PKG_VERSION"),
                config = %config.display(),
                broker = %settings.broker.url,
                vhost = %settings.broker.vhost,
                storage = %settings.storage.path.display(),
                api = %settings.api.listen,
                "Adapter starting."
            );
            runtime.block_on(adapters::runner::run(settings))
        }
        Command::Request { province, out, stem } => {
            let province = schemas::ids::ProvinceCode::parse(&province)?;
            let role = certs::Role::Province(province);
            let stem = stem.unwrap_or_else(|| role.common_name());
            let (key, csr) = certs::KeyRequest::generate(&role, &[])?.write(&out, &stem)?;
            println!(
                "Key {} (owner-only: it stays here) and request {} made for {}; send the request to the exchange operator.",
                key.display(),
                csr.display(),
                role.common_name()
            );
            Ok(())
        }
        Command::Check { config, offline } => {
            let settings = adapters::config::Settings::load(&config)?;
            let report = if offline {
                adapters::check::offline(&settings)
            } else {
                runtime.block_on(adapters::check::online(&settings))
            };
            print!("{report}");
            if !report.passed() {
                anyhow::bail!("the set-up has problems (above)");
            }
            println!("ready: {}", config.display());
            Ok(())
        }
        Command::Backup { config, out } => {
            let settings = adapters::config::Settings::load(&config)?;
            runtime.block_on(async {
                let pool = adapters::store::open(&settings.storage.path).await?;
                adapters::store::backup(&pool, &out).await?;
                pool.close().await;
                println!("Backup of {} written to {}.", settings.storage.path.display(), out.display());
                anyhow::Ok(())
            })
        }
        Command::Restore { config, from } => {
            let settings = adapters::config::Settings::load(&config)?;
            println!("{}", runtime.block_on(adapters::runner::restore(&settings, &from))?);
            Ok(())
        }
        Command::Simulate {
            adapter,
            data,
            province,
            students,
            seed,
            peers,
            peer_students,
            lookups,
            transfers,
            enrollments,
            review_delay_min_ms,
            review_delay_max_ms,
            reject_rate,
            export_failure_rate,
            import_failure_rate,
            archive_delay_ms,
            evidence_files,
            evidence_bytes,
            archive_attachments,
            archive_attachment_bytes,
            problem_mode,
            orgcode_confirm_min_ms,
            orgcode_confirm_max_ms,
            export_schools,
        } => {
            let province = schemas::ids::ProvinceCode::parse(&province)?;
            let peers = peers
                .iter()
                .map(|p| schemas::ids::ProvinceCode::parse(p).map(|p| (p, peer_students)))
                .collect::<Result<Vec<_>, _>>()?;
            if export_schools {
                println!("code,province,name,active,department");
                for (p, n) in std::iter::once((province, students)).chain(peers.iter().copied()) {
                    for s in adapters::simulate::data::generate(p, n, seed).schools {
                        println!("{},{},{},true,{}", s.code, p.code(), s.name, s.department);
                    }
                }
                return Ok(());
            }
            let mut opts = adapters::simulate::Options::new(adapter, data, province);
            opts.students = students;
            opts.seed = seed;
            opts.peers = peers;
            opts.lookups = lookups;
            opts.transfers = transfers;
            opts.enrollments = enrollments;
            opts.review_delay = (
                std::time::Duration::from_millis(review_delay_min_ms),
                std::time::Duration::from_millis(review_delay_max_ms.max(review_delay_min_ms)),
            );
            opts.reject_rate = reject_rate;
            opts.export_failure_rate = export_failure_rate;
            opts.import_failure_rate = import_failure_rate;
            opts.archive_delay = std::time::Duration::from_millis(archive_delay_ms);
            opts.evidence_files = evidence_files;
            opts.evidence_bytes = evidence_bytes;
            opts.archive_attachments = usize::from(archive_attachments);
            opts.archive_attachment_bytes = archive_attachment_bytes;
            opts.problem_mode = problem_mode.as_deref().map(|m| match m {
                "attest" => schemas::messages::HandlingMode::Attest,
                _ => schemas::messages::HandlingMode::Delete,
            });
            opts.orgcode_confirm = orgcode_confirm_min_ms.map(|lo| {
                let ms = std::time::Duration::from_millis;
                (ms(lo), ms(orgcode_confirm_max_ms.max(lo)))
            });
            runtime.block_on(async {
                let sim = adapters::simulate::Simulator::open(opts).await?;
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    let _ = tokio::signal::ctrl_c().await;
                    let _ = stop_tx.send(true);
                });
                sim.run(stop_rx).await
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_command_and_option_has_help_text() {
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        for sub in cmd.get_subcommands() {
            if sub.get_about().is_none() {
                missing.push(sub.get_name().to_owned());
            }
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{} {id}", sub.get_name()));
                }
            }
        }
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
