//! Every admission and verification rule of transfers and enrollments (domain.md §B.1, §B.2),
//! in process: the hub's message handling against a real PostgreSQL database, no broker, no
//! spawned processes.

use chrono::{Duration, Utc};
use e2e::inprocess::{Hub, Sent};
use e2e::student;
use schemas::messages::{
    Application, Attachment, Base64Data, Body, CaseCancel, CaseReleased, Decision, EnrollmentPermit, HeldStudent,
    LookupKey, LookupRequest, ReviewDecision, StudentStatus, StudentSummary, UpTo, VerifyResult,
};
use schemas::{CaseId, MessageType, Party, samples};

/// The receiving school in 37, and the student's in 51 (as `e2e::student` places him).
const IN_SCHOOL: &str = "3137000001";

async fn hub() -> Hub {
    let hub = Hub::new(&["37", "44", "51"], "").await;
    let schools: Vec<String> = (0..7).map(|n| format!("3151{n:06}")).chain([IN_SCHOOL.to_owned()]).collect();
    let rows: Vec<(&str, &str, bool, Option<chrono::DateTime<Utc>>)> =
        schools.iter().map(|c| (c.as_str(), &c[2..4], true, None)).collect();
    hub.schools(&rows).await;
    hub
}

fn pdf(name: &str, bytes: usize) -> Attachment {
    let mut content = b"%PDF-1.4".to_vec();
    content.resize(bytes.max(8), b'.');
    Attachment::new(name.parse().unwrap(), "application/pdf".parse().unwrap(), content)
}

fn application(s: &StudentSummary) -> Application {
    Application {
        school: IN_SCHOOL.parse().unwrap(),
        student_name: s.name.clone(),
        student_id: s.student_id.clone(),
        target_grade: s.grade,
        reason: "随父母迁居。".parse().unwrap(),
        evidence: UpTo::new(vec![pdf("户籍证明.pdf", 64)]).unwrap(),
    }
}

async fn apply(hub: &Hub, app: Application) -> Sent {
    hub.send("37", Body::TransferApply(app), None).await
}

/// An indexed student of 51, as `tune` makes him.
async fn indexed(hub: &Hub, n: u32, tune: impl FnOnce(&mut StudentSummary)) -> StudentSummary {
    let mut s = student("51", n);
    tune(&mut s);
    hub.index("51", vec![s.clone()]).await;
    s
}

#[tokio::test]
async fn an_application_is_refused_by_every_rule_it_breaks() {
    let hub = hub().await;
    let s = indexed(&hub, 1, |_| {}).await;
    hub.schools(&[("3137999998", "37", true, Some(Utc::now() + Duration::days(1))), ("3137999997", "37", false, None)])
        .await;

    let with_school = |code: &str| Application { school: code.parse().unwrap(), ..application(&s) };
    let cases: Vec<(&str, Application, &str)> = vec![
        ("not in the national index", application(&student("51", 999)), "E_STUDENT_NOT_FOUND"),
        ("a school the registry does not know", with_school("3137999999"), "E_SCHOOL_UNKNOWN"),
        ("a school whose code is not usable yet", with_school("3137999998"), "E_SCHOOL_NO_CODE"),
        ("a revoked school", with_school("3137999997"), "E_SCHOOL_UNKNOWN"),
        ("another province's school", with_school("3151000001"), "E_SCHOOL_UNKNOWN"),
    ];
    for (what, app, code) in cases {
        assert_eq!(apply(&hub, app).await.refusal(), Some(code), "{what}");
    }
    // Evidence: two of one name, not matching its digest, too large, of a type not accepted.
    let evidence = |files: Vec<Attachment>| Application { evidence: UpTo::new(files).unwrap(), ..application(&s) };
    let mut forged = pdf("证明.pdf", 64);
    forged.content = Base64Data::new(b"something else".to_vec());
    let text = Attachment::new("说明.txt".parse().unwrap(), "text/plain".parse().unwrap(), b"hi".to_vec());
    let cases: Vec<(&str, Application, &str)> = vec![
        ("two files of one name", evidence(vec![pdf("a.pdf", 9), pdf("a.pdf", 9)]), "E_SCHEMA"),
        ("a forged digest", evidence(vec![forged]), "E_ATTACHMENT_DIGEST"),
        ("over 1 MB", evidence(vec![pdf("大.pdf", 1024 * 1024 + 1)]), "E_ATTACHMENT_TOO_LARGE"),
        ("plain text", evidence(vec![text]), "E_ATTACHMENT_TYPE"),
    ];
    for (what, app, code) in cases {
        let sent = apply(&hub, app).await;
        assert_eq!(sent.refusal(), Some(code), "{what}");
        let Body::Error(e) = &sent.replies[0].body else { unreachable!() };
        assert!(e.offending_message_id.is_some(), "{what}: the refusal names the application");
    }
    // The student's own province, and a student whose current school is unknown.
    let own = student("37", 5);
    hub.index("37", vec![own.clone()]).await;
    assert_eq!(apply(&hub, application(&own)).await.refusal(), Some("E_SAME_PROVINCE"));
    let moved = indexed(&hub, 2, |s| s.school = "3151999999".parse().unwrap()).await;
    assert_eq!(apply(&hub, application(&moved)).await.refusal(), Some("E_SCHOOL_UNKNOWN"), "the current school");
    // None of these opened a case.
    let cases: i64 = sqlx::query_scalar("SELECT count(*) FROM business_case").fetch_one(&hub.pool).await.unwrap();
    assert_eq!(cases, 0);
}

