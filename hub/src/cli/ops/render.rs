//! How `hub ops` shows the API's answers as tables: the columns of each command.

use super::OpsCommand;
use crate::cli::output::{self, Column};

const CASE_COLUMNS: &[Column] = &[
    ("CASE", "/caseId"),
    ("BUSINESS", "/business"),
    ("STATE", "/state"),
    ("WAITING ON", "/waitingParty"),
    ("STEP", "/waitingStep"),
    ("SINCE", "/since"),
    ("DEADLINE", "/deadline"),
    ("TRIES", "/attempts"),
    ("LAST ERROR", "/lastError"),
];

const MESSAGE_COLUMNS: &[Column] = &[
    ("AT", "/at"),
    ("DIR", "/direction"),
    ("PARTY", "/party"),
    ("TYPE", "/messageType"),
    ("MESSAGE", "/messageId"),
    ("OUTCOME", "/outcome"),
    ("CODE", "/code"),
    ("SENT", "/sentAt"),
];

const CHANGE_COLUMNS: &[Column] = &[
    ("CHANGE", "/changeId"),
    ("VERSION", "/version"),
    ("PROVINCE", "/province"),
    ("SEQ", "/sequence"),
    ("ACTION", "/action"),
    ("UNIT", "/unit"),
    ("STAGE", "/stage"),
    ("CONFIRM BY", "/confirmBy"),
    ("STATE", "/state"),
];

const PROBLEM_COLUMNS: &[Column] = &[
    ("GROUP", "/groupId"),
    ("KIND", "/kind"),
    ("STATE", "/state"),
    ("WAITING ON", "/waitingOn"),
    ("SINCE", "/waitingSince"),
    ("RECORDS", "/members"),
];

/// The API's typed error, as a line: code, both texts, the detail.
pub(super) fn refusal(body: &serde_json::Value) -> String {
    let field = |k: &str| body.get(k).and_then(|v| v.as_str()).unwrap_or("");
    match field("code") {
        "" => body.to_string(),
        code => format!("{code} {} / {}: {}", field("messageZh"), field("messageEn"), field("detail")),
    }
}

