//! `hub`: the exchange hub and its administration commands.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use certs::{Ca, CertInfo, Profile, Role, Validity};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use hub::config::Settings;
use schemas::ids::ProvinceCode;

#[derive(Parser)]
#[command(name = "hub", version, about = "The cross-province student-record exchange hub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub until SIGTERM/SIGINT.
    Run {
        #[arg(long, env = "HUB_CONFIG")]
        config: PathBuf,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long, env = "HUB_CONFIG")]
        config: PathBuf,
    },
    /// The exchange PKI: create a CA, issue, inspect, list and revoke certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// The broker: topology, and admitting provinces.
    #[command(subcommand)]
    Broker(BrokerCommand),
    /// The school registry.
    #[command(subcommand)]
    Schools(SchoolsCommand),
    /// Operators' views and actions, through the operator API (client certificate).
    Ops(OpsArgs),
}

#[derive(Subcommand)]
enum SchoolsCommand {
    /// Load schools from a CSV file with the header `code,province,name[,active[,code_usable_from]]`
    /// (from the national institution-code system); existing codes are updated.
    Load {
        #[arg(long, env = "HUB_CONFIG")]
        config: PathBuf,
        file: PathBuf,
    },
}

#[derive(clap::Args)]
struct OpsArgs {
    /// The operator API, e.g. https://127.0.0.1:8443
    #[arg(long, env = "HUB_OPS_URL")]
    url: String,
    /// Your operator (or national-office) certificate and key.
    #[arg(long, env = "HUB_OPS_CERT")]
    cert: PathBuf,
    #[arg(long, env = "HUB_OPS_KEY")]
    key: PathBuf,
    /// The CA of the hub's server certificate.
    #[arg(long, env = "HUB_OPS_CA")]
    ca: PathBuf,
    #[command(subcommand)]
    command: OpsCommand,
}

