//! A simulated provincial system (模拟省级学籍系统): its own records (schools and students
//! generated from a seed, valid identifiers), talking to its adapter through the local API as
//! a real provincial system would. It keeps the national index current, looks students of
//! another province up, applies for transfers of other provinces' students, and answers what
//! the hub asks of a province: verification (校验), reviews (核办) by reviewers who take their
//! time and sometimes refuse, releasing a hold, exporting an archive and importing one, and
//! committing a transfer-out — with configurable failures.
//!
//! It drives the demo, the end-to-end tests and load tests.

mod apply;
pub mod data;
mod province;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use schemas::ids::ProvinceCode;
use schemas::messages::{Batch, Body, IndexUpsert, StudentSummary};
use schemas::{CaseId, Envelope, MessageId, Party, codec};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::watch;

/// A file of `size` bytes (at least its header): the header, then noise, like a scan.
pub(crate) fn scan(head: String, size: usize) -> Vec<u8> {
    let mut bytes = head.into_bytes();
    // Filled with noise, as a real scan is: it does not compress.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ bytes.len() as u64;
    for b in &bytes {
        x = (x ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    while bytes.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = (size - bytes.len()).min(8);
        bytes.extend_from_slice(&x.to_le_bytes()[..n]);
    }
    bytes
}

/// How to run the simulated province.
#[derive(Debug, Clone)]
pub struct Options {
    /// Base URL of the adapter's local API, e.g. `http://127.0.0.1:8437`.
    pub adapter: String,
    /// The province's own database (SQLite), created on first run.
    pub data: PathBuf,
    pub province: ProvinceCode,
    pub students: usize,
    pub seed: u64,
    /// Other provinces (and their student counts), generated from the same seed: whom to look
    /// up and whose students to apply for.
    pub peers: Vec<(ProvinceCode, usize)>,
    /// Lookups of students of the first peer.
    pub lookups: usize,
    /// Transfers to apply for, of students of the peers (this province receives them).
    pub transfers: usize,
    /// Post-graduation enrollments to apply for, of the peers' last-year junior-high students
    /// (most graduated, some not); the province first permits its schools.
    pub enrollments: usize,
    /// How long reviewers take, at least and at most.
    pub review_delay: (Duration, Duration),
    /// Share of review decisions that reject.
    pub reject_rate: f64,
    /// Share of archive requests this province fails to answer (the hub asks again).
    pub export_failure_rate: f64,
    /// Share of archive imports that fail with a reason (the hub delivers again).
    pub import_failure_rate: f64,
    /// How long the archive work takes (export, import, commit) before it answers.
    pub archive_delay: Duration,
    /// Evidence files each application carries, and the size of each (real-sized scans).
    pub evidence_files: usize,
    pub evidence_bytes: usize,
    /// Scanned archive files each exported archive carries (at least one: the record card),
    /// and the size of each.
    pub archive_attachments: usize,
    pub archive_attachment_bytes: usize,
    /// How this province answers its problem-record tasks (None: it leaves them to people).
    pub problem_mode: Option<schemas::messages::HandlingMode>,
    /// The approval levels its results carry (its chain).
    pub problem_levels: Vec<schemas::messages::Level>,
    /// How long its registrars take to confirm an organization-code change, at least and at
    /// most (None: they leave it to people).
    pub orgcode_confirm: Option<(Duration, Duration)>,
}

impl Options {
    /// Defaults for a province that only keeps its index.
    pub fn new(adapter: String, data: PathBuf, province: ProvinceCode) -> Self {
        Options {
            adapter,
            data,
            province,
            students: 300,
            seed: 2026,
            peers: vec![],
            lookups: 0,
            transfers: 0,
            enrollments: 0,
            review_delay: (Duration::ZERO, Duration::ZERO),
            reject_rate: 0.0,
            export_failure_rate: 0.0,
            import_failure_rate: 0.0,
            archive_delay: Duration::ZERO,
            evidence_files: 1,
            evidence_bytes: 0,
            archive_attachments: 1,
            archive_attachment_bytes: 0,
            problem_mode: None,
            problem_levels: vec![schemas::messages::Level::School, schemas::messages::Level::Bureau],
            orgcode_confirm: None,
        }
    }
}

/// The simulated provincial system.
pub struct Simulator {
    opts: Options,
    me: Party,
    db: SqlitePool,
    http: reqwest::Client,
    rng: Mutex<StdRng>,
}

impl Simulator {
    /// Opens (or creates and fills) the province's database.
    ///
    /// # Errors
    /// When the database cannot be created.
    pub async fn open(opts: Options) -> Result<Simulator> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", opts.data.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A commit survives the process being killed (the WAL is in the operating system's
            // hands), which is what the crash tests do to it; no fsync per statement, so the
            // simulated province answers as fast as a real system backed by a server database.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let db = SqlitePoolOptions::new().max_connections(2).test_before_acquire(false).connect_with(options).await?;
        sqlx::migrate!("./sim-migrations").run(&db).await.context("Failed to migrate the province database")?;
        let have: i64 = sqlx::query_scalar("SELECT count(*) FROM student").fetch_one(&db).await?;
        if have == 0 {
            let generated = data::generate(opts.province, opts.students, opts.seed);
            let mut tx = db.begin().await?;
            for s in &generated.schools {
                sqlx::query("INSERT INTO school (code, name) VALUES (?, ?)")
                    .bind(s.code.as_ref())
                    .bind(&s.name)
                    .execute(&mut *tx)
                    .await?;
            }
            for s in &generated.students {
                province::insert_student(&mut tx, s, None).await?;
            }
            tx.commit().await?;
        }
        let me = Party::Province(opts.province);
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        let rng =
            Mutex::new(StdRng::seed_from_u64(opts.seed ^ u64::from(opts.province.code().parse::<u8>().unwrap_or(0))));
        Ok(Simulator { opts, me, db, http, rng })
    }

    /// Runs until `shutdown` turns true.
    ///
    /// # Errors
    /// When the adapter refuses what the simulator sends (a bug on one side).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        self.sync_index().await?;
        self.look_up_peers().await?;
        self.plan_transfers().await?;
        self.plan_enrollments().await?;
        loop {
            self.sync_index().await?;
            self.look_up_planned().await?;
            let took = self.drain_inbox().await?;
            self.decide_due_reviews().await?;
            self.confirm_due_changes().await?;
            // A province with messages to answer answers at once; an idle one looks again soon.
            let pause = if took > 0 { Duration::ZERO } else { Duration::from_millis(200) };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }

    fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.rng.lock().expect("not poisoned").random_bool(p.min(1.0))
    }

    async fn event(&self, kind: &str, detail: &str) -> Result<()> {
        sqlx::query("INSERT INTO event (at, kind, detail) VALUES (?, ?, ?)")
            .bind(Utc::now().to_rfc3339())
            .bind(kind)
            .bind(detail)
            .execute(&self.db)
            .await?;
        println!("[{}] {kind}: {detail}", self.me);
        Ok(())
    }

    /// Sends `body` (about `case`, if any) through the adapter, retrying while the adapter is
    /// unreachable.
    async fn submit(&self, body: Body, case: Option<CaseId>) -> Result<MessageId> {
        let mut env = Envelope::new(self.me, Party::Hub, body);
        env.case_id = case;
        let xml = codec::to_xml(&env);
        let mut delay = Duration::from_millis(200);
        loop {
            let sent = self
                .http
                .post(format!("{}/messages", self.opts.adapter))
                .header("content-type", "application/xml")
                .body(xml.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return Ok(env.message_id),
                // A refusal of the message itself is a bug on one side: stop and say so.
                Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => bail!(
                    "the adapter refused {}: {} {}",
                    env.message_type(),
                    r.status(),
                    r.text().await.unwrap_or_default()
                ),
                // Unavailable, overloaded, restarting: as a real provincial system would, wait
                // and send the same message again (the adapter keeps one copy per id).
                Ok(_) | Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Sends every student whose record changed since the last sync, in batches of 500.
    async fn sync_index(&self) -> Result<()> {
        let rows: Vec<province::StudentRow> = sqlx::query_as(
            "SELECT * FROM student WHERE (synced_at IS NULL OR synced_at < changed_at) AND transferred_out_case IS NULL
             ORDER BY student_id",
        )
        .fetch_all(&self.db)
        .await?;
        for chunk in rows.chunks(500) {
            let students: Vec<StudentSummary> =
                chunk.iter().map(province::StudentRow::summary).collect::<Result<_>>()?;
            let batch = Batch::new(students).map_err(anyhow::Error::msg)?;
            self.submit(Body::IndexUpsert(IndexUpsert { student: batch }), None).await?;
            for r in chunk {
                sqlx::query("UPDATE student SET synced_at = changed_at WHERE student_id = ?")
                    .bind(&r.student_id)
                    .execute(&self.db)
                    .await?;
            }
            self.event("index.sync", &format!("{} students sent to the national index", chunk.len())).await?;
        }
        Ok(())
    }

    /// The hub asks for students again: those held are reported at the next sync; those not
    /// held (any more) are removed from the index.
    async fn resync(&self, r: &schemas::messages::IndexResync) -> Result<()> {
        let mut gone = Vec::new();
        for id in r.student_id.items() {
            let held = sqlx::query(
                "UPDATE student SET synced_at = NULL WHERE student_id = ? AND transferred_out_case IS NULL",
            )
            .bind(id.as_ref())
            .execute(&self.db)
            .await?
            .rows_affected();
            if held == 0 {
                gone.push(schemas::messages::IndexRemoval { student_id: id.clone(), changed_at: Utc::now() });
            }
        }
        if !gone.is_empty() {
            let entry = Batch::new(gone).map_err(anyhow::Error::msg)?;
            self.submit(Body::IndexRemove(schemas::messages::IndexRemove { entry }), None).await?;
        }
        self.event("index.resync", &format!("{} students to report again", r.student_id.items().len())).await
    }

    /// Takes the pending inbox messages (with their bodies), handles each, then acknowledges
    /// them together. Which were handled before (a crash before the acknowledgement) is asked
    /// once for the page; a `case.status`, whose handling changes nothing, is not recorded.
    async fn drain_inbox(&self) -> Result<usize> {
        let Ok(r) = self.http.get(format!("{}/inbox?pending=true&limit=500&body=true", self.opts.adapter)).send().await
        else {
            return Ok(0); // the adapter is restarting
        };
        let entries: Vec<serde_json::Value> = r.json().await.unwrap_or_default();
        let ids = entries
            .iter()
            .map(|e| e["messageId"].as_str().context("inbox entry without id"))
            .collect::<Result<Vec<&str>>>()?;
        let seen: std::collections::HashSet<String> = if ids.is_empty() {
            Default::default()
        } else {
            sqlx::query_scalar(
                "SELECT message_id FROM handled_message WHERE message_id IN (SELECT value FROM json_each(?))",
            )
            .bind(serde_json::to_string(&ids)?)
            .fetch_all(&self.db)
            .await?
            .into_iter()
            .collect()
        };
        let mut handled = Vec::with_capacity(entries.len());
        for (e, id) in entries.iter().zip(ids) {
            if !seen.contains(id) && e["messageType"].as_str() != Some("case.status") {
                let body = e["body"].as_str().unwrap_or_default();
                match codec::from_xml(body.as_bytes(), schemas::DEFAULT_MAX_BYTES) {
                    Ok(env) => self.handle(env).await?,
                    Err(err) => self.event("unreadable", &format!("{id}: {err}")).await?,
                }
                sqlx::query("INSERT INTO handled_message (message_id, handled_at) VALUES (?, ?)")
                    .bind(id)
                    .bind(Utc::now().to_rfc3339())
                    .execute(&self.db)
                    .await?;
            }
            handled.push(id.to_owned());
        }
        if !handled.is_empty() {
            let acked = self
                .http
                .post(format!("{}/inbox/ack", self.opts.adapter))
                .json(&serde_json::json!({ "ids": handled }))
                .send()
                .await;
            // The adapter restarting: the messages stay pending and come again; handled ones
            // are recognized then and only acknowledged.
            if !acked.as_ref().is_ok_and(|r| r.status().is_success()) {
                return Ok(0);
            }
        }
        Ok(entries.len())
    }

    /// Answers a problem-record task by the configured policy: the registrar's choice, then
    /// every level of the province's chain approving, with a photo as evidence.
    async fn problem_task(&self, t: &schemas::messages::ProblemTask) -> Result<()> {
        use schemas::messages::{Approval, HandlingMode, ProblemResult, UpTo};
        let detail = format!("group {} {:?}: {} ({:?})", t.group_id, t.kind, t.student_id, t.reason);
        self.event("problem.task", &detail).await?;
        let Some(mut mode) = self.opts.problem_mode else {
            return Ok(());
        };
        if mode == HandlingMode::Attest && !t.attest_allowed {
            mode = HandlingMode::Delete;
        }
        let approval = self
            .opts
            .problem_levels
            .iter()
            .map(|level| Approval {
                level: *level,
                unit: "模拟审核单位".parse().expect("literal"),
                reviewer: "模拟审核人".parse().expect("literal"),
                approved_at: Utc::now(),
                opinion: Some("同意。".parse().expect("literal")),
            })
            .collect();
        let photo = schemas::messages::Attachment::new(
            "证明材料.jpg".parse().expect("literal"),
            "image/jpeg".parse().expect("literal"),
            vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10],
        );
        let result = ProblemResult {
            group_id: t.group_id,
            student_id: t.student_id.clone(),
            mode,
            changed: None,
            approval: UpTo::new(approval).map_err(|e| anyhow::anyhow!("{e}"))?,
            evidence: UpTo::new(vec![photo]).map_err(|e| anyhow::anyhow!("{e}"))?,
        };
        self.submit(Body::ProblemResult(result), None).await?;
        self.event("problem.result", &format!("group {}: {} {mode:?}", t.group_id, t.student_id)).await
    }

    /// An organization-code change arrives (in sequence): recorded, and confirmed by the
    /// department it names after the configured delay.
    async fn orgcode_change(&self, c: &schemas::messages::OrgcodeChange) -> Result<()> {
        let detail = format!(
            "{} #{} {:?} {} (batch {} v{}), confirm by {}",
            c.change_id,
            c.sequence,
            c.record.action,
            c.record.unit_code(),
            c.batch_id,
            c.version,
            c.confirm_by
        );
        self.event("orgcode.change", &detail).await?;
        let Some((lo, hi)) = self.opts.orgcode_confirm else { return Ok(()) };
        let wait = if hi > lo { self.rng.lock().expect("not poisoned").random_range(lo..=hi) } else { lo };
        let due = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
        sqlx::query("INSERT INTO pending_confirm (change_id, unit, due_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
            .bind(c.change_id.to_string())
            .bind(c.confirm_by.to_string())
            .bind(due.to_rfc3339())
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// Confirms the organization-code changes whose time has come.
    async fn confirm_due_changes(&self) -> Result<()> {
        let due: Vec<(String, String)> =
            sqlx::query_as("SELECT change_id, unit FROM pending_confirm WHERE due_at <= ? ORDER BY due_at LIMIT 200")
                .bind(Utc::now().to_rfc3339())
                .fetch_all(&self.db)
                .await?;
        for (change, unit) in due {
            let confirm = schemas::messages::OrgcodeConfirm {
                change_id: change.parse()?,
                unit: unit.parse()?,
                reviewer: "模拟审核人".parse().expect("literal"),
            };
            self.submit(Body::OrgcodeConfirm(confirm), None).await?;
            sqlx::query("DELETE FROM pending_confirm WHERE change_id = ?").bind(&change).execute(&self.db).await?;
            self.event("orgcode.confirm", &format!("{change} by {unit}")).await?;
        }
        Ok(())
    }

    async fn handle(&self, env: Envelope) -> Result<()> {
        let case = env.case_id;
        match env.body {
            Body::IndexResult(r) => {
                self.event(
                    "index.result",
                    &format!("{} applied, {} stale, {} conflicting", r.applied, r.stale, r.conflicting),
                )
                .await
            }
            Body::LookupResult(r) => match r.student {
                Some(m) => {
                    self.apply_if_planned(&m).await?;
                    let verdict = if m.transfer_eligible {
                        "may transfer".to_owned()
                    } else {
                        format!(
                            "may not transfer ({})",
                            m.reason.iter().map(|c| c.code()).collect::<Vec<_>>().join(", ")
                        )
                    };
                    let detail = format!(
                        "{} {}: province {}, school {}, grade {}, {}, {verdict}",
                        m.name,
                        m.student_id,
                        m.province.code(),
                        m.school,
                        m.grade.label_zh(),
                        m.status.label_zh()
                    );
                    self.event("lookup.found", &detail).await
                }
                None => self.event("lookup.not-found", "no student with this name and identifier").await,
            },
            Body::Error(e) => {
                if let Some(c) = env.correlation_id {
                    // The refusal of an application of ours.
                    sqlx::query("UPDATE application SET outcome = 'REFUSED', code = ?, closed_at = ? WHERE message_id = ? AND outcome IS NULL")
                        .bind(e.code.code())
                        .bind(Utc::now().to_rfc3339())
                        .bind(c.to_string())
                        .execute(&self.db)
                        .await?;
                }
                self.event("error", &format!("{} {}: {}", e.code.code(), e.message_en, e.detail.unwrap_or_default()))
                    .await
            }
            Body::CaseAccepted(_) => {
                if let (Some(case), Some(app)) = (case, env.correlation_id) {
                    sqlx::query("UPDATE application SET case_id = ? WHERE message_id = ?")
                        .bind(case.to_string())
                        .bind(app.to_string())
                        .execute(&self.db)
                        .await?;
                    // The case may have closed already, its closing handed over first.
                    sqlx::query(
                        "UPDATE application SET (outcome, code, closed_at) =
                             (SELECT outcome, code, closed_at FROM case_closing WHERE case_id = application.case_id)
                         WHERE message_id = ? AND outcome IS NULL
                           AND EXISTS (SELECT 1 FROM case_closing WHERE case_id = application.case_id)",
                    )
                    .bind(app.to_string())
                    .execute(&self.db)
                    .await?;
                }
                Ok(())
            }
            Body::CaseStatus(_) => Ok(()),
            Body::CaseDetail(d) => {
                self.event("case.detail", &format!("{case:?}: {:?}, {} decisions", d.state, d.decision.len())).await
            }
            Body::IndexResync(r) => self.resync(&r).await,
            Body::EnrollmentPermitted(p) => {
                self.event(
                    "enrollment.permitted",
                    &format!("{} schools permitted, {} revoked, {} refused", p.granted, p.revoked, p.refused.len()),
                )
                .await
            }
            Body::CaseReminder(r) => {
                self.event("case.reminder", &format!("{} {:?} due {}", r.step, r.kind, r.deadline)).await
            }
            Body::CaseClosed(c) => {
                let case = case.context("case.closed without a case")?;
                let outcome = serde_json::to_value(c.outcome)?.as_str().unwrap_or_default().to_owned();
                let now = Utc::now().to_rfc3339();
                let mut tx = self.db.begin().await?;
                sqlx::query(
                    "INSERT OR IGNORE INTO case_closing (case_id, outcome, code, closed_at) VALUES (?, ?, ?, ?)",
                )
                .bind(case.to_string())
                .bind(&outcome)
                .bind(c.code.map(|k| k.code()))
                .bind(&now)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE application SET outcome = ?, code = ?, closed_at = ? WHERE case_id = ?")
                    .bind(&outcome)
                    .bind(c.code.map(|k| k.code()))
                    .bind(&now)
                    .bind(case.to_string())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                let code = c.code.map(|k| format!(" {}", k.code())).unwrap_or_default();
                self.event("case.closed", &format!("{case}: {outcome}{code}")).await
            }
            Body::VerifyRequest(r) => self.verify(case.context("verify.request without a case")?, &r).await,
            Body::ReviewRequest(r) => self.queue_review(case.context("review.request without a case")?, &r).await,
            Body::CaseRelease(_) => self.release(case.context("case.release without a case")?).await,
            Body::ArchiveRequest(_) => self.export(case.context("archive.request without a case")?).await,
            Body::ArchiveDeliver(d) => {
                let case = case.context("archive.deliver without a case")?;
                self.receive_archive(case, Some(&d), None).await
            }
            Body::ArchiveAttachment(a) => {
                let case = case.context("archive.attachment without a case")?;
                self.receive_archive(case, None, Some(&a)).await
            }
            Body::ArchiveCommit(_) => self.commit(case.context("archive.commit without a case")?).await,
            Body::ProblemTask(t) => self.problem_task(&t).await,
            Body::OrgcodeChange(c) => self.orgcode_change(&c).await,
            Body::OrgcodeStatus(st) => {
                let blockers = st.blockers.map(|b| format!(", blockers {b:?}")).unwrap_or_default();
                self.event("orgcode.status", &format!("{} #{} {:?}{blockers}", st.change_id, st.sequence, st.state))
                    .await
            }
            Body::OrgcodeRevoked(r) => {
                // The unit's accounts are disabled now (a real system would do it here).
                let stage = r.record.stage.map(|s| format!(" stage {}", s.as_str())).unwrap_or_default();
                let detail = format!(
                    "{} #{} {}{stage}, accounts disabled: {}",
                    r.change_id,
                    r.sequence,
                    r.record.unit_code(),
                    r.disable_accounts
                );
                self.event("orgcode.revoked", &detail).await
            }
            Body::ProblemRelay(r) => {
                let detail = format!("group {}: {}:{} {:?}", r.group_id, r.province.code(), r.student_id, r.mode);
                self.event("problem.relay", &detail).await
            }
            Body::ProblemStatus(st) => {
                let members: Vec<String> = st
                    .member
                    .items()
                    .iter()
                    .map(|m| format!("{}:{}:{:?}", m.province.code(), m.student_id, m.state))
                    .collect();
                let detail = format!("group {} {:?}: {}", st.group_id, st.state, members.join(" "));
                self.event("problem.status", &detail).await
            }
            other => self.event("ignored", &format!("{} (not for a provincial system)", other.message_type())).await,
        }
    }
}
