//! The console in headless Chromium, against real cases in a real database: an operator
//! searches a case, opens its timeline, resends its request (confirmed, with a note) and sees
//! the action in the timeline; replays a dead letter after its cause was fixed and sees it
//! settled — processed exactly once; the national office decides an arbitration and downloads
//! the group's evidence bundle; and the console refuses a province's certificate, no
//! certificate, and the national office's pages to an operator.

use std::path::PathBuf;

use certs::Role;
use e2e::browser::{Browser, Console, staff};
use e2e::inprocess::{Hub, Sent};
use e2e::{index_upsert, student};
use schemas::messages::{Application, Attachment, Body, UpTo};
use schemas::{CaseId, MessageType};

const IN_SCHOOL: &str = "3137000001";

/// Screenshots land here; the README shows the ones committed under docs/console/.
fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
}

/// A hub with a transfer of a student of 51 to 37 waiting for 51's verification.
async fn with_a_case() -> (Hub, CaseId, String) {
    let hub = Hub::new(&["37", "44", "51"], "").await;
    let s = student("51", 1);
    let out_school = s.school.to_string();
    hub.schools(&[(IN_SCHOOL, "37", true, None), (out_school.as_str(), "51", true, None)]).await;
    hub.index("51", vec![s.clone()]).await;
    let mut pdf = b"%PDF-1.4".to_vec();
    pdf.resize(64, b'.');
    let app = Application {
        school: IN_SCHOOL.parse().unwrap(),
        student_name: s.name.clone(),
        student_id: s.student_id.clone(),
        target_grade: s.grade,
        reason: "随父母迁居。".parse().unwrap(),
        evidence: UpTo::new(vec![Attachment::new(
            "户籍证明.pdf".parse().unwrap(),
            "application/pdf".parse().unwrap(),
            pdf,
        )])
        .unwrap(),
    };
    let sent: Sent = hub.send("37", Body::TransferApply(app), None).await;
    assert_eq!(sent.replies[0].message_type(), MessageType::CaseAccepted, "{sent:?}");
    let case = sent.replies[0].case_id.expect("a case");
    (hub, case, s.student_id.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_finds_a_case_resends_its_request_and_replays_a_dead_letter() {
    let (hub, case, student_id) = with_a_case().await;
    // 44's registration has lapsed: its report is dead-lettered. Then it is registered again.
    sqlx::query("UPDATE certificate SET revoked_at = now() WHERE principal = 'prov-44'")
        .execute(&hub.pool)
        .await
        .unwrap();
    let report = index_upsert("44", vec![student("44", 7)]);
    hub.send_envelope(&report).await;
    sqlx::query("UPDATE certificate SET revoked_at = NULL WHERE principal = 'prov-44'")
        .execute(&hub.pool)
        .await
        .unwrap();

    let console = Console::serve(&hub).await;
    let operator = staff(&hub, Role::Operator("zhou".into())).await;
    let b = Browser::start(&console, Some(&operator)).await;

    // Search by student: the case is listed; its timeline shows its messages.
    b.goto(&console.url(&format!("/console/cases?student={student_id}"))).await;
    let listed = b.text("#cases").await;
    assert!(listed.contains(&case.to_string()) && listed.contains("等待校验"), "{listed}");
    b.client.find(fantoccini::Locator::Css("#cases a")).await.unwrap().click().await.unwrap();
    let timeline = b.text("#timeline").await;
    assert!(timeline.contains("transfer.apply") && timeline.contains("verify.request"), "{timeline}");
    b.screenshot(&screenshots().join("case.png")).await;

    // Resend the verification request: confirmed, noted, audited, shown in the timeline.
    b.act("form.action", "51未回复,重发校验请求").await;
    b.until_text("#timeline", "51未回复,重发校验请求").await;
    let resends: i64 = sqlx::query_scalar("SELECT count(*) FROM audit WHERE action = 'resend' AND actor = 'op-zhou'")
        .fetch_one(&hub.pool)
        .await
        .unwrap();
    assert_eq!(resends, 1);

    // The dead letter: listed with its reason, inspected, replayed.
    b.goto(&console.url("/console/dead-letters?state=open")).await;
    let letters = b.text("#dead-letters").await;
    assert!(letters.contains("E_REVOKED") && letters.contains("prov-44"), "{letters}");
    b.screenshot(&screenshots().join("dead-letters.png")).await;
    b.client.find(fantoccini::Locator::Css("#dead-letters a")).await.unwrap().click().await.unwrap();
    assert!(b.text("#body").await.contains("indexUpsert"), "the message, pretty-printed");
    b.act("#replay", "44证书已重新登记").await;
    b.until_text("#state", "已重放").await;
    let processed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM inbox WHERE sender = 'prov-44' AND message_id = $1 AND outcome = 'processed'",
    )
    .bind(report.message_id.uuid())
    .fetch_one(&hub.pool)
    .await
    .unwrap();
    let indexed: i64 = sqlx::query_scalar("SELECT count(*) FROM student_index WHERE province = '44'")
        .fetch_one(&hub.pool)
        .await
        .unwrap();
    assert_eq!((processed, indexed), (1, 1), "processed exactly once");

    b.goto(&console.url("/console/links")).await;
    assert!(b.text("#links").await.contains("51"), "every province's link");
    b.screenshot(&screenshots().join("links.png")).await;
    b.close().await;
}

/// A page of another site that an operator opens in the browser holding their certificate:
/// it posts a discard of dead letter 1 and a resolve of the case, with credentials, as forged
/// requests do; then says so in its title.
async fn attacker_site(console: &Console, case: CaseId) -> String {
    let page = format!(
        r#"<!doctype html><title>loading</title><script>
        var opts = {{ method: 'POST', mode: 'no-cors', credentials: 'include' }};
        Promise.allSettled([
          fetch('{base}/ops/dead-letters/1/discard', opts),
          fetch('{base}/ops/cases/{case}/resolve', opts),
        ]).then(function () {{ document.title = 'sent'; }});
        </script>"#,
        base = console.base
    );
    let app = axum::Router::new().route("/", axum::routing::get(move || async move { axum::response::Html(page) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_of_another_site_cannot_act_with_the_operator_s_certificate() {
    let (hub, case, _) = with_a_case().await;
    sqlx::query("UPDATE certificate SET revoked_at = now() WHERE principal = 'prov-44'")
        .execute(&hub.pool)
        .await
        .unwrap();
    hub.send_envelope(&index_upsert("44", vec![student("44", 7)])).await;
    let console = Console::serve(&hub).await;
    let operator = staff(&hub, Role::Operator("zhou".into())).await;
    let b = Browser::start(&console, Some(&operator)).await;
    // The browser has talked to the console before (its certificate chosen, a connection open).
    b.goto(&console.url("/console/dead-letters")).await;
    b.goto(&attacker_site(&console, case).await).await;
    e2e::eventually("the forged requests sent", std::time::Duration::from_secs(20), || async {
        (b.client.title().await.ok()? == "sent").then_some(())
    })
    .await;
    let state: String = sqlx::query_scalar("SELECT state FROM dead_letter WHERE dead_letter_id = 1")
        .fetch_one(&hub.pool)
        .await
        .unwrap();
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit").fetch_one(&hub.pool).await.unwrap();
    assert_eq!((state.as_str(), audited), ("open", 0), "nothing done, nothing audited");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_national_office_decides_an_arbitration_with_both_sides_side_by_side() {
    let hub = Hub::new(&["37", "44", "51"], "").await;
    let (group, first, second) = hub.group_in_arbitration().await;
    let console = Console::serve(&hub).await;
    let national = staff(&hub, Role::National("moe".into())).await;
    let b = Browser::start(&console, Some(&national)).await;
    b.goto(&console.url("/console/arbitrations")).await;
    assert!(b.text("#arbitrations").await.contains(&group));
    b.client.find(fantoccini::Locator::Css("#arbitrations a")).await.unwrap().click().await.unwrap();
    // Both records, each with its approvals and its evidence, side by side.
    let sides = b.client.find_all(fantoccini::Locator::Css(".side .member")).await.unwrap();
    assert_eq!(sides.len(), 2);
    for side in &sides {
        let text = side.text().await.unwrap();
        assert!(text.contains("ATTEST") && text.contains("钱科长"), "{text}");
        assert!(side.find(fantoccini::Locator::Css("img")).await.is_ok(), "the evidence is shown: {text}");
    }
    b.screenshot(&screenshots().join("arbitration.png")).await;
    // The page offers the group's evidence bundle: it downloads as one tar that verifies with
    // the standard tools and holds both sides' results with their bytes.
    let link = b.client.find(fantoccini::Locator::Css("#bundle")).await.unwrap();
    let href = link.attr("href").await.unwrap().expect("a link");
    let response = console.client(&national).get(console.url(&href)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-tar");
    let bundle = e2e::evidence::Unpacked::tar(&response.bytes().await.unwrap());
    let (ok, said) = bundle.verify();
    assert!(ok, "{said}");
    let results =
        bundle.entries().iter().filter(|e| e.with_body && e.field("message-type") == Some("problem.result")).count();
    assert_eq!(results, 2, "{said}");
    // Uphold 51's record (registered first).
    let option = format!("select[name=upheld] option[value='{first}']");
    b.client.find(fantoccini::Locator::Css(&option)).await.unwrap().click().await.unwrap();
    b.submit("#decide").await;
    b.until_text("#group-state", "open").await;
    let decided: Vec<(String, String)> = sqlx::query_as("SELECT actor, detail FROM audit WHERE action = 'arbitrate'")
        .fetch_all(&hub.pool)
        .await
        .unwrap();
    assert_eq!(decided, [("moe-moe".to_owned(), format!("upheld {first}"))], "44's record {second} not upheld");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_refuses_provinces_strangers_and_operators_on_the_national_office_s_pages() {
    let (hub, _, _) = with_a_case().await;
    let console = Console::serve(&hub).await;

    let province = staff(&hub, Role::Province("37".parse().unwrap())).await;
    let b = Browser::start(&console, Some(&province)).await;
    b.goto(&console.url("/console")).await;
    let page = b.body().await;
    assert!(page.contains("403") && page.contains("E_FORBIDDEN") && !page.contains("在办业务"), "{page}");
    b.close().await;

    // No certificate: the TLS handshake is refused; the browser shows its own error page.
    let b = Browser::start(&console, None).await;
    let _ = b.client.goto(&console.url("/console")).await;
    let page = b.client.source().await.unwrap_or_default();
    assert!(!page.contains("学籍跨省业务交换枢纽"), "{page}");
    b.close().await;

    let operator = staff(&hub, Role::Operator("zhou".into())).await;
    let b = Browser::start(&console, Some(&operator)).await;
    b.goto(&console.url("/console/arbitrations")).await;
    let page = b.body().await;
    assert!(page.contains("403") && page.contains("E_FORBIDDEN"), "{page}");
    b.goto(&console.url("/console")).await;
    assert!(b.body().await.contains("在办业务"), "an operator sees the overview");
    b.goto(&console.url("/console/audit?actor=op-zhou")).await;
    assert!(b.text("h2").await.contains("审计记录"));
    b.goto(&console.url("/console/stuck")).await;
    assert!(b.text("h2").await.contains("卡滞环节"));
    b.close().await;

    // Every page forbids framing by another site and caching, and names no referrer.
    let client = console.client(&operator);
    for path in ["/console", "/console/cases", "/console/arbitrations"] {
        let r = client.get(console.url(path)).send().await.unwrap();
        let h = |n: &str| r.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert!(h("content-security-policy").contains("frame-ancestors 'none'"), "{path}");
        assert_eq!(
            (h("x-frame-options"), h("cache-control"), h("referrer-policy")),
            ("DENY".into(), "no-store".into(), "no-referrer".into()),
            "{path}"
        );
    }

    let national = staff(&hub, Role::National("moe".into())).await;
    let b = Browser::start(&console, Some(&national)).await;
    b.goto(&console.url("/console/arbitrations")).await;
    assert!(b.text("h2").await.contains("仲裁队列"));
    // The national overview: the case is open on both sides and waits on 51.
    b.goto(&console.url("/console/national")).await;
    let rows = b.text("#provinces").await;
    assert!(rows.contains("51 1 1 0") && rows.contains("37 1 0 0"), "{rows}");
    b.goto(&console.url("/console/orgcodes")).await;
    assert!(b.text("#batches").await.contains("各省确认进度"), "the code batches' page");
    b.close().await;
}
