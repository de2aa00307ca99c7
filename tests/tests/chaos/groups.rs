//! The chaos run's problem groups (跨省问题学籍): mid-run, a province reports a second record
//! of another province's student (the same resident ID and name under a new national student
//! ID), as a registrar who enrolled a child twice would. The hub opens an ID-duplicate group.
//! The reporting side answers first: province 44's system deletes its record at once; 37's and
//! 51's attest theirs, so when the copy is theirs both sides attest and the national office
//! arbitrates (upholding the original, through the operator API, while the faults go on), and
//! the copy's province then deletes it. Once its group is closed, the copy's province removes
//! the copy from the national index.

use std::collections::{BTreeMap, HashSet};

use chrono::Utc;
use e2e::world::World;
use schemas::messages::{Batch, Body, IndexRemoval, IndexRemove, StudentStatus, StudentSummary};

/// Provinces whose systems attest their records (the others delete theirs).
pub const ATTESTING: [&str; 2] = ["37", "51"];

/// The simulated systems' handling of their tasks, per province.
pub fn mode(province: &str) -> &'static str {
    if ATTESTING.contains(&province) { "attest" } else { "delete" }
}

/// One duplicate the run reported.
pub struct Duplicate {
    /// The province holding the student, and the student's national ID.
    pub original: (&'static str, String),
    /// The province that reported the copy, and the copy's national ID.
    pub copy: (&'static str, String),
    removal_sent: bool,
}

impl Duplicate {
    /// Whether the group needs the national office: both sides attest.
    pub fn arbitrated(&self) -> bool {
        ATTESTING.contains(&self.copy.0)
    }
}

#[derive(Default)]
pub struct Problems {
    pub duplicates: Vec<Duplicate>,
    pub decided: usize,
}

/// Students the provinces plan to apply for: a group would make them problem records, which a
/// transfer refuses, so the duplicates are made of others.
async fn planned(w: &World, provinces: &[&str]) -> HashSet<String> {
    let mut out = HashSet::new();
    for code in provinces {
        let pool = super::sqlite(w, code).await;
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT student_id FROM planned_transfer").fetch_all(&pool).await.unwrap_or_default();
        pool.close().await;
        out.extend(ids);
    }
    out
}

fn ordinary(s: &StudentSummary) -> bool {
    s.status == StudentStatus::Enrolled && !s.problem_record && !s.open_business && s.student_id.is_formal()
}

impl Problems {
    /// Reports `count` duplicates, alternating their sides: (original in 37, copy from 44),
    /// (51, 44), (37, 51), (51, 37), …; half close by deletion, half by arbitration. Every
    /// province must be online (the copies go through their adapters).
    pub async fn report(&mut self, w: &World, provinces: &[&'static str], count: usize) -> Vec<String> {
        let busy = planned(w, provinces).await;
        let mut taken = HashSet::new();
        let mut said = vec![];
        for i in 0..count {
            let holder = ATTESTING[i % 2];
            let reporter = if (i / 2) % 2 == 0 { "44" } else { ATTESTING[(i + 1) % 2] };
            let original = w
                .province(holder)
                .students
                .iter()
                .find(|s| ordinary(s) && !busy.contains(s.student_id.as_ref()) && !taken.contains(&s.student_id))
                .cloned()
                .expect("an ordinary student no province plans to move");
            taken.insert(original.student_id.clone());
            let mut copy = e2e::student(reporter, 9001 + i as u32);
            copy.name = original.name.clone();
            copy.id_document = original.id_document.clone();
            copy.registered_at = Some(Utc::now());
            let Body::IndexUpsert(upsert) = e2e::index_upsert(reporter, vec![copy.clone()]).body else {
                unreachable!()
            };
            w.submit(reporter, Body::IndexUpsert(upsert), None).await;
            said.push(format!("{reporter} reported {} again as {}", original.student_id, copy.student_id));
            self.duplicates.push(Duplicate {
                original: (holder, original.student_id.to_string()),
                copy: (reporter, copy.student_id.to_string()),
                removal_sent: false,
            });
        }
        said
    }

    fn copies(&self) -> Vec<String> {
        self.duplicates.iter().map(|d| d.copy.1.clone()).collect()
    }

    /// What is unfinished: a copy with no closed group yet, or still in the index.
    pub async fn unfinished(&self, db: &sqlx::PgPool) -> Option<Vec<(String, String, String)>> {
        sqlx::query_as(
            "SELECT 'copy ' || c, coalesce((SELECT g.state FROM problem_member m JOIN problem_group g USING (group_id)
                                            WHERE m.student_id = c ORDER BY g.opened_at DESC LIMIT 1), 'no group'),
                    coalesce((SELECT province FROM student_index WHERE student_id = c), '-')
             FROM unnest($1::text[]) c
             WHERE NOT EXISTS (SELECT 1 FROM problem_member m JOIN problem_group g USING (group_id)
                               WHERE m.student_id = c AND g.state = 'closed')
                OR EXISTS (SELECT 1 FROM student_index WHERE student_id = c)",
        )
        .bind(self.copies())
        .fetch_all(db)
        .await
        .ok()
    }

    /// The national office's part: every group of the run waiting for arbitration is decided
    /// for the original. A refusal or a hub that does not answer is tried again next time.
    pub async fn arbitrate(&mut self, moe: &e2e::Operator) -> Vec<String> {
        let (status, queue) = moe.get("/arbitrations").await;
        let Some(rows) = queue.as_array().filter(|_| status == 200) else {
            return vec![];
        };
        let mut said = vec![];
        for row in rows {
            let Some(group) = row["group"]["groupId"].as_str() else { continue };
            let members: Vec<&str> =
                row["group"]["members"].as_array().into_iter().flatten().filter_map(|m| m.as_str()).collect();
            let Some(original) = self
                .duplicates
                .iter()
                .find(|d| members.iter().any(|m| m.split(':').nth(1) == Some(d.original.1.as_str())))
            else {
                continue;
            };
            let decision = serde_json::json!({ "upheld": original.original.1, "comments": [] });
            let (status, _) = moe.post(&format!("/problems/{group}/decision"), &decision).await;
            if status == 200 {
                self.decided += 1;
                said.push(format!("national office upheld {} in group {group}", original.original.1));
            }
        }
        said
    }

    /// The copy's registrar: once the copy's group is closed, the copy leaves the index.
    /// `online` says which provinces' adapters take submissions now.
    pub async fn remove_copies(&mut self, w: &World, db: &sqlx::PgPool, online: impl Fn(&str) -> bool) -> Vec<String> {
        let closed: HashSet<String> = sqlx::query_scalar(
            "SELECT m.student_id FROM problem_member m JOIN problem_group g USING (group_id)
             WHERE m.student_id = ANY($1) AND g.state = 'closed'",
        )
        .bind(self.copies())
        .fetch_all(db)
        .await
        .map(|v: Vec<String>| v.into_iter().collect())
        .unwrap_or_default();
        let mut said = vec![];
        for d in
            self.duplicates.iter_mut().filter(|d| !d.removal_sent && closed.contains(&d.copy.1) && online(d.copy.0))
        {
            let removal = IndexRemoval { student_id: d.copy.1.parse().expect("an ID we made"), changed_at: Utc::now() };
            let body = Body::IndexRemove(IndexRemove { entry: Batch::new(vec![removal]).expect("one") });
            w.submit(d.copy.0, body, None).await;
            d.removal_sent = true;
            said.push(format!("{} removed its copy {} from the index", d.copy.0, d.copy.1));
        }
        said
    }

    /// Checks every group of the run ended as its rules say; returns what failed.
    pub async fn check(&self, db: &sqlx::PgPool) -> Vec<String> {
        let groups: Vec<(String, String, Vec<String>, i64, i64)> = sqlx::query_as(
            "SELECT g.group_id::text, g.state,
                    ARRAY(SELECT m.province || ':' || m.student_id || ':' || m.state FROM problem_member m
                          WHERE m.group_id = g.group_id ORDER BY m.ordinal),
                    (SELECT count(*) FROM problem_event e WHERE e.group_id = g.group_id AND e.what = 'decided'),
                    (SELECT count(*) FROM problem_event e WHERE e.group_id = g.group_id AND e.what = 'auto-attested')
             FROM problem_group g
             WHERE EXISTS (SELECT 1 FROM problem_member m WHERE m.group_id = g.group_id AND m.student_id = ANY($1))",
        )
        .bind(self.copies())
        .fetch_all(db)
        .await
        .expect("the groups");
        let mut wrong = vec![];
        if groups.len() != self.duplicates.len() {
            wrong.push(format!("{} groups for {} duplicates", groups.len(), self.duplicates.len()));
        }
        for d in &self.duplicates {
            let Some((id, state, members, decided, auto)) =
                groups.iter().find(|g| g.2.iter().any(|m| m.split(':').nth(1) == Some(d.copy.1.as_str())))
            else {
                wrong.push(format!("no group for the copy {}", d.copy.1));
                continue;
            };
            let (upheld, decisions, autos) = if d.arbitrated() { ("UPHELD", 1, 0) } else { ("AUTO_ATTESTED", 0, 1) };
            let mut want = BTreeMap::new();
            want.insert(format!("{}:{}", d.original.0, d.original.1), upheld);
            want.insert(format!("{}:{}", d.copy.0, d.copy.1), "DELETED");
            let got: BTreeMap<String, &str> =
                members.iter().filter_map(|m| m.rsplit_once(':')).map(|(who, state)| (who.to_owned(), state)).collect();
            if state != "closed" || got != want || (*decided, *auto) != (decisions, autos) {
                wrong.push(format!(
                    "group {id}: {state}, members {got:?} (want {want:?}), {decided} decisions and {auto} \
                     automatic attestations (want {decisions} and {autos})"
                ));
            }
        }
        wrong
    }
}
