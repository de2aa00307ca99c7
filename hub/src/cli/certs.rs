//! `hub certs …`: the exchange CA, certificate requests and certificates, the registry of
//! admitted certificates, and revocation with the CRL the broker checks.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use certs::{Ca, CertInfo, KeyRequest, Profile, Request, Role, Validity};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use schemas::ids::ProvinceCode;

use super::load;

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum RoleArg {
    Province,
    Hub,
    Operator,
    National,
    Server,
}

/// Whom a certificate is for: a role, and its province or name.
#[derive(Args)]
pub(super) struct Identity {
    /// Whose certificate: a province, the hub, an operator, the national office, or a server.
    #[arg(long, value_enum)]
    role: RoleArg,
    /// Province code (GB/T 2260) for --role province.
    #[arg(long)]
    province: Option<String>,
    /// Name for --role operator / national (CN op-NAME / moe-NAME) or host for --role server.
    #[arg(long)]
    name: Option<String>,
}

/// The identity a role argument and its name or province make.
fn role(who: Identity) -> Result<Role> {
    let Identity { role, province, name } = who;
    let role = match role {
        RoleArg::Province => {
            Role::Province(ProvinceCode::parse(province.as_deref().context("--role province needs --province NN")?)?)
        }
        RoleArg::Hub => Role::Hub,
        RoleArg::Operator => Role::Operator(name.context("--role operator needs --name")?),
        RoleArg::National => Role::National(name.context("--role national needs --name")?),
        RoleArg::Server => Role::Server(name.context("--role server needs --name HOST")?),
    };
    // Check the name the same way a reader of the certificate will.
    Role::from_subject(role.unit(), &role.common_name())?;
    Ok(role)
}

