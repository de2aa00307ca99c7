//! `hub ops …`: operators' views and actions, through the operator API with a client
//! certificate.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use crate::api::ops::client::Client;
use crate::api::ops::paths;
use crate::workflow::case::OperatorAction;

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
    /// An operator's action on a case (audited): `resend` the current stage's request,
    /// `rerequest` the archive package, or `resolve` a stuck alert handled outside the system.
    Act {
        id: uuid::Uuid,
        #[arg(value_enum)]
        action: OperatorAction,
        /// Why, or what was done, for the audit trail.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Dead letters (without their bodies).
    DeadLetters,
    /// Index entries their province contradicted, waiting to be reported again.
    IndexDisputes,
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
    let client = Client::new(&url, &cert, &key, &ca)?;
    let answer = match &args.command {
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
            client.get(paths::CASES, &q).await?
        }
        OpsCommand::Case { id } => client.case(id).await?,
        OpsCommand::Stuck => client.get(paths::STUCK, &[]).await?,
        OpsCommand::Overdue => client.get(paths::OVERDUE, &[]).await?,
        OpsCommand::DeadLetters => client.get(paths::DEAD_LETTERS, &[]).await?,
        OpsCommand::IndexDisputes => client.get(paths::INDEX_DISPUTES, &[]).await?,
        OpsCommand::Act { id, action, note } => client.act(*id, *action, note).await?,
        OpsCommand::Audit { case } => {
            let q: Vec<(&str, String)> = case.iter().map(|c| ("case", c.clone())).collect();
            client.get(paths::AUDIT, &q).await?
        }
    };
    println!("{:#}", answer.body);
    if !answer.is_success() {
        bail!("the operator API answered {}", answer.status);
    }
    Ok(())
}
