//! Link health per province: in process, what the database knows (last message, outbox
//! backlog, certificate days left with their warning and alert); with real processes, that a
//! province shows as disconnected within 30 seconds of its adapter stopping. Also the national
//! overview's figures: each province's load, each reviewing unit's pace.

use std::time::Duration;

use certs::{Profile, Role};
use e2e::inprocess::Hub;
use e2e::{TestBed, eventually, index_upsert, student};

fn operator() -> Role {
    Role::Operator("li".into())
}

fn link<'a>(links: &'a serde_json::Value, province: &str) -> &'a serde_json::Value {
    links.as_array().expect("a list").iter().find(|l| l["province"] == province).expect("listed")
}

#[tokio::test]
async fn links_show_the_last_message_the_backlog_and_the_certificate_s_days_left() {
    let hub = Hub::new(&["37", "44"], "").await;
    // 51's only certificate expires in ten days.
    let short = hub.ca.issue(&Profile::new(Role::Province("51".parse().unwrap()), 10)).unwrap();
    let mut conn = hub.pool.acquire().await.unwrap();
    hub::store::certs::register(&mut conn, &short.info).await.unwrap();
    drop(conn);
    hub.send_envelope(&index_upsert("37", vec![student("37", 1)])).await;

    let (status, links) = hub.ops(operator(), "GET", "/ops/links", None).await;
    assert_eq!(status, 200, "{links}");
    let p37 = link(&links, "37");
    assert!(p37["lastMessageAt"].is_string(), "{p37}");
    assert_eq!(p37["outboxBacklog"], 1, "its answer waits for the relay: {p37}");
    // No broker here: its side is unknown, not guessed.
    assert!(p37["connected"].is_null() && p37["queueDepth"].is_null(), "{p37}");
    // Certificates of 30 days: within the 60-day warning.
    assert_eq!((p37["certificateDaysLeft"].as_i64(), p37["health"].as_str()), (Some(29), Some("warn")), "{p37}");
    let p44 = link(&links, "44");
    assert!(p44["lastMessageAt"].is_null() && p44["outboxBacklog"] == 0, "{p44}");
    let p51 = link(&links, "51");
    assert_eq!((p51["certificateDaysLeft"].as_i64(), p51["health"].as_str()), (Some(9), Some("alert")), "{p51}");

    // Revoked: no valid certificate at all, an alert.
    sqlx::query("UPDATE certificate SET revoked_at = now() WHERE principal = 'prov-44'")
        .execute(&hub.pool)
        .await
        .unwrap();
    let (_, links) = hub.ops(operator(), "GET", "/ops/links", None).await;
    let p44 = link(&links, "44");
    assert!(p44["certificateDaysLeft"].is_null() && p44["health"] == "alert", "{p44}");
    // Provinces only: not the operators who called.
    assert!(links.as_array().unwrap().iter().all(|l| l["principal"].as_str().unwrap().starts_with("prov-")), "{links}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_province_shows_as_disconnected_within_30_seconds_of_its_adapter_stopping() {
    let bed = TestBed::new().await;
    let creds = bed.add_province("37").await;
    bed.spawn_hub("hub").await;
    bed.spawn_adapter("adapter-37", &creds, &[]).await;
    let ops = bed.operator(operator()).await;
    let connected = || async {
        let (status, links) = ops.get("/ops/links").await;
        assert_eq!(status, 200, "{links}");
        link(&links, "37")["connected"].as_bool()
    };
    eventually("37 connected", Duration::from_secs(60), || async { (connected().await == Some(true)).then_some(()) })
        .await;
    bed.kill("adapter-37");
    let stopped = std::time::Instant::now();
    eventually("37 shown disconnected", Duration::from_secs(30), || async {
        (connected().await == Some(false)).then_some(())
    })
    .await;
    let (_, links) = ops.get("/ops/links").await;
    let p37 = link(&links, "37");
    assert_eq!(p37["health"], "alert", "{p37}");
    assert!(p37["reasons"].to_string().contains("not connected"), "{p37}");
    println!("shown disconnected {:.1} s after the adapter was killed", stopped.elapsed().as_secs_f64());
}

#[tokio::test]
async fn the_national_overview_times_each_unit_s_review_steps() {
    let hub = Hub::new(&["37", "51"], "").await;
    // A case's row and three decisions of two units: 51's steps took 2 h and 4 h, 37's 1 h.
    let case = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO business_case (case_id, business, student_id, student_name, in_province, in_school, out_province,
                                    out_school, application_id, data, stage, state, since)
         VALUES ($1, 'TRANSFER', 'G1', '学生', '37', '3137000001', '51', '3151000001', $1, '{}', 'reviewing', 'UNDER_REVIEW', now())",
    )
    .bind(case)
    .execute(&hub.pool)
    .await
    .expect("a case row");
    let start = chrono::Utc::now() - chrono::Duration::days(1);
    sqlx::query("INSERT INTO case_event (case_id, at, from_stage, to_stage, cause) VALUES ($1, $2, 'verifying', 'reviewing', 'test')")
        .bind(case)
        .bind(start)
        .execute(&hub.pool)
        .await
        .unwrap();
    for (seq, province, unit, hours) in [(1, "51", "51区", 2), (2, "51", "51区", 6), (3, "37", "37校", 7)] {
        sqlx::query(
            "INSERT INTO case_step (case_id, seq, step, province, decision, unit, reviewer, opinion, decided_at)
             VALUES ($1, $2, 'OUT_COUNTY', $3, 'APPROVED', $4, '审核人', '同意', $5)",
        )
        .bind(case)
        .bind(seq)
        .bind(province)
        .bind(unit)
        .bind(start + chrono::Duration::hours(hours))
        .execute(&hub.pool)
        .await
        .unwrap();
    }
    let mut conn = hub.pool.acquire().await.unwrap();
    let units = hub::store::overview::units(&mut conn, chrono::Utc::now() - chrono::Duration::days(30)).await.unwrap();
    let paced: Vec<(String, i64, f64)> =
        units.iter().map(|u| (u.unit.clone(), u.steps, u.median_secs / 3600.0)).collect();
    assert_eq!(paced, [("51区".to_owned(), 2, 3.0), ("37校".to_owned(), 1, 1.0)], "slowest first");
    let provinces = hub::store::overview::provinces(&mut conn, chrono::Utc::now().date_naive()).await.unwrap();
    let loads: Vec<(String, i64, i64)> = provinces.iter().map(|p| (p.province.clone(), p.open, p.waiting)).collect();
    assert_eq!(loads, [("37".to_owned(), 1, 0), ("51".to_owned(), 1, 0)]);
}
