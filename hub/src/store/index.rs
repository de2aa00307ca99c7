//! The national student index table.

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use schemas::ids::{IdDocument, ProvinceCode};
use schemas::messages::{StudentStatus, StudentSummary};
use sqlx::{FromRow, PgConnection};

use crate::workflow::index::IndexEntry;

#[derive(FromRow)]
struct Row {
    student_id: String,
    province: String,
    name: String,
    sex: String,
    birth_date: NaiveDate,
    document_type: String,
    document_no: Option<String>,
    school: String,
    grade: String,
    status: String,
    problem_record: bool,
    open_business: bool,
    changed_at: DateTime<Utc>,
    problem_kind: Option<String>,
    registered_at: Option<DateTime<Utc>>,
    key_data_changed_at: Option<DateTime<Utc>>,
    disputed_at: Option<DateTime<Utc>>,
}

/// The column list, as a macro so that every statement stays a literal.
macro_rules! columns {
    () => {
        "student_id, province, name, sex, birth_date, document_type, document_no, school, grade, status, \
         problem_record, open_business, changed_at, problem_kind, registered_at, key_data_changed_at"
    };
}

/// The columns read back: the written ones and the dispute mark.
macro_rules! read_columns {
    () => {
        concat!(columns!(), ", disputed_at")
    };
}

/// Quotes a plain string as a JSON string so that serde can parse it as its typed value: the
/// same parsers as on the wire, so a row can only become a valid entry.
fn typed<T: serde::de::DeserializeOwned>(value: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(value.to_owned()))
        .with_context(|| format!("Invalid value `{value}` in student_index"))
}

fn text<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value).expect("wire types serialize") {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

impl TryFrom<Row> for IndexEntry {
    type Error = anyhow::Error;

    fn try_from(r: Row) -> Result<Self> {
        let id_document: IdDocument = serde_json::from_value(serde_json::json!({
            "type": r.document_type, "number": r.document_no,
        }))
        .context("Invalid ID document in student_index")?;
        Ok(IndexEntry {
            province: ProvinceCode::parse(&r.province).context("Invalid province in student_index")?,
            summary: StudentSummary {
                student_id: typed(&r.student_id)?,
                name: typed(&r.name)?,
                sex: typed(&r.sex)?,
                birth_date: r.birth_date,
                id_document,
                school: typed(&r.school)?,
                grade: typed(&r.grade)?,
                status: typed(&r.status)?,
                problem_record: r.problem_record,
                open_business: r.open_business,
                changed_at: r.changed_at,
                problem_kind: r.problem_kind.as_deref().map(typed).transpose()?,
                registered_at: r.registered_at,
                key_data_changed_at: r.key_data_changed_at,
            },
            disputed_at: r.disputed_at,
        })
    }
}

/// Locks and returns the entries of `student_ids` that exist, in id order (a fixed lock order
/// keeps concurrent batches from deadlocking).
///
/// # Errors
/// Database errors or a corrupt row.
pub async fn lock(conn: &mut PgConnection, student_ids: &[String]) -> Result<Vec<IndexEntry>> {
    let rows: Vec<Row> = sqlx::query_as(concat!(
        "SELECT ",
        read_columns!(),
        " FROM student_index WHERE student_id = ANY($1) ORDER BY student_id FOR UPDATE"
    ))
    .bind(student_ids)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(IndexEntry::try_from).collect()
}

/// Inserts or replaces entries; a guard after it decides which replacements take.
macro_rules! upsert_statement {
    () => {
        concat!(
            "INSERT INTO student_index (",
            columns!(),
            ")
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::date[], $6::text[], $7::text[],
                              $8::text[], $9::text[], $10::text[], $11::bool[], $12::bool[], $13::timestamptz[],
                              $14::text[], $15::timestamptz[], $16::timestamptz[])
         ON CONFLICT (student_id) DO UPDATE SET
           province = EXCLUDED.province, name = EXCLUDED.name, sex = EXCLUDED.sex, birth_date = EXCLUDED.birth_date,
           document_type = EXCLUDED.document_type, document_no = EXCLUDED.document_no, school = EXCLUDED.school,
           grade = EXCLUDED.grade, status = EXCLUDED.status, problem_record = EXCLUDED.problem_record,
           open_business = EXCLUDED.open_business, changed_at = EXCLUDED.changed_at, updated_at = now(),
           problem_kind = EXCLUDED.problem_kind, registered_at = EXCLUDED.registered_at,
           key_data_changed_at = EXCLUDED.key_data_changed_at,
           disputed_at = NULL, dispute_case = NULL"
        )
    };
}

