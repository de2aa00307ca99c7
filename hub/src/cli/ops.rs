//! `hub ops …`: operators' views and actions, through the operator API with a client
//! certificate.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

#[derive(clap::Args)]
pub(super) struct OpsArgs {
    /// The operator API, e.g. https://127.0.0.1:8443
    #[arg(long, env = "HUB_OPS_URL", global = true)]
    url: Option<String>,
    /// Your operator (or national-office) certificate.
    #[arg(long, env = "HUB_OPS_CERT", global = true)]
    cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long, env = "HUB_OPS_KEY", global = true)]
    key: Option<PathBuf>,
    /// The CA of the hub's server certificate.
    #[arg(long, env = "HUB_OPS_CA", global = true)]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: OpsCommand,
}

#[derive(Subcommand)]
enum OpsCommand {
    /// Search cases.
    Cases {
        /// National student ID.
        #[arg(long)]
        student: Option<String>,
        /// School identification code (either side).
        #[arg(long)]
        school: Option<String>,
        /// Province code (either side).
        #[arg(long)]
        province: Option<String>,
        /// Case state, e.g. UNDER_REVIEW.
        #[arg(long)]
        state: Option<String>,
        /// Who must act, e.g. prov-37.
        #[arg(long)]
        waiting_on: Option<String>,
        /// Only open (true) or only closed (false) cases.
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
        /// Why, for the audit trail.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Drop the received archive package and ask for it again.
    Rerequest {
        id: String,
        /// Why, for the audit trail.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Acknowledge a stuck or overdue alert handled outside the system.
    Resolve {
        id: String,
        /// What was done, for the audit trail.
        #[arg(long)]
        note: String,
    },
    /// The audit trail (of one case, or all).
    Audit {
        /// Only this case.
        #[arg(long)]
        case: Option<String>,
    },
}

pub(super) async fn run(args: OpsArgs) -> Result<()> {
    let need = |v: Option<PathBuf>, what: &str| {
        v.with_context(|| format!("hub ops needs --{what} (or HUB_OPS_{})", what.to_uppercase()))
    };
    let (cert, key, ca) = (need(args.cert, "cert")?, need(args.key, "key")?, need(args.ca, "ca")?);
    let url = args.url.context("hub ops needs --url (or HUB_OPS_URL)")?;
    let mut identity = std::fs::read(&cert).with_context(|| format!("Failed to read {}", cert.display()))?;
    identity.extend(std::fs::read(&key).with_context(|| format!("Failed to read {}", key.display()))?);
    let client = reqwest::Client::builder()
        .identity(reqwest::Identity::from_pem(&identity)?)
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca)?)?)
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let base = url.trim_end_matches('/');
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
