//! A world of simulated provinces around a hub: each province admitted with its certificate,
//! its adapter running, and (unless told otherwise) its simulated provincial system answering
//! the hub — all as real processes.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use schemas::ids::{ProvinceCode, SchoolCode};
use schemas::messages::{Application, Attachment, Body, EnrollmentPermit, EnrollmentPermitted, StudentSummary, UpTo};
use schemas::{CaseId, Envelope, MessageId, Party, codec};

use crate::{AdapterProc, Creds, Options, TestBed, eventually};

/// How to build the world.
#[derive(Debug, Clone)]
pub struct WorldOptions {
    pub provinces: Vec<&'static str>,
    pub students: usize,
    pub seed: u64,
    pub bed: Options,
    /// Provinces whose provincial system is not running (an offline or silent province).
    pub silent: Vec<&'static str>,
    /// Extra arguments for every simulated provincial system.
    pub sim_args: Vec<String>,
    /// Extra arguments for one province's system.
    pub province_args: Vec<(&'static str, Vec<String>)>,
}

impl Default for WorldOptions {
    fn default() -> Self {
        WorldOptions {
            provinces: vec!["37", "51"],
            students: 120,
            seed: 7,
            bed: Options::default(),
            silent: vec![],
            sim_args: vec![],
            province_args: vec![],
        }
    }
}

/// One province of the world.
pub struct ProvinceSide {
    pub code: &'static str,
    pub creds: Creds,
    pub adapter: AdapterProc,
    pub students: Vec<StudentSummary>,
    pub schools: Vec<SchoolCode>,
    /// The simulated provincial system's database.
    pub data: PathBuf,
}

pub struct World {
    pub bed: TestBed,
    pub provinces: Vec<ProvinceSide>,
    pub opts: WorldOptions,
}

impl World {
    /// Builds the world and waits until every province's students are in the national index.
    pub async fn new(opts: WorldOptions) -> World {
        let bed = TestBed::with(opts.bed.clone()).await;
        let counts: Vec<(&str, usize)> = opts.provinces.iter().map(|p| (*p, opts.students)).collect();
        bed.register_schools(&counts, opts.seed).await;
        bed.spawn_hub("hub").await;
        let mut provinces = Vec::new();
        for code in &opts.provinces {
            let creds = bed.add_province(code).await;
            let adapter = bed.spawn_adapter(&format!("adapter-{code}"), &creds, &[]).await;
            let generated =
                adapters::simulate::data::generate(code.parse().expect("province"), opts.students, opts.seed);
            let data = bed.dir.path().join(format!("province-{code}.db"));
            provinces.push(ProvinceSide {
                code,
                creds,
                adapter,
                students: generated.students,
                schools: generated.schools.into_iter().map(|s| s.code).collect(),
                data,
            });
        }
        let world = World { bed, provinces, opts };
        for p in &world.provinces {
            if !world.opts.silent.contains(&p.code) {
                world.start_province(p.code);
            }
        }
        let expected = (world.provinces.len() - world.opts.silent.len()) * world.opts.students;
        let pool = world.bed.db().await;
        eventually("every running province's students in the national index", Duration::from_secs(60), || {
            let pool = pool.clone();
            async move {
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM student_index").fetch_one(&pool).await.ok()?;
                (n as usize >= expected).then_some(())
            }
        })
        .await;
        world
    }