#[derive(Subcommand)]
enum OpsCommand {
    /// Search cases.
    Cases {
        #[arg(long)]
        student: Option<String>,
        #[arg(long)]
        school: Option<String>,
        #[arg(long)]
        province: Option<String>,
        #[arg(long)]
        state: Option<String>,
        /// Who must act, e.g. prov-37.
        #[arg(long)]
        waiting_on: Option<String>,
        #[arg(long)]
        open: Option<bool>,
    },
    /// One case with its full history.
    Case { id: String },
    /// Stuck archive transfers and other machine stages that do not move.
    Stuck,
    /// Review steps past their deadline.
    Overdue,
    /// Send the current stage's request again.
    Resend {
        id: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Drop the received archive package and ask for it again.
    Rerequest {
        id: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Acknowledge a stuck or overdue alert handled outside the system.
    Resolve {
        id: String,
        #[arg(long)]
        note: String,
    },
    /// The audit trail (of one case, or all).
    Audit {
        #[arg(long)]
        case: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Province,
    Hub,
    Operator,
    National,
    Server,
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a new exchange CA: DIR/ca.pem and DIR/ca.key (owner-only).
    InitCa {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "Xueji Exchange CA")]
        cn: String,
        #[arg(long, default_value_t = 3650)]
        days: i64,
    },
    /// Issue a certificate signed by the CA in --ca: OUT/STEM.pem and OUT/STEM.key.
    Issue {
        /// Directory holding ca.pem and ca.key.
        #[arg(long)]
        ca: PathBuf,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Province code (GB/T 2260) for --role province.
        #[arg(long)]
        province: Option<String>,
        /// Name for --role operator / national (CN op-NAME / moe-NAME) or host for --role server.
        #[arg(long)]
        name: Option<String>,
        /// Subject alternative names of a server certificate (DNS names or IP addresses).
        #[arg(long = "alt")]
        alt: Vec<String>,
        #[arg(long, default_value_t = 825)]
        days: i64,
        /// Explicit validity start (RFC 3339), e.g. to make test certificates.
        #[arg(long)]
        not_before: Option<DateTime<Utc>>,
        /// Explicit validity end (RFC 3339).
        #[arg(long)]
        not_after: Option<DateTime<Utc>>,
        #[arg(long)]
        out: PathBuf,
        /// File name stem; default: the common name.
        #[arg(long)]
        stem: Option<String>,
    },
    /// Show what a certificate says: subject, role, province, serial, validity.
    Inspect {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Register an operator's or the national office's certificate, so it may use the operator
    /// API (provinces are admitted with `hub broker add-province`).
    Admit {
        #[arg(long, env = "HUB_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        cert: PathBuf,
    },
    /// List the certificates registered with the hub.
    List {
        #[arg(long, env = "HUB_CONFIG")]
        config: PathBuf,
    },
    /// Revoke a registered certificate by serial: the broker refuses it, and its holder loses
    /// access unless it holds another valid certificate.
    Revoke {
        #[arg(long, env = "HUB_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        serial: String,
        #[arg(long, default_value = "revoked by an operator")]
        reason: String,
    },
}

#[derive(Subcommand)]
enum BrokerCommand {
    /// Create the vhost, the hub's access, the topology, and admit the given provinces.
    Provision {
        #[arg(long, env = "HUB_CONFIG")]
        config: PathBuf,
        /// Province certificates to admit.
        #[arg(long = "province-cert")]
        province_certs: Vec<PathBuf>,
    },
    /// Admit one province by its certificate (CN prov-NN): broker user, permissions, queue.
    AddProvince {
        #[arg(long, env = "HUB_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        cert: PathBuf,
    },
}

fn main() -> Result<()> {
    // One crypto provider for every rustls user in the process (see notes on providers).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("Failed to start the runtime")?;
    match cli.command {
        Command::Run { config } => {
            hub::telemetry::init();
            let settings = Settings::load(&config)?;
            runtime.block_on(hub::startup::run(settings))
        }
        Command::Migrate { config } => {
            hub::telemetry::init();
            let settings = Settings::load(&config)?;
            runtime.block_on(async {
                let pool = hub::store::pool(&settings.database)?;
                hub::store::migrate(&pool).await?;
                println!("Migrations applied.");
                Ok(())
            })
        }
        Command::Certs(cmd) => certs_command(cmd, &runtime),
        Command::Broker(cmd) => {
            hub::telemetry::init();
            runtime.block_on(broker_command(cmd))
        }
        Command::Schools(SchoolsCommand::Load { config, file }) => {
            let settings = Settings::load(&config)?;
            let schools = hub::schools::read_csv(
                &std::fs::read_to_string(&file).with_context(|| format!("Failed to read {}", file.display()))?,
            )?;
            runtime.block_on(async {
                let pool = hub::store::pool(&settings.database)?;
                hub::store::migrate(&pool).await?;
                let mut tx = pool.begin().await?;
                hub::store::schools::upsert(&mut tx, &schools).await?;
                tx.commit().await?;
                println!("{} schools loaded.", schools.len());
                Ok(())
            })
        }
        Command::Ops(args) => runtime.block_on(ops_command(args)),
    }
}

async fn ops_command(args: OpsArgs) -> Result<()> {
    let mut identity = std::fs::read(&args.cert).with_context(|| format!("Failed to read {}", args.cert.display()))?;
    identity.extend(std::fs::read(&args.key).with_context(|| format!("Failed to read {}", args.key.display()))?);
    let client = reqwest::Client::builder()
        .identity(reqwest::Identity::from_pem(&identity)?)
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&args.ca)?)?)
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let base = args.url.trim_end_matches('/');
    let request = match &args.command {
        OpsCommand::Cases { student, school, province, state, waiting_on, open } => {
            let mut q: Vec<(&str, String)> = Vec::new();
            for (k, v) in [
                ("student", student),
                ("school", school),
                ("province", province),
                ("state", state),
                ("waiting_on", waiting_on),
            ] {
                if let Some(v) = v {
                    q.push((k, v.clone()));
                }
            }
            if let Some(o) = open {
                q.push(("open", o.to_string()));
            }
            client.get(format!("{base}/cases")).query(&q)
        }
        OpsCommand::Case { id } => client.get(format!("{base}/cases/{id}")),
        OpsCommand::Stuck => client.get(format!("{base}/ops/stuck")),
        OpsCommand::Overdue => client.get(format!("{base}/ops/overdue")),
        OpsCommand::Resend { id, note } => {
            client.post(format!("{base}/ops/cases/{id}/resend")).json(&serde_json::json!({ "note": note }))
        }
        OpsCommand::Rerequest { id, note } => {
            client.post(format!("{base}/ops/cases/{id}/rerequest")).json(&serde_json::json!({ "note": note }))
        }
        OpsCommand::Resolve { id, note } => {
            client.post(format!("{base}/ops/cases/{id}/resolve")).json(&serde_json::json!({ "note": note }))
        }
        OpsCommand::Audit { case } => {
            let q: Vec<(&str, &String)> = case.iter().map(|c| ("case", c)).collect();
            client.get(format!("{base}/ops/audit")).query(&q)
        }
    };
    let response = request.send().await.context("Operator API unreachable")?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    println!("{body:#}");
    if !status.is_success() {
        bail!("the operator API answered {status}");
    }
    Ok(())
}

