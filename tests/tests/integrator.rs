//! What a provincial integrator meets through the adapter's local API: real-sized uploads and
//! archives, the documented limits and errors, lookups that normalize and check what they are
//! given, the detail of a case, the end of a case, and the index kept honest.

use std::time::Duration;

use e2e::world::{World, WorldOptions, args};
use schemas::ids::IdDocument;
use schemas::messages::{
    Attachment, Batch, Body, CaseQuery, IndexUpsert, LookupKey, LookupRequest, NextStep, Refusal, StudentStatus,
    StudentSummary, UpTo, VerifyResult,
};
use schemas::{ErrorCode, Party, codec};

const CASE_TIME: Duration = Duration::from_secs(120);

fn ordinary(s: &StudentSummary) -> bool {
    s.status == StudentStatus::Enrolled && !s.problem_record && !s.open_business && s.student_id.is_formal()
}

/// A scan-sized PDF.
fn scan(name: &str, bytes: usize) -> Attachment {
    let mut content = b"%PDF-1.4 ".to_vec();
    content.resize(bytes, b'.');
    Attachment::new(name.parse().unwrap(), "application/pdf".parse().unwrap(), content)
}

async fn inbox_bodies(w: &World, province: &str, sql: &'static str, case: &str) -> Vec<Vec<u8>> {
    let store = w.province(province).adapter.store().await;
    sqlx::query_scalar(sql).bind(case).fetch_all(&store).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transfer_with_real_sized_evidence_and_archive_completes_and_both_sides_see_its_end() {
    let w = World::new(WorldOptions {
        provinces: vec!["37", "51", "44"],
        silent: vec!["44"],
        province_args: vec![("51", args(&["--archive-attachment-bytes", "5000000"]))],
        ..Default::default()
    })
    .await;
    let s = w.student("51", ordinary);
    let adapter = &w.province("37").adapter;

    // Over the framework's old 2 MB default, each file within its 1 MB rule: accepted.
    let mut app = w.application("37", &s);
    app.evidence =
        UpTo::new(vec![scan("证明一.pdf", 600_000), scan("证明二.pdf", 600_000), scan("证明三.pdf", 600_000)]).unwrap();
    let env =
        schemas::Envelope::new(Party::Province("37".parse().unwrap()), Party::Hub, Body::TransferApply(app.clone()));
    let xml = codec::to_xml(&env);
    assert!(xml.len() > 2 * 1024 * 1024, "{} bytes", xml.len());
    let (status, answer) = adapter.submit(&env).await;
    assert_eq!(status, 202, "{answer}");
    let case = w.case_of(env.message_id).await;

    // One file just over its rule gets that rule's code, with the message's id.
    let other = w.student("51", |x| ordinary(x) && x.student_id != s.student_id);
    let mut big = w.application("37", &other);
    big.evidence = UpTo::new(vec![scan("过大.pdf", 1024 * 1024 + 1)]).unwrap();
    let refused = w.submit("37", Body::TransferApply(big), None).await;
    match w.answer("37", refused, "error").await {
        Body::Error(e) => assert_eq!((e.code, e.offending_message_id), (ErrorCode::AttachmentTooLarge, Some(refused))),
        other => panic!("{other:?}"),
    }
    // A body over the adapter's limit: the documented typed error, not the framework's text.
    let (status, answer) = adapter.submit_raw(vec![b'x'; 17 * 1024 * 1024], "application/xml").await;
    assert_eq!((status, answer["code"].as_str()), (413, Some("E_TOO_LARGE")), "{answer}");
    assert!(answer["messageZh"].as_str().is_some_and(|t| !t.is_empty()), "{answer}");

    w.until_state(case, &["COMPLETED"], CASE_TIME).await;
    // The 5 MB archive scan moved whole: stored at the hub, delivered to the in-province.
    let size: i64 = sqlx::query_scalar("SELECT size FROM archive_attachment WHERE case_id = $1")
        .bind(case.uuid())
        .fetch_one(&w.bed.db().await)
        .await
        .unwrap();
    assert_eq!(size, 5_000_000);
    let delivered = inbox_bodies(
        &w,
        "37",
        "SELECT body FROM inbox WHERE case_id = ? AND message_type = 'archive.attachment'",
        case.as_ref(),
    )
    .await;
    assert!(delivered.iter().any(|b| b.len() > 5_000_000), "the scan reached the in-province");

    // The end: a final case.status to both, and the receiving school told to assign a class.
    for p in ["37", "51"] {
        let statuses = inbox_bodies(
            &w,
            p,
            "SELECT body FROM inbox WHERE case_id = ? AND message_type = 'case.status'",
            case.as_ref(),
        )
        .await;
        assert!(statuses.iter().any(|b| String::from_utf8_lossy(b).contains("<state>COMPLETED</state>")), "{p}");
    }
    assert_eq!(w.closing("37", case).await.next, Some(NextStep::ClassAssignment));
    assert_eq!(w.closing("51", case).await.next, None);

    // The flow detail (查看明细), for a party; nothing for another province.
    let q = w.submit("37", Body::CaseQuery(CaseQuery {}), Some(case)).await;
    let Body::CaseDetail(detail) = w.answer("37", q, "case.detail").await else { panic!("not case.detail") };
    assert_eq!(detail.decision.len(), 4, "every decision with who and when: {:?}", detail.decision);
    assert!(detail.change.iter().any(|c| c.to.as_ref() == "closed"), "{:?}", detail.change);
    assert!(detail.closed_at.is_some());
    let q = w.submit("51", Body::CaseQuery(CaseQuery {}), Some(case)).await;
    assert!(matches!(w.answer("51", q, "case.detail").await, Body::CaseDetail(_)));
    let q = w.submit("44", Body::CaseQuery(CaseQuery {}), Some(case)).await;
    assert_eq!(w.refusal("44", q).await, "E_CASE_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn lookup_keys_and_names_are_the_identifier_types_of_everything_else() {
    let w = World::new(WorldOptions { students: 200, ..Default::default() }).await;
    let s = w.student("51", |s| {
        matches!(&s.id_document, IdDocument::Resident(r) if r.as_ref().ends_with('X')) && ordinary(s)
    });
    let IdDocument::Resident(resident) = &s.id_document else { unreachable!() };
    let adapter = &w.province("37").adapter;
    // A lower-case check character is the upper-case one: found.
    let lower = resident.as_ref().to_ascii_lowercase();
    let json = serde_json::json!({
        "schemaVersion": "1.0", "messageId": schemas::MessageId::new_v7(), "type": "lookup.request",
        "sender": "prov-37", "recipient": "hub", "sentAt": chrono::Utc::now(),
        "body": { "lookupRequest": { "name": s.name.as_ref(), "documentNumber": lower } },
    });
    let (status, answer) = adapter.submit_raw(json.to_string().into_bytes(), "application/json").await;
    assert_eq!(status, 202, "{answer}");
    let id: schemas::MessageId = answer["messageId"].as_str().unwrap().parse().unwrap();
    let Body::LookupResult(r) = w.answer("37", id, "lookup.result").await else { panic!() };
    assert_eq!(r.student.map(|m| m.student_id), Some(s.student_id.clone()), "found by the normalized number");

    // A wrong check digit is refused at the adapter with its code, never looked up.
    let mut wrong = resident.to_string();
    wrong.replace_range(17..18, if wrong.ends_with('X') { "0" } else { "X" });
    let json = serde_json::json!({
        "schemaVersion": "1.0", "messageId": schemas::MessageId::new_v7(), "type": "lookup.request",
        "sender": "prov-37", "recipient": "hub", "sentAt": chrono::Utc::now(),
        "body": { "lookupRequest": { "name": s.name.as_ref(), "documentNumber": wrong } },
    });
    let (status, answer) = adapter.submit_raw(json.to_string().into_bytes(), "application/json").await;
    assert_eq!((status, answer["code"].as_str()), (400, Some("E_SCHEMA")), "{answer}");
    assert!(answer["detail"].as_str().unwrap_or_default().contains("校验码"), "{answer}");
    assert!(answer["offendingMessageId"].is_string(), "{answer}");

    // A name with a right-to-left override or a zero-width character is refused, in XML too.
    for bad in ["李\u{202E}明", "李\u{200B}明"] {
        let env = schemas::Envelope::new(
            Party::Province("37".parse().unwrap()),
            Party::Hub,
            Body::LookupRequest(LookupRequest {
                name: "李明".parse().unwrap(),
                key: LookupKey::StudentId(s.student_id.clone()),
                requested_by: None,
            }),
        );
        let xml = codec::to_xml(&env).replace("<name>李明</name>", &format!("<name>{bad}</name>"));
        let (status, answer) = adapter.submit_raw(xml.into_bytes(), "application/xml").await;
        assert_eq!((status, answer["code"].as_str()), (400, Some("E_SCHEMA")), "{bad:?}: {answer}");
        assert_eq!(answer["offendingMessageId"], env.message_id.to_string());
    }
    // Logs are plain text, not coloured, when not written to a terminal.
    assert!(!w.bed.log("hub").contains('\u{1b}'), "ANSI escapes in the hub's log");
    assert!(!w.bed.log("adapter-37").contains('\u{1b}'), "ANSI escapes in the adapter's log");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_province_that_contradicts_the_index_is_flagged_and_asked_to_report_the_student_again() {
    // Both systems are played by the test, so that 51 can contradict its own index report.
    let w = World::new(WorldOptions { silent: vec!["37", "51"], ..Default::default() }).await;
    let s = w.student("51", ordinary);
    let upsert = || Body::IndexUpsert(IndexUpsert { student: Batch::new(vec![s.clone()]).unwrap() });
    let sent = w.submit("51", upsert(), None).await;
    w.answer("51", sent, "index.result").await;

    let case = w.case_of(w.apply("37", &s).await).await;
    let store = w.province("51").adapter.store().await;
    e2e::eventually("the verification request", CASE_TIME, || async {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM inbox WHERE case_id = ? AND message_type = 'verify.request'")
                .bind(case.to_string())
                .fetch_one(&store)
                .await
                .ok()?;
        (n == 1).then_some(())
    })
    .await;
    let not_found = VerifyResult::Refused(Refusal { code: ErrorCode::StudentNotFound, remark: None });
    w.submit("51", Body::VerifyResult(not_found), Some(case)).await;
    w.until_state(case, &["REFUSED"], CASE_TIME).await;

    // 51 is asked to report him again; operators see the disagreement; nobody is offered him.
    let resync = e2e::eventually("index.resync to 51", CASE_TIME, || async {
        let body: Vec<u8> = sqlx::query_scalar("SELECT body FROM inbox WHERE message_type = 'index.resync'")
            .fetch_optional(&store)
            .await
            .ok()??;
        Some(codec::from_xml(&body, schemas::DEFAULT_MAX_BYTES).unwrap())
    })
    .await;
    let Body::IndexResync(r) = resync.body else { panic!() };
    assert_eq!(r.student_id.items(), std::slice::from_ref(&s.student_id));
    let op = w.bed.operator(certs::Role::Operator("qian".into())).await;
    let (_, disputes) = op.get("/ops/index-disputes").await;
    assert_eq!(disputes[0]["studentId"], s.student_id.to_string(), "{disputes}");
    // The operator API's own refusals are typed too (a bad id, a bad parameter, no such route).
    for (path, status) in [("/cases/not-a-uuid", 400), ("/cases?open=maybe", 400), ("/no/such/route", 404)] {
        let (got, body) = op.get(path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(
            body["code"].as_str().is_some_and(|c| c.starts_with("E_")) && body["messageEn"].is_string(),
            "{path}: {body}"
        );
    }
    let lookup = |student: &StudentSummary| {
        Body::LookupRequest(LookupRequest {
            name: student.name.clone(),
            key: LookupKey::StudentId(student.student_id.clone()),
            requested_by: None,
        })
    };
    let q = w.submit("37", lookup(&s), None).await;
    let Body::LookupResult(found) = w.answer("37", q, "lookup.result").await else { panic!() };
    let m = found.student.expect("still listed");
    assert!(!m.transfer_eligible && m.reason.contains(&ErrorCode::StudentNotFound), "{m:?}");
    let again = w.apply("37", &s).await;
    assert_eq!(w.refusal("37", again).await, "E_STUDENT_NOT_FOUND");

    // 51 reports him again (unchanged): the dispute is settled.
    let sent = w.submit("51", upsert(), None).await;
    w.answer("51", sent, "index.result").await;
    let (_, disputes) = op.get("/ops/index-disputes").await;
    assert_eq!(disputes.as_array().map(Vec::len), Some(0), "{disputes}");
    let q = w.submit("37", lookup(&s), None).await;
    let Body::LookupResult(found) = w.answer("37", q, "lookup.result").await else { panic!() };
    assert!(found.student.expect("listed").transfer_eligible);
}
