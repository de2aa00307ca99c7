//! The applying side of a simulated province: it looks students of its peers up, plans
//! transfers and enrollments of some of them, and applies once a lookup found them.

use anyhow::Result;
use chrono::Utc;
use rand::Rng;
use rand::seq::SliceRandom;
use schemas::ids::IdDocument;
use schemas::messages::{Application, Attachment, Body, LookupKey, LookupRequest, StudentSummary, UpTo};

use super::*;

/// Students a simulated province has looked up or applied for without an answer yet, at most.
/// A provincial office works through a large plan at its own pace: looking every planned
/// student up at once would only bury its own inbox (the hub's answers, its reviews) under
/// lookup results and their retries.
const IN_FLIGHT: i64 = 200;

impl Simulator {
    /// Looks up students of the first peer: most by their right name, some by a wrong one.
    pub(super) async fn look_up_peers(&self) -> Result<()> {
        let Some(&(peer, count)) = self.opts.peers.first() else { return Ok(()) };
        if self.opts.lookups == 0 {
            return Ok(());
        }
        let generated = data::generate(peer, count, self.opts.seed);
        for _ in 0..self.opts.lookups {
            let (n, way) = {
                let mut rng = self.rng.lock().expect("not poisoned");
                (rng.random_range(0..generated.students.len()), rng.random_range(0..10))
            };
            let s = &generated.students[n];
            let (name, key) = match way {
                0 => ("无此人".parse().expect("name"), LookupKey::StudentId(s.student_id.clone())),
                1 => match &s.id_document {
                    IdDocument::Resident(r) => (s.name.clone(), LookupKey::ResidentId(r.clone())),
                    _ => (s.name.clone(), LookupKey::StudentId(s.student_id.clone())),
                },
                _ => (s.name.clone(), LookupKey::StudentId(s.student_id.clone())),
            };
            self.submit(
                Body::LookupRequest(LookupRequest { name, key, requested_by: Some("学籍管理员".parse()?) }),
                None,
            )
            .await?;
        }
        self.event("lookup.sent", &format!("{} lookups of students of province {}", self.opts.lookups, peer.code()))
            .await
    }

