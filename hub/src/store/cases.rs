//! Cases, their history, evidence and archive packages, and the operators' audit trail.

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use schemas::CaseId;
use schemas::messages::{Attachment, Base64Data, CaseState, StepRecord};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use crate::workflow::case::Case;

/// The columns a case's state is kept in (for the views and their indexes), beside its JSON.
struct StateColumns {
    data: serde_json::Value,
    stage: &'static str,
    state: String,
    party: Option<String>,
    step: Option<String>,
    since: DateTime<Utc>,
    deadline: Option<NaiveDate>,
    attempts: i32,
    last_error: Option<String>,
}

impl StateColumns {
    fn of(case: &Case) -> StateColumns {
        let waiting = case.waiting();
        StateColumns {
            data: serde_json::to_value(case).expect("a case serializes"),
            stage: case.phase.name(),
            state: serde_json::to_value(case.state())
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            party: waiting.as_ref().map(|w| w.party.to_string()),
            step: waiting.and_then(|w| w.step).map(|s| s.to_string()),
            since: case.since,
            deadline: case.phase.deadline(),
            attempts: i32::try_from(case.attempts).unwrap_or(i32::MAX),
            last_error: case.last_error.clone(),
        }
    }

    /// Binds data, stage, state, waiting party and step, since, deadline, attempts and last
    /// error, in this order.
    fn bind<'q>(&'q self, q: Query<'q>) -> Query<'q> {
        q.bind(&self.data)
            .bind(self.stage)
            .bind(&self.state)
            .bind(&self.party)
            .bind(&self.step)
            .bind(self.since)
            .bind(self.deadline)
            .bind(self.attempts)
            .bind(&self.last_error)
    }
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Binds a file kept beside a case: case, name, media type, size, SHA-256, content.
fn bind_file<'q>(q: Query<'q>, case_id: CaseId, a: &'q Attachment) -> Query<'q> {
    q.bind(case_id.uuid())
        .bind(a.name.as_ref())
        .bind(a.media_type.as_ref())
        .bind(i64::try_from(a.size).unwrap_or(i64::MAX))
        .bind(a.sha256.to_string())
        .bind(a.content.bytes())
}

/// Inserts a new case (the register of open business has admitted it).
///
/// # Errors
/// Database errors.
pub async fn insert(conn: &mut PgConnection, case: &Case, application_id: Uuid) -> sqlx::Result<()> {
    let columns = StateColumns::of(case);
    let f = &case.facts;
    let insert = sqlx::query(
        "INSERT INTO business_case (case_id, business, student_id, student_name, in_province, in_school, out_province,
            out_school, application_id, data, stage, state, waiting_party, waiting_step, since, deadline, attempts, last_error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
    )
    .bind(case.id.uuid())
    .bind(serde_json::to_value(f.business).ok().and_then(|v| v.as_str().map(str::to_owned)))
    .bind(f.student_id.as_ref())
    .bind(f.student_name.as_ref())
    .bind(f.in_province.code())
    .bind(f.in_school.as_ref())
    .bind(f.out_province.code())
    .bind(f.out_school.as_ref())
    .bind(application_id);
    columns.bind(insert).execute(conn).await?;
    Ok(())
}

/// A change of a case's stage, for its history.
#[derive(Debug, Clone, Copy)]
pub struct StageChange<'a> {
    pub at: DateTime<Utc>,
    pub from: Option<&'a str>,
    pub to: &'a str,
    pub cause: &'a str,
    pub detail: Option<&'a str>,
}