fn case_of(sent: &Sent) -> CaseId {
    assert_eq!(sent.replies[0].message_type(), MessageType::CaseAccepted, "{sent:?}");
    sent.replies[0].case_id.expect("a case id")
}

fn held(s: &StudentSummary, status: StudentStatus) -> VerifyResult {
    let Body::VerifyResult(VerifyResult::Held(h)) = samples::body(MessageType::VerifyResult) else { unreachable!() };
    VerifyResult::Held(HeldStudent { status, school: s.school.clone(), grade: s.grade, ..h })
}

#[tokio::test]
async fn one_open_business_per_student_and_a_cancel_holds_him_until_released() {
    let hub = hub().await;
    let s = indexed(&hub, 1, |_| {}).await;
    let case = case_of(&apply(&hub, application(&s)).await);
    assert_eq!(apply(&hub, application(&s)).await.refusal(), Some("E_IN_FLIGHT"));
    // Verified, then cancelled while under review: until 51 releases him, he stays busy.
    hub.send("51", Body::VerifyResult(held(&s, StudentStatus::Enrolled)), Some(case)).await;
    let cancel = Body::CaseCancel(CaseCancel { reason: "家长决定不转学。".parse().unwrap() });
    hub.send("37", cancel, Some(case)).await;
    let refused = apply(&hub, application(&s)).await;
    assert_eq!(refused.refusal(), Some("E_IN_FLIGHT"));
    let Body::Error(e) = &refused.replies[0].body else { unreachable!() };
    assert!(e.detail.as_deref().is_some_and(|d| d.contains("cancelled")), "{e:?}");
    // The lookup says so too, from the same register.
    let lookup = Body::LookupRequest(LookupRequest {
        name: s.name.clone(),
        key: LookupKey::StudentId(s.student_id.clone()),
        requested_by: None,
    });
    let found = hub.send("37", lookup.clone(), None).await;
    let Body::LookupResult(r) = &found.replies[0].body else { panic!("{found:?}") };
    assert!(r.student.as_ref().is_some_and(|m| m.reason.contains(&schemas::ErrorCode::InFlight)), "{r:?}");
    hub.send("51", Body::CaseReleased(CaseReleased {}), Some(case)).await;
    assert!(matches!(apply(&hub, application(&s)).await.replies[0].body, Body::CaseAccepted(_)), "free again");
}

