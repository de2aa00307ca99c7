//! Cross-province transfer (跨省转学) end to end: a hub, adapters and simulated provincial
//! systems as real processes, a real broker and database.

use std::time::Duration;

use e2e::world::{World, WorldOptions, args, cancel, decide, quick_resends};
use schemas::messages::StudentStatus;

const CASE_TIME: Duration = Duration::from_secs(90);

fn ordinary(s: &schemas::messages::StudentSummary) -> bool {
    s.status == StudentStatus::Enrolled && !s.problem_record && !s.open_business && s.student_id.is_formal()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transfer_completes_with_the_student_in_exactly_one_province() {
    let bed = e2e::Options { hub_log: Some(hub::telemetry::DEFAULT_FILTER), ..Default::default() };
    let w = World::new(WorldOptions { bed, ..Default::default() }).await;
    let s = w.student("51", ordinary);
    let app = w.apply("37", &s).await;
    let case = w.case_of(app).await;
    w.until_state(case, &["COMPLETED"], CASE_TIME).await;

    let id = s.student_id.to_string();
    assert_eq!(w.present_in(&id).await, vec!["37".to_owned()], "in the in-province, exactly once");
    let wb = w.whereabouts(&id).await;
    let out = wb.iter().find(|(p, ..)| p == "51").expect("the out-province keeps the record");
    assert_eq!(out.2.as_deref(), Some(case.to_string().as_str()), "marked transferred out by this case");
    let inn = wb.iter().find(|(p, ..)| p == "37").expect("imported");
    assert_eq!(inn.3.as_deref(), Some(case.to_string().as_str()));

    let db = w.bed.db().await;
    let province: String = sqlx::query_scalar("SELECT province FROM student_index WHERE student_id = $1")
        .bind(&id)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(province, "37", "the national index points to the in-province");
    let steps = w.decisions(case).await;
    let expected: Vec<(String, String, String)> =
        [("IN_SCHOOL", "37"), ("IN_BUREAU", "37"), ("OUT_SCHOOL", "51"), ("OUT_BUREAU", "51")]
            .iter()
            .map(|(s, p)| (s.to_string(), p.to_string(), "APPROVE".to_string()))
            .collect();
    assert_eq!(steps, expected, "four reviews in order");

    // At the default level, the hub logged one line per message it took, with plain ids, and
    // no student's name or identifiers.
    let log = w.bed.log("hub");
    let taken: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT message_id FROM inbox").fetch_all(&db).await.unwrap();
    assert!(taken.len() > 10, "the index reports, the application, the answers: {}", taken.len());
    for id in &taken {
        let lines = log.lines().filter(|l| l.contains(&format!("message_id={id}")) && l.contains("outcome=")).count();
        assert_eq!(lines, 1, "one line for {id}:\n{log}");
    }
    assert!(log.contains(&format!("case_id={case}")), "the case id, plain");
    assert!(!log.contains("Some(\""), "no debug-formatted options");
    for p in ["37", "51"] {
        for st in &w.province(p).students {
            let document = st.id_document.number().map(str::to_owned);
            for personal in [Some(st.name.to_string()), Some(st.student_id.to_string()), document].into_iter().flatten()
            {
                assert!(!log.contains(&personal), "personal data in the log: {personal}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejection_ends_the_case_releases_the_student_and_tells_the_applicant_why() {
    // The out-province's school refuses every transfer it reviews.
    let w =
        World::new(WorldOptions { province_args: vec![("51", args(&["--reject-rate", "1"]))], ..Default::default() })
            .await;
    let s = w.student("51", ordinary);
    let case = w.case_of(w.apply("37", &s).await).await;
    w.until_state(case, &["REJECTED"], CASE_TIME).await;

    let id = s.student_id.to_string();
    assert_eq!(w.present_in(&id).await, vec!["51".to_owned()], "he stays where he was");
    let wb = w.whereabouts(&id).await;
    let out = wb.iter().find(|(p, ..)| p == "51").expect("the out-province keeps the record");
    assert_eq!(out.1, None, "the out-province's hold is released");
    let steps = w.decisions(case).await;
    assert_eq!(
        steps.last().map(|(s, p, d)| (s.as_str(), p.as_str(), d.as_str())),
        Some(("OUT_SCHOOL", "51", "REJECT"))
    );
    assert_eq!(steps.len(), 3, "nothing is asked after the rejection");
    let closed = w.closing("37", case).await;
    let remark = closed.remark.map(|r| r.to_string()).unwrap_or_default();
    assert!(remark.contains("OUT_SCHOOL") && remark.contains("不同意"), "the applicant is told why: {remark}");
    // The student may apply again once the case has ended.
    let again = w.apply("37", &s).await;
    w.case_of(again).await;
}

fn slow_reviews() -> Vec<String> {
    ["--review-delay-min-ms", "60000", "--review-delay-max-ms", "60000"].map(String::from).to_vec()
}

/// Refusals travel back to the applying province's system (every admission rule is tested in
/// process, in `rules.rs`).
#[tokio::test(flavor = "multi_thread")]
async fn applications_are_checked_at_the_hub_and_refused_with_their_codes() {
    use schemas::messages::{Base64Data, Body, UpTo};
    // Reviewers take a minute: an accepted case stays open for the whole test.
    let w = World::new(WorldOptions { sim_args: slow_reviews(), ..Default::default() }).await;
    let s = w.student("51", ordinary);

    // Not in the national index.
    let ghost = e2e::student("51", 999_999);
    let id = w.submit("37", Body::TransferApply(w.application("37", &ghost)), None).await;
    assert_eq!(w.refusal("37", id).await, "E_STUDENT_NOT_FOUND");
    // Evidence not matching its digest.
    let mut app = w.application("37", &s);
    let mut forged = app.evidence.items()[0].clone();
    forged.content = Base64Data::new(b"something else".to_vec());
    app.evidence = UpTo::new(vec![forged]).unwrap();
    let id = w.submit("37", Body::TransferApply(app), None).await;
    assert_eq!(w.refusal("37", id).await, "E_ATTACHMENT_DIGEST");

    // One open case per student.
    let first = w.apply("37", &s).await;
    let case = w.case_of(first).await;
    w.until_state(case, &["UNDER_REVIEW"], CASE_TIME).await;
    let second = w.apply("37", &s).await;
    assert_eq!(w.refusal("37", second).await, "E_IN_FLIGHT");
}

#[tokio::test(flavor = "multi_thread")]
async fn verification_refusals_close_the_case_with_their_codes() {
    let w = World::new(WorldOptions { students: 400, sim_args: slow_reviews(), ..Default::default() }).await;
    let cases = [
        ("name mismatch", None, "E_STUDENT_NOT_FOUND"),
        ("problem record", Some(w.student("51", |s| s.problem_record && s.student_id.is_formal())), "E_PROBLEM_RECORD"),
        (
            "temporary ID, problem open",
            Some(w.student("51", |s| s.problem_record && !s.student_id.is_formal())),
            "E_PROBLEM_RECORD",
        ),
        ("open business", Some(w.student("51", |s| s.open_business && !s.problem_record)), "E_IN_FLIGHT"),
        (
            "suspended",
            Some(w.student("51", |s| s.status == StudentStatus::Suspended && !s.problem_record && !s.open_business)),
            "E_STATUS_INELIGIBLE",
        ),
        (
            "junior-high graduate",
            Some(
                w.student("51", |s| s.status == StudentStatus::JuniorGraduate && !s.problem_record && !s.open_business),
            ),
            "E_WRONG_STAGE",
        ),
    ];
    for (what, student, code) in cases {
        let student = student.unwrap_or_else(|| {
            let mut s = w.student("51", ordinary);
            s.name = "名字不对".parse().unwrap();
            s
        });
        let app = w.apply("37", &student).await;
        let case = w.case_of(app).await;
        w.until_state(case, &["REFUSED"], CASE_TIME).await;
        let closing = w.closing("37", case).await;
        assert_eq!(closing.code.map(|c| c.code()), Some(code), "{what}");
        if what == "suspended" {
            // The refusal says what the school must do first (domain.md §A.4).
            let remark = closing.remark.map(|r| r.to_string()).unwrap_or_default();
            assert!(remark.contains("复学") && remark.contains("休学"), "{what}: {remark}");
        }
        assert_eq!(w.present_in(student.student_id.as_ref()).await, vec!["51".to_owned()], "{what}: the student stays");
        let held = w.whereabouts(student.student_id.as_ref()).await;
        assert!(held.iter().all(|(_, h, ..)| h.is_none()), "{what}: no hold left behind: {held:?}");
    }
    // A temporary ID whose problem record was resolved is judged by the flag, not the prefix.
    let resolved = w.student("51", |s| {
        !s.student_id.is_formal() && !s.problem_record && !s.open_business && s.status == StudentStatus::Enrolled
    });
    let app = w.apply("37", &resolved).await;
    let case = w.case_of(app).await;
    w.until_state(case, &["UNDER_REVIEW"], CASE_TIME).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn decisions_and_cancels_are_accepted_only_from_the_right_party_and_step() {
    // The receiving province's system is down: the test plays its reviewers; 44 is no party.
    let w =
        World::new(WorldOptions { provinces: vec!["37", "51", "44"], silent: vec!["37", "44"], ..Default::default() })
            .await;
    let s = w.student("51", ordinary);
    let case = w.case_of(w.apply("37", &s).await).await;
    w.until_waiting(case, "prov-37", Some("IN_SCHOOL"), CASE_TIME).await;
    let wrong_party = w.submit("51", decide("IN_SCHOOL"), Some(case)).await;
    assert_eq!(w.refusal("51", wrong_party).await, "E_NOT_YOUR_STEP");
    // A province that is no party to the case is answered, whatever it sends.
    let released = schemas::messages::Body::CaseReleased(schemas::messages::CaseReleased {});
    let stranger = w.submit("44", released, Some(case)).await;
    assert_eq!(w.refusal("44", stranger).await, "E_NOT_YOUR_STEP");
    let stranger = w.submit("44", decide("IN_SCHOOL"), Some(case)).await;
    assert_eq!(w.refusal("44", stranger).await, "E_NOT_YOUR_STEP");
    let wrong_step = w.submit("37", decide("OUT_SCHOOL"), Some(case)).await;
    assert_eq!(w.refusal("37", wrong_step).await, "E_NOT_YOUR_STEP");
    let not_initiator = w.submit("51", cancel("转出方撤销"), Some(case)).await;
    assert_eq!(w.refusal("51", not_initiator).await, "E_CANCEL_REFUSED");

    w.submit("37", decide("IN_SCHOOL"), Some(case)).await;
    w.until_waiting(case, "prov-37", Some("IN_BUREAU"), CASE_TIME).await;

    // Cancelled while a review is pending: finished once the out-province has let go.
    w.submit("37", cancel("家长决定不转学"), Some(case)).await;
    w.until_state(case, &["CANCELLED"], CASE_TIME).await;
    assert_eq!(w.present_in(s.student_id.as_ref()).await, vec!["51".to_owned()]);
    let late = w.submit("37", decide("IN_BUREAU"), Some(case)).await;
    assert_eq!(w.refusal("37", late).await, "E_CASE_CLOSED");
    let again = w.submit("37", cancel("再次撤销"), Some(case)).await;
    assert_eq!(w.refusal("37", again).await, "E_CASE_CLOSED");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_out_province_offline_during_verification_delays_the_case_and_it_completes_on_return() {
    let w = World::new(WorldOptions { bed: quick_resends(), ..Default::default() }).await;
    let s = w.student("51", ordinary);
    w.go_dark("51");
    let case = w.case_of(w.apply("37", &s).await).await;
    w.until_state(case, &["WAITING_VERIFICATION"], CASE_TIME).await;
    // Not cancellable before the reviews start (domain.md G-3).
    let early = w.submit("37", cancel("尚未审核即撤销"), Some(case)).await;
    assert_eq!(w.refusal("37", early).await, "E_CANCEL_REFUSED");
    w.waits_out_an_outage(case, "51", "WAITING_VERIFICATION", s.student_id.as_ref(), ("51", "37")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_out_province_offline_during_a_review_delays_the_case_and_it_completes_on_return() {
    let slow = args(&["--review-delay-min-ms", "3000", "--review-delay-max-ms", "3000"]);
    let w = World::new(WorldOptions {
        bed: quick_resends(),
        province_args: vec![("51", slow.clone())],
        ..Default::default()
    })
    .await;
    let s = w.student("51", ordinary);
    let case = w.case_of(w.apply("37", &s).await).await;
    w.until_waiting(case, "prov-51", Some("OUT_SCHOOL"), CASE_TIME).await;
    // The reviewer has the request (its decision is due in three seconds); then 51 goes dark and
    // the decision falls due while nobody is there to send it.
    let due = review_due(&w, "51", case).await;
    w.go_dark("51");
    e2e::eventually("the dark reviewer's decision falls due", CASE_TIME, || async {
        (chrono::Utc::now() > due).then_some(())
    })
    .await;
    w.until_waiting(case, "prov-51", Some("OUT_SCHOOL"), CASE_TIME).await;
    w.come_back("51", &slow).await;
    w.until_state(case, &["COMPLETED"], CASE_TIME).await;
    assert_eq!(w.present_in(s.student_id.as_ref()).await, vec!["37".to_owned()]);
}

/// When a province's simulated reviewer will decide its pending review of `case`, once it has
/// received the request.
async fn review_due(w: &World, province: &str, case: schemas::CaseId) -> chrono::DateTime<chrono::Utc> {
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&w.province(province).data).read_only(true);
    let pool = sqlx::SqlitePool::connect_with(opts).await.expect("the simulated province's data");
    let due: String = e2e::eventually("the reviewer received the request", CASE_TIME, || async {
        sqlx::query_scalar("SELECT due_at FROM pending_review WHERE case_id = ?")
            .bind(case.to_string())
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
    })
    .await;
    chrono::DateTime::parse_from_rfc3339(&due).expect("an RFC 3339 time").with_timezone(&chrono::Utc)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_out_province_offline_during_the_archive_request_delays_the_case_and_it_completes_on_return() {
    // Its system cannot export, then it goes dark altogether; requests pile up meanwhile.
    let w = World::new(WorldOptions {
        bed: quick_resends(),
        province_args: vec![("51", args(&["--export-failure-rate", "1"]))],
        ..Default::default()
    })
    .await;
    let s = w.student("51", ordinary);
    let case = w.case_of(w.apply("37", &s).await).await;
    w.until_state(case, &["ARCHIVE_REQUESTED"], CASE_TIME).await;
    // Not cancellable after the final approval (domain.md G-3).
    let late = w.submit("37", cancel("审核通过后撤销"), Some(case)).await;
    assert_eq!(w.refusal("37", late).await, "E_CANCEL_REFUSED");
    w.waits_out_an_outage(case, "51", "ARCHIVE_REQUESTED", s.student_id.as_ref(), ("51", "37")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_in_province_offline_during_the_delivery_delays_the_case_and_it_completes_on_return() {
    let w = World::new(WorldOptions {
        bed: quick_resends(),
        province_args: vec![("37", args(&["--import-failure-rate", "1"]))],
        ..Default::default()
    })
    .await;
    let s = w.student("51", ordinary);
    let case = w.case_of(w.apply("37", &s).await).await;
    // Not committed out of 51 before 37 has imported.
    w.waits_out_an_outage(case, "37", "ARCHIVE_DELIVERING", s.student_id.as_ref(), ("51", "37")).await;
}

/// Kills the hub while a case is in `stage`, checks nobody is lost meanwhile, restarts it, and
/// checks the transfer ends with the student in exactly one province.
async fn hub_killed_during(stage: &str) {
    // Each archive step takes two seconds, so the hub can be caught in it.
    let w = World::new(WorldOptions {
        bed: quick_resends(),
        sim_args: args(&["--archive-delay-ms", "2000"]),
        ..Default::default()
    })
    .await;
    let s = w.student("51", ordinary);
    let case = w.case_of(w.apply("37", &s).await).await;
    w.survives_the_hub_killed(case, stage, s.student_id.as_ref(), "37", ("hub", "hub-again")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_killed_while_the_archive_is_requested_loses_nobody() {
    hub_killed_during("ARCHIVE_REQUESTED").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_killed_while_the_archive_is_delivered_loses_nobody() {
    hub_killed_during("ARCHIVE_DELIVERING").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_killed_while_the_transfer_out_is_committed_loses_nobody() {
    hub_killed_during("COMMITTING").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_racing_the_final_approval_ends_in_exactly_one_outcome() {
    // The out-province's reviewers are the test's: its simulated reviewers take ten minutes.
    let never = args(&["--review-delay-min-ms", "600000", "--review-delay-max-ms", "600000"]);
    let w = World::new(WorldOptions { province_args: vec![("51", never)], ..Default::default() }).await;
    let students: Vec<_> = w.province("51").students.iter().filter(|s| ordinary(s)).take(6).cloned().collect();
    let mut outcomes = Vec::new();
    let db = w.bed.db().await;
    for s in &students {
        let case = w.case_of(w.apply("37", s).await).await;
        w.until_waiting(case, "prov-51", Some("OUT_SCHOOL"), CASE_TIME).await;
        w.submit("51", decide("OUT_SCHOOL"), Some(case)).await;
        w.until_waiting(case, "prov-51", Some("OUT_BUREAU"), CASE_TIME).await;
        let (approval, cancellation) = tokio::join!(
            w.submit("51", decide("OUT_BUREAU"), Some(case)),
            w.submit("37", cancel("家长撤回申请"), Some(case))
        );
        let end = w.until_state(case, &["COMPLETED", "CANCELLED"], CASE_TIME).await;
        let id = s.student_id.to_string();
        let requests: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE case_id = $1 AND message_type = 'archive.request'")
                .bind(case.uuid())
                .fetch_one(&db)
                .await
                .unwrap();
        if end == "CANCELLED" {
            assert_eq!(requests, 0, "never an archive for a cancelled case");
            assert_eq!(w.refusal("51", approval).await, "E_NOT_YOUR_STEP", "the approval lost the race");
            assert_eq!(w.present_in(&id).await, vec!["51".to_owned()]);
        } else {
            assert!(requests >= 1);
            assert_eq!(w.refusal("37", cancellation).await, "E_CANCEL_REFUSED", "the cancel lost the race");
            assert_eq!(w.present_in(&id).await, vec!["37".to_owned()]);
        }
        outcomes.push(end);
    }
    println!("race outcomes: {outcomes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_application_waits_until_the_cancel_has_finished() {
    let slow = args(&["--review-delay-min-ms", "600000", "--review-delay-max-ms", "600000"]);
    let w = World::new(WorldOptions { province_args: vec![("51", slow.clone())], ..Default::default() }).await;
    let s = w.student("51", ordinary);
    let case = w.case_of(w.apply("37", &s).await).await;
    w.until_waiting(case, "prov-51", Some("OUT_SCHOOL"), CASE_TIME).await;
    w.go_dark("51"); // it cannot close its side for now
    w.submit("37", cancel("家长撤回申请"), Some(case)).await;
    w.until_state(case, &["CANCELLING"], CASE_TIME).await;
    let too_early = w.apply("37", &s).await;
    assert_eq!(w.refusal("37", too_early).await, "E_IN_FLIGHT");
    let store = w.province("37").adapter.store().await;
    let detail: Vec<u8> = sqlx::query_scalar("SELECT body FROM inbox WHERE correlation_id = ?")
        .bind(too_early.to_string())
        .fetch_one(&store)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&detail).contains("has not closed its side"), "the reason is given");

    w.come_back("51", &slow).await;
    w.until_state(case, &["CANCELLED"], CASE_TIME).await;
    let again = w.apply("37", &s).await;
    let second = w.case_of(again).await;
    assert_ne!(second, case);
    w.until_state(second, &["UNDER_REVIEW"], CASE_TIME).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_province_that_never_answers_shows_its_archive_as_stuck_until_a_resend_succeeds() {
    use certs::Role;
    let bed = e2e::Options {
        extra_toml: "[cases]\nstuck_after_secs = 4\nresend_after_secs = 3600\n".into(),
        ..Default::default()
    };
    let w = World::new(WorldOptions {
        bed,
        province_args: vec![("51", args(&["--export-failure-rate", "1"]))],
        ..Default::default()
    })
    .await;
    let s = w.student("51", ordinary);
    let case = w.case_of(w.apply("37", &s).await).await;
    w.until_state(case, &["ARCHIVE_REQUESTED"], CASE_TIME).await;

    let op = w.bed.operator(Role::Operator("zhang".into())).await;
    let stuck = e2e::eventually("the case listed as stuck", Duration::from_secs(20), || async {
        let (status, list) = op.get("/ops/stuck").await;
        assert_eq!(status, 200, "{list}");
        list.as_array()?.iter().find(|e| e["case"]["caseId"] == case.to_string()).cloned()
    })
    .await;
    assert_eq!(stuck["case"]["waitingParty"], "prov-51", "who is waited on");
    assert_eq!(stuck["case"]["stage"], "archive_requested");
    assert!(stuck["waitingSeconds"].as_i64().unwrap() >= 4, "since when");
    assert!(stuck["case"]["attempts"].as_i64().unwrap() >= 1);

    // Not for provinces, nor for an operator the hub does not know.
    let (status, _) = w.bed.operator_with(&w.province("37").creds).get("/ops/stuck").await;
    assert_eq!(status, 403);
    let stranger = w.bed.issue(&certs::Profile::new(Role::Operator("stranger".into()), 10), "stranger");
    let (status, _) = w.bed.operator_with(&stranger).get("/ops/stuck").await;
    assert_eq!(status, 403);

    // The province's export works again; the operator resends.
    w.stop_province("51");
    w.start_province_with("51", &[]);
    let (status, done) = op.act(case.as_ref(), "resend", "省厅确认系统已恢复").await;
    assert_eq!(status, 200, "{done}");
    w.until_state(case, &["COMPLETED"], CASE_TIME).await;
    let (_, list) = op.get("/ops/stuck").await;
    assert!(!list.as_array().unwrap().iter().any(|e| e["case"]["caseId"] == case.to_string()), "no longer stuck");
    let (_, detail) = op.get(&format!("/cases/{case}")).await;
    let audit = &detail["audit"][0];
    assert_eq!((audit["actor"].as_str(), audit["action"].as_str()), (Some("op-zhang"), Some("resend")), "{detail}");
    assert_eq!(detail["decisions"].as_array().unwrap().len(), 4, "full history");
    // Resends are counted where they happen: on the case, and in the hub's metrics.
    assert!(detail["resends"].as_u64().unwrap() >= 1, "{detail}");
    assert!(e2e::metric(w.bed.settings.http.listen, "hub_requests_resent_total").await >= 1.0);
    assert!(
        detail["events"].as_array().unwrap().iter().any(|e| e["cause"].as_str().unwrap_or("").contains("op-zhang"))
    );

    // The same from the command line.
    let cli = std::process::Command::new(e2e::binary("hub"))
        .args(["ops", "--url", &format!("https://localhost:{}", w.bed.settings.ops.as_ref().unwrap().listen.port())])
        .arg("--cert")
        .arg(w.bed.dir.path().join("op-zhang.pem"))
        .arg("--key")
        .arg(w.bed.dir.path().join("op-zhang.key"))
        .arg("--ca")
        .arg(&w.bed.env.ca_cert)
        .args(["case", case.as_ref()])
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    assert!(String::from_utf8_lossy(&cli.stdout).contains("COMPLETED"));
}

#[tokio::test(flavor = "multi_thread")]
async fn reminders_reach_the_province_that_must_act_and_overdue_steps_are_listed() {
    use certs::Role;
    let w = World::new(WorldOptions { silent: vec!["37"], ..Default::default() }).await;
    let s = w.student("51", ordinary);
    let case = w.case_of(w.apply("37", &s).await).await;
    w.until_waiting(case, "prov-37", Some("IN_SCHOOL"), CASE_TIME).await;
    let db = w.bed.db().await;
    let (kind, due): (String, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT kind, due_at FROM timer WHERE slot = 'case.reminder' AND owner_id = $1")
            .bind(case.uuid())
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(kind, "case.reminder.upcoming");
    assert!(due > chrono::Utc::now() + chrono::Duration::days(5), "days before the deadline, not now: {due}");
    // Time passes (the timer is made due now): the reminder goes out, the next one is armed.
    sqlx::query("UPDATE timer SET due_at = now() WHERE slot = 'case.reminder' AND owner_id = $1")
        .bind(case.uuid())
        .execute(&db)
        .await
        .unwrap();
    let store = w.province("37").adapter.store().await;
    e2e::eventually("a reminder in the acting province's inbox", CASE_TIME, || async {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM inbox WHERE case_id = ? AND message_type = 'case.reminder'")
                .bind(case.to_string())
                .fetch_one(&store)
                .await
                .ok()?;
        (n == 1).then_some(())
    })
    .await;
    let next: String = sqlx::query_scalar("SELECT kind FROM timer WHERE slot = 'case.reminder' AND owner_id = $1")
        .bind(case.uuid())
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(next, "case.reminder.due");
    // The due reminder, then the overdue one: that one reaches the other party too.
    for expected in ["case.reminder.overdue", ""] {
        sqlx::query("UPDATE timer SET due_at = now() WHERE slot = 'case.reminder' AND owner_id = $1")
            .bind(case.uuid())
            .execute(&db)
            .await
            .unwrap();
        if expected.is_empty() {
            break;
        }
        e2e::eventually("the next reminder armed", CASE_TIME, || async {
            let next: String =
                sqlx::query_scalar("SELECT kind FROM timer WHERE slot = 'case.reminder' AND owner_id = $1")
                    .bind(case.uuid())
                    .fetch_optional(&db)
                    .await
                    .ok()??;
            (next == expected).then_some(())
        })
        .await;
    }
    for (province, n) in [("37", 3), ("51", 1)] {
        let store = w.province(province).adapter.store().await;
        e2e::eventually(&format!("reminders in {province}'s inbox"), CASE_TIME, || async {
            let bodies: Vec<Vec<u8>> =
                sqlx::query_scalar("SELECT body FROM inbox WHERE case_id = ? AND message_type = 'case.reminder'")
                    .bind(case.to_string())
                    .fetch_all(&store)
                    .await
                    .ok()?;
            let overdue = bodies.iter().filter(|b| String::from_utf8_lossy(b).contains("OVERDUE")).count();
            (bodies.len() == n && overdue == 1).then_some(())
        })
        .await;
    }

    let op = w.bed.operator(Role::National("arbiter".into())).await;
    let (_, list) = op.get("/ops/overdue").await;
    assert!(list.as_array().unwrap().is_empty(), "not overdue yet");
    sqlx::query("UPDATE business_case SET deadline = current_date - 1 WHERE case_id = $1")
        .bind(case.uuid())
        .execute(&db)
        .await
        .unwrap();
    let (_, list) = op.get("/ops/overdue").await;
    let row = &list.as_array().unwrap()[0];
    assert_eq!(
        (row["caseId"].as_str(), row["waitingParty"].as_str(), row["waitingStep"].as_str()),
        (Some(case.to_string().as_str()), Some("prov-37"), Some("IN_SCHOOL"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_simulated_province_rides_out_its_adapter_dying_under_it() {
    let w = World::new(WorldOptions::default()).await;
    // 51's adapter dies the moment its provincial system acknowledges what it took from the inbox.
    w.take_offline("51");
    w.bed.start_adapter(&w.province("51").adapter, &[("XJ_CRASH_AT", hub::failpoint::INBOX_BEFORE_ACK)]);
    let s = w.student("51", ordinary);
    let case = w.case_of(w.apply("37", &s).await).await;
    w.bed.wait_exit("adapter-51", CASE_TIME).await;
    // It comes back; the province takes the same messages again, handles none twice, goes on.
    w.bring_online("51").await;
    w.until_state(case, &["COMPLETED"], CASE_TIME).await;
    assert!(w.bed.exited("province-51").is_none(), "the simulated province 51 kept running");
    assert_eq!(w.present_in(s.student_id.as_ref()).await, vec!["37".to_owned()]);
    let verified: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM inbox WHERE case_id = $1 AND message_type = 'verify.result' AND outcome = 'processed'",
    )
    .bind(case.uuid())
    .fetch_one(&w.bed.db().await)
    .await
    .unwrap();
    assert_eq!(verified, 1, "the verification was answered once");
}