#[derive(Subcommand)]
pub(super) enum CertsCommand {
    /// Create a new exchange CA: DIR/ca.pem and DIR/ca.key (owner-only). Refuses to overwrite.
    InitCa {
        /// Directory for ca.pem and ca.key (the key owner-only; keep it offline).
        #[arg(long)]
        out: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "Xueji Exchange CA")]
        cn: String,
        /// Validity of the CA certificate, in days.
        #[arg(long, default_value_t = 3650)]
        days: i64,
    },
    /// Make a key and a certificate signing request where the key will be used: OUT/STEM.key
    /// (owner-only, never leaves OUT) and OUT/STEM.csr, to send to the exchange operator, who
    /// signs it with `hub certs sign`. Refuses to overwrite.
    Request {
        #[command(flatten)]
        who: Identity,
        /// Subject alternative names of a server (DNS names or IP addresses); repeatable.
        #[arg(long = "alt")]
        alt: Vec<String>,
        /// Directory for the key and the request.
        #[arg(long)]
        out: PathBuf,
        /// File name stem; default: the common name.
        #[arg(long)]
        stem: Option<String>,
    },
    /// Sign a certificate signing request with the CA in --ca: the certificate carries the
    /// request's key and the identity it names (which must be the role given). Refuses to
    /// overwrite --out.
    Sign {
        /// Directory holding ca.pem and ca.key.
        #[arg(long)]
        ca: PathBuf,
        /// The request (PEM), from `hub certs request` or `adapter request`.
        #[arg(long)]
        csr: PathBuf,
        /// Whom the request must be for.
        #[command(flatten)]
        who: Identity,
        /// Validity in days (at most 825).
        #[arg(long, default_value_t = 825)]
        days: i64,
        /// Where to write the certificate (PEM).
        #[arg(long)]
        out: PathBuf,
    },
    /// Issue a certificate AND its key here (development and tests only: in production the key
    /// is made where it is used, see `request` and `sign`). Refuses to overwrite.
    Issue {
        /// Directory holding ca.pem and ca.key.
        #[arg(long)]
        ca: PathBuf,
        #[command(flatten)]
        who: Identity,
        /// Subject alternative names of a server certificate (DNS names or IP addresses).
        #[arg(long = "alt")]
        alt: Vec<String>,
        /// Validity in days (at most 825).
        #[arg(long, default_value_t = 825)]
        days: i64,
        /// Explicit validity start (RFC 3339), e.g. to make test certificates.
        #[arg(long)]
        not_before: Option<DateTime<Utc>>,
        /// Explicit validity end (RFC 3339).
        #[arg(long)]
        not_after: Option<DateTime<Utc>>,
        /// Directory for the certificate and the key.
        #[arg(long)]
        out: PathBuf,
        /// File name stem; default: the common name.
        #[arg(long)]
        stem: Option<String>,
    },
    /// Show what a certificate says: subject, role, province, serial, validity.
    Inspect {
        /// The certificate (PEM).
        file: PathBuf,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Register an operator's or the national office's certificate, so it may use the operator
    /// API (provinces are admitted with `hub broker add-province`). Refuses a revoked one.
    Admit {
        /// The operator's or national office's certificate (PEM, signed by the exchange CA).
        #[arg(long)]
        cert: PathBuf,
    },
    /// List the certificates registered with the hub.
    List,
    /// Revoke a registered certificate by serial: the CRL the broker checks lists it, the hub
    /// refuses its messages, its holder loses broker access unless it holds another valid
    /// certificate, and its connections are closed. Safe to run again to complete an
    /// interrupted revocation.
    Revoke {
        /// The certificate's serial (hex, as `hub certs list` shows it).
        #[arg(long)]
        serial: String,
        /// Why, for the registry.
        #[arg(long, default_value = "revoked by an operator")]
        reason: String,
        /// Directory holding the CA key (ca.key), to sign the CRL; or set [pki] ca_key.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// Publish the CA's revocation list again (renewing its validity): what is listed already,
    /// plus what the registry revoked when --config is given.
    Crl {
        /// Directory holding ca.pem and ca.key.
        #[arg(long)]
        ca: PathBuf,
        /// The broker's CRL directory; default: [pki] crl_dir of the settings.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

pub(super) fn run(cmd: CertsCommand, config: Option<&Path>, runtime: &tokio::runtime::Runtime) -> Result<()> {
    match cmd {
        CertsCommand::InitCa { out, cn, days } => {
            let ca = Ca::create(&cn, days)?;
            ca.write(&out)?;
            println!("CA created: {}/ca.pem (key: {}/ca.key, owner-only)", out.display(), out.display());
            Ok(())
        }
        CertsCommand::Request { who, alt, out, stem } => {
            let role = role(who)?;
            let made = KeyRequest::generate(&role, &alt)?;
            let stem = stem.unwrap_or_else(|| role.common_name());
            let (key, csr) = made.write(&out, &stem)?;
            println!(
                "Key {} (owner-only: it stays here) and request {} made for {}; send the request to the exchange operator.",
                key.display(),
                csr.display(),
                role.common_name()
            );
            Ok(())
        }
        CertsCommand::Sign { ca, csr, who, days, out } => {
            let role = role(who)?;
            let request = Request::read(&csr).with_context(|| format!("Failed to read {}", csr.display()))?;
            let mut profile = Profile::new(role, days);
            profile.alt_names = request.alt_names.clone();
            let (pem, info) = Ca::load(&ca)?.sign_request(&request, &profile)?;
            certs::files::write_public(&out, &pem)?;
            println!(
                "Signed {} serial {} valid until {} -> {}",
                info.subject,
                info.serial,
                info.not_after,
                out.display()
            );
            Ok(())
        }
        CertsCommand::Issue { ca, who, alt, days, not_before, not_after, out, stem } => {
            let role = role(who)?;
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
            print_info(&CertInfo::read(&file)?, json);
            Ok(())
        }
        CertsCommand::Admit { cert } => {
            let settings = load(config)?;
            let info = runtime.block_on(crate::provision::admit_person(&settings, &cert))?;
            println!(
                "Admitted {} ({}), serial {}, valid until {}.",
                info.role.common_name(),
                info.role.unit(),
                info.serial,
                info.not_after
            );
            Ok(())
        }
        CertsCommand::List => {
            let settings = load(config)?;
            runtime.block_on(async {
                let pool = crate::store::pool(&settings.database)?;
                let mut conn = pool.acquire().await?;
                for c in crate::store::certs::list(&mut conn).await? {
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
        CertsCommand::Revoke { serial, reason, ca } => {
            crate::telemetry::init();
            let settings = load(config)?;
            let r = runtime.block_on(crate::provision::revoke(&settings, &serial, &reason, ca.as_deref()))?;
            println!(
                "Revoked {serial} of {}: on the CRL ({} listed), broker access {}, {} connection(s) closed.",
                r.principal,
                r.listed,
                if r.access_removed { "removed" } else { "kept (another valid certificate)" },
                r.connections_closed
            );
            Ok(())
        }
        CertsCommand::Crl { ca, dir } => {
            let signing = Ca::load(&ca)?;
            let published = match config {
                Some(path) => {
                    let mut settings = crate::config::Settings::load(path)?;
                    if let (Some(dir), Some(pki)) = (dir, settings.pki.as_mut()) {
                        pki.crl_dir = Some(dir);
                    }
                    runtime.block_on(async {
                        let pool = crate::store::pool(&settings.database)?;
                        let mut conn = pool.acquire().await?;
                        crate::provision::publish_crl(&settings, &signing, &mut conn).await
                    })?
                }
                None => {
                    let dir = dir.context("--dir DIR (or --config with [pki] crl_dir)")?;
                    certs::crl::publish(&dir, &signing, &[], Utc::now())?
                }
            };
            println!(
                "CRL {} published: {} ({} revoked).",
                published.number,
                published.path.display(),
                published.listed
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