#[tokio::test]
async fn verification_refuses_what_the_student_s_record_does_not_allow() {
    let hub = hub().await;
    let cases = [
        ("suspended", StudentStatus::Suspended, "E_STATUS_INELIGIBLE", "复学"),
        ("deceased", StudentStatus::Deceased, "E_STATUS_INELIGIBLE", "恢复在校生"),
        ("a junior-high graduate transfers no more", StudentStatus::JuniorGraduate, "E_WRONG_STAGE", "毕业后跨省就学"),
    ];
    for (n, (what, status, code, advice)) in cases.into_iter().enumerate() {
        let s = indexed(&hub, 10 + n as u32, |_| {}).await;
        let case = case_of(&apply(&hub, application(&s)).await);
        let sent = hub.send("51", Body::VerifyResult(held(&s, status)), Some(case)).await;
        assert_eq!(sent.to("51").iter().map(|e| e.message_type()).collect::<Vec<_>>()[0], MessageType::CaseRelease);
        let closed = hub.send("51", Body::CaseReleased(CaseReleased {}), Some(case)).await;
        let to_37 = closed.to("37");
        let Some(Body::CaseClosed(c)) = to_37.iter().map(|e| &e.body).find(|b| matches!(b, Body::CaseClosed(_))) else {
            panic!("{what}: {closed:?}")
        };
        assert_eq!(c.code.map(|k| k.code()), Some(code), "{what}");
        let remark = c.remark.as_ref().map(|r| r.to_string()).unwrap_or_default();
        assert!(remark.contains(advice), "{what}: {remark}");
    }
    // The out-province refuses (a problem record, not found): the case closes with its code.
    for (n, code) in [schemas::ErrorCode::ProblemRecord, schemas::ErrorCode::StudentNotFound].into_iter().enumerate() {
        let s = indexed(&hub, 20 + n as u32, |_| {}).await;
        let case = case_of(&apply(&hub, application(&s)).await);
        let refusal = VerifyResult::Refused(schemas::messages::Refusal { code, remark: None });
        let sent = hub.send("51", Body::VerifyResult(refusal), Some(case)).await;
        let closing = sent.to("37").into_iter().find_map(|e| match &e.body {
            Body::CaseClosed(c) => c.code,
            _ => None,
        });
        assert_eq!(closing, Some(code));
    }
}

#[tokio::test]
async fn an_enrollment_needs_permission_evidence_and_a_junior_high_graduate() {
    let hub = hub().await;
    let graduate = indexed(&hub, 1, |s| s.status = StudentStatus::JuniorGraduate).await;
    let jpeg =
        Attachment::new("录取通知书.jpg".parse().unwrap(), "image/jpeg".parse().unwrap(), b"\xff\xd8jpeg".to_vec());
    let enroll = |s: &StudentSummary, evidence: Vec<Attachment>| {
        Body::EnrollmentApply(Application {
            target_grade: "31".parse().unwrap(),
            evidence: UpTo::new(evidence).unwrap(),
            ..application(s)
        })
    };
    let no_evidence = hub.send("37", enroll(&graduate, vec![]), None).await;
    assert_eq!(no_evidence.refusal(), Some("E_EVIDENCE_MISSING"));
    assert_eq!(hub.send("37", enroll(&graduate, vec![jpeg.clone()]), None).await.refusal(), Some("E_NOT_PERMITTED"));
    let permit = EnrollmentPermit { grant: vec![IN_SCHOOL.parse().unwrap()], revoke: vec![] };
    hub.send("37", Body::EnrollmentPermit(permit), None).await;
    // A PDF is not the image an enrollment's evidence must be ([002 §19]).
    let pdf_only = hub.send("37", enroll(&graduate, vec![pdf("成绩.pdf", 64)]), None).await;
    assert_eq!(pdf_only.refusal(), Some("E_ATTACHMENT_TYPE"));
    let sent = hub.send("37", enroll(&graduate, vec![jpeg.clone()]), None).await;
    let case = case_of(&sent);
    hub.send("51", Body::VerifyResult(held(&graduate, StudentStatus::JuniorGraduate)), Some(case)).await;
    assert_eq!(state(&hub, case).await, "UNDER_REVIEW");
    // Someone still at school is refused at verification.
    let pupil = indexed(&hub, 2, |_| {}).await;
    let case = case_of(&hub.send("37", enroll(&pupil, vec![jpeg]), None).await);
    let sent = hub.send("51", Body::VerifyResult(held(&pupil, StudentStatus::Enrolled)), Some(case)).await;
    assert_eq!(sent.to("51")[0].message_type(), MessageType::CaseRelease, "refused: the hold is released first");
}

