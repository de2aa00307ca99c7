//! Problem groups (问题学籍组): the group as the workflow keeps it, its members, history and
//! evidence.

use std::collections::HashMap;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use schemas::messages::{Attachment, GroupState, ProblemKind};
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use crate::workflow::problem::{Group, WaitingOn};

fn state_name(s: GroupState) -> &'static str {
    match s {
        GroupState::Open => "open",
        GroupState::Arbitration => "arbitration",
        GroupState::Closed => "closed",
    }
}

fn wire_text<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value).expect("wire types serialize") {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

fn waiting_on(g: &Group) -> Option<String> {
    match g.waiting_on()? {
        WaitingOn::NationalOffice => Some("national-office".into()),
        WaitingOn::Provinces(p) => Some(p.iter().map(|p| p.code()).collect::<Vec<_>>().join(",")),
    }
}

/// Writes a new group and its members.
///
/// # Errors
/// Database errors (an unfinished group of the same identity: a unique violation).
pub async fn insert(conn: &mut PgConnection, g: &Group) -> Result<()> {
    sqlx::query(
        "INSERT INTO problem_group (group_id, kind, state, origin, identity, waiting_on, waiting_since, opened_at,
                                    closed_at, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(g.id.uuid())
    .bind(wire_text(&g.kind))
    .bind(state_name(g.state))
    .bind(g.origin.name())
    .bind(&g.identity)
    .bind(waiting_on(g))
    .bind(g.waiting_since)
    .bind(g.opened_at)
    .bind(g.closed_at)
    .bind(serde_json::to_value(g)?)
    .execute(&mut *conn)
    .await?;
    insert_members(conn, g).await
}

/// Writes the rows of members the table does not hold yet (all of a new group's; those that
/// joined a running one).
async fn insert_members(conn: &mut PgConnection, g: &Group) -> Result<()> {
    for (i, m) in g.members.iter().enumerate() {
        sqlx::query(
            "INSERT INTO problem_member (group_id, ordinal, province, student_id, state) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (group_id, ordinal) DO NOTHING",
        )
        .bind(g.id.uuid())
        .bind(i32::try_from(i).unwrap_or(i32::MAX))
        .bind(m.province.code())
        .bind(m.student_id.as_ref())
        .bind(wire_text(&m.state))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Writes a group's new state.
///
/// # Errors
/// Database errors.
pub async fn save(conn: &mut PgConnection, g: &Group) -> Result<()> {
    sqlx::query(
        "UPDATE problem_group SET state = $2, waiting_on = $3, waiting_since = $4, closed_at = $5, body = $6
         WHERE group_id = $1",
    )
    .bind(g.id.uuid())
    .bind(state_name(g.state))
    .bind(waiting_on(g))
    .bind(g.waiting_since)
    .bind(g.closed_at)
    .bind(serde_json::to_value(g)?)
    .execute(&mut *conn)
    .await?;
    for (i, m) in g.members.iter().enumerate() {
        sqlx::query("UPDATE problem_member SET state = $3 WHERE group_id = $1 AND ordinal = $2")
            .bind(g.id.uuid())
            .bind(i32::try_from(i).unwrap_or(i32::MAX))
            .bind(wire_text(&m.state))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Writes a group's new state when records joined it: the new records' rows too.
///
/// # Errors
/// Database errors.
pub async fn save_with_members(conn: &mut PgConnection, g: &Group) -> Result<()> {
    insert_members(conn, g).await?;
    save(conn, g).await
}

fn parse(body: serde_json::Value) -> Result<Group> {
    serde_json::from_value(body).context("Invalid problem group body")
}

/// The group, locked for the unit of work.
///
/// # Errors
/// Database errors or a corrupt row.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<Group>> {
    let body: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT body FROM problem_group WHERE group_id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    body.map(parse).transpose()
}

/// The group, as it stands (no lock).
///
/// # Errors
/// Database errors or a corrupt row.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Group>> {
    let body: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT body FROM problem_group WHERE group_id = $1").bind(id).fetch_optional(conn).await?;
    body.map(parse).transpose()
}

/// The unfinished group of a de-duplication identity, if any.
///
/// # Errors
/// Database errors.
pub async fn unfinished(conn: &mut PgConnection, identity: &str) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT group_id FROM problem_group WHERE identity = $1 AND state <> 'closed'")
        .bind(identity)
        .fetch_optional(conn)
        .await
}

/// The last finished group of an identity, and how many groups it has had.
///
/// # Errors
/// Database errors or a corrupt row.
pub async fn last_closed(conn: &mut PgConnection, identity: &str) -> Result<(Option<Group>, i64)> {
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM problem_group WHERE identity = $1")
        .bind(identity)
        .fetch_one(&mut *conn)
        .await?;
    let body: Option<serde_json::Value> = sqlx::query_scalar(
        "SELECT body FROM problem_group WHERE identity = $1 AND state = 'closed' ORDER BY closed_at DESC LIMIT 1",
    )
    .bind(identity)
    .fetch_optional(conn)
    .await?;
    Ok((body.map(parse).transpose()?, count))
}

/// The kinds of unfinished groups holding any of `student_ids` as a record still in question
/// (not upheld, not changed away, not deleted).
///
/// # Errors
/// Database errors or a corrupt row.
pub async fn open_kinds(conn: &mut PgConnection, student_ids: &[String]) -> Result<HashMap<String, ProblemKind>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT m.student_id, g.kind FROM problem_member m JOIN problem_group g USING (group_id)
         WHERE m.student_id = ANY($1) AND g.state <> 'closed' AND m.state NOT IN ('UPHELD', 'CHANGED', 'DELETED')",
    )
    .bind(student_ids)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(s, k)| {
            let kind = serde_json::from_value(serde_json::Value::String(k)).context("Invalid problem kind")?;
            Ok((s, kind))
        })
        .collect()
}

