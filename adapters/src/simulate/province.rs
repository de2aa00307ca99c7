//! What a provincial system does when the hub asks: verify and hold, review, release, export,
//! import and commit. Every answer is idempotent: the hub resends requests that stay
//! unanswered, and the same request gets the same answer.

use anyhow::{Context, Result};
use chrono::{Duration, Utc};
use rand::Rng;
use schemas::CaseId;
use schemas::ids::SchoolCode;
use schemas::messages::{
    ArchiveCommitted, ArchiveDeliver, ArchiveImported, ArchivePackage, Attachment, Body, CaseReleased, Decision,
    HeldStudent, ImportFailed, Imported, Level, RecordChange, Refusal, ReviewDecision, ReviewRequest, StudentRecord,
    StudentStatus, StudentSummary, StudyPeriod, VerifyRequest, VerifyResult,
};
use schemas::{ErrorCode, codec};

use super::Simulator;

#[derive(sqlx::FromRow)]
pub(super) struct StudentRow {
    pub student_id: String,
    name: String,
    sex: String,
    birth_date: String,
    document_type: String,
    document_no: Option<String>,
    school: String,
    grade: String,
    status: String,
    problem_record: bool,
    open_business: bool,
    changed_at: String,
    #[allow(dead_code)]
    synced_at: Option<String>,
    held_for_case: Option<String>,
    transferred_out_case: Option<String>,
    #[allow(dead_code)]
    transferred_in_case: Option<String>,
}

impl StudentRow {
    /// Reads the row back through the wire model's parsers (a corrupt row is an error).
    pub(super) fn summary(&self) -> Result<StudentSummary> {
        let v = serde_json::json!({
            "studentId": self.student_id, "name": self.name, "sex": self.sex, "birthDate": self.birth_date,
            "idDocument": { "type": self.document_type, "number": self.document_no },
            "school": self.school, "grade": self.grade, "status": self.status,
            "problemRecord": self.problem_record, "openBusiness": self.open_business, "changedAt": self.changed_at,
        });
        serde_json::from_value(v).with_context(|| format!("corrupt student row {}", self.student_id))
    }
}

pub(super) async fn insert_student(
    conn: &mut sqlx::SqliteConnection,
    s: &StudentSummary,
    from_case: Option<&str>,
) -> Result<()> {
    let v = serde_json::to_value(s)?;
    let text = |k: &str| v[k].as_str().map(str::to_owned);
    sqlx::query(
        "INSERT INTO student (student_id, name, sex, birth_date, document_type, document_no, school, grade, status,
                              problem_record, open_business, changed_at, transferred_in_case)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (student_id) DO UPDATE SET school = excluded.school, grade = excluded.grade, status = excluded.status,
           transferred_out_case = NULL, held_for_case = NULL, transferred_in_case = excluded.transferred_in_case,
           changed_at = excluded.changed_at",
    )
    .bind(s.student_id.as_ref())
    .bind(s.name.as_ref())
    .bind(text("sex"))
    .bind(text("birthDate"))
    .bind(s.id_document.kind().code())
    .bind(s.id_document.number())
    .bind(s.school.as_ref())
    .bind(s.grade.as_ref())
    .bind(text("status"))
    .bind(s.problem_record)
    .bind(s.open_business)
    .bind(text("changedAt"))
    .bind(from_case)
    .execute(conn)
    .await?;
    Ok(())
}

/// Fake document content, the same for the same student.
fn card(student_id: &str) -> Vec<u8> {
    format!("%PDF-1.4 学籍卡 {student_id}").into_bytes()
}

impl Simulator {
    async fn student(&self, id: &str) -> Result<Option<StudentRow>> {
        Ok(sqlx::query_as("SELECT * FROM student WHERE student_id = ?").bind(id).fetch_optional(&self.db).await?)
    }

    async fn held_student(&self, case: CaseId) -> Result<Option<StudentRow>> {
        Ok(sqlx::query_as("SELECT * FROM student WHERE held_for_case = ? OR transferred_out_case = ?")
            .bind(case.to_string())
            .bind(case.to_string())
            .fetch_optional(&self.db)
            .await?)
    }