/// Writes entries (insert or replace), in one statement. A racing report from another
/// province, or an older one, never overwrites; a report of a disputed entry by its province
/// settles the dispute even when unchanged.
///
/// # Errors
/// Database errors.
pub async fn upsert(conn: &mut PgConnection, entries: &[IndexEntry]) -> sqlx::Result<()> {
    let statement = concat!(
        upsert_statement!(),
        " WHERE student_index.province = EXCLUDED.province
           AND (student_index.changed_at < EXCLUDED.changed_at OR student_index.disputed_at IS NOT NULL)"
    );
    write(conn, entries, statement).await
}

/// Writes the entries of students whose archive was delivered to the province reporting them
/// (the hand-over, decided under the rows' locks): they move to it whatever the sending
/// province's last change time.
///
/// # Errors
/// Database errors.
pub async fn hand_over(conn: &mut PgConnection, entries: &[IndexEntry]) -> sqlx::Result<()> {
    write(conn, entries, upsert_statement!()).await
}

async fn write(conn: &mut PgConnection, entries: &[IndexEntry], statement: &'static str) -> sqlx::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let col = |f: &dyn Fn(&IndexEntry) -> String| entries.iter().map(f).collect::<Vec<_>>();
    sqlx::query(statement)
        .bind(col(&|e| e.summary.student_id.to_string()))
        .bind(col(&|e| e.province.code().to_owned()))
        .bind(col(&|e| e.summary.name.to_string()))
        .bind(col(&|e| text(&e.summary.sex)))
        .bind(entries.iter().map(|e| e.summary.birth_date).collect::<Vec<_>>())
        .bind(col(&|e| e.summary.id_document.kind().code().to_owned()))
        .bind(entries.iter().map(|e| e.summary.id_document.number().map(str::to_owned)).collect::<Vec<_>>())
        .bind(col(&|e| e.summary.school.to_string()))
        .bind(col(&|e| e.summary.grade.to_string()))
        .bind(col(&|e| text(&e.summary.status)))
        .bind(entries.iter().map(|e| e.summary.problem_record).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.summary.open_business).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.summary.changed_at).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.summary.problem_kind.as_ref().map(text)).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.summary.registered_at).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.summary.key_data_changed_at).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    Ok(())
}

/// # Errors
/// Database errors.
pub async fn delete(conn: &mut PgConnection, student_ids: &[String]) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM student_index WHERE student_id = ANY($1)").bind(student_ids).execute(conn).await?;
    Ok(())
}

/// The entry of a national student ID.
///
/// # Errors
/// Database errors or a corrupt row.
pub async fn by_student_id(conn: &mut PgConnection, student_id: &str) -> Result<Option<IndexEntry>> {
    let row: Option<Row> =
        sqlx::query_as(concat!("SELECT ", read_columns!(), " FROM student_index WHERE student_id = $1"))
            .bind(student_id)
            .fetch_optional(conn)
            .await?;
    row.map(IndexEntry::try_from).transpose()
}

/// Entries with an ID-document number, most recently changed first.
///
/// # Errors
/// Database errors or a corrupt row.
pub async fn by_document(conn: &mut PgConnection, number: &str) -> Result<Vec<IndexEntry>> {
    let rows: Vec<Row> = sqlx::query_as(concat!(
        "SELECT ",
        read_columns!(),
        " FROM student_index WHERE document_no = $1 ORDER BY changed_at DESC LIMIT 10"
    ))
    .bind(number)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(IndexEntry::try_from).collect()
}

