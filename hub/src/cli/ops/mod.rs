//! `hub ops …`: operators' views and actions, through the operator API with a client
//! certificate.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use self::render::{refusal, render};
use crate::api::ops::client::Client;
use crate::api::ops::paths;
use crate::cli::output::{self, Format};
use crate::workflow::case::OperatorAction;

mod render;

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

/// Filters and paging of a list.
#[derive(clap::Args, Clone, Copy)]
struct Paging {
    /// At most this many rows (1–10000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    limit: i64,
    /// Skip this many rows first (for the next page).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..))]
    offset: i64,
}

impl Paging {
    fn query(self) -> Vec<(&'static str, String)> {
        vec![("limit", self.limit.to_string()), ("offset", self.offset.to_string())]
    }
}

fn case_states() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(schemas::messages::CaseState::ALL.map(|s| s.as_str()))
}

#[derive(Subcommand)]
enum OpsCommand {
    /// Search cases, newest first.
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
        /// Case state.
        #[arg(long, value_parser = case_states())]
        state: Option<String>,
        /// Who must act, e.g. prov-37.
        #[arg(long)]
        waiting_on: Option<String>,
        /// Only open (true) or only closed (false) cases.
        #[arg(long)]
        open: Option<bool>,
        #[command(flatten)]
        paging: Paging,
    },
    /// One case with its full history: facts, decisions, every message in and out.
    Case {
        /// The case id (UUID).
        id: uuid::Uuid,
    },
    /// One message by its id: which way, between whom, its type, case, outcome and code.
    Message {
        /// The message id (UUID).
        id: uuid::Uuid,
    },
    /// Stuck archive transfers and other machine stages that do not move.
    Stuck,
    /// Review steps past their deadline.
    Overdue,
    /// An operator's action on a case (audited): `resend` the current stage's request,
    /// `rerequest` the archive package, or `resolve` a stuck alert handled outside the system.
    Act {
        /// The case id (UUID).
        id: uuid::Uuid,
        /// What to do.
        #[arg(value_enum)]
        action: OperatorAction,
        /// Why, or what was done, for the audit trail.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Dead letters, newest first (without their bodies).
    DeadLetters {
        /// Only those still open, replayed or discarded.
        #[arg(long, value_parser = ["open", "replayed", "discarded"])]
        state: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// One dead letter with its message as kept.
    DeadLetter {
        /// The dead letter's number (DEAD LETTER in the list).
        id: i64,
    },
    /// Replays dead letters after their cause was fixed (audited): each is processed as if it
    /// had just arrived, exactly once; one still poison is left open.
    Replay {
        /// The dead letters' numbers.
        #[arg(required = true, num_args = 1..=100)]
        ids: Vec<i64>,
        /// What was fixed, for the audit trail.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Discards a dead letter (audited): kept for the record, never replayed.
    Discard {
        /// The dead letter's number.
        id: i64,
        /// Why, for the audit trail.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Index entries their province contradicted, waiting to be reported again.
    IndexDisputes,
    /// Each province's link: connected, last message, queue depth, outbox backlog, certificate.
    Links,
    /// Problem groups (问题学籍组), longest waiting first.
    Problems {
        /// Groups with a record of this province.
        #[arg(long)]
        province: Option<String>,
        /// ID_DUPLICATE, NAME_SEX_BIRTH_DUPLICATE, …
        #[arg(long)]
        kind: Option<String>,
        /// open, arbitration or closed.
        #[arg(long, value_parser = ["open", "arbitration", "closed"])]
        state: Option<String>,
        /// A province code, or national-office.
        #[arg(long)]
        waiting_on: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// One problem group: its records, whom it waits on, its whole history.
    Problem {
        /// The group id (UUID).
        id: uuid::Uuid,
    },
    /// The national office's arbitration queue, oldest first.
    Arbitrations,
    /// 仲裁 (national-office certificate only): uphold one record; the others may then only be
    /// changed or deleted.
    Decide {
        /// The group id (UUID).
        id: uuid::Uuid,
        /// The national student ID of the record upheld (仲裁通过).
        #[arg(long)]
        upheld: String,
        /// A comment (补充意见) on a record: STUDENT_ID=TEXT, repeatable.
        #[arg(long = "comment")]
        comments: Vec<String>,
    },
    /// Loads a legacy group from a JSON file (national-office certificate only): {"kind":
    /// "ID_DUPLICATE", "member": [{"province", "school", "studentId", "name", "idDocument",
    /// "registeredAt", "keyDataChangedAt"?}, …]}.
    LoadGroup {
        /// The JSON file.
        file: PathBuf,
    },
    /// Loads an organization-code batch (机构代码变动批次) from a JSON file (national-office
    /// certificate only; format in the README): its records go to their provinces. The same
    /// batch again changes nothing; other content under the same id and version is refused.
    LoadBatch {
        /// The JSON file.
        file: PathBuf,
    },
    /// Organization-code batches, newest first, with each province's records by state.
    Batches {
        #[command(flatten)]
        paging: Paging,
    },
    /// One batch's records (every version), by province and sequence.
    Batch {
        /// The batch id.
        id: String,
    },
    /// Confirmed revocations still waiting, oldest first, with their blockers and age.
    Revocations,
    /// One organization-code record: its state, history and blockers.
    Change {
        /// The change id (UUID).
        id: uuid::Uuid,
    },
    /// The audit trail (of one case, or all), newest first.
    Audit {
        /// Only this case.
        #[arg(long)]
        case: Option<uuid::Uuid>,
        #[command(flatten)]
        paging: Paging,
    },
}

pub(super) async fn run(args: OpsArgs, format: Format) -> Result<()> {
    let need = |v: Option<PathBuf>, what: &str| {
        v.with_context(|| format!("hub ops needs --{what} (or HUB_OPS_{})", what.to_uppercase()))
    };
    let (cert, key, ca) = (need(args.cert, "cert")?, need(args.key, "key")?, need(args.ca, "ca")?);
    let url = args.url.context("hub ops needs --url (or HUB_OPS_URL)")?;
    let client = Client::new(&url, &cert, &key, &ca)?;
    let (answer, paging) = match &args.command {
        OpsCommand::Cases { student, school, province, state, waiting_on, open, paging } => {
            let mut q = paging.query();
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
            (client.get(paths::CASES, &q).await?, Some(*paging))
        }
        OpsCommand::Case { id } => (client.case(&id.to_string()).await?, None),
        OpsCommand::Message { id } => (client.get(&paths::message(&id.to_string()), &[]).await?, None),
        OpsCommand::Stuck => (client.get(paths::STUCK, &[]).await?, None),
        OpsCommand::Overdue => (client.get(paths::OVERDUE, &[]).await?, None),
        OpsCommand::DeadLetters { state, paging } => {
            let mut q = paging.query();
            if let Some(s) = state {
                q.push(("state", s.clone()));
            }
            (client.get(paths::DEAD_LETTERS, &q).await?, Some(*paging))
        }
        OpsCommand::DeadLetter { id } => (client.get(&paths::dead_letter(*id), &[]).await?, None),
        OpsCommand::Replay { ids, note } => {
            let body = serde_json::json!({ "ids": ids, "note": note });
            (client.post(paths::DEAD_LETTERS_REPLAY, &body).await?, None)
        }
        OpsCommand::Discard { id, note } => {
            (client.post(&paths::dead_letter_discard(*id), &serde_json::json!({ "note": note })).await?, None)
        }
        OpsCommand::IndexDisputes => (client.get(paths::INDEX_DISPUTES, &[]).await?, None),
        OpsCommand::Links => (client.get(paths::LINKS, &[]).await?, None),
        OpsCommand::Act { id, action, note } => (client.act(*id, *action, note).await?, None),
        OpsCommand::Problems { province, kind, state, waiting_on, paging } => {
            let mut q = paging.query();
            for (k, v) in [("province", province), ("kind", kind), ("state", state), ("waiting_on", waiting_on)] {
                if let Some(v) = v {
                    q.push((k, v.clone()));
                }
            }
            (client.get(paths::PROBLEMS, &q).await?, Some(*paging))
        }
        OpsCommand::Problem { id } => (client.get(&paths::problem(&id.to_string()), &[]).await?, None),
        OpsCommand::Arbitrations => (client.get(paths::ARBITRATIONS, &[]).await?, None),
        OpsCommand::Decide { id, upheld, comments } => {
            let mut list = Vec::new();
            for c in comments {
                let (student, text) =
                    c.split_once('=').with_context(|| format!("--comment {c}: write STUDENT_ID=TEXT"))?;
                list.push(serde_json::json!({ "studentId": student, "comment": text }));
            }
            let body = serde_json::json!({ "upheld": upheld, "comments": list });
            (client.post(&paths::decision(&id.to_string()), &body).await?, None)
        }
        OpsCommand::LoadGroup { file } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("Failed to read {}", file.display()))?;
            let body: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
            (client.post(paths::PROBLEMS, &body).await?, None)
        }
        OpsCommand::LoadBatch { file } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("Failed to read {}", file.display()))?;
            let body: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
            (client.post(paths::ORGCODE_BATCHES, &body).await?, None)
        }
        OpsCommand::Batches { paging } => (client.get(paths::ORGCODE_BATCHES, &paging.query()).await?, Some(*paging)),
        OpsCommand::Batch { id } => (client.get(&paths::orgcode_batch(id), &[]).await?, None),
        OpsCommand::Revocations => (client.get(paths::ORGCODE_REVOCATIONS, &[]).await?, None),
        OpsCommand::Change { id } => (client.get(&paths::orgcode_change(&id.to_string()), &[]).await?, None),
        OpsCommand::Audit { case, paging } => {
            let mut q = paging.query();
            q.extend(case.iter().map(|c| ("case", c.to_string())));
            (client.get(paths::AUDIT, &q).await?, Some(*paging))
        }
    };
    if !answer.is_success() {
        bail!("the operator API refused ({}): {}", answer.status, refusal(&answer.body));
    }
    let body = &answer.body;
    let text = match format {
        Format::Json => output::json(body),
        Format::Table => render(&args.command, body),
    };
    print!("{text}");
    if let Some(p) = paging {
        let shown = output::rows(body).len();
        if i64::try_from(shown).is_ok_and(|n| n == p.limit) {
            eprintln!("({shown} shown; the next page: --offset {})", p.offset + p.limit);
        }
    }
    Ok(())
}