    /// Plans transfers of the peers' students into this province's schools; each is looked up
    /// first and applied for once the national index knows the student.
    pub(super) async fn plan_transfers(&self) -> Result<()> {
        let planned: i64 = sqlx::query_scalar("SELECT count(*) FROM planned_transfer WHERE business = 'TRANSFER'")
            .fetch_one(&self.db)
            .await?;
        if self.opts.transfers == 0 || self.opts.peers.is_empty() || planned > 0 {
            return Ok(());
        }
        let schools: Vec<String> =
            sqlx::query_scalar("SELECT code FROM school ORDER BY code").fetch_all(&self.db).await?;
        let peers: Vec<_> = self.opts.peers.iter().map(|&(p, n)| data::generate(p, n, self.opts.seed)).collect();
        let available: usize = peers.iter().map(|p| p.students.len()).sum();
        let mut chosen = std::collections::HashSet::new();
        let now = Utc::now().to_rfc3339();
        while chosen.len() < self.opts.transfers.min(available) {
            let (peer, n, school) = {
                let mut rng = self.rng.lock().expect("not poisoned");
                let peer = &peers[chosen.len() % peers.len()];
                (peer, rng.random_range(0..peer.students.len()), schools[rng.random_range(0..schools.len())].clone())
            };
            let s = &peer.students[n];
            if !chosen.insert(s.student_id.clone()) {
                continue;
            }
            sqlx::query(
                "INSERT INTO planned_transfer (student_id, name, school, grade, next_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(s.student_id.as_ref())
            .bind(s.name.as_ref())
            .bind(&school)
            .bind(s.grade.as_ref())
            .bind(&now)
            .execute(&self.db)
            .await?;
        }
        self.event("transfer.planned", &format!("{} transfers planned", chosen.len())).await
    }

    /// Permits this province's schools to enroll graduates of other provinces, and plans
    /// enrollments of the peers' last-year junior-high students.
    pub(super) async fn plan_enrollments(&self) -> Result<()> {
        let planned: i64 = sqlx::query_scalar("SELECT count(*) FROM planned_transfer WHERE business = 'ENROLLMENT'")
            .fetch_one(&self.db)
            .await?;
        if self.opts.enrollments == 0 || self.opts.peers.is_empty() || planned > 0 {
            return Ok(());
        }
        let schools: Vec<String> =
            sqlx::query_scalar("SELECT code FROM school ORDER BY code").fetch_all(&self.db).await?;
        let grant = schools.iter().map(|s| s.parse()).collect::<Result<Vec<_>, _>>()?;
        self.submit(Body::EnrollmentPermit(schemas::messages::EnrollmentPermit { grant, revoke: vec![] }), None)
            .await?;
        // An equal share from each peer, so every graduation province takes part: mostly its
        // junior-high graduates, a third still in their last year (the hub must refuse those).
        let share = self.opts.enrollments.div_ceil(self.opts.peers.len());
        let mut candidates: Vec<StudentSummary> = Vec::new();
        for &(p, n) in &self.opts.peers {
            let last_year =
                data::generate(p, n, self.opts.seed).students.into_iter().filter(|s| s.grade.as_ref() == "23");
            let (mut graduates, mut others): (Vec<_>, Vec<_>) =
                last_year.partition(|s| s.status == schemas::messages::StudentStatus::JuniorGraduate);
            {
                let mut rng = self.rng.lock().expect("not poisoned");
                graduates.shuffle(&mut *rng);
                others.shuffle(&mut *rng);
            }
            let from_graduates = (share - share / 3).min(graduates.len());
            candidates.extend(graduates.into_iter().take(from_graduates));
            candidates.extend(others.into_iter().take(share - from_graduates));
        }
        let now = Utc::now().to_rfc3339();
        let mut chosen = 0;
        for s in candidates.iter().take(self.opts.enrollments) {
            let school = {
                let mut rng = self.rng.lock().expect("not poisoned");
                schools[rng.random_range(0..schools.len())].clone()
            };
            let inserted = sqlx::query(
                "INSERT INTO planned_transfer (student_id, name, school, grade, next_at, business) VALUES (?, ?, ?, '31', ?, 'ENROLLMENT')
                 ON CONFLICT (student_id) DO NOTHING",
            )
            .bind(s.student_id.as_ref())
            .bind(s.name.as_ref())
            .bind(&school)
            .bind(&now)
            .execute(&self.db)
            .await?
            .rows_affected();
            chosen += inserted;
        }
        self.event("enrollment.planned", &format!("{chosen} enrollments planned; {} schools permitted", schools.len()))
            .await
    }

    /// Looks up the planned students that are due (again): every retry that is due, and new
    /// ones while fewer than [`IN_FLIGHT`] are looked up or applied for without an answer.
    pub(super) async fn look_up_planned(&self) -> Result<()> {
        let in_flight: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM planned_transfer WHERE applied_at IS NULL AND attempts > 0 AND attempts < 30)
                  + (SELECT count(*) FROM application WHERE outcome IS NULL)",
        )
        .fetch_one(&self.db)
        .await?;
        let mut due: Vec<(String, String, i64)> = vec![];
        for (tried, limit) in [(true, 100), (false, (IN_FLIGHT - in_flight).clamp(0, 100))] {
            due.extend(
                sqlx::query_as::<_, (String, String, i64)>(
                    // Enrollments wait until the hub has confirmed the schools' permission.
                    "SELECT student_id, name, attempts FROM planned_transfer
                     WHERE applied_at IS NULL AND attempts < 30 AND next_at <= ? AND (attempts > 0) = ?
                       AND (business <> 'ENROLLMENT' OR EXISTS (SELECT 1 FROM event WHERE kind = 'enrollment.permitted'))
                     ORDER BY next_at LIMIT ?",
                )
                .bind(Utc::now().to_rfc3339())
                .bind(tried)
                .bind(limit)
                .fetch_all(&self.db)
                .await?,
            );
        }
        for (id, name, attempts) in due {
            let key = LookupKey::StudentId(id.parse()?);
            self.submit(
                Body::LookupRequest(LookupRequest {
                    name: name.parse()?,
                    key,
                    requested_by: Some("学籍管理员".parse()?),
                }),
                None,
            )
            .await?;
            let next = Utc::now() + chrono::Duration::seconds(2 + attempts.min(10));
            sqlx::query("UPDATE planned_transfer SET attempts = attempts + 1, next_at = ? WHERE student_id = ?")
                .bind(next.to_rfc3339())
                .bind(&id)
                .execute(&self.db)
                .await?;
        }
        Ok(())
    }

    /// A lookup found a planned student: apply (whatever the lookup says of eligibility — the
    /// hub and the other province decide, and their answers are part of the simulation).
    pub(super) async fn apply_if_planned(&self, found: &schemas::messages::LookupMatch) -> Result<()> {
        let planned: Option<(String, String, String)> = sqlx::query_as(
            "SELECT school, grade, business FROM planned_transfer WHERE student_id = ? AND applied_at IS NULL",
        )
        .bind(found.student_id.as_ref())
        .fetch_optional(&self.db)
        .await?;
        let Some((school, grade, business)) = planned else { return Ok(()) };
        let enrollment = business == "ENROLLMENT";
        let evidence: Vec<Attachment> = (0..self.opts.evidence_files.max(1))
            .map(|n| {
                let (name, media, head) = if enrollment {
                    (
                        format!("录取通知书-{}.jpg", n + 1),
                        "image/jpeg",
                        format!("JPEG admission letter of {}", found.student_id),
                    )
                } else {
                    (
                        format!("户籍迁移证明-{}.pdf", n + 1),
                        "application/pdf",
                        format!("%PDF-1.4 residence transfer of {}", found.student_id),
                    )
                };
                Attachment::new(
                    name.parse().expect("name"),
                    media.parse().expect("type"),
                    scan(head, self.opts.evidence_bytes),
                )
            })
            .collect();
        let reason = if enrollment {
            "已被本校录取(中考成绩附后)。"
        } else {
            "随父母工作调动迁居本省。"
        };
        let app = Application {
            school: school.parse()?,
            student_name: found.name.clone(),
            student_id: found.student_id.clone(),
            target_grade: grade.parse()?,
            reason: reason.parse().expect("text"),
            evidence: UpTo::new(evidence).map_err(anyhow::Error::msg)?,
        };
        let body = if enrollment { Body::EnrollmentApply(app) } else { Body::TransferApply(app) };
        let id = self.submit(body, None).await?;
        let now = Utc::now().to_rfc3339();
        sqlx::query("UPDATE planned_transfer SET applied_at = ? WHERE student_id = ?")
            .bind(&now)
            .bind(found.student_id.as_ref())
            .execute(&self.db)
            .await?;
        sqlx::query("INSERT INTO application (message_id, student_id, applied_at) VALUES (?, ?, ?)")
            .bind(id.to_string())
            .bind(found.student_id.as_ref())
            .bind(&now)
            .execute(&self.db)
            .await?;
        self.event(
            "transfer.applied",
            &format!("{} {} of province {}", found.name, found.student_id, found.province.code()),
        )
        .await
    }
}
