//! The national lookup under control (查询审计与限流), in process: the hub's handling against a
//! real PostgreSQL database. Every lookup is audited — who, about whom (a keyed digest, never
//! the identifier), when, what was answered — and visible to the national office only; a
//! province over its rate, or trying names of one student, is refused `E_RATE_LIMITED`; a name
//! that does not match is answered exactly like a student who does not exist.

use e2e::inprocess::{Hub, Sent};
use e2e::student;
use schemas::messages::{Body, LookupKey, LookupRequest, LookupResult, StudentSummary};
use schemas::{ErrorCode, MessageType};

fn by_id(s: &StudentSummary, name: &str, who: Option<&str>) -> Body {
    Body::LookupRequest(LookupRequest {
        name: name.parse().unwrap(),
        key: LookupKey::StudentId(s.student_id.clone()),
        requested_by: who.map(|w| w.parse().unwrap()),
    })
}

fn by_document(s: &StudentSummary, name: &str) -> Body {
    let schemas::ids::IdDocument::Resident(id) = &s.id_document else { panic!("a resident ID") };
    Body::LookupRequest(LookupRequest {
        name: name.parse().unwrap(),
        key: LookupKey::ResidentId(id.clone()),
        requested_by: None,
    })
}

/// The answer to a lookup, or the refusal's code.
fn answer(sent: &Sent) -> Result<Option<String>, &'static str> {
    if let Some(code) = sent.refusal() {
        return Err(code);
    }
    assert_eq!(sent.replies.len(), 1, "one answer");
    assert_eq!(sent.replies[0].message_type(), MessageType::LookupResult);
    let Body::LookupResult(LookupResult { student }) = &sent.replies[0].body else { panic!() };
    Ok(student.as_ref().map(|m| m.student_id.to_string()))
}