/// Writes a case's new state and, when its stage changed, that change in its history: one statement.
///
/// # Errors
/// Database errors.
pub async fn save(conn: &mut PgConnection, case: &Case, change: Option<StageChange<'_>>) -> sqlx::Result<()> {
    macro_rules! update {
        () => {
            "UPDATE business_case SET data = $2, stage = $3, state = $4, waiting_party = $5, waiting_step = $6,
                since = $7, deadline = $8, attempts = $9, last_error = $10, out_school = $11, updated_at = now(),
                closed_at = CASE WHEN $12 THEN COALESCE(closed_at, now()) ELSE NULL END
             WHERE case_id = $1"
        };
    }
    let columns = StateColumns::of(case);
    let sql = match change {
        None => update!(),
        Some(_) => concat!(
            "WITH saved AS (",
            update!(),
            " RETURNING case_id)
             INSERT INTO case_event (case_id, at, from_stage, to_stage, cause, detail)
             SELECT case_id, $13, $14, $15, $16, $17 FROM saved"
        ),
    };
    let update = sqlx::query(sql).bind(case.id.uuid());
    let mut update = columns.bind(update).bind(case.facts.out_school.as_ref()).bind(case.phase.is_closed());
    if let Some(c) = change {
        update = update.bind(c.at).bind(c.from).bind(c.to).bind(c.cause).bind(c.detail);
    }
    update.execute(conn).await?;
    Ok(())
}

/// Locks a case for the rest of the transaction: events of one case are serialized here (a
/// cancel racing the final approval: whichever locks first wins, the other sees its result).
///
/// # Errors
/// Database errors or a corrupt row.
pub async fn lock(conn: &mut PgConnection, case_id: CaseId) -> Result<Option<Case>> {
    read(conn, case_id.uuid(), "SELECT data FROM business_case WHERE case_id = $1 FOR UPDATE").await
}

/// Locks a case unless another transaction holds it: `Ok(None)` when busy or absent. For the
/// scheduler, which already holds a timer row: waiting here could deadlock with a message that
/// holds the case and waits for that timer.
///
/// # Errors
/// Database errors or a corrupt row.
pub async fn try_lock(conn: &mut PgConnection, case_id: CaseId) -> Result<Option<Case>> {
    read(conn, case_id.uuid(), "SELECT data FROM business_case WHERE case_id = $1 FOR UPDATE SKIP LOCKED").await
}

/// Reads a case without locking it.
///
/// # Errors
/// Database errors or a corrupt row.
pub async fn get(conn: &mut PgConnection, case_id: Uuid) -> Result<Option<Case>> {
    read(conn, case_id, "SELECT data FROM business_case WHERE case_id = $1").await
}

/// Reads a case's data by `select` (with or without a row lock).
async fn read(conn: &mut PgConnection, case_id: Uuid, select: &'static str) -> Result<Option<Case>> {
    let data: Option<serde_json::Value> = sqlx::query_scalar(select).bind(case_id).fetch_optional(conn).await?;
    data.map(|d| serde_json::from_value(d).context("Corrupt case data")).transpose()
}

/// The state of a case, as the provinces see it.
///
/// # Errors
/// Database errors or a corrupt row.
pub async fn state_of(conn: &mut PgConnection, case_id: Uuid) -> Result<Option<CaseState>> {
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM business_case WHERE case_id = $1")
        .bind(case_id)
        .fetch_optional(conn)
        .await?;
    state.map(|s| serde_json::from_value(serde_json::Value::String(s)).context("Corrupt case state")).transpose()
}

/// Of `student_ids`, those whose open case has delivered the archive (being imported, or
/// imported and being committed): (student, sending province, receiving province).
///
/// # Errors
/// Database errors.
pub async fn handing_over(
    conn: &mut PgConnection,
    student_ids: &[String],
) -> sqlx::Result<Vec<(String, String, String)>> {
    sqlx::query_as(
        "SELECT student_id, out_province, in_province FROM business_case
         WHERE closed_at IS NULL AND student_id = ANY($1) AND state = ANY($2)",
    )
    .bind(student_ids)
    .bind([CaseState::ArchiveDelivering.as_str(), CaseState::Committing.as_str()])
    .fetch_all(conn)
    .await
}