fn certs_command(cmd: CertsCommand, runtime: &tokio::runtime::Runtime) -> Result<()> {
    match cmd {
        CertsCommand::InitCa { out, cn, days } => {
            if out.join("ca.key").exists() {
                bail!("{} already holds a CA key; refusing to overwrite it", out.display());
            }
            let ca = Ca::create(&cn, days)?;
            ca.write(&out)?;
            println!("CA created: {}/ca.pem (key: {}/ca.key, owner-only)", out.display(), out.display());
            Ok(())
        }
        CertsCommand::Issue { ca, role, province, name, alt, days, not_before, not_after, out, stem } => {
            let role = match role {
                RoleArg::Province => Role::Province(ProvinceCode::parse(
                    province.as_deref().context("--role province needs --province NN")?,
                )?),
                RoleArg::Hub => Role::Hub,
                RoleArg::Operator => Role::Operator(name.context("--role operator needs --name")?),
                RoleArg::National => Role::National(name.context("--role national needs --name")?),
                RoleArg::Server => Role::Server(name.context("--role server needs --name HOST")?),
            };
            // Check the name the same way a reader of the certificate will.
            Role::from_subject(role.unit(), &role.common_name())?;
            let mut profile = Profile::new(role, days);
            profile.alt_names = alt;
            if let Some(t) = not_before {
                profile.not_before = t;
            }
            if let Some(t) = not_after {
                profile.not_after = t;
            }
            let issued = Ca::load(&ca)?.issue(&profile)?;
            let stem = stem.unwrap_or_else(|| issued.info.role.common_name());
            issued.write(&out, &stem)?;
            println!("Issued {} serial {} -> {}/{stem}.pem", issued.info.subject, issued.info.serial, out.display());
            Ok(())
        }
        CertsCommand::Inspect { file, json } => {
            let info = CertInfo::read(&file)?;
            print_info(&info, json);
            Ok(())
        }
        CertsCommand::Admit { config, cert } => {
            let settings = Settings::load(&config)?;
            let info = runtime.block_on(hub::provision::admit_person(&settings, &cert))?;
            println!(
                "Admitted {} ({}), serial {}, valid until {}.",
                info.role.common_name(),
                info.role.unit(),
                info.serial,
                info.not_after
            );
            Ok(())
        }
        CertsCommand::List { config } => {
            let settings = Settings::load(&config)?;
            runtime.block_on(async {
                let pool = hub::store::pool(&settings.database)?;
                let mut conn = pool.acquire().await?;
                for c in hub::store::certs::list(&mut conn).await? {
                    let state = match c.revoked_at {
                        Some(t) => format!("REVOKED {t} ({})", c.revoke_reason.unwrap_or_default()),
                        None if c.not_after < Utc::now() => "expired".to_owned(),
                        None => format!("valid until {}", c.not_after),
                    };
                    println!("{}  {:<16} {:<16} {state}", c.serial, c.principal, c.role);
                }
                Ok(())
            })
        }
        CertsCommand::Revoke { config, serial, reason } => {
            hub::telemetry::init();
            let settings = Settings::load(&config)?;
            let r = runtime.block_on(hub::provision::revoke(&settings, &serial, &reason))?;
            println!(
                "Revoked {serial} of {}: broker access {}, {} connection(s) closed.",
                r.principal,
                if r.access_removed { "removed" } else { "kept (another valid certificate)" },
                r.connections_closed
            );
            Ok(())
        }
    }
}

fn print_info(info: &CertInfo, json: bool) {
    let now = Utc::now();
    let (state, days) = match info.validity_at(now) {
        Validity::NotYetValid => ("not yet valid", None),
        Validity::Valid { days_left } => ("valid", Some(days_left)),
        Validity::ExpiresSoon { days_left } => ("expires soon", Some(days_left)),
        Validity::Expired => ("expired", None),
    };
    let province = info.role.party().and_then(|p| p.province()).map(|p| format!("{} {}", p.code(), p.name_zh()));
    if json {
        let v = serde_json::json!({
            "subject": info.subject, "issuer": info.issuer, "role": info.role.unit(),
            "principal": info.role.common_name(), "province": province, "serial": info.serial,
            "not_before": info.not_before, "not_after": info.not_after, "state": state,
            "days_to_expiry": days, "sha256": info.fingerprint,
        });
        println!("{v:#}");
    } else {
        println!("subject:        {}", info.subject);
        println!("issuer:         {}", info.issuer);
        println!("role:           {} ({})", info.role.unit(), info.role.common_name());
        if let Some(p) = province {
            println!("province:       {p}");
        }
        println!("serial:         {}", info.serial);
        println!("valid:          {} .. {}", info.not_before, info.not_after);
        match days {
            Some(d) => println!("state:          {state}, {d} days to expiry"),
            None => println!("state:          {state}"),
        }
        println!("sha256:         {}", info.fingerprint);
    }
}

async fn broker_command(cmd: BrokerCommand) -> Result<()> {
    match cmd {
        BrokerCommand::Provision { config, province_certs } => {
            let settings = Settings::load(&config)?;
            let certs: Vec<&std::path::Path> = province_certs.iter().map(PathBuf::as_path).collect();
            hub::provision::provision(&settings, &certs).await?;
            println!("Broker provisioned (vhost {}).", settings.broker.vhost);
            Ok(())
        }
        BrokerCommand::AddProvince { config, cert } => {
            let settings = Settings::load(&config)?;
            let p = hub::provision::add_province(&settings, &cert).await?;
            println!("Province {} ({}) admitted.", p.code(), p.name_zh());
            Ok(())
        }
    }
}