    /// 转出省份校验: name and national student ID must both match; a problem record, open
    /// business or another case's hold refuse; otherwise the student is held for this case.
    pub(super) async fn verify(&self, case: CaseId, r: &VerifyRequest) -> Result<()> {
        let refuse = |code: ErrorCode, remark: &str| {
            Body::VerifyResult(VerifyResult::Refused(Refusal { code, remark: remark.parse().ok() }))
        };
        let answer = match self.student(r.student_id.as_ref()).await? {
            None => refuse(ErrorCode::StudentNotFound, "省级系统无此学生学籍"),
            Some(s) if s.name != r.student_name.as_ref() => {
                refuse(ErrorCode::StudentNotFound, "姓名与全国学籍号不匹配")
            }
            Some(s) if s.transferred_out_case.is_some() => refuse(ErrorCode::StudentNotFound, "该生已转出"),
            Some(s) if s.problem_record => refuse(ErrorCode::ProblemRecord, "问题学籍,请先处理"),
            Some(s) if s.open_business => refuse(ErrorCode::InFlight, "该生有在办学籍异动"),
            Some(s) if s.held_for_case.as_deref().is_some_and(|h| h != case.to_string()) => {
                refuse(ErrorCode::InFlight, "该生已有跨省业务在办")
            }
            Some(s) => {
                sqlx::query("UPDATE student SET held_for_case = ? WHERE student_id = ?")
                    .bind(case.to_string())
                    .bind(&s.student_id)
                    .execute(&self.db)
                    .await?;
                let sum = s.summary()?;
                Body::VerifyResult(VerifyResult::Held(HeldStudent {
                    school: sum.school,
                    grade: sum.grade,
                    status: sum.status,
                    sex: sum.sex,
                    birth_date: sum.birth_date,
                    id_document: sum.id_document,
                }))
            }
        };
        let verdict = match &answer {
            Body::VerifyResult(VerifyResult::Held(_)) => "held".to_owned(),
            Body::VerifyResult(VerifyResult::Refused(f)) => format!("refused {}", f.code.code()),
            _ => unreachable!("built above"),
        };
        self.submit(answer, Some(case)).await?;
        self.event("verify", &format!("{} for case {case}: {verdict}", r.student_id)).await
    }