/// An approval of `step`, as a reviewer sends it.
fn approve(step: schemas::messages::ReviewStep) -> Body {
    Body::ReviewDecision(ReviewDecision {
        step,
        decision: Decision::Approve,
        unit: "某校".parse().unwrap(),
        reviewer: "审核人".parse().unwrap(),
        opinion: "同意。".parse().unwrap(),
    })
}

#[tokio::test]
async fn decisions_come_from_the_acting_province_for_the_pending_step_only() {
    let hub = hub().await;
    let s = indexed(&hub, 1, |_| {}).await;
    let case = case_of(&apply(&hub, application(&s)).await);
    hub.send("51", Body::VerifyResult(held(&s, StudentStatus::Enrolled)), Some(case)).await;
    let decide = |step: &str| approve(step.parse().unwrap());
    assert_eq!(hub.send("51", decide("IN_SCHOOL"), Some(case)).await.refusal(), Some("E_NOT_YOUR_STEP"));
    assert_eq!(hub.send("37", decide("OUT_SCHOOL"), Some(case)).await.refusal(), Some("E_NOT_YOUR_STEP"));
    assert_eq!(hub.send("44", decide("IN_SCHOOL"), Some(case)).await.refusal(), Some("E_NOT_YOUR_STEP"), "no party");
    let next = hub.send("37", decide("IN_SCHOOL"), Some(case)).await;
    assert!(next.refusal().is_none(), "{next:?}");
    assert!(next.to("37").iter().any(|e| e.message_type() == MessageType::ReviewRequest), "the next step is 37's");
}