/// Records a reviewer's decision.
///
/// # Errors
/// Database errors.
pub async fn add_step(conn: &mut PgConnection, case_id: CaseId, province: &str, r: &StepRecord) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO case_step (case_id, seq, step, province, decision, unit, reviewer, opinion, decided_at)
         VALUES ($1, (SELECT COALESCE(max(seq), 0) + 1 FROM case_step WHERE case_id = $1), $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(case_id.uuid())
    .bind(r.step.to_string())
    .bind(province)
    .bind(serde_json::to_value(r.decision).ok().and_then(|v| v.as_str().map(str::to_owned)))
    .bind(r.unit.as_ref())
    .bind(r.reviewer.as_ref())
    .bind(r.opinion.as_ref())
    .bind(r.decided_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The decisions taken on a case, in order.
///
/// # Errors
/// Database errors or a corrupt row.
pub async fn history(conn: &mut PgConnection, case_id: Uuid) -> Result<Vec<StepRecord>> {
    let rows: Vec<(String, String, String, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT step, decision, unit, reviewer, opinion, decided_at FROM case_step WHERE case_id = $1 ORDER BY seq",
    )
    .bind(case_id)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(step, decision, unit, reviewer, opinion, decided_at)| {
            Ok(serde_json::from_value(serde_json::json!({
                "step": step, "decision": decision, "unit": unit, "reviewer": reviewer, "opinion": opinion, "decidedAt": decided_at,
            }))?)
        })
        .collect()
}

/// Records a change of stage.
///
/// # Errors
/// Database errors.
pub async fn add_event(
    conn: &mut PgConnection,
    case_id: CaseId,
    at: DateTime<Utc>,
    from: Option<&str>,
    to: &str,
    cause: &str,
    detail: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO case_event (case_id, at, from_stage, to_stage, cause, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(case_id.uuid())
    .bind(at)
    .bind(from)
    .bind(to)
    .bind(cause)
    .bind(detail)
    .execute(conn)
    .await?;
    Ok(())
}

/// A stage change as recorded.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaseEvent {
    pub at: DateTime<Utc>,
    pub from_stage: Option<String>,
    pub to_stage: String,
    pub cause: String,
    pub detail: Option<String>,
}

/// # Errors
/// Database errors.
pub async fn events(conn: &mut PgConnection, case_id: Uuid) -> sqlx::Result<Vec<CaseEvent>> {
    sqlx::query_as(
        "SELECT at, from_stage, to_stage, cause, detail FROM case_event WHERE case_id = $1 ORDER BY event_id",
    )
    .bind(case_id)
    .fetch_all(conn)
    .await
}

/// # Errors
/// Database errors.
pub async fn save_evidence(conn: &mut PgConnection, case_id: CaseId, evidence: &[Attachment]) -> sqlx::Result<()> {
    for a in evidence {
        let insert = sqlx::query(
            "INSERT INTO case_evidence (case_id, name, media_type, size, sha256, content) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (case_id, name) DO NOTHING",
        );
        bind_file(insert, case_id, a).execute(&mut *conn).await?;
    }
    Ok(())
}

#[derive(FromRow)]
struct AttachmentRow {
    name: String,
    media_type: String,
    size: i64,
    sha256: String,
    content: Vec<u8>,
}

impl AttachmentRow {
    fn into_attachment(self) -> Result<Attachment> {
        Ok(Attachment {
            name: self.name.parse()?,
            media_type: self.media_type.parse()?,
            size: u64::try_from(self.size)?,
            sha256: self.sha256.parse()?,
            content: Base64Data::new(self.content),
        })
    }
}

/// The evidence files of a case, in name order.
///
/// # Errors
/// Database errors or a corrupt row.
pub async fn evidence(conn: &mut PgConnection, case_id: Uuid) -> Result<Vec<Attachment>> {
    let rows: Vec<AttachmentRow> = sqlx::query_as(
        "SELECT name, media_type, size, sha256, content FROM case_evidence WHERE case_id = $1 ORDER BY name",
    )
    .bind(case_id)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(AttachmentRow::into_attachment).collect()
}

/// Keeps (or replaces) one file of the archive package.
///
/// # Errors
/// Database errors.
pub async fn save_attachment(conn: &mut PgConnection, case_id: CaseId, a: &Attachment) -> sqlx::Result<()> {
    let upsert = sqlx::query(
        "INSERT INTO archive_attachment (case_id, name, media_type, size, sha256, content) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (case_id, name) DO UPDATE SET media_type = EXCLUDED.media_type, size = EXCLUDED.size,
           sha256 = EXCLUDED.sha256, content = EXCLUDED.content, received_at = now()",
    );
    bind_file(upsert, case_id, a).execute(conn).await?;
    Ok(())
}

/// One kept file of the archive package, by name.
///
/// # Errors
/// Database errors or a corrupt row.
pub async fn archive_file(conn: &mut PgConnection, case_id: Uuid, name: &str) -> Result<Option<Attachment>> {
    let row: Option<AttachmentRow> = sqlx::query_as(
        "SELECT name, media_type, size, sha256, content FROM archive_attachment WHERE case_id = $1 AND name = $2",
    )
    .bind(case_id)
    .bind(name)
    .fetch_optional(conn)
    .await?;
    row.map(AttachmentRow::into_attachment).transpose()
}

/// Forgets the kept files of the archive package, to ask for it again.
///
/// # Errors
/// Database errors.
pub async fn drop_attachments(conn: &mut PgConnection, case_id: CaseId) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM archive_attachment WHERE case_id = $1").bind(case_id.uuid()).execute(conn).await?;
    Ok(())
}