/// Entries whose resident ID (document type 1) is one of `numbers`, in one query.
///
/// # Errors
/// Database errors or a corrupt row.
pub async fn by_resident_ids(conn: &mut PgConnection, numbers: &[String]) -> Result<Vec<IndexEntry>> {
    if numbers.is_empty() {
        return Ok(vec![]);
    }
    let rows: Vec<Row> = sqlx::query_as(concat!(
        "SELECT ",
        read_columns!(),
        " FROM (SELECT DISTINCT number FROM unnest($1::text[]) AS u(number)) AS asked
          CROSS JOIN LATERAL (SELECT * FROM student_index
                               WHERE document_no = asked.number AND document_type = '1' OFFSET 0) AS found
         ORDER BY student_id"
    ))
    // One probe of the document index per number, whatever the statistics say. Asked as one
    // `document_no = ANY($1)` or as a join, a table not yet analyzed (a new hub's first load, a
    // restored database) has no statistics, so the planner takes each number to match 0.5 % of
    // the rows and scans the table whole for every batch (2.7 ms a batch at 20,000 rows, against
    // 0.2 ms). `OFFSET 0` keeps the subquery from being merged into a join: it is planned alone,
    // for one number, where the index is always the cheaper path.
    .persistent(false)
    .bind(numbers)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(IndexEntry::try_from).collect()
}

/// Entries sharing a name, sex and birth date that carry no resident ID (the key of a
/// name/sex/birth-date duplicate, domain.md C.2), most recently changed first.
///
/// # Errors
/// Database errors or a corrupt row.
pub async fn by_name_sex_birth(
    conn: &mut PgConnection,
    name: &str,
    sex: &str,
    birth_date: NaiveDate,
) -> Result<Vec<IndexEntry>> {
    let rows: Vec<Row> = sqlx::query_as(concat!(
        "SELECT ",
        read_columns!(),
        " FROM student_index WHERE name = $1 AND sex = $2 AND birth_date = $3 AND document_type <> '1'
          ORDER BY changed_at DESC LIMIT 10"
    ))
    .bind(name)
    .bind(sex)
    .bind(birth_date)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(IndexEntry::try_from).collect()
}

/// Where a completed case placed a student.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    pub province: &'a str,
    pub school: &'a str,
    pub grade: &'a str,
    /// The status when the case changed it (an enrolled graduate); otherwise kept.
    pub status: Option<StudentStatus>,
}

/// Moves a student to the province that now holds his record (a completed case): the hub
/// owns this change, so the newer-wins guard of provinces' reports does not apply.
///
/// # Errors
/// Database errors.
pub async fn move_student(
    conn: &mut PgConnection,
    student_id: &str,
    to: &Placement<'_>,
    changed_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE student_index SET province = $2, school = $3, grade = $4, status = COALESCE($5, status),
                open_business = false, changed_at = $6, updated_at = now() WHERE student_id = $1",
    )
    .bind(student_id)
    .bind(to.province)
    .bind(to.school)
    .bind(to.grade)
    .bind(to.status.as_ref().map(text))
    .bind(changed_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks the entry of `student_id` held by `province` disputed by `case`; returns whether the
/// index listed him there.
///
/// # Errors
/// Database errors.
pub async fn dispute(
    conn: &mut PgConnection,
    province: &str,
    student_id: &str,
    case: uuid::Uuid,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let n = sqlx::query(
        "UPDATE student_index SET disputed_at = COALESCE(disputed_at, $3), dispute_case = $4
         WHERE student_id = $1 AND province = $2",
    )
    .bind(student_id)
    .bind(province)
    .bind(at)
    .bind(case)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// An index entry its province contradicted, as operators list it.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dispute {
    pub student_id: String,
    pub province: String,
    pub school: String,
    pub disputed_at: DateTime<Utc>,
    pub dispute_case: Option<uuid::Uuid>,
}

/// Disputed entries, oldest first.
///
/// # Errors
/// Database errors.
pub async fn disputes(conn: &mut PgConnection) -> sqlx::Result<Vec<Dispute>> {
    sqlx::query_as(
        "SELECT student_id, province, school, disputed_at, dispute_case FROM student_index
         WHERE disputed_at IS NOT NULL ORDER BY disputed_at LIMIT 1000",
    )
    .fetch_all(conn)
    .await
}
