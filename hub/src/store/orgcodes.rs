//! Organization-code batches and their change records (机构代码变动), each province's sequence,
//! the registry changes they make, and the blockers of a revocation.

use anyhow::{Context as _, Result};
use chrono::{DateTime, NaiveDate, Utc};
use schemas::CaseId;
use schemas::ids::{DivisionCode, Stage};
use schemas::messages::{Blockers, ChangeAction, OrgBatch, OrgRecord, StudentStatus};
use serde::Serialize;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use crate::workflow::orgcode::Change;

fn text<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn parse<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).with_context(|| format!("stored value {s}"))
}

/// The content digest of a batch loaded before under this id and version.
///
/// # Errors
/// Database errors.
pub async fn batch_digest(conn: &mut PgConnection, batch_id: &str, version: u32) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT sha256 FROM orgcode_batch WHERE batch_id = $1 AND version = $2")
        .bind(batch_id)
        .bind(i64::from(version))
        .fetch_optional(conn)
        .await
}

/// Records a batch (its records follow with [`insert_change`]); `false` when a concurrent load
/// of the same id and version committed first.
///
/// # Errors
/// Database errors.
pub async fn insert_batch(conn: &mut PgConnection, b: &OrgBatch, sha256: &str, by: &str) -> sqlx::Result<bool> {
    let n = sqlx::query(
        "INSERT INTO orgcode_batch (batch_id, version, kind, published_on, sha256, records, loaded_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(b.batch_id.as_ref())
    .bind(i64::from(b.version))
    .bind(text(&b.kind))
    .bind(b.published_on)
    .bind(sha256)
    .bind(i64::try_from(b.record.items().len()).unwrap_or(i64::MAX))
    .bind(by)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// The next number of `province`'s sequence (the row lock orders concurrent loads).
///
/// # Errors
/// Database errors.
pub async fn next_sequence(conn: &mut PgConnection, province: &str) -> sqlx::Result<u64> {
    let n: i64 = sqlx::query_scalar(
        "INSERT INTO orgcode_sequence (province, last) VALUES ($1, 1)
         ON CONFLICT (province) DO UPDATE SET last = orgcode_sequence.last + 1 RETURNING last",
    )
    .bind(province)
    .fetch_one(conn)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Where a record came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub batch_id: &'a str,
    pub version: u32,
    pub ordinal: usize,
}

/// # Errors
/// Database errors.
pub async fn insert_change(conn: &mut PgConnection, c: &Change, from: Origin<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO orgcode_change (change_id, batch_id, version, ordinal, province, sequence, kind, action, unit,
           stage, confirm_by, record, state)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(c.id.uuid())
    .bind(from.batch_id)
    .bind(i64::from(from.version))
    .bind(i64::try_from(from.ordinal).unwrap_or(i64::MAX))
    .bind(c.province.code())
    .bind(i64::try_from(c.sequence)?)
    .bind(text(&c.kind))
    .bind(text(&c.record.action))
    .bind(c.record.unit_code())
    .bind(c.record.stage.map(Stage::as_str))
    .bind(c.confirm_by.as_ref())
    .bind(serde_json::to_value(&c.record)?)
    .bind(text(&c.state))
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(FromRow)]
struct Row {
    change_id: Uuid,
    province: String,
    sequence: i64,
    kind: String,
    state: String,
    confirm_by: String,
    record: serde_json::Value,
}

impl Row {
    fn into_change(self) -> Result<Change> {
        Ok(Change {
            id: CaseId::from_uuid(self.change_id),
            province: self.province.parse().map_err(anyhow::Error::msg)?,
            sequence: u64::try_from(self.sequence)?,
            kind: parse(&self.kind)?,
            state: parse(&self.state)?,
            confirm_by: self.confirm_by.parse().map_err(anyhow::Error::msg)?,
            record: serde_json::from_value(self.record)?,
        })
    }
}

const COLUMNS: &str = "change_id, province, sequence, kind, state, confirm_by, record";

/// The record, locked.
///
/// # Errors
/// Database errors or a corrupt row.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<Change>> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM orgcode_change WHERE change_id = $1 FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(Row::into_change).transpose()
}

/// The sequence of an unconfirmed record of the same unit before `sequence`, if any.
///
/// # Errors
/// Database errors.
pub async fn earlier_unconfirmed(conn: &mut PgConnection, c: &Change) -> Result<Option<u64>> {
    let seq: Option<i64> = sqlx::query_scalar(
        "SELECT min(sequence) FROM orgcode_change
         WHERE unit = $1 AND province = $2 AND sequence < $3 AND state = 'UNCONFIRMED'",
    )
    .bind(c.record.unit_code())
    .bind(c.province.code())
    .bind(i64::try_from(c.sequence)?)
    .fetch_one(conn)
    .await?;
    Ok(seq.map(u64::try_from).transpose()?)
}

/// Writes the record's new state, stamping when it was confirmed (by whom) or done — done at
/// the transaction's time, as a case's close is: an execution and the end of its last blocker
/// show the same instant.
///
/// # Errors
/// Database errors.
pub async fn save_state(
    conn: &mut PgConnection,
    c: &Change,
    confirmed_by: Option<&str>,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE orgcode_change SET state = $2,
           confirmed_by = COALESCE(confirmed_by, $3),
           confirmed_at = CASE WHEN $3::text IS NOT NULL THEN COALESCE(confirmed_at, $4) ELSE confirmed_at END,
           done_at = CASE WHEN $2 = 'DONE' THEN COALESCE(done_at, now()) END
         WHERE change_id = $1",
    )
    .bind(c.id.uuid())
    .bind(text(&c.state))
    .bind(confirmed_by)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// The confirmed revocations waiting in these provinces, locked, in sequence order. Taking the
/// lock before counting orders two transactions that each remove a blocker: the later one sees
/// what the earlier committed.
///
/// # Errors
/// Database errors or a corrupt row.
pub async fn lock_waiting(conn: &mut PgConnection, provinces: &[String]) -> Result<Vec<Change>> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM orgcode_change WHERE state = 'CONFIRMED' AND province = ANY($1)
         ORDER BY province, sequence FOR UPDATE"
    )))
    .bind(provinces)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Row::into_change).collect()
}