/// The case's stored state, by id.
async fn state(hub: &Hub, case: CaseId) -> String {
    sqlx::query_scalar("SELECT state FROM business_case WHERE case_id = $1")
        .bind(case.uuid())
        .fetch_one(&hub.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_statuses_of_002_transfer_and_a_province_may_narrow_them() {
    // 51 keeps the national list; 44 lets only students at school (在校) leave.
    let hub = Hub::new(&["37", "44", "51"], "[provinces.\"44\"]\ntransfer_statuses = [\"ENROLLED\"]\n").await;
    let schools =
        [IN_SCHOOL, "3151000001", "3151000002", "3151000003", "3151000004", "3151000005", "3151000006", "3144000001"];
    let rows: Vec<_> = schools.iter().map(|c| (*c, &c[2..4], true, None)).collect();
    hub.schools(&rows).await;
    use StudentStatus::*;
    for (n, status) in [Enrolled, OtherDeparture, Abroad, Withdrawn, Expelled, PrimaryGraduate].into_iter().enumerate()
    {
        let s = indexed(&hub, 1 + n as u32, |_| {}).await;
        let case = case_of(&apply(&hub, application(&s)).await);
        hub.send("51", Body::VerifyResult(held(&s, status)), Some(case)).await;
        assert_eq!(state(&hub, case).await, "UNDER_REVIEW", "{status:?} may transfer ([002 §18])");
    }
    let mut s = student("44", 1);
    s.school = "3144000001".parse().unwrap();
    hub.index("44", vec![s.clone()]).await;
    let case = case_of(&apply(&hub, application(&s)).await);
    let sent = hub.send("44", Body::VerifyResult(held(&s, Abroad)), Some(case)).await;
    assert_eq!(sent.to("44")[0].message_type(), MessageType::CaseRelease, "44 narrowed its list: {sent:?}");
}

#[tokio::test]
async fn a_student_his_province_says_it_does_not_hold_is_refused_until_reported_again() {
    let hub = hub().await;
    let s = indexed(&hub, 1, |_| {}).await;
    let case = case_of(&apply(&hub, application(&s)).await);
    let refusal =
        VerifyResult::Refused(schemas::messages::Refusal { code: schemas::ErrorCode::StudentNotFound, remark: None });
    hub.send("51", Body::VerifyResult(refusal), Some(case)).await;
    let again = apply(&hub, application(&s)).await;
    assert_eq!(again.refusal(), Some("E_STUDENT_NOT_FOUND"));
    let Body::Error(e) = &again.replies[0].body else { unreachable!() };
    assert!(e.detail.as_deref().is_some_and(|d| d.contains("reported")), "{e:?}");
    // The province reports him again ([003 Q38]: sync lag): he may apply.
    hub.index("51", vec![s.clone()]).await;
    assert!(matches!(apply(&hub, application(&s)).await.replies[0].body, Body::CaseAccepted(_)));
}

#[tokio::test]
async fn a_case_s_detail_lists_its_messages_and_the_refusal_that_stalls_it() {
    let hub = hub().await;
    let s = indexed(&hub, 1, |_| {}).await;
    let applied = apply(&hub, application(&s)).await;
    let case = case_of(&applied);
    // 51's certificate is revoked: its verification is dead-lettered, and the case waits.
    sqlx::query("UPDATE certificate SET revoked_at = now() WHERE principal = 'prov-51'")
        .execute(&hub.pool)
        .await
        .unwrap();
    let sent = hub.send("51", Body::VerifyResult(held(&s, StudentStatus::Enrolled)), Some(case)).await;
    assert!(matches!(sent.handled, hub::service::Handled::Poison(schemas::ErrorCode::Revoked)), "{sent:?}");

    let (status, detail) = hub.ops(certs::Role::Operator("zhang".into()), "GET", &format!("/cases/{case}"), None).await;
    assert_eq!(status, 200, "{detail}");
    let messages = detail["messages"].as_array().expect("messages");
    let kinds: Vec<(&str, &str, &str)> = messages
        .iter()
        .map(|m| (m["direction"].as_str().unwrap(), m["messageType"].as_str().unwrap(), m["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("in", "transfer.apply", "processed"),
            ("out", "case.accepted", "queued"),
            ("out", "verify.request", "queued"),
            ("out", "case.status", "queued"),
            ("out", "case.status", "queued"),
            ("in", "verify.result", "dead-lettered"),
            ("out", "error", "queued"),
        ],
        "{detail:#}"
    );
    assert_eq!(detail["lastRefusal"]["code"], "E_REVOKED", "{detail:#}");
    assert_eq!(detail["lastRefusal"]["party"], "prov-51");
    // The same message found by its id.
    let id = messages[5]["messageId"].as_str().unwrap();
    let (status, found) = hub.ops(certs::Role::Operator("zhang".into()), "GET", &format!("/messages/{id}"), None).await;
    assert_eq!(status, 200);
    assert!(found[0]["reason"].as_str().is_some_and(|r| r.contains("prov-51")), "{found}");
    // A province may not read the operators' API.
    let (status, _) =
        hub.ops(certs::Role::Province("37".parse().unwrap()), "GET", &format!("/messages/{id}"), None).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_replay_request_sends_again_what_went_to_that_province_since_then_and_nothing_else() {
    let hub = hub().await;
    let before = Utc::now() - Duration::seconds(5);
    indexed(&hub, 1, |_| {}).await;
    hub.index("37", vec![student("37", 2)]).await;
    // As if the relay had published everything.
    sqlx::query("UPDATE outbox SET sent_at = now()").execute(&hub.pool).await.unwrap();
    let ask = |since| Body::ReplayRequest(schemas::messages::ReplayRequest { since });
    let sent = hub.send("51", ask(Utc::now() + Duration::hours(1)), None).await;
    let Body::ReplayResult(r) = &sent.replies[0].body else { panic!("{sent:?}") };
    assert_eq!(r.resent, 0, "nothing since a later time");
    let sent = hub.send("51", ask(before), None).await;
    let Body::ReplayResult(r) = &sent.replies[0].body else { panic!("{sent:?}") };
    assert_eq!(r.resent, 1, "51's index result, not 37's (the first replay result is not sent yet)");
    assert!(r.kept_since.is_some());
    let again: Vec<String> =
        sqlx::query_scalar("SELECT recipient FROM outbox WHERE sent_at IS NULL AND message_type <> 'replay.result'")
            .fetch_all(&hub.pool)
            .await
            .unwrap();
    assert_eq!(again, ["prov-51"], "only 51's messages go out again");
    // A message whose bytes the log no longer keeps is not marked to go out: it could not.
    sqlx::query("UPDATE outbox SET sent_at = now()").execute(&hub.pool).await.unwrap();
    let config = hub::config::Retention { message_log_secs: 0, ..Default::default() };
    let settings = &hub.ctx.settings.broker;
    let signer = certs::signature::Signer::load(&settings.cert, &settings.key).unwrap();
    hub::message_log::seal(&hub.ctx, &signer, true).await.unwrap();
    hub::housekeeping::prune(&hub.pool, &config).await.unwrap();
    let sent = hub.send("51", ask(before), None).await;
    let Body::ReplayResult(r) = &sent.replies[0].body else { panic!("{sent:?}") };
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox_message WHERE recipient = 'prov-51' AND body IS NOT NULL AND sent_at IS NOT NULL",
    )
    .fetch_one(&hub.pool)
    .await
    .unwrap();
    assert_eq!(r.resent as i64, kept, "only what can be sent");
    assert!(kept < 3, "some bytes were pruned: {kept} kept");
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox_message WHERE sent_at IS NULL AND body IS NULL")
            .fetch_one(&hub.pool)
            .await
            .unwrap(),
        0,
        "nothing waits without its bytes"
    );
}

/// `sh verify.sh` in a bundle: whether it passed, and what it said.
#[tokio::test]
async fn a_case_s_messages_are_logged_chained_and_exported_as_a_bundle_that_standard_tools_verify() {
    let hub = hub().await;
    let (s, other) = (indexed(&hub, 1, |_| {}).await, indexed(&hub, 2, |_| {}).await);
    let case = case_of(&apply(&hub, application(&s)).await);
    // Another case's messages fall between this case's in the log.
    let between = case_of(&apply(&hub, application(&other)).await);
    hub.send("51", Body::VerifyResult(held(&s, StudentStatus::Enrolled)), Some(case)).await;
    hub.send("51", Body::VerifyResult(held(&other, StudentStatus::Enrolled)), Some(between)).await;

    let settings = &hub.ctx.settings.broker;
    let signer = certs::signature::Signer::load(&settings.cert, &settings.key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let written =
        hub::message_log::export(&hub.ctx, &signer, hub::message_log::Selection::Case(case.uuid()), dir.path())
            .await
            .unwrap();
    let logged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM message_log WHERE case_id = $1
            OR message_id IN (SELECT message_id FROM message_trace WHERE case_id = $1)",
    )
    .bind(case.uuid())
    .fetch_one(&hub.pool)
    .await
    .unwrap();
    assert!(logged >= 4, "the application, its acceptance, the verification asked and answered: {logged}");
    assert_eq!(written.selected as i64, logged, "{written:?}");
    assert!(written.entries > written.selected, "the other case's entries in between, by their text: {written:?}");
    let (ok, said) = e2e::evidence::verify(dir.path());
    assert!(ok, "{said}");
    // The other case's messages are not in the bundle.
    for f in std::fs::read_dir(dir.path().join("entries")).unwrap() {
        let path = f.unwrap().path();
        if path.extension().is_some_and(|e| e == "body") {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            assert!(!text.contains(&other.student_id.to_string()), "{}", path.display());
        }
    }

    // What was logged in a time range: every entry in it, with its bytes.
    let all = tempfile::tempdir().unwrap();
    let range = hub::message_log::Selection::Logged(Utc::now() - Duration::hours(1), Utc::now() + Duration::hours(1));
    let everything = hub::message_log::export(&hub.ctx, &signer, range, all.path()).await.unwrap();
    assert_eq!(everything.selected, everything.entries, "{everything:?}");
    assert!(everything.entries > written.entries, "{everything:?}");
    let (ok, said) = e2e::evidence::verify(all.path());
    assert!(ok, "{said}");

    // One byte of one entry changed: named.
    let body = std::fs::read_dir(dir.path().join("entries"))
        .unwrap()
        .map(|f| f.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "body"))
        .min()
        .unwrap();
    let mut bytes = std::fs::read(&body).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&body, bytes).unwrap();
    let (ok, said) = e2e::evidence::verify(dir.path());
    let position = body.file_stem().unwrap().to_string_lossy().trim_start_matches('0').to_owned();
    assert!(!ok && said.contains(&format!("BROKEN at entry {position}: its body")), "{said}");

    // The log is append-only: the database refuses a change.
    let changed = sqlx::query("UPDATE message_log SET party = 'prov-99'").execute(&hub.pool).await;
    assert!(changed.is_err_and(|e| e.to_string().contains("append-only")));

    // After its retention the log is pruned from the chain's start, but for the last link and
    // the checkpoint that seals it; an entry not chained yet is kept.
    hub.send("51", Body::VerifyResult(held(&s, StudentStatus::Enrolled)), Some(case)).await;
    let pool = hub.pool.clone();
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap() }
    };
    let (links, unsealed) = (
        count("SELECT count(*) FROM message_log_chain").await,
        count("SELECT count(*) FROM message_log_unsealed").await,
    );
    assert!(unsealed > 0);
    let lag = || async {
        let g = hub::store::gauges(&hub.pool, Utc::now(), Utc::now().date_naive()).await.unwrap();
        g.message_log_lag_seconds
    };
    assert!(lag().await > 0.0, "the operators' gauge shows entries waiting to be chained");
    assert!(count("SELECT count(*) FROM message_log_checkpoint").await >= 1);
    let config = hub::config::Retention { message_log_secs: 0, ..Default::default() };
    // The outbox keeps no bytes of its own: a message still waiting (no relay runs here) takes
    // its bytes from its entry as the entry is pruned, the same bytes, and is sent with them.
    let waiting: Vec<(uuid::Uuid, Vec<u8>)> =
        sqlx::query_as("SELECT message_id, body FROM outbox_message WHERE sent_at IS NULL ORDER BY outbox_id")
            .fetch_all(&hub.pool)
            .await
            .unwrap();
    assert!(!waiting.is_empty());
    sqlx::query("UPDATE outbox SET sent_at = now() WHERE outbox_id = (SELECT min(outbox_id) FROM outbox)")
        .execute(&hub.pool)
        .await
        .unwrap();
    let pruned = hub::housekeeping::prune(&hub.pool, &config).await.unwrap();
    assert_eq!(pruned.message_log as i64, links, "every chained entry, with its link");
    let kept: Vec<(uuid::Uuid, Vec<u8>)> =
        sqlx::query_as("SELECT message_id, body FROM outbox_message WHERE sent_at IS NULL ORDER BY outbox_id")
            .fetch_all(&hub.pool)
            .await
            .unwrap();
    assert_eq!(kept, waiting[1..], "every message still waiting keeps its bytes");
    let moved = count(
        "SELECT count(*) FROM outbox WHERE sent_at IS NULL
            AND NOT EXISTS (SELECT 1 FROM message_log WHERE entry_id = log_entry)",
    )
    .await;
    assert!(moved > 0, "some waiting messages' entries were pruned");
    assert_eq!(count("SELECT count(*) FROM outbox WHERE body IS NOT NULL").await, moved, "those, and no sent one");
    assert_eq!(count("SELECT count(*) FROM message_log").await, unsealed);
    assert_eq!(count("SELECT count(*) FROM message_log_chain").await, 1, "but the last link");
    assert_eq!(count("SELECT count(*) FROM message_log_checkpoint").await, 1, "but the one that seals it");
    // The chain goes on from its last link: what the case sent since is exported alone and
    // verifies, chained to the pruned entries' last hash.
    let after = tempfile::tempdir().unwrap();
    let written =
        hub::message_log::export(&hub.ctx, &signer, hub::message_log::Selection::Case(case.uuid()), after.path())
            .await
            .unwrap();
    assert_eq!((written.from, written.selected), (links + 1, unsealed as usize), "{written:?}");
    let (ok, said) = e2e::evidence::verify(after.path());
    assert!(ok, "{said}");
    assert_eq!(lag().await, 0.0, "all chained");
}