    /// A reviewer will decide after a while.
    pub(super) async fn queue_review(&self, case: CaseId, r: &ReviewRequest) -> Result<()> {
        let (lo, hi) = self.opts.review_delay;
        let wait = if hi > lo { self.rng.lock().expect("not poisoned").random_range(lo..=hi) } else { lo };
        let due = Utc::now() + Duration::from_std(wait).unwrap_or_default();
        let school = if r.step.side == schemas::messages::Side::In { &r.case.in_school } else { &r.case.out_school };
        sqlx::query(
            "INSERT INTO pending_review (case_id, step, due_at, school) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(case.to_string())
        .bind(r.step.to_string())
        .bind(due.to_rfc3339())
        .bind(school.as_ref())
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Decides the reviews whose time has come.
    pub(super) async fn decide_due_reviews(&self) -> Result<()> {
        let due: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT case_id, step, school FROM pending_review WHERE due_at <= ? ORDER BY due_at LIMIT 200",
        )
        .bind(Utc::now().to_rfc3339())
        .fetch_all(&self.db)
        .await?;
        for (case, step, school) in due {
            let reject = self.chance(self.opts.reject_rate);
            let step_parsed: schemas::messages::ReviewStep = step.parse()?;
            let province = self.opts.province.name_zh();
            let school_name: String = sqlx::query_scalar("SELECT name FROM school WHERE code = ?")
                .bind(&school)
                .fetch_optional(&self.db)
                .await?
                .unwrap_or_else(|| school.clone());
            let unit = match step_parsed.level {
                Level::School => school_name,
                Level::Bureau => format!("{school_name}主管教育局"),
                Level::City => format!("{province}地市教育局"),
                Level::Province => format!("{province}教育厅"),
            };
            let decision = ReviewDecision {
                step: step_parsed,
                decision: if reject { Decision::Reject } else { Decision::Approve },
                unit: unit.parse()?,
                reviewer: "模拟审核员".parse()?,
                opinion: if reject { "材料不全,不同意。" } else { "情况属实,同意。" }.parse()?,
            };
            let case_id: CaseId = case.parse()?;
            self.submit(Body::ReviewDecision(decision), Some(case_id)).await?;
            sqlx::query("DELETE FROM pending_review WHERE case_id = ? AND step = ?")
                .bind(&case)
                .bind(&step)
                .execute(&self.db)
                .await?;
            self.event("review", &format!("case {case} step {step}: {}", if reject { "rejected" } else { "approved" }))
                .await?;
        }
        Ok(())
    }

    /// Lets go of a student held for a case that ended otherwise.
    pub(super) async fn release(&self, case: CaseId) -> Result<()> {
        sqlx::query("UPDATE student SET held_for_case = NULL WHERE held_for_case = ?")
            .bind(case.to_string())
            .execute(&self.db)
            .await?;
        sqlx::query("DELETE FROM pending_review WHERE case_id = ?").bind(case.to_string()).execute(&self.db).await?;
        self.submit(Body::CaseReleased(CaseReleased {}), Some(case)).await?;
        self.event("release", &format!("case {case}: hold released")).await
    }

    /// 电子档案生成: the record and its attachments, unless the export fails this time.
    pub(super) async fn export(&self, case: CaseId) -> Result<()> {
        tokio::time::sleep(self.opts.archive_delay).await;
        if self.chance(self.opts.export_failure_rate) {
            return self
                .event("export.failed", &format!("case {case}: archive export failed (the hub will ask again)"))
                .await;
        }
        let Some(s) = self.held_student(case).await? else {
            return self.event("export.skipped", &format!("case {case}: no student held for it")).await;
        };
        let sum = s.summary()?;
        let school_name: String = sqlx::query_scalar("SELECT name FROM school WHERE code = ?")
            .bind(&s.school)
            .fetch_optional(&self.db)
            .await?
            .unwrap_or_else(|| s.school.clone());
        let record = StudentRecord {
            student_id: sum.student_id.clone(),
            name: sum.name.clone(),
            sex: sum.sex,
            birth_date: sum.birth_date,
            id_document: sum.id_document.clone(),
            ethnicity: None,
            enrolled: format!("{}-09", 2026 - i32::from(sum.grade.year())).parse()?,
            school: sum.school.clone(),
            grade: sum.grade,
            status: sum.status,
            family: vec![],
            study: vec![StudyPeriod {
                from: format!("{}-09-01", 2026 - i32::from(sum.grade.year())).parse()?,
                to: None,
                school_name: school_name.parse()?,
                school: Some(sum.school.clone()),
            }],
            change: vec![RecordChange { on: "2026-09-01".parse()?, kind: "升级".parse()?, remark: None }],
        };
        // The record card, then the other scanned files (学籍异动 evidence and the like).
        let text = String::from_utf8(card(&s.student_id)).unwrap_or_default();
        let mut attachments = Vec::with_capacity(self.opts.archive_attachments.max(1));
        for i in 0..self.opts.archive_attachments.max(1) {
            let name = if i == 0 { "学籍卡.pdf".to_owned() } else { format!("档案材料{i}.pdf") };
            let scan = super::scan(format!("{text} {i}"), self.opts.archive_attachment_bytes);
            attachments.push(Attachment::new(name.parse()?, "application/pdf".parse()?, scan));
        }
        let manifest = attachments.iter().map(Attachment::reference).collect();
        self.submit(Body::ArchivePackage(ArchivePackage { record, attachment: manifest }), Some(case)).await?;
        for attachment in attachments {
            self.submit(Body::ArchiveAttachment(attachment), Some(case)).await?;
        }
        self.event("export", &format!("case {case}: archive of {} sent", s.student_id)).await
    }

    /// Keeps what the hub delivers; imports once the record and every attachment are here.
    pub(super) async fn receive_archive(
        &self,
        case: CaseId,
        deliver: Option<&ArchiveDeliver>,
        attachment: Option<&Attachment>,
    ) -> Result<()> {
        if let Some(d) = deliver {
            let mut env = schemas::Envelope::new(schemas::Party::Hub, self.me, Body::ArchiveDeliver(d.clone()));
            env.case_id = Some(case);
            sqlx::query("INSERT INTO incoming_archive (case_id, deliver) VALUES (?, ?) ON CONFLICT (case_id) DO UPDATE SET deliver = excluded.deliver")
                .bind(case.to_string())
                .bind(codec::to_xml(&env).into_bytes())
                .execute(&self.db)
                .await?;
        }
        if let Some(a) = attachment {
            if a.check().is_err() {
                return self
                    .event("import.bad-attachment", &format!("case {case}: {} does not match its digest", a.name))
                    .await;
            }
            sqlx::query(
                "INSERT INTO incoming_attachment (case_id, name, sha256) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(case.to_string())
            .bind(a.name.as_ref())
            .bind(a.sha256.to_string())
            .execute(&self.db)
            .await?;
        }
        let stored: Option<(Vec<u8>, Option<String>)> =
            sqlx::query_as("SELECT deliver, imported_at FROM incoming_archive WHERE case_id = ?")
                .bind(case.to_string())
                .fetch_optional(&self.db)
                .await?;
        let Some((xml, imported_at)) = stored else { return Ok(()) };
        let Body::ArchiveDeliver(d) = codec::from_xml(&xml, schemas::DEFAULT_MAX_BYTES)?.body else { return Ok(()) };
        let have: Vec<(String, String)> =
            sqlx::query_as("SELECT name, sha256 FROM incoming_attachment WHERE case_id = ?")
                .bind(case.to_string())
                .fetch_all(&self.db)
                .await?;
        let complete =
            d.attachment.iter().all(|m| have.iter().any(|(n, h)| n == m.name.as_ref() && *h == m.sha256.to_string()));
        if !complete {
            return Ok(());
        }
        if imported_at.is_some() {
            // Delivered again (the hub did not hear us): the same answer.
            return self.answer_import(case, &d, true).await;
        }
        if deliver.is_none() && attachment.is_none() {
            return Ok(());
        }
        tokio::time::sleep(self.opts.archive_delay).await;
        if self.chance(self.opts.import_failure_rate) {
            let failed =
                ArchiveImported::Failed(ImportFailed { reason: "模拟导入失败:班级未设置".parse()? });
            self.submit(Body::ArchiveImported(failed), Some(case)).await?;
            sqlx::query("DELETE FROM incoming_attachment WHERE case_id = ?")
                .bind(case.to_string())
                .execute(&self.db)
                .await?;
            return self
                .event("import.failed", &format!("case {case}: import failed (the hub will deliver again)"))
                .await;
        }
        self.answer_import(case, &d, false).await
    }

    async fn answer_import(&self, case: CaseId, d: &ArchiveDeliver, again: bool) -> Result<()> {
        if !again {
            let r = &d.record;
            let summary = StudentSummary {
                student_id: r.student_id.clone(),
                name: r.name.clone(),
                sex: r.sex,
                birth_date: r.birth_date,
                id_document: r.id_document.clone(),
                school: d.in_school.clone(),
                grade: d.target_grade,
                // The status is carried as is (R20) — except a graduate admitted to the next
                // stage, who starts enrolled there (as the hub's index records it).
                status: match r.status {
                    StudentStatus::JuniorGraduate | StudentStatus::PrimaryGraduate => StudentStatus::Enrolled,
                    other => other,
                },
                problem_record: false,
                open_business: false,
                changed_at: Utc::now(),
                problem_kind: None,
                registered_at: Some(Utc::now()),
                key_data_changed_at: None,
            };
            let mut tx = self.db.begin().await?;
            insert_student(&mut tx, &summary, Some(case.as_ref())).await?;
            sqlx::query("UPDATE incoming_archive SET imported_at = ? WHERE case_id = ?")
                .bind(Utc::now().to_rfc3339())
                .bind(case.to_string())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        let local: SchoolCode = d.in_school.clone();
        let imported =
            ArchiveImported::Imported(Imported { local_id: format!("{}-{}", local, d.record.student_id).parse().ok() });
        self.submit(Body::ArchiveImported(imported), Some(case)).await?;
        if !again {
            self.event("import", &format!("case {case}: {} imported into {}", d.record.student_id, d.in_school))
                .await?;
        }
        Ok(())
    }

    /// Commits the transfer-out: the record stays, marked transferred out.
    pub(super) async fn commit(&self, case: CaseId) -> Result<()> {
        tokio::time::sleep(self.opts.archive_delay).await;
        let changed = sqlx::query(
            "UPDATE student SET transferred_out_case = ?, held_for_case = NULL WHERE held_for_case = ? OR transferred_out_case = ?",
        )
        .bind(case.to_string())
        .bind(case.to_string())
        .bind(case.to_string())
        .execute(&self.db)
        .await?
        .rows_affected();
        self.submit(Body::ArchiveCommitted(ArchiveCommitted {}), Some(case)).await?;
        self.event("commit", &format!("case {case}: transfer-out committed ({changed} record)")).await
    }
}