/// The provinces with a revocation waiting.
///
/// # Errors
/// Database errors.
pub async fn provinces_waiting(conn: &mut PgConnection) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT DISTINCT province FROM orgcode_change WHERE state = 'CONFIRMED'").fetch_all(conn).await
}

fn on_roll() -> Vec<String> {
    StudentStatus::ON_ROLL.iter().map(text).collect()
}

fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// What references the unit of `record` now (D.2, D.3): open business naming it, students on
/// the school's roll (of the stage), active schools and departments under a division.
///
/// # Errors
/// Database errors.
pub async fn blockers(conn: &mut PgConnection, record: &OrgRecord) -> sqlx::Result<Blockers> {
    let unit = record.unit_code();
    if record.department.is_some() {
        let (business, schools, departments): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(DISTINCT business_id) FROM open_business WHERE $1 = ANY(divisions)),
                    (SELECT count(*) FROM school WHERE department = $1 AND active),
                    (SELECT count(*) FROM department WHERE parent = $1 AND active)",
        )
        .bind(unit)
        .fetch_one(conn)
        .await?;
        return Ok(Blockers {
            business: count(business),
            students: 0,
            schools: count(schools),
            departments: count(departments),
        });
    }
    let stage = record.stage.map(|s| s.digit().to_string());
    let (business, students): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(DISTINCT business_id) FROM open_business WHERE $1 = ANY(schools)),
                (SELECT count(*) FROM student_index WHERE school = $1 AND status = ANY($2)
                   AND ($3::text IS NULL OR left(grade, 1) = $3))",
    )
    .bind(unit)
    .bind(on_roll())
    .bind(stage)
    .fetch_one(conn)
    .await?;
    Ok(Blockers { business: count(business), students: count(students), schools: 0, departments: 0 })
}

/// One open business blocking a revocation.
#[derive(Debug, Clone, FromRow, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockingBusiness {
    pub business: String,
    pub business_id: Uuid,
    pub student_id: String,
    pub opened_at: DateTime<Utc>,
}