pub(super) fn render(command: &OpsCommand, body: &serde_json::Value) -> String {
    let rows = output::rows(body);
    match command {
        OpsCommand::Cases { .. } | OpsCommand::Overdue => output::table(rows, CASE_COLUMNS),
        OpsCommand::Stuck => output::table(
            rows,
            &[
                ("CASE", "/case/caseId"),
                ("STATE", "/case/state"),
                ("WAITING ON", "/case/waitingParty"),
                ("WAITING S", "/waitingSeconds"),
                ("TRIES", "/case/attempts"),
                ("LAST ERROR", "/case/lastError"),
            ],
        ),
        OpsCommand::Case { .. } => {
            let mut out = output::fields(
                body,
                &[
                    ("case", "/summary/caseId"),
                    ("business", "/summary/business"),
                    ("state", "/state"),
                    ("stage", "/summary/stage"),
                    ("in", "/summary/inProvince"),
                    ("out", "/summary/outProvince"),
                    ("waiting on", "/waiting/party"),
                    ("step", "/waiting/step"),
                    ("since", "/waiting/since"),
                    ("deadline", "/summary/deadline"),
                    ("attempts", "/attempts"),
                    ("resends", "/resends"),
                    ("last error", "/lastError"),
                    ("last refusal", "/lastRefusal/code"),
                    ("refused message", "/lastRefusal/messageId"),
                ],
            );
            out.push_str("\nDecisions\n");
            let decisions = body.get("decisions").map(output::rows).unwrap_or_default();
            out.push_str(&output::table(
                decisions,
                &[("STEP", "/step"), ("DECISION", "/decision"), ("UNIT", "/unit"), ("AT", "/decidedAt")],
            ));
            out.push_str("\nMessages\n");
            out.push_str(&output::table(body.get("messages").map(output::rows).unwrap_or_default(), MESSAGE_COLUMNS));
            out
        }
        OpsCommand::Message { .. } => {
            let mut columns = MESSAGE_COLUMNS.to_vec();
            columns.extend([("CASE", "/caseId"), ("REASON", "/reason")]);
            output::table(rows, &columns)
        }
        OpsCommand::DeadLetter { .. } => {
            let mut out = output::fields(
                body,
                &[
                    ("dead letter", "/deadLetterId"),
                    ("state", "/state"),
                    ("sender", "/sender"),
                    ("message", "/messageId"),
                    ("type", "/messageType"),
                    ("case", "/caseId"),
                    ("code", "/code"),
                    ("reason", "/reason"),
                    ("first seen", "/firstSeen"),
                    ("last seen", "/lastSeen"),
                    ("seen", "/seen"),
                    ("size", "/size"),
                    ("truncated", "/truncated"),
                    ("settled by", "/settledBy"),
                    ("settled at", "/settledAt"),
                ],
            );
            out.push_str("\nMessage as kept\n");
            out.push_str(body.get("body").and_then(|b| b.as_str()).unwrap_or("(not text)"));
            out.push('\n');
            out
        }
        OpsCommand::Replay { .. } => output::table(
            rows,
            &[
                ("DEAD LETTER", "/deadLetterId"),
                ("OUTCOME", "/outcome"),
                ("HANDLED", "/handled"),
                ("CODE", "/code"),
                ("AUDIT", "/auditId"),
                ("DETAIL", "/detail"),
            ],
        ),
        OpsCommand::Discard { .. } => {
            output::fields(body, &[("dead letter", "/deadLetterId"), ("outcome", "/outcome"), ("audit", "/auditId")])
        }
        OpsCommand::DeadLetters { .. } => output::table(
            rows,
            &[
                ("DEAD LETTER", "/deadLetterId"),
                ("STATE", "/state"),
                ("FIRST SEEN", "/firstSeen"),
                ("SENDER", "/sender"),
                ("MESSAGE", "/messageId"),
                ("TYPE", "/messageType"),
                ("CASE", "/caseId"),
                ("CODE", "/code"),
                ("SEEN", "/seen"),
                ("REASON", "/reason"),
            ],
        ),
        OpsCommand::Links => output::table(
            rows,
            &[
                ("PROVINCE", "/province"),
                ("HEALTH", "/health"),
                ("CONNECTED", "/connected"),
                ("LAST MESSAGE", "/lastMessageAt"),
                ("QUEUE", "/queueDepth"),
                ("BACKLOG", "/outboxBacklog"),
                ("CERT DAYS", "/certificateDaysLeft"),
                ("WHY", "/reasons"),
            ],
        ),
        OpsCommand::IndexDisputes => output::table(
            rows,
            &[("STUDENT", "/studentId"), ("PROVINCE", "/province"), ("SINCE", "/disputedAt"), ("CASE", "/disputeCase")],
        ),
        OpsCommand::Audit { .. } => output::table(
            rows,
            &[
                ("AT", "/at"),
                ("ACTOR", "/actor"),
                ("ROLE", "/role"),
                ("ACTION", "/action"),
                ("CASE", "/caseId"),
                ("NOTE", "/detail"),
            ],
        ),
        OpsCommand::Problems { .. } => output::table(rows, PROBLEM_COLUMNS),
        OpsCommand::Batches { .. } => output::table(
            rows,
            &[
                ("BATCH", "/batchId"),
                ("VERSION", "/version"),
                ("KIND", "/kind"),
                ("PUBLISHED", "/publishedOn"),
                ("RECORDS", "/records"),
                ("LOADED", "/loadedAt"),
                ("PROGRESS", "/progress"),
            ],
        ),
        OpsCommand::Batch { .. } => output::table(rows, CHANGE_COLUMNS),
        OpsCommand::Revocations => output::table(
            rows,
            &[
                ("CHANGE", "/change/changeId"),
                ("PROVINCE", "/change/province"),
                ("ACTION", "/change/action"),
                ("UNIT", "/change/unit"),
                ("STAGE", "/change/stage"),
                ("WAITING S", "/waitingSeconds"),
                ("BUSINESS", "/blockers/business"),
                ("STUDENTS", "/blockers/students"),
                ("SCHOOLS", "/blockers/schools"),
                ("DEPTS", "/blockers/departments"),
            ],
        ),
        OpsCommand::Change { .. } => {
            let mut out = output::fields(
                body,
                &[
                    ("change", "/change/changeId"),
                    ("batch", "/change/batchId"),
                    ("version", "/change/version"),
                    ("province", "/change/province"),
                    ("sequence", "/change/sequence"),
                    ("action", "/change/action"),
                    ("unit", "/change/unit"),
                    ("stage", "/change/stage"),
                    ("confirm by", "/change/confirmBy"),
                    ("state", "/change/state"),
                    ("confirmed by", "/change/confirmedBy"),
                    ("blockers", "/blockers"),
                ],
            );
            out.push_str("\nBlocking business\n");
            let business = body.get("business").map(output::rows).unwrap_or_default();
            out.push_str(&output::table(
                business,
                &[("BUSINESS", "/business"), ("ID", "/businessId"), ("STUDENT", "/studentId"), ("SINCE", "/openedAt")],
            ));
            out.push_str("\nHistory\n");
            let events = body.get("events").map(output::rows).unwrap_or_default();
            out.push_str(&output::table(events, &[("AT", "/at"), ("WHAT", "/what"), ("DETAIL", "/detail")]));
            out
        }
        OpsCommand::LoadBatch { .. } => {
            if body["unchanged"] == true {
                format!("batch {} version {} was loaded before; nothing changed\n", body["batchId"], body["version"])
            } else {
                format!(
                    "batch {} version {} loaded: {} records sent (audit entry {})\n",
                    body["batchId"], body["version"], body["records"], body["auditId"]
                )
            }
        }
        OpsCommand::Arbitrations => output::table(
            rows,
            &[
                ("GROUP", "/group/groupId"),
                ("KIND", "/group/kind"),
                ("SINCE", "/group/waitingSince"),
                ("WAITING S", "/waitingSeconds"),
                ("RECORDS", "/group/members"),
            ],
        ),
        OpsCommand::Problem { .. } => {
            let mut out = output::fields(
                body,
                &[
                    ("group", "/group/id"),
                    ("kind", "/group/kind"),
                    ("state", "/group/state"),
                    ("origin", "/group/origin/origin"),
                    ("waiting on", "/waitingOn"),
                    ("since", "/waitingSince"),
                ],
            );
            out.push_str("\nRecords\n");
            let members = body.pointer("/group/members").map(output::rows).unwrap_or_default();
            out.push_str(&output::table(
                members,
                &[
                    ("PROVINCE", "/province"),
                    ("STUDENT", "/studentId"),
                    ("SCHOOL", "/school"),
                    ("STATE", "/state"),
                    ("COMMENT", "/comment"),
                ],
            ));
            out.push_str("\nHistory\n");
            let events = body.get("events").map(output::rows).unwrap_or_default();
            out.push_str(&output::table(events, &[("AT", "/at"), ("BY", "/actor"), ("WHAT", "/what")]));
            out
        }
        OpsCommand::Decide { id, .. } => format!("group {id} decided (audit entry {})\n", body["auditId"]),
        OpsCommand::LoadGroup { .. } => format!("group {} loaded (audit entry {})\n", body["groupId"], body["auditId"]),
        OpsCommand::Act { id, action, .. } => {
            format!("{} done on case {id} (audit entry {})\n", action.as_str(), body["auditId"])
        }
    }
}