/// A case as the operator and query views list it.
#[derive(Debug, Clone, FromRow, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub case_id: Uuid,
    pub business: String,
    pub student_id: String,
    pub student_name: String,
    pub in_province: String,
    pub in_school: String,
    pub out_province: String,
    pub out_school: String,
    pub stage: String,
    pub state: String,
    pub waiting_party: Option<String>,
    pub waiting_step: Option<String>,
    pub since: DateTime<Utc>,
    pub deadline: Option<NaiveDate>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// Filters of the case query; all optional, combined with AND.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Filter {
    /// `TRANSFER` or `ENROLLMENT`.
    pub business: Option<String>,
    pub student: Option<String>,
    pub school: Option<String>,
    pub province: Option<String>,
    /// A case state as on the wire (`UNDER_REVIEW`); any other value is refused with the list.
    pub state: Option<CaseState>,
    /// Who must act: a party such as `prov-37`.
    pub waiting_on: Option<String>,
    pub open: Option<bool>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl Filter {
    pub fn page(&self) -> Page {
        Page { limit: self.limit, offset: self.offset }
    }
}

/// A page of a list: at most `limit` rows (default 100, at most 10 000) after skipping
/// `offset`, newest first. (Not flattened into query structs: flattened, the query's numbers
/// would reach serde as text.)
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
pub struct Page {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl Page {
    pub fn limit(self) -> i64 {
        self.limit.unwrap_or(100).clamp(1, 10_000)
    }