async fn audit_rows(hub: &Hub) -> Vec<(String, Option<String>, String, Option<String>)> {
    sqlx::query_as("SELECT province, requested_by, outcome, found_province FROM lookup_audit ORDER BY audit_id")
        .fetch_all(&hub.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_burst_over_the_rate_is_refused_beyond_the_limit_and_other_provinces_are_not_affected() {
    let hub = Hub::new(&["37", "44", "51"], "[lookups]\nper_minute = 5\nsame_student_per_hour = 100").await;
    let students: Vec<StudentSummary> = (1..=8).map(|n| student("51", n)).collect();
    hub.index("51", students.clone()).await;

    let mut answers = Vec::new();
    for s in &students {
        answers.push(answer(&hub.send("37", by_id(s, s.name.as_ref(), None), None).await));
    }
    let found: Vec<_> = students[..5].iter().map(|s| Ok(Some(s.student_id.to_string()))).collect();
    assert_eq!(answers[..5], found[..], "the first five answered");
    assert_eq!(answers[5..], vec![Err("E_RATE_LIMITED"); 3], "the rest refused with the code");
    // The refusal says why, in both languages, and names the lookup it refuses.
    let refused = hub.send("37", by_id(&students[0], "学生1", None), None).await;
    let Body::Error(report) = &refused.replies[0].body else { panic!("an error") };
    assert_eq!(report.code, ErrorCode::RateLimited);
    assert!(report.detail.as_deref().unwrap_or_default().contains("5 lookups a minute"), "{report:?}");
    assert_eq!(
        report.offending_message_id.map(|m| m.uuid()),
        Some(refused.replies[0].correlation_id.map(|c| c.uuid()).unwrap())
    );

    // Another province has its own allowance.
    assert_eq!(
        answer(&hub.send("44", by_id(&students[7], "学生8", None), None).await),
        Ok(Some(students[7].student_id.to_string()))
    );

    let rows = audit_rows(&hub).await;
    let outcomes: Vec<(&str, &str)> = rows.iter().map(|r| (r.0.as_str(), r.2.as_str())).collect();
    let mut expected = vec![("37", "found"); 5];
    expected.extend([("37", "limited_province"); 4]);
    expected.push(("44", "found"));
    assert_eq!(outcomes, expected, "every lookup audited, answered or refused");
}

#[tokio::test]
async fn names_guessed_for_one_student_get_nothing_and_are_stopped() {
    let hub = Hub::new(&["37", "51"], "[lookups]\nper_minute = 1000\nsame_student_per_hour = 4").await;
    let s = student("51", 1);
    hub.index("51", vec![s.clone()]).await;
    let unknown = student("51", 2); // never indexed

    // A wrong name is answered exactly as a student who does not exist: no hint.
    let wrong = answer(&hub.send("37", by_id(&s, "王小明", None), None).await);
    let nobody = answer(&hub.send("37", by_id(&unknown, "王小明", None), None).await);
    assert_eq!(wrong, Ok(None));
    assert_eq!(wrong, nobody);
    for guess in ["李小明", "张小明"] {
        assert_eq!(answer(&hub.send("37", by_id(&s, guess, None), None).await), Ok(None));
    }
    // The fourth lookup of the student in the hour is the last one; after it, even the right
    // name is refused: guessing cannot go on until it hits.
    assert_eq!(answer(&hub.send("37", by_document(&s, "赵小明"), None).await), Ok(None), "another key");
    assert_eq!(answer(&hub.send("37", by_id(&s, "孙小明", None), None).await), Ok(None));
    assert_eq!(answer(&hub.send("37", by_id(&s, s.name.as_ref(), None), None).await), Err("E_RATE_LIMITED"));
    let rows = audit_rows(&hub).await;
    assert_eq!(rows.last().map(|r| r.2.as_str()), Some("limited_student"));
}

#[tokio::test]
async fn the_audit_says_who_looked_up_whom_and_when_to_the_national_office_only_without_the_identifiers() {
    use certs::Role;
    let hub = Hub::new(&["37", "44", "51"], "").await;
    let s = student("51", 1);
    let other = student("51", 2);
    hub.index("51", vec![s.clone(), other.clone()]).await;
    let before = chrono::Utc::now();
    let asked = hub.send("37", by_id(&s, s.name.as_ref(), Some("张老师")), None).await;
    assert_eq!(answer(&asked), Ok(Some(s.student_id.to_string())));
    assert_eq!(
        answer(&hub.send("44", by_document(&s, s.name.as_ref()), None).await),
        Ok(Some(s.student_id.to_string()))
    );
    assert_eq!(answer(&hub.send("44", by_id(&other, "不对", None), None).await), Ok(None));

    // The national office finds both lookups of the student, by his student ID: by that ID,
    // and the one by his resident ID that found him; not the other student's.
    let national = Role::National("moe".into());
    let path = format!("/ops/lookups?student={}", s.student_id);
    let (status, entries) = hub.ops(national.clone(), "GET", &path, None).await;
    assert_eq!(status, 200, "{entries}");
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let newest = &entries[0];
    assert_eq!(newest["province"], "44");
    assert_eq!(newest["keyKind"], "document");
    assert_eq!(newest["outcome"], "found");
    assert_eq!(newest["foundProvince"], "51");
    let first = &entries[1];
    assert_eq!(first["province"], "37");
    assert_eq!(first["requestedBy"], "张老师");
    assert_eq!(first["messageId"], asked.replies[0].correlation_id.unwrap().to_string());
    let at: chrono::DateTime<chrono::Utc> = first["at"].as_str().unwrap().parse().unwrap();
    assert!(at >= before && at <= chrono::Utc::now());
    // By his resident ID: the lookup with it, and through the index the one by student ID.
    let schemas::ids::IdDocument::Resident(id) = &s.id_document else { panic!() };
    let (_, by_resident) = hub.ops(national.clone(), "GET", &format!("/ops/lookups?student={id}"), None).await;
    assert_eq!(by_resident.as_array().unwrap().len(), 2, "{by_resident}");
    // By province.
    let (_, of_44) = hub.ops(national.clone(), "GET", "/ops/lookups?province=44", None).await;
    assert_eq!(of_44.as_array().unwrap().len(), 2);
    let (status, _) = hub.ops(national.clone(), "GET", "/ops/lookups?student=not-an-id!", None).await;
    assert_eq!(status, 400);

    // The console shows the same to the national office, searched by the student.
    let (status, html) = hub.page(national.clone(), &format!("/console/lookups?student={}", s.student_id)).await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(html.matches("<td class=\"outcome\">").count(), 2, "{html}");
    assert!(html.contains("张老师") && html.contains("身份证件号") && html.contains("查到"), "{html}");
    let (status, _) = hub.page(Role::Operator("zhao".into()), "/console/lookups").await;
    assert_eq!(status, 403);

    // Operators and provinces do not see it.
    let (status, _) = hub.ops(Role::Operator("zhao".into()), "GET", &path, None).await;
    assert_eq!(status, 403);
    let (status, _) = hub.ops(Role::Province("37".parse().unwrap()), "GET", &path, None).await;
    assert_eq!(status, 403);

    // Nothing in the audit table is the student's identifier or name in clear.
    let dump: Vec<String> =
        sqlx::query_scalar("SELECT t::text FROM lookup_audit t").fetch_all(&hub.pool).await.unwrap();
    assert_eq!(dump.len(), 3);
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    for row in &dump {
        for secret in [s.student_id.to_string(), id.to_string(), s.name.to_string(), other.student_id.to_string()] {
            assert!(!row.contains(&secret) && !row.contains(&hex(&secret)), "{secret} in {row}");
        }
    }
}

#[tokio::test]
async fn a_nul_character_in_a_query_or_path_is_refused_typed_not_failed() {
    use certs::Role;
    let hub = Hub::new(&["37"], "").await;
    for path in ["/ops/lookups?student=G1%00", "/cases?student=m%00R", "/orgcodes/batches/a%00b"] {
        let (status, body) = hub.ops(Role::National("moe".into()), "GET", path, None).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("E_SCHEMA")), "{path}: {body}");
    }
}
