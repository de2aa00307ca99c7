//! Post-graduation cross-province enrollment (毕业后跨省就学) end to end: a senior-high school
//! of one province enrolls a junior-high graduate of another, on the same case engine as the
//! transfer — real hub, adapters, simulated provincial systems, broker and database.

use std::time::Duration;

use e2e::world::{World, WorldOptions, args, cancel, decide, quick_resends};
use schemas::messages::{Body, StudentStatus, StudentSummary};

const CASE_TIME: Duration = Duration::from_secs(90);

/// A junior-high graduate free to enroll elsewhere.
fn graduate(s: &StudentSummary) -> bool {
    s.status == StudentStatus::JuniorGraduate && !s.problem_record && !s.open_business && s.student_id.is_formal()
}

/// The enrolling school of `province` (its first) is permitted.
async fn permit_first_school(w: &World, province: &str) {
    let school = w.province(province).schools[0].clone();
    let answer = w.permit(province, &[school], &[]).await;
    assert_eq!((answer.granted, answer.refused.len()), (1, 0), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_enrollment_completes_with_the_graduate_in_the_enrolling_province_only() {
    let w = World::new(WorldOptions::default()).await;
    permit_first_school(&w, "37").await;
    let s = w.student("51", graduate);
    let case = w.case_of(w.enroll("37", &s).await).await;
    w.until_state(case, &["COMPLETED"], CASE_TIME).await;

    let id = s.student_id.to_string();
    assert_eq!(w.present_in(&id).await, vec!["37".to_owned()], "in the enrolling province, exactly once");
    let wb = w.whereabouts(&id).await;
    let out = wb.iter().find(|(p, ..)| p == "51").expect("the graduation province keeps the record");
    assert_eq!(out.2.as_deref(), Some(case.to_string().as_str()), "marked as left by this case");
    let db = w.bed.db().await;
    let (business, province, grade, status): (String, String, String, String) = sqlx::query_as(
        "SELECT c.business, i.province, i.grade, i.status FROM business_case c
         JOIN student_index i ON i.student_id = c.student_id WHERE c.case_id = $1",
    )
    .bind(case.uuid())
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((business.as_str(), province.as_str()), ("ENROLLMENT", "37"), "the national index follows");
    assert_eq!((grade.as_str(), status.as_str()), ("31", "ENROLLED"), "a senior-high student now, in the index");
    // Enrolling school, enrolling bureau, then the graduating school's bureau ([002 §19]).
    let expected: Vec<(String, String, String)> = [("IN_SCHOOL", "37"), ("IN_BUREAU", "37"), ("OUT_BUREAU", "51")]
        .iter()
        .map(|(s, p)| (s.to_string(), p.to_string(), "APPROVE".to_string()))
        .collect();
    assert_eq!(w.decisions(case).await, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_permitted_schools_may_enroll_with_their_evidence() {
    use schemas::messages::{Attachment, UpTo};
    let w = World::new(WorldOptions::default()).await;
    let s = w.student("51", graduate);
    let school = w.province("37").schools[0].clone();

    let refused = w.enroll("37", &s).await;
    assert_eq!(w.refusal("37", refused).await, "E_NOT_PERMITTED", "never permitted");

    // A province manages only its own schools.
    let other = w.province("51").schools[0].clone();
    let answer = w.permit("37", &[school.clone(), other.clone()], &[]).await;
    assert_eq!((answer.granted, answer.refused), (1, vec![other.clone()]));
    let answer = w.permit("51", std::slice::from_ref(&other), &[]).await;
    assert_eq!(answer.granted, 1, "51 permits its own school");
    let answer = w.permit("37", &[], std::slice::from_ref(&other)).await;
    assert_eq!(answer.revoked, 0, "51's school is not 37's to revoke");
    let kept: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM enrollment_permission WHERE school = $1)")
        .bind(other.as_ref())
        .fetch_one(&w.bed.db().await)
        .await
        .unwrap();
    assert!(kept, "51's permission survives 37's attempt");

    let mut app = w.enrollment("37", &s);
    app.evidence = UpTo::new(vec![]).unwrap();
    let bare = w.submit("37", Body::EnrollmentApply(app), None).await;
    assert_eq!(w.refusal("37", bare).await, "E_EVIDENCE_MISSING");
    let mut app = w.enrollment("37", &s);
    let pdf = Attachment::new("录取通知书.pdf".parse().unwrap(), "application/pdf".parse().unwrap(), b"%PDF".to_vec());
    app.evidence = UpTo::new(vec![pdf]).unwrap();
    let pdf = w.submit("37", Body::EnrollmentApply(app), None).await;
    assert_eq!(w.refusal("37", pdf).await, "E_ATTACHMENT_TYPE", "enrollment evidence is JPG or PNG ([002 §19])");

    // Revoked: refused again.
    let answer = w.permit("37", &[], std::slice::from_ref(&school)).await;
    assert_eq!(answer.revoked, 1);
    let refused = w.enroll("37", &s).await;
    assert_eq!(w.refusal("37", refused).await, "E_NOT_PERMITTED", "revoked");

    // Granted again: the application opens a case.
    permit_first_school(&w, "37").await;
    let case = w.case_of(w.enroll("37", &s).await).await;
    w.until_state(case, &["COMPLETED"], CASE_TIME).await;
    let db = w.bed.db().await;
    let cases: i64 = sqlx::query_scalar("SELECT count(*) FROM business_case").fetch_one(&db).await.unwrap();
    assert_eq!(cases, 1, "no refused application opened a case");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_graduation_province_refuses_who_is_not_a_free_junior_high_graduate() {
    // Shandong's students graduate: 51 enrolls them. Reviews take a minute so that nothing
    // accepted is done before the test is.
    let slow = args(&["--review-delay-min-ms", "60000", "--review-delay-max-ms", "60000"]);
    let w = World::new(WorldOptions { students: 400, sim_args: slow, ..Default::default() }).await;
    permit_first_school(&w, "51").await;
    let cases = [
        (
            "a junior-high student, not graduated",
            w.student("37", |s| {
                s.grade.as_ref() == "23" && s.status == StudentStatus::Enrolled && !s.problem_record && !s.open_business
            }),
            "E_WRONG_STAGE",
        ),
        (
            "a primary graduate",
            w.student("37", |s| s.status == StudentStatus::PrimaryGraduate && !s.problem_record && !s.open_business),
            "E_WRONG_STAGE",
        ),
        (
            "a graduate with a duplicate-ID problem record",
            w.student("37", |s| s.status == StudentStatus::JuniorGraduate && s.problem_record),
            "E_PROBLEM_RECORD",
        ),
    ];
    for (what, student, code) in cases {
        let case = w.case_of(w.enroll("51", &student).await).await;
        w.until_state(case, &["REFUSED"], CASE_TIME).await;
        assert_eq!(w.closing_code("51", case).await.as_deref(), Some(code), "{what}");
        let wb = w.whereabouts(student.student_id.as_ref()).await;
        assert_eq!(w.present_in(student.student_id.as_ref()).await, vec!["37".to_owned()], "{what}: stays");
        assert!(wb.iter().all(|(_, held, ..)| held.is_none()), "{what}: no hold left behind: {wb:?}");
    }
    // A free graduate passes verification.
    let case = w.case_of(w.enroll("51", &w.student("37", graduate)).await).await;
    w.until_state(case, &["UNDER_REVIEW"], CASE_TIME).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn decisions_are_accepted_only_at_the_enrollment_chain_steps_of_their_party() {
    // The enrolling province's system is down and the graduation province's reviewers take ten
    // minutes: the test plays the reviewers.
    let never = args(&["--review-delay-min-ms", "600000", "--review-delay-max-ms", "600000"]);
    let w =
        World::new(WorldOptions { silent: vec!["37"], province_args: vec![("51", never)], ..Default::default() }).await;
    permit_first_school(&w, "37").await;
    let s = w.student("51", graduate);
    let case = w.case_of(w.enroll("37", &s).await).await;
    w.until_waiting(case, "prov-37", Some("IN_SCHOOL"), CASE_TIME).await;

    let wrong_party = w.submit("51", decide("IN_SCHOOL"), Some(case)).await;
    assert_eq!(w.refusal("51", wrong_party).await, "E_NOT_YOUR_STEP", "the graduation side at the enrolling step");
    let ahead = w.submit("37", decide("IN_BUREAU"), Some(case)).await;
    assert_eq!(w.refusal("37", ahead).await, "E_NOT_YOUR_STEP", "the bureau before the school");
    let other_side = w.submit("37", decide("OUT_BUREAU"), Some(case)).await;
    assert_eq!(w.refusal("37", other_side).await, "E_NOT_YOUR_STEP", "the other side's step");

    w.submit("37", decide("IN_SCHOOL"), Some(case)).await;
    w.submit("37", decide("IN_BUREAU"), Some(case)).await;
    w.until_waiting(case, "prov-51", Some("OUT_BUREAU"), CASE_TIME).await;
    // No out-school step in an enrollment: the graduating school's bureau decides.
    let no_such = w.submit("51", decide("OUT_SCHOOL"), Some(case)).await;
    assert_eq!(w.refusal("51", no_such).await, "E_NOT_YOUR_STEP");
    w.submit("51", decide("OUT_BUREAU"), Some(case)).await;
    w.start_province("37"); // to import the archive
    w.until_state(case, &["COMPLETED"], CASE_TIME).await;
    let decided: Vec<String> = w.decisions(case).await.into_iter().map(|(s, ..)| s).collect();
    assert_eq!(decided, ["IN_SCHOOL", "IN_BUREAU", "OUT_BUREAU"], "only the right decisions were recorded");
    assert_eq!(w.present_in(s.student_id.as_ref()).await, vec!["37".to_owned()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_enrollment_leaves_the_graduate_where_he_was() {
    let w = World::new(WorldOptions { silent: vec!["37"], ..Default::default() }).await;
    permit_first_school(&w, "37").await;
    let s = w.student("51", graduate);
    let case = w.case_of(w.enroll("37", &s).await).await;
    w.until_waiting(case, "prov-37", Some("IN_SCHOOL"), CASE_TIME).await;
    let not_initiator = w.submit("51", cancel("毕业省份撤销"), Some(case)).await;
    assert_eq!(w.refusal("51", not_initiator).await, "E_CANCEL_REFUSED");
    w.submit("37", cancel("学生放弃录取"), Some(case)).await;
    w.until_state(case, &["CANCELLED"], CASE_TIME).await;
    let wb = w.whereabouts(s.student_id.as_ref()).await;
    assert_eq!(w.present_in(s.student_id.as_ref()).await, vec!["51".to_owned()]);
    assert!(wb.iter().all(|(_, held, ..)| held.is_none()), "the graduation province let go: {wb:?}");
    let late = w.submit("37", decide("IN_SCHOOL"), Some(case)).await;
    assert_eq!(w.refusal("37", late).await, "E_CASE_CLOSED");
    // The graduate may be enrolled again once the case is over.
    let again = w.case_of(w.enroll("37", &s).await).await;
    assert_ne!(again, case);
    w.until_waiting(again, "prov-37", Some("IN_SCHOOL"), CASE_TIME).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_graduation_province_offline_delays_the_enrollment_and_it_completes_on_return() {
    let w = World::new(WorldOptions { bed: quick_resends(), ..Default::default() }).await;
    permit_first_school(&w, "37").await;
    let s = w.student("51", graduate);
    w.go_dark("51");
    let case = w.case_of(w.enroll("37", &s).await).await;
    w.waits_out_an_outage(case, "51", "WAITING_VERIFICATION", s.student_id.as_ref(), ("51", "37")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_killed_during_the_archive_hand_over_loses_no_graduate() {
    // Each archive step takes two seconds, so the hub can be caught in each.
    let w = World::new(WorldOptions {
        bed: quick_resends(),
        sim_args: args(&["--archive-delay-ms", "2000"]),
        ..Default::default()
    })
    .await;
    permit_first_school(&w, "37").await;
    let graduates: Vec<StudentSummary> =
        w.province("51").students.iter().filter(|s| graduate(s)).take(2).cloned().collect();
    assert_eq!(graduates.len(), 2, "the world has two free graduates");
    let mut hub = "hub".to_owned();
    for (n, (s, stage)) in graduates.iter().zip(["ARCHIVE_REQUESTED", "ARCHIVE_DELIVERING"]).enumerate() {
        let case = w.case_of(w.enroll("37", s).await).await;
        let next = format!("hub-{n}");
        w.survives_the_hub_killed(case, stage, s.student_id.as_ref(), "37", (&hub, &next)).await;
        hub = next;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_province_configured_with_a_city_level_gets_that_step_in_both_businesses() {
    // Shandong's city bureau confirms what comes in ([003 Q26]) and the graduations that leave
    // ([003 Q29], domain.md G-4).
    let bed = e2e::Options {
        extra_toml: "[provinces.\"37\"]\n\
                     transfer_in = [\"SCHOOL\", \"BUREAU\", \"CITY\"]\n\
                     enrollment_in = [\"SCHOOL\", \"BUREAU\", \"CITY\"]\n\
                     enrollment_out = [\"BUREAU\", \"CITY\"]\n"
            .into(),
        ..Default::default()
    };
    let w = World::new(WorldOptions { bed, ..Default::default() }).await;
    permit_first_school(&w, "37").await;
    permit_first_school(&w, "51").await;
    let ordinary = |s: &StudentSummary| {
        s.status == StudentStatus::Enrolled && !s.problem_record && !s.open_business && s.student_id.is_formal()
    };
    let cases = [
        ("transfer into 37", w.case_of(w.apply("37", &w.student("51", ordinary)).await).await),
        ("transfer out of 37", w.case_of(w.apply("51", &w.student("37", ordinary)).await).await),
        ("enrollment into 37", w.case_of(w.enroll("37", &w.student("51", graduate)).await).await),
        ("enrollment out of 37", w.case_of(w.enroll("51", &w.student("37", graduate)).await).await),
    ];
    let expected: [&[&str]; 4] = [
        &["IN_SCHOOL", "IN_BUREAU", "IN_CITY", "OUT_SCHOOL", "OUT_BUREAU"],
        &["IN_SCHOOL", "IN_BUREAU", "OUT_SCHOOL", "OUT_BUREAU"],
        &["IN_SCHOOL", "IN_BUREAU", "IN_CITY", "OUT_BUREAU"],
        &["IN_SCHOOL", "IN_BUREAU", "OUT_BUREAU", "OUT_CITY"],
    ];
    let op = w.bed.operator(certs::Role::Operator("wang".into())).await;
    for ((what, case), expected) in cases.into_iter().zip(expected) {
        w.until_state(case, &["COMPLETED"], CASE_TIME).await;
        let decided: Vec<String> = w.decisions(case).await.into_iter().map(|(s, ..)| s).collect();
        assert_eq!(decided, expected, "{what}");
        // The operator sees the chain in the case's history.
        let (status, detail) = op.get(&format!("/cases/{case}")).await;
        assert_eq!(status, 200, "{detail}");
        let names = |v: &serde_json::Value, field: &str| -> Vec<String> {
            let list = v.as_array().unwrap_or_else(|| panic!("{field}: {detail}"));
            list.iter().map(|s| s.get(field).unwrap_or(s).as_str().expect("a step name").to_owned()).collect()
        };
        assert_eq!(names(&detail["chain"], "step"), expected, "{what}: the chain loaded for the case");
        assert_eq!(names(&detail["decisions"], "step"), expected, "{what}: the history shows every decision");
    }
}