    pub fn offset(self) -> i64 {
        self.offset.unwrap_or(0).max(0)
    }
}

/// `SELECT` of a case's [`Summary`] columns `FROM business_case`, then `rest`: one column list
/// for every view.
macro_rules! select_summary {
    ($rest:literal) => {
        concat!(
            "SELECT case_id, business, student_id, student_name, in_province, in_school, out_province, out_school, ",
            "stage, state, waiting_party, waiting_step, since, deadline, attempts, last_error, created_at, closed_at ",
            "FROM business_case ",
            $rest
        )
    };
}

/// # Errors
/// Database errors.
pub async fn list(conn: &mut PgConnection, f: &Filter) -> sqlx::Result<Vec<Summary>> {
    sqlx::query_as(select_summary!(
        "WHERE ($1::text IS NULL OR student_id = $1)
               AND ($2::text IS NULL OR in_school = $2 OR out_school = $2)
               AND ($3::text IS NULL OR in_province = $3 OR out_province = $3)
               AND ($4::text IS NULL OR state = $4)
               AND ($5::text IS NULL OR waiting_party = $5)
               AND ($6::bool IS NULL OR (closed_at IS NULL) = $6)
               AND ($9::text IS NULL OR business = $9)
             ORDER BY created_at DESC, case_id LIMIT $7 OFFSET $8"
    ))
    .bind(&f.student)
    .bind(&f.school)
    .bind(&f.province)
    .bind(f.state.map(CaseState::as_str))
    .bind(&f.waiting_on)
    .bind(f.open)
    .bind(f.page().limit())
    .bind(f.page().offset())
    .bind(&f.business)
    .fetch_all(conn)
    .await
}

/// One case's row as the views list it.
///
/// # Errors
/// Database errors.
pub async fn summary(conn: &mut PgConnection, case_id: Uuid) -> sqlx::Result<Option<Summary>> {
    sqlx::query_as(select_summary!("WHERE case_id = $1")).bind(case_id).fetch_optional(conn).await
}

/// Open cases in a machine-driven stage that has not moved since before `before` (stuck).
///
/// # Errors
/// Database errors.
pub async fn stuck(conn: &mut PgConnection, before: DateTime<Utc>) -> sqlx::Result<Vec<Summary>> {
    sqlx::query_as(
        select_summary!(
            "WHERE closed_at IS NULL AND stage IN ('verifying', 'releasing', 'archive_requested', 'delivering', 'committing')
               AND since < $1
             ORDER BY since"
        ),
    )
    .bind(before)
    .fetch_all(conn)
    .await
}

/// Open review steps whose deadline passed before `today`.
///
/// # Errors
/// Database errors.
pub async fn overdue(conn: &mut PgConnection, today: NaiveDate) -> sqlx::Result<Vec<Summary>> {
    sqlx::query_as(select_summary!(
        "WHERE closed_at IS NULL AND stage = 'reviewing' AND deadline < $1 ORDER BY deadline"
    ))
    .bind(today)
    .fetch_all(conn)
    .await
}

/// Records an operator's action.
///
/// # Errors
/// Database errors.
pub async fn audit(
    conn: &mut PgConnection,
    actor: &str,
    role: &str,
    action: &str,
    case_id: Option<Uuid>,
    detail: &str,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO audit (actor, role, action, case_id, detail) VALUES ($1, $2, $3, $4, $5) RETURNING audit_id",
    )
    .bind(actor)
    .bind(role)
    .bind(action)
    .bind(case_id)
    .bind(detail)
    .fetch_one(conn)
    .await
}

/// What the audit trail is filtered on; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub case: Option<Uuid>,
    pub actor: Option<String>,
    pub action: Option<String>,
}

/// The audit trail, newest first, filtered.
///
/// # Errors
/// Database errors.
pub async fn audit_search(conn: &mut PgConnection, f: &AuditFilter, page: Page) -> sqlx::Result<Vec<AuditEntry>> {
    sqlx::query_as(
        "SELECT audit_id, at, actor, role, action, case_id, detail FROM audit
         WHERE ($1::uuid IS NULL OR case_id = $1) AND ($2::text IS NULL OR actor = $2)
               AND ($3::text IS NULL OR action = $3)
         ORDER BY audit_id DESC LIMIT $4 OFFSET $5",
    )
    .bind(f.case)
    .bind(&f.actor)
    .bind(&f.action)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(conn)
    .await
}

/// An audit entry.
#[derive(Debug, Clone, FromRow, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub audit_id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub case_id: Option<Uuid>,
    pub detail: String,
}

/// # Errors
/// Database errors.
pub async fn audit_trail(conn: &mut PgConnection, case_id: Option<Uuid>, page: Page) -> sqlx::Result<Vec<AuditEntry>> {
    sqlx::query_as(
        "SELECT audit_id, at, actor, role, action, case_id, detail FROM audit
         WHERE ($1::uuid IS NULL OR case_id = $1) ORDER BY audit_id DESC LIMIT $2 OFFSET $3",
    )
    .bind(case_id)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(conn)
    .await
}