    /// Personal data found in the logs of the hub and the adapters (`*.log` in the test
    /// directory) and in their metrics (`/metrics` as served now): each province's students'
    /// names, national student IDs and ID-document numbers, searched in every one. Returns
    /// (source, what was found) — which kind and whose, never the value — and how many sources
    /// and bytes were searched.
    pub async fn personal_data_in_logs_and_metrics(&self) -> (Vec<(String, String)>, usize, usize) {
        let mut logs = Vec::new();
        for entry in std::fs::read_dir(self.bed.dir.path()).expect("the test directory").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".log") && !name.starts_with("province-") {
                logs.push((name, std::fs::read_to_string(entry.path()).unwrap_or_default()));
            }
        }
        let mut metrics = vec![("hub metrics".to_owned(), format!("http://{}/metrics", self.bed.settings.http.listen))];
        for p in &self.provinces {
            metrics.push((format!("{} metrics", p.adapter.name), p.adapter.url("/metrics")));
        }
        for (name, url) in metrics {
            let text = reqwest::get(&url).await.expect("metrics served").text().await.expect("metrics text");
            assert!(text.contains("# HELP"), "{name}: {url} serves metrics");
            logs.push((name, text));
        }
        let bytes = logs.iter().map(|(_, text)| text.len()).sum();
        let mut found = Vec::new();
        for p in &self.provinces {
            for (n, st) in p.students.iter().enumerate() {
                let document = st.id_document.number().map(str::to_owned);
                let values = [
                    ("name", Some(st.name.to_string())),
                    ("student ID", Some(st.student_id.to_string())),
                    ("document", document),
                ];
                for (kind, value) in values {
                    let Some(value) = value else { continue };
                    for (log, text) in &logs {
                        if text.contains(&value) {
                            found.push((log.clone(), format!("the {kind} of student {n} of {}", p.code)));
                        }
                    }
                }
            }
        }
        (found, logs.len(), bytes)
    }

    pub fn province(&self, code: &str) -> &ProvinceSide {
        self.provinces.iter().find(|p| p.code == code).expect("a province of the world")
    }

    /// Starts (or restarts) a province's simulated provincial system; its output goes to
    /// `province-<code>.out` in the test directory.
    pub fn start_province(&self, code: &str) {
        let own: Vec<String> =
            self.opts.province_args.iter().filter(|(c, _)| *c == code).flat_map(|(_, a)| a.clone()).collect();
        self.start_province_with(code, &own);
    }

    /// Starts a province's simulated system with these extra arguments (after the common ones).
    pub fn start_province_with(&self, code: &str, extra: &[String]) {
        let p = self.province(code);
        let peers: Vec<String> = self
            .provinces
            .iter()
            .filter(|o| o.code != code)
            .flat_map(|o| ["--peer".to_owned(), o.code.to_owned()])
            .collect();
        let mut args: Vec<String> = vec![
            "--province".into(),
            code.into(),
            "--students".into(),
            self.opts.students.to_string(),
            "--peer-students".into(),
            self.opts.students.to_string(),
            "--seed".into(),
            self.opts.seed.to_string(),
        ];
        args.extend(peers);
        args.extend(self.opts.sim_args.iter().cloned());
        args.extend(extra.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.bed.spawn_simulator(&format!("province-{code}"), &p.adapter, &refs);
        let path = self.bed.dir.path().join(format!("province-{code}.out"));
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("output file");
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
            }
        });
    }

    /// Stops a province's simulated provincial system (its adapter keeps everything).
    pub fn stop_province(&self, code: &str) {
        self.bed.kill(&format!("province-{code}"));
    }

    /// A province goes dark: its system and its adapter stop.
    pub fn go_dark(&self, code: &str) {
        self.stop_province(code);
        self.take_offline(code);
    }

    /// A province comes back: its adapter, then its system (with `extra` arguments).
    pub async fn come_back(&self, code: &str, extra: &[String]) {
        self.bring_online(code).await;
        self.start_province_with(code, extra);
    }

    /// Waits until a case waits on `party` (e.g. `prov-51`) at `step` (e.g. `OUT_SCHOOL`).
    pub async fn until_waiting(&self, case: CaseId, party: &str, step: Option<&str>, timeout: Duration) {
        let pool = self.bed.db().await;
        let (party, step) = (party.to_owned(), step.map(str::to_owned));
        eventually(&format!("case {case} waiting on {party} {step:?}"), timeout, || {
            let (pool, party, step) = (pool.clone(), party.clone(), step.clone());
            async move {
                let (p, s): (Option<String>, Option<String>) =
                    sqlx::query_as("SELECT waiting_party, waiting_step FROM business_case WHERE case_id = $1")
                        .bind(case.uuid())
                        .fetch_one(&pool)
                        .await
                        .ok()?;
                (p.as_deref() == Some(party.as_str()) && s == step).then_some(())
            }
        })
        .await;
    }

    /// An outage of province `dark` while `case` is in `stage`: the case stays there (the hub
    /// resends meanwhile) with the student still in `from` only; once the province is back the
    /// case completes with the student in `to` only. (Needs a short `resend_after_secs`.)
    pub async fn waits_out_an_outage(
        &self,
        case: CaseId,
        dark: &str,
        stage: &str,
        student: &str,
        (from, to): (&str, &str),
    ) {
        let timeout = Duration::from_secs(90);
        self.until_state(case, &[stage], timeout).await;
        self.go_dark(dark);
        // The hub resends meanwhile, unanswered, and the case stays where it is.
        let pool = self.bed.db().await;
        let attempts = || {
            let pool = pool.clone();
            async move {
                sqlx::query_as::<_, (i32, String)>("SELECT attempts, state FROM business_case WHERE case_id = $1")
                    .bind(case.uuid())
                    .fetch_one(&pool)
                    .await
                    .expect("the case")
            }
        };
        let (before, _) = attempts().await;
        eventually(&format!("{stage}: resent while {dark} is dark"), timeout, || async {
            let (now, state) = attempts().await;
            assert_eq!(state, stage, "the case waits while {dark} is dark");
            (now > before).then_some(())
        })
        .await;
        assert_eq!(self.present_in(student).await, vec![from.to_owned()], "{stage}: the student stays meanwhile");
        self.come_back(dark, &[]).await;
        self.until_state(case, &["COMPLETED"], timeout).await;
        assert_eq!(self.present_in(student).await, vec![to.to_owned()], "{stage}: in exactly one province");
    }

    /// SIGKILLs the hub process `running` once `case` reaches `stage`, checks the student is
    /// never missing from both provinces while it is down and the provinces go on, starts the
    /// hub again as `next`, and checks the case completes with the student in `in_province`
    /// only.
    pub async fn survives_the_hub_killed(
        &self,
        case: CaseId,
        stage: &str,
        student: &str,
        in_province: &str,
        (running, next): (&str, &str),
    ) {
        let timeout = Duration::from_secs(90);
        self.until_state(case, &[stage], timeout).await;
        self.bed.kill(running);
        assert!(!self.present_in(student).await.is_empty(), "{stage}: never missing from both provinces");
        tokio::time::sleep(Duration::from_secs(3)).await; // the provinces go on meanwhile
        assert!(!self.present_in(student).await.is_empty(), "{stage}: never missing from both provinces");
        self.bed.spawn_hub(next).await;
        self.until_state(case, &["COMPLETED"], timeout).await;
        assert_eq!(self.present_in(student).await, vec![in_province.to_owned()], "{stage}: in exactly one province");
    }

    /// Stops a province's adapter: the province is offline.
    pub fn take_offline(&self, code: &str) {
        self.bed.kill(&format!("adapter-{code}"));
    }

    /// Brings a province's adapter back.
    pub async fn bring_online(&self, code: &str) {
        let p = self.province(code);
        self.bed.start_adapter(&p.adapter, &[]);
        let url = p.adapter.url("/healthz");
        eventually("adapter back", Duration::from_secs(30), || {
            let url = url.clone();
            async move { reqwest::get(&url).await.ok().filter(|r| r.status().is_success()).map(|_| ()) }
        })
        .await;
    }

    /// A student of `province` matching `pred`.
    pub fn student(&self, province: &str, pred: impl Fn(&StudentSummary) -> bool) -> StudentSummary {
        self.province(province)
            .students
            .iter()
            .find(|s| pred(s))
            .cloned()
            .expect("a generated student matching the test's needs")
    }

    /// The application of `to` for `student`, into its first school.
    pub fn application(&self, to: &str, student: &StudentSummary) -> Application {
        let evidence = Attachment::new(
            "户籍证明.pdf".parse().expect("name"),
            "application/pdf".parse().expect("type"),
            b"%PDF-1.4".to_vec(),
        );
        Application {
            school: self.province(to).schools[0].clone(),
            student_name: student.name.clone(),
            student_id: student.student_id.clone(),
            target_grade: student.grade,
            reason: "随父母迁居。".parse().expect("text"),
            evidence: UpTo::new(vec![evidence]).expect("one"),
        }
    }

    /// Submits a body from a province through its adapter (as its provincial system would).
    pub async fn submit(&self, from: &str, body: Body, case: Option<CaseId>) -> MessageId {
        let mut env = Envelope::new(Party::Province(from.parse::<ProvinceCode>().expect("province")), Party::Hub, body);
        env.case_id = case;
        let (status, answer) = self.province(from).adapter.submit(&env).await;
        assert!(status == 202 || status == 200, "submission refused: {status} {answer}");
        env.message_id
    }

    /// Applies for a transfer of `student` into province `to`; returns the application's id.
    pub async fn apply(&self, to: &str, student: &StudentSummary) -> MessageId {
        let app = self.application(to, student);
        self.submit(to, Body::TransferApply(app), None).await
    }

    /// The enrollment application of `to`'s first school for a junior-high graduate of another
    /// province, into the first senior-high grade, with the admission letter as evidence.
    pub fn enrollment(&self, to: &str, student: &StudentSummary) -> Application {
        let letter = Attachment::new(
            "录取通知书.jpg".parse().expect("name"),
            "image/jpeg".parse().expect("type"),
            b"\xff\xd8\xff\xe0 admission letter".to_vec(),
        );
        Application {
            school: self.province(to).schools[0].clone(),
            student_name: student.name.clone(),
            student_id: student.student_id.clone(),
            target_grade: "31".parse().expect("grade"),
            reason: "已被本校录取,中考成绩附后。".parse().expect("text"),
            evidence: UpTo::new(vec![letter]).expect("one"),
        }
    }

    /// Applies for the enrollment of `student` by a school of `to`; returns the application's id.
    pub async fn enroll(&self, to: &str, student: &StudentSummary) -> MessageId {
        let app = self.enrollment(to, student);
        self.submit(to, Body::EnrollmentApply(app), None).await
    }

    /// A province grants and revokes its schools' enrollment permission; returns the hub's answer.
    pub async fn permit(&self, province: &str, grant: &[SchoolCode], revoke: &[SchoolCode]) -> EnrollmentPermitted {
        let body = Body::EnrollmentPermit(EnrollmentPermit { grant: grant.to_vec(), revoke: revoke.to_vec() });
        let id = self.submit(province, body, None).await;
        match self.answer(province, id, "enrollment.permitted").await {
            Body::EnrollmentPermitted(p) => p,
            other => panic!("not enrollment.permitted: {other:?}"),
        }
    }

    /// The hub's answer of `message_type` to a message `from` sent, from its adapter's inbox.
    pub async fn answer(&self, from: &str, message: MessageId, message_type: &str) -> Body {
        let store = self.province(from).adapter.store().await;
        let body: Vec<u8> =
            eventually(&format!("a {message_type} answering {message}"), Duration::from_secs(30), || {
                let store = store.clone();
                async move {
                    sqlx::query_scalar("SELECT body FROM inbox WHERE correlation_id = ? AND message_type = ?")
                        .bind(message.to_string())
                        .bind(message_type)
                        .fetch_optional(&store)
                        .await
                        .ok()
                        .flatten()
                }
            })
            .await;
        codec::from_xml(&body, schemas::DEFAULT_MAX_BYTES).expect("valid").body
    }

    /// The case opened by an application, once it exists.
    pub async fn case_of(&self, application: MessageId) -> CaseId {
        let pool = self.bed.db().await;
        let id = eventually("the case opened", Duration::from_secs(30), || {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, uuid::Uuid>("SELECT case_id FROM business_case WHERE application_id = $1")
                    .bind(application.uuid())
                    .fetch_optional(&pool)
                    .await
                    .ok()
                    .flatten()
            }
        })
        .await;
        CaseId::from_uuid(id)
    }

    /// Waits until a case reaches one of `states` (CaseState names such as `COMPLETED`).
    pub async fn until_state(&self, case: CaseId, states: &[&str], timeout: Duration) -> String {
        let pool = self.bed.db().await;
        let states: Vec<String> = states.iter().map(|s| s.to_string()).collect();
        eventually(&format!("case {case} in {states:?}"), timeout, || {
            let (pool, states) = (pool.clone(), states.clone());
            async move {
                let s: String = sqlx::query_scalar("SELECT state FROM business_case WHERE case_id = $1")
                    .bind(case.uuid())
                    .fetch_one(&pool)
                    .await
                    .ok()?;
                states.contains(&s).then_some(s)
            }
        })
        .await
    }

    /// A case's review decisions in order: (step, province, decision).
    pub async fn decisions(&self, case: CaseId) -> Vec<(String, String, String)> {
        sqlx::query_as("SELECT step, province, decision FROM case_step WHERE case_id = $1 ORDER BY seq")
            .bind(case.uuid())
            .fetch_all(&self.bed.db().await)
            .await
            .expect("the case's decisions")
    }

    /// The refusal code the hub answered an application (or any message) with, from the
    /// sender's adapter inbox.
    pub async fn refusal(&self, from: &str, message: MessageId) -> String {
        match self.answer(from, message, "error").await {
            Body::Error(e) => e.code.code().to_owned(),
            other => panic!("not an error: {other:?}"),
        }
    }

    /// The code a closed case carries (`case.closed`), from the initiator's adapter inbox.
    pub async fn closing_code(&self, from: &str, case: CaseId) -> Option<String> {
        self.closing(from, case).await.code.map(|k| k.code().to_owned())
    }

    /// The `case.closed` a province received, from its adapter's inbox.
    pub async fn closing(&self, from: &str, case: CaseId) -> schemas::messages::CaseClosed {
        let store = self.province(from).adapter.store().await;
        let body: Vec<u8> = eventually(&format!("case.closed of {case}"), Duration::from_secs(60), || {
            let store = store.clone();
            async move {
                sqlx::query_scalar("SELECT body FROM inbox WHERE case_id = ? AND message_type = 'case.closed'")
                    .bind(case.to_string())
                    .fetch_optional(&store)
                    .await
                    .ok()
                    .flatten()
            }
        })
        .await;
        match codec::from_xml(&body, schemas::DEFAULT_MAX_BYTES).expect("valid").body {
            Body::CaseClosed(c) => c,
            other => panic!("not case.closed: {other:?}"),
        }
    }

    /// Where a student's record is, in each simulated province: (province, held by case,
    /// transferred out by case, transferred in by case).
    pub async fn whereabouts(&self, student_id: &str) -> Vec<(String, Option<String>, Option<String>, Option<String>)> {
        let mut out = Vec::new();
        for p in &self.provinces {
            if !p.data.exists() {
                continue; // a silent province whose system never ran
            }
            let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&p.data).read_only(true);
            let pool = sqlx::SqlitePool::connect_with(opts).await.expect("the province's database");
            let row: Option<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT held_for_case, transferred_out_case, transferred_in_case FROM student WHERE student_id = ?",
            )
            .bind(student_id)
            .fetch_optional(&pool)
            .await
            .expect("the province's students");
            pool.close().await;
            if let Some((held, out_case, in_case)) = row {
                out.push((p.code.to_owned(), held, out_case, in_case));
            }
        }
        out
    }

    /// The provinces where the student is present and not transferred out: exactly one, always.
    pub async fn present_in(&self, student_id: &str) -> Vec<String> {
        self.whereabouts(student_id).await.into_iter().filter(|(_, _, out, _)| out.is_none()).map(|(p, ..)| p).collect()
    }

    /// Every student any province's own database holds, with the provinces that hold them now
    /// (a record transferred out does not count): each should be in exactly one.
    pub async fn holders(&self) -> std::collections::HashMap<String, Vec<&'static str>> {
        let mut present: std::collections::HashMap<String, Vec<&'static str>> = std::collections::HashMap::new();
        for p in &self.provinces {
            let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&p.data).read_only(true);
            let pool = sqlx::SqlitePool::connect_with(opts).await.expect("the province's database");
            let rows: Vec<(String, Option<String>)> =
                sqlx::query_as("SELECT student_id, transferred_out_case FROM student").fetch_all(&pool).await.unwrap();
            pool.close().await;
            for (id, out) in rows {
                let entry = present.entry(id).or_default();
                if out.is_none() {
                    entry.push(p.code);
                }
            }
        }
        present
    }

    /// Closings and acceptances some adapter handed to its provincial system more than once:
    /// (province, (type, case or application, times)).
    pub async fn handed_over_twice(&self) -> Vec<(&'static str, (String, String, i64))> {
        let mut doubled = vec![];
        for p in &self.provinces {
            let store = p.adapter.store().await;
            let twice: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT message_type, coalesce(case_id, correlation_id), count(*) FROM inbox
                 WHERE message_type IN ('case.closed', 'case.accepted') GROUP BY 1, 2 HAVING count(*) > 1",
            )
            .fetch_all(&store)
            .await
            .unwrap();
            doubled.extend(twice.into_iter().map(|t| (p.code, t)));
        }
        doubled
    }
}

/// Arguments for a simulated provincial system.
pub fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// A test bed whose hub resends unanswered requests after two seconds.
pub fn quick_resends() -> Options {
    Options { extra_toml: "[cases]\nresend_after_secs = 2\n".into(), ..Default::default() }
}

/// An approving review decision at `step`, as a reviewer of the test sends it.
pub fn decide(step: &str) -> Body {
    use schemas::messages::{Decision, ReviewDecision};
    Body::ReviewDecision(ReviewDecision {
        step: step.parse().expect("a step"),
        decision: Decision::Approve,
        unit: "测试单位".parse().expect("text"),
        reviewer: "测试".parse().expect("text"),
        opinion: "同意".parse().expect("text"),
    })
}

/// The initiator's cancellation.
pub fn cancel(reason: &str) -> Body {
    Body::CaseCancel(schemas::messages::CaseCancel { reason: reason.parse().expect("text") })
}