/// Appends to a group's history.
///
/// # Errors
/// Database errors.
pub async fn add_event(
    conn: &mut PgConnection,
    id: Uuid,
    at: DateTime<Utc>,
    actor: &str,
    what: &str,
    detail: &serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO problem_event (group_id, at, actor, what, detail) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(at)
        .bind(actor)
        .bind(what)
        .bind(detail)
        .execute(conn)
        .await?;
    Ok(())
}

/// Keeps the evidence files of a result (by digest: the same file twice is kept once).
///
/// # Errors
/// Database errors.
pub async fn save_evidence(conn: &mut PgConnection, id: Uuid, files: &[Attachment]) -> sqlx::Result<()> {
    for f in files {
        sqlx::query(
            "INSERT INTO problem_evidence (group_id, sha256, name, media_type, content) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(f.sha256.to_string())
        .bind(f.name.to_string())
        .bind(f.media_type.to_string())
        .bind(f.content.bytes())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// One evidence file: media type, name and content.
///
/// # Errors
/// Database errors.
pub async fn evidence(
    conn: &mut PgConnection,
    id: Uuid,
    sha256: &str,
) -> sqlx::Result<Option<(String, String, Vec<u8>)>> {
    sqlx::query_as("SELECT media_type, name, content FROM problem_evidence WHERE group_id = $1 AND sha256 = $2")
        .bind(id)
        .bind(sha256)
        .fetch_optional(conn)
        .await
}

/// One entry of a group's history.
#[derive(Debug, Clone, FromRow, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub what: String,
    pub detail: Option<serde_json::Value>,
}

/// A group's history, oldest first.
///
/// # Errors
/// Database errors.
pub async fn events(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Vec<Event>> {
    sqlx::query_as(
        "SELECT at, actor, what, detail FROM problem_event WHERE group_id = $1 ORDER BY event_id LIMIT 10000",
    )
    .bind(id)
    .fetch_all(conn)
    .await
}

/// What the group list filters on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Groups with a record of this province.
    pub province: Option<String>,
    /// `ID_DUPLICATE`, `NAME_SEX_BIRTH_DUPLICATE`, …
    pub kind: Option<String>,
    /// `open`, `arbitration`, `closed`.
    pub state: Option<String>,
    /// A province code, or `national-office`.
    pub waiting_on: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// A group as the list shows it.
#[derive(Debug, Clone, FromRow, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub group_id: Uuid,
    pub kind: String,
    pub state: String,
    pub origin: String,
    pub waiting_on: Option<String>,
    pub waiting_since: DateTime<Utc>,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub members: Vec<String>,
}

/// Groups, longest waiting first.
///
/// # Errors
/// Database errors.
pub async fn list(conn: &mut PgConnection, f: &Filter) -> sqlx::Result<Vec<Row>> {
    sqlx::query_as(
        "SELECT g.group_id, g.kind, g.state, g.origin, g.waiting_on, g.waiting_since, g.opened_at, g.closed_at,
                ARRAY(SELECT m.province || ':' || m.student_id || ':' || m.state FROM problem_member m
                      WHERE m.group_id = g.group_id ORDER BY m.ordinal) AS members
         FROM problem_group g
         WHERE ($1::text IS NULL OR EXISTS (SELECT 1 FROM problem_member m WHERE m.group_id = g.group_id AND m.province = $1))
           AND ($2::text IS NULL OR g.kind = $2)
           AND ($3::text IS NULL OR g.state = $3)
           AND ($4::text IS NULL OR $4 = ANY(string_to_array(g.waiting_on, ',')))
         ORDER BY g.waiting_since, g.group_id
         LIMIT $5 OFFSET $6",
    )
    .bind(&f.province)
    .bind(&f.kind)
    .bind(&f.state)
    .bind(&f.waiting_on)
    .bind(f.limit.unwrap_or(100).clamp(1, 1000))
    .bind(f.offset.unwrap_or(0).max(0))
    .fetch_all(conn)
    .await
}