/// The index's answer to one `index.upsert` of `s` from `province`, and whether it opened a
/// problem group.
async fn report(hub: &Hub, province: &str, s: &StudentSummary) -> (u32, u32, u32, bool) {
    let sent = hub.send_envelope(&e2e::index_upsert(province, vec![s.clone()])).await;
    let Body::IndexResult(r) = &sent.replies[0].body else { panic!("{sent:?}") };
    let group = sent.replies.iter().any(|e| e.message_type() == MessageType::ProblemTask);
    (r.applied, r.stale, r.conflicting, group)
}

#[tokio::test]
async fn the_receiving_province_reports_the_student_once_his_archive_is_delivered_without_a_duplicate() {
    let hub = hub().await;
    let s = indexed(&hub, 1, |_| {}).await;
    let arrived = StudentSummary { school: IN_SCHOOL.parse().unwrap(), changed_at: Utc::now(), ..s.clone() };
    let case = case_of(&apply(&hub, application(&s)).await);
    let mut sent = hub.send("51", Body::VerifyResult(held(&s, StudentStatus::Enrolled)), Some(case)).await;
    // Every review step approved, by the province each request goes to.
    while let Some(request) = sent.replies.iter().find(|e| e.message_type() == MessageType::ReviewRequest) {
        let Body::ReviewRequest(r) = &request.body else { unreachable!() };
        let Party::Province(by) = request.recipient else { unreachable!() };
        sent = hub.send(by.code(), approve(r.step), Some(case)).await;
        assert_eq!(sent.refusal(), None, "{sent:?}");
    }
    assert_eq!(state(&hub, case).await, "ARCHIVE_REQUESTED");
    let Body::ArchivePackage(mut package) = samples::body(MessageType::ArchivePackage) else { unreachable!() };
    package.record.student_id = s.student_id.clone();
    package.attachment = vec![];
    let sent = hub.send("51", Body::ArchivePackage(package), Some(case)).await;
    assert!(sent.to("37").iter().any(|e| e.message_type() == MessageType::ArchiveDeliver), "{sent:?}");

    // Delivered: 37 imports him and reports him before the hub has its import result.
    assert_eq!(state(&hub, case).await, "ARCHIVE_DELIVERING");
    assert_eq!(report(&hub, "37", &arrived).await, (1, 0, 0, false), "applied, no problem group");
    // The sending province reports him again meanwhile: stale, not a claim on him.
    let again = StudentSummary { changed_at: Utc::now(), ..s.clone() };
    assert_eq!(report(&hub, "51", &again).await, (0, 1, 0, false));
    // A third province still conflicts.
    assert_eq!(report(&hub, "44", &again).await.2, 1);
    let members: Vec<String> =
        sqlx::query_scalar("SELECT province FROM problem_member WHERE student_id = $1 ORDER BY province")
            .bind(s.student_id.as_ref())
            .fetch_all(&hub.pool)
            .await
            .unwrap();
    assert_eq!(members, ["37", "44"], "the third province's claim makes a group of it and the holder now");
}

#[tokio::test]
async fn before_the_archive_is_delivered_the_receiving_province_s_report_is_a_second_record() {
    let hub = hub().await;
    let s = indexed(&hub, 1, |_| {}).await;
    let case = case_of(&apply(&hub, application(&s)).await);
    hub.send("51", Body::VerifyResult(held(&s, StudentStatus::Enrolled)), Some(case)).await;
    let arrived = StudentSummary { school: IN_SCHOOL.parse().unwrap(), changed_at: Utc::now(), ..s.clone() };
    assert_eq!(report(&hub, "37", &arrived).await, (0, 0, 1, true), "a conflict, and a problem group");
}