/// The open business naming the unit, oldest first (at most `limit`).
///
/// # Errors
/// Database errors.
pub async fn blocking_business(
    conn: &mut PgConnection,
    record: &OrgRecord,
    limit: i64,
) -> sqlx::Result<Vec<BlockingBusiness>> {
    let column = if record.department.is_some() { "divisions" } else { "schools" };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT business, business_id, student_id, opened_at FROM open_business WHERE $1 = ANY({column})
         ORDER BY opened_at, student_id LIMIT $2"
    )))
    .bind(record.unit_code())
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The registry takes the unit as the record describes it.
///
/// # Errors
/// Database errors.
pub async fn apply(conn: &mut PgConnection, record: &OrgRecord) -> sqlx::Result<()> {
    if let Some(d) = &record.department {
        sqlx::query(
            "INSERT INTO department (code, province, name, level, parent) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, level = EXCLUDED.level, parent = EXCLUDED.parent,
               active = true, revoked_at = NULL, updated_at = now()",
        )
        .bind(d.code.as_ref())
        .bind(d.code.province().code())
        .bind(d.name.as_ref())
        .bind(text(&d.level))
        .bind(d.parent.as_ref().map(AsRef::as_ref))
        .execute(conn)
        .await?;
    } else if let Some(s) = &record.school {
        let stages: Vec<&str> = s.stage.items().iter().map(|s| s.as_str()).collect();
        sqlx::query(
            "INSERT INTO school (code, province, name, active, code_usable_from, department, stages)
             VALUES ($1, $2, $3, true, $4, $5, $6)
             ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, code_usable_from = EXCLUDED.code_usable_from,
               department = EXCLUDED.department, stages = EXCLUDED.stages, active = true, revoked_at = NULL,
               updated_at = now()",
        )
        .bind(s.code.as_ref())
        .bind(s.department.province().code())
        .bind(s.name.as_ref())
        .bind(s.code_usable_from)
        .bind(s.department.as_ref())
        .bind(&stages)
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// The registry revokes the unit, or the record's stage of the school.
///
/// # Errors
/// Database errors.
pub async fn revoke(conn: &mut PgConnection, record: &OrgRecord, now: DateTime<Utc>) -> sqlx::Result<()> {
    let unit = record.unit_code();
    let sql = match (record.department.is_some(), record.stage) {
        (true, _) => "UPDATE department SET active = false, revoked_at = $2, updated_at = now() WHERE code = $1",
        (false, None) => "UPDATE school SET active = false, revoked_at = $2, updated_at = now() WHERE code = $1",
        (false, Some(_)) => {
            "UPDATE school SET revoked_stages = array_append(array_remove(revoked_stages, $3), $3),
               stages = array_remove(stages, $3), updated_at = now() WHERE code = $1"
        }
    };
    sqlx::query(sql).bind(unit).bind(now).bind(record.stage.map(Stage::as_str)).execute(conn).await?;
    Ok(())
}

/// The supervising department of a school, if the registry knows it.
///
/// # Errors
/// Database errors.
pub async fn department_of(conn: &mut PgConnection, school: &str) -> sqlx::Result<Option<DivisionCode>> {
    let d: Option<Option<String>> =
        sqlx::query_scalar("SELECT department FROM school WHERE code = $1").bind(school).fetch_optional(conn).await?;
    Ok(d.flatten().and_then(|d| d.parse().ok()))
}

/// The supervising departments of these schools (those known), for the register of open
/// business: a division's revocation waits for the business its schools take part in.
///
/// # Errors
/// Database errors.
pub async fn departments_of(conn: &mut PgConnection, schools: &[String]) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT DISTINCT department FROM school WHERE code = ANY($1) AND department IS NOT NULL ORDER BY department",
    )
    .bind(schools)
    .fetch_all(conn)
    .await
}

/// What a school is being revoked of: the whole school (a confirmed revocation waits), and
/// which stages.
///
/// # Errors
/// Database errors.
pub async fn revoking(conn: &mut PgConnection, school: &str) -> Result<(bool, Vec<Stage>)> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT action, stage FROM orgcode_change WHERE unit = $1 AND state = 'CONFIRMED' AND kind = 'SCHOOL'",
    )
    .bind(school)
    .fetch_all(conn)
    .await?;
    let mut whole = false;
    let mut stages = Vec::new();
    for (action, stage) in rows {
        match (parse::<ChangeAction>(&action)?, stage) {
            (ChangeAction::Revoke, _) => whole = true,
            (ChangeAction::RevokeStage, Some(s)) => stages.push(parse(&s)?),
            _ => {}
        }
    }
    Ok((whole, stages))
}

/// The stages revoked of a school.
///
/// # Errors
/// Database errors.
pub async fn revoked_stages(conn: &mut PgConnection, school: &str) -> Result<Vec<Stage>> {
    let stages: Option<Vec<String>> = sqlx::query_scalar("SELECT revoked_stages FROM school WHERE code = $1")
        .bind(school)
        .fetch_optional(conn)
        .await?;
    stages.unwrap_or_default().iter().map(|s| parse(s)).collect()
}

/// Every record of `province` after `after`, in sequence order (at most `limit`).
///
/// # Errors
/// Database errors or a corrupt row.
pub async fn after(
    conn: &mut PgConnection,
    province: &str,
    after: u64,
    limit: i64,
) -> Result<Vec<(Change, Published)>> {
    #[derive(FromRow)]
    struct AfterRow {
        #[sqlx(flatten)]
        row: Row,
        batch_id: String,
        version: i64,
        published_on: NaiveDate,
    }
    let rows: Vec<AfterRow> = sqlx::query_as(
        "SELECT c.change_id, c.province, c.sequence, c.kind, c.state, c.confirm_by, c.record,
                c.batch_id, c.version::bigint AS version, b.published_on FROM orgcode_change c
         JOIN orgcode_batch b USING (batch_id, version)
         WHERE c.province = $1 AND c.sequence > $2 ORDER BY c.sequence LIMIT $3",
    )
    .bind(province)
    .bind(i64::try_from(after)?)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            let origin =
                Published { batch_id: r.batch_id, version: u32::try_from(r.version)?, published_on: r.published_on };
            Ok((r.row.into_change()?, origin))
        })
        .collect()
}

/// A record's batch, as `orgcode.change` names it.
#[derive(Debug, Clone)]
pub struct Published {
    pub batch_id: String,
    pub version: u32,
    pub published_on: NaiveDate,
}

/// # Errors
/// Database errors.
pub async fn add_event(
    conn: &mut PgConnection,
    id: Uuid,
    what: &str,
    detail: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO orgcode_event (change_id, at, what, detail) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(now)
        .bind(what)
        .bind(detail)
        .execute(conn)
        .await?;
    Ok(())
}

/// A batch and how far each province has got with it.
#[derive(Debug, Clone, FromRow, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchView {
    pub batch_id: String,
    pub version: i64,
    pub kind: String,
    pub published_on: NaiveDate,
    pub records: i64,
    pub loaded_by: String,
    pub loaded_at: DateTime<Utc>,
    /// Per province: {"37": {"UNCONFIRMED": 2, "CONFIRMED": 1, "DONE": 5}, …}
    pub progress: serde_json::Value,
}

/// Batches, newest first (at most `limit`).
///
/// # Errors
/// Database errors.
pub async fn batches(conn: &mut PgConnection, limit: i64, offset: i64) -> sqlx::Result<Vec<BatchView>> {
    sqlx::query_as(
        "SELECT b.batch_id, b.version::bigint AS version, b.kind, b.published_on, b.records::bigint AS records,
                b.loaded_by, b.loaded_at,
                COALESCE((SELECT jsonb_object_agg(province, states) FROM (
                   SELECT province, jsonb_object_agg(state, n) AS states FROM (
                     SELECT province, state, count(*) AS n FROM orgcode_change c
                     WHERE c.batch_id = b.batch_id AND c.version = b.version GROUP BY province, state) s
                   GROUP BY province) p), '{}'::jsonb) AS progress
         FROM orgcode_batch b ORDER BY b.loaded_at DESC, b.batch_id, b.version LIMIT $1 OFFSET $2",
    )
    .bind(limit)
    .bind(offset)
    .fetch_all(conn)
    .await
}

/// One record as the views show it.
#[derive(Debug, Clone, FromRow, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeView {
    pub change_id: Uuid,
    pub batch_id: String,
    pub version: i64,
    pub province: String,
    pub sequence: i64,
    pub kind: String,
    pub action: String,
    pub unit: String,
    pub stage: Option<String>,
    pub confirm_by: String,
    pub state: String,
    pub confirmed_by: Option<String>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub done_at: Option<DateTime<Utc>>,
    pub record: serde_json::Value,
}

const VIEW: &str = "change_id, batch_id, version::bigint AS version, province, sequence, kind, action, unit, stage,
    confirm_by, state, confirmed_by, confirmed_at, done_at, record";

/// The records of one batch (both versions' if `version` is none), by province and sequence.
///
/// # Errors
/// Database errors.
pub async fn changes_of(
    conn: &mut PgConnection,
    batch_id: &str,
    version: Option<u32>,
) -> sqlx::Result<Vec<ChangeView>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {VIEW} FROM orgcode_change WHERE batch_id = $1 AND ($2::bigint IS NULL OR version = $2)
         ORDER BY version, province, sequence"
    )))
    .bind(batch_id)
    .bind(version.map(i64::from))
    .fetch_all(conn)
    .await
}

/// One record.
///
/// # Errors
/// Database errors.
pub async fn change(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<ChangeView>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {VIEW} FROM orgcode_change WHERE change_id = $1")))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Confirmed revocations still waiting, oldest confirmation first.
///
/// # Errors
/// Database errors.
pub async fn waiting(conn: &mut PgConnection) -> sqlx::Result<Vec<ChangeView>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {VIEW} FROM orgcode_change WHERE state = 'CONFIRMED' ORDER BY confirmed_at, province, sequence LIMIT 1000"
    )))
    .fetch_all(conn)
    .await
}

/// A record's history.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct Event {
    pub at: DateTime<Utc>,
    pub what: String,
    pub detail: String,
}

/// # Errors
/// Database errors.
pub async fn events(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Vec<Event>> {
    sqlx::query_as("SELECT at, what, detail FROM orgcode_event WHERE change_id = $1 ORDER BY event_id")
        .bind(id)
        .fetch_all(conn)
        .await
}
