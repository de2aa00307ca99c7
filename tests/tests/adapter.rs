//! The adapter as a real process: the province's durable, authenticated pipe.

use std::time::Duration;

use certs::{Profile, Role};
use chrono::Utc;
use e2e::{AdapterProc, Options, TestBed, eventually, index_upsert, student};
use hub::failpoint;
use schemas::messages::{Body, CaseCancel};
use schemas::{CaseId, Envelope, MessageType, Party, codec};

const WAIT: Duration = Duration::from_secs(60);

fn p37() -> Party {
    Party::Province("37".parse().unwrap())
}

async fn sqlite_count(a: &AdapterProc, sql: &'static str) -> i64 {
    let pool = a.store().await;
    let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

async fn pg_count(bed: &TestBed, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&bed.db().await).await.unwrap()
}

fn cancel(case: CaseId, step: u32) -> Envelope {
    let reason = format!("第{step}步").parse().unwrap();
    Envelope::new(p37(), Party::Hub, Body::CaseCancel(CaseCancel { reason })).with_case(case)
}

#[tokio::test(flavor = "multi_thread")]
async fn five_hundred_messages_submitted_while_the_broker_is_down_arrive_once_in_case_order() {
    let bed = TestBed::with(Options { dedicated_broker: true, ..Default::default() }).await;
    let a = bed.add_province("37").await;
    bed.spawn_hub("hub").await;
    let adapter = bed.spawn_adapter("adapter", &a, &[]).await;
    eventually("adapter connected", WAIT, || async {
        (adapter.get("/status").await["connected"] == true).then_some(())
    })
    .await;

    bed.stop_broker();
    let cases: Vec<CaseId> = (0..50).map(|_| CaseId::new_v7()).collect();
    let mut sent = Vec::new();
    for step in 0..10 {
        for (i, case) in cases.iter().enumerate() {
            let env = cancel(*case, step);
            let (status, _) = adapter.submit(&env).await;
            assert_eq!(status, 202);
            sent.push((i, step, env.message_id));
            if sent.len() == 150 {
                bed.stop("adapter"); // a clean restart …
                bed.start_adapter(&adapter, &[]);
                eventually("adapter back", WAIT, || async {
                    reqwest::get(adapter.url("/healthz")).await.ok().map(|_| ())
                })
                .await;
            }
            if sent.len() == 350 {
                bed.kill("adapter"); // … and a crash
                bed.start_adapter(&adapter, &[]);
                eventually("adapter back", WAIT, || async {
                    reqwest::get(adapter.url("/healthz")).await.ok().map(|_| ())
                })
                .await;
            }
        }
    }
    assert_eq!(adapter.get("/status").await["outbox"]["queued"], 500, "all held while the broker is down");
    bed.start_broker();

    let pool = bed.db().await;
    eventually("500 messages at the hub", Duration::from_secs(120), || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox WHERE sender = 'prov-37'")
                .fetch_one(&pool)
                .await
                .ok()?;
            (n >= 500).then_some(())
        }
    })
    .await;
    assert_eq!(pg_count(&bed, "SELECT count(*) FROM inbox WHERE sender = 'prov-37'").await, 500, "every one arrived");
    // Copies resent after the restarts are recognized; each message was handled once (each
    // cancel of an unknown case is refused once).
    let refused = e2e::metric(bed.settings.http.listen, "hub_messages_refused_total").await;
    assert_eq!(refused, 500.0, "each handled exactly once");
    for (i, case) in cases.iter().enumerate() {
        let arrived: Vec<uuid::Uuid> =
            sqlx::query_scalar("SELECT message_id FROM inbox WHERE case_id = $1 ORDER BY inbox_seq")
                .bind(case.uuid())
                .fetch_all(&pool)
                .await
                .unwrap();
        let submitted: Vec<uuid::Uuid> = sent.iter().filter(|(c, _, _)| *c == i).map(|(_, _, id)| id.uuid()).collect();
        assert_eq!(arrived, submitted, "case {i} arrived in submission order");
    }
    eventually("outbox drained", WAIT, || async {
        (adapter.get("/status").await["outbox"]["queued"] == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_adapter_killed_between_inbox_commit_and_ack_loses_nothing_and_hands_nothing_twice() {
    let bed = TestBed::new().await;
    let a = bed.add_province("37").await;
    let crash_third = format!("{}:3", failpoint::INBOUND_AFTER_COMMIT);
    let adapter = bed.spawn_adapter("adapter", &a, &[("XJ_CRASH_AT", &crash_third)]).await;
    let mut ids = Vec::new();
    for n in 0..10 {
        let env = index_upsert("37", vec![student("37", n)]);
        assert_eq!(adapter.submit(&env).await.0, 202);
        ids.push(env.message_id.to_string());
    }
    // Only now does the hub answer: the adapter dies after its third commit of replies (each
    // holds one or more, as they were delivered), before acknowledging what that one held.
    bed.spawn_hub("hub").await;
    bed.wait_exit("adapter", WAIT).await;
    let stored = sqlite_count(&adapter, "SELECT count(*) FROM inbox").await;
    assert!((3..=10).contains(&stored), "three commits stored {stored}, the last never acknowledged");
    bed.start_adapter(&adapter, &[]);

    // The provincial system pulls everything, acknowledging as it goes.
    let mut handed = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while handed.len() < 10 {
        assert!(std::time::Instant::now() < deadline, "only {} replies pulled", handed.len());
        let list: Vec<serde_json::Value> = match reqwest::get(adapter.url("/inbox?pending=true")).await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => vec![], // restarting
        };
        for entry in list {
            let id = entry["messageId"].as_str().unwrap().to_owned();
            handed.push(entry["correlationId"].as_str().unwrap().to_owned());
            let acked = reqwest::Client::new().post(adapter.url(&format!("/inbox/{id}/ack"))).send().await.unwrap();
            assert_eq!(acked.status().as_u16(), 204);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again: Vec<serde_json::Value> =
        reqwest::get(adapter.url("/inbox?pending=true")).await.unwrap().json().await.unwrap();
    assert!(again.is_empty(), "nothing handed over twice: {again:?}");
    handed.sort();
    ids.sort();
    assert_eq!(handed, ids, "every reply, once");
    assert_eq!(sqlite_count(&adapter, "SELECT count(*) FROM inbox").await, 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_submission_is_refused_with_its_typed_error_and_never_queued() {
    let bed = TestBed::new().await;
    let a = bed.add_province("37").await;
    let adapter = bed.spawn_adapter("adapter", &a, &[]).await;
    let valid = index_upsert("37", vec![student("37", 1)]);
    let xml = codec::to_xml(&valid);

    let bad_digit = xml.replacen("<studentId>G37", "<studentId>G36", 1);
    let (status, err) = adapter.submit_raw(bad_digit.into_bytes(), "application/xml").await;
    assert_eq!((status, err["code"].as_str()), (400, Some("E_SCHEMA")), "{err}");
    assert_eq!(err["offendingMessageId"], valid.message_id.to_string());
    assert!(err["messageZh"].as_str().is_some_and(|s| !s.is_empty()) && err["messageEn"].as_str().is_some());

    let mut json: serde_json::Value = serde_json::from_str(&codec::to_json(&valid)).unwrap();
    json["body"]["indexUpsert"]["student"][0].as_object_mut().unwrap().remove("name");
    let (status, err) = adapter.submit_raw(json.to_string().into_bytes(), "application/json").await;
    assert_eq!((status, err["code"].as_str()), (400, Some("E_SCHEMA")), "{err}");

    let mut other = valid.clone();
    other.sender = Party::Province("44".parse().unwrap());
    let (status, err) = adapter.submit(&other).await;
    assert_eq!((status, err["code"].as_str()), (422, Some("E_SENDER")), "{err}");

    let hub_only = Envelope::new(p37(), Party::Hub, schemas::samples::body(MessageType::ReviewRequest));
    let (status, err) = adapter.submit(&hub_only).await;
    assert_eq!((status, err["code"].as_str()), (422, Some("E_UNEXPECTED")), "{err}");

    let (status, err) = adapter.submit_raw(b"<envelope".to_vec(), "application/xml").await;
    assert_eq!((status, err["code"].as_str()), (400, Some("E_MALFORMED")), "{err}");

    assert_eq!(sqlite_count(&adapter, "SELECT count(*) FROM outbox").await, 0, "nothing invalid entered the outbox");
    let (status, _) = adapter.submit(&valid).await;
    assert_eq!(status, 202, "control: the valid message is accepted");
    assert_eq!(sqlite_count(&adapter, "SELECT count(*) FROM outbox").await, 1);
    let (status, again) = adapter.submit(&valid).await;
    assert_eq!((status, again["state"].as_str()), (200, Some("already queued")), "idempotent resubmission");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_endpoints_tell_the_truth_about_what_is_queued() {
    let bed = TestBed::with(Options { dedicated_broker: true, ..Default::default() }).await;
    let a = bed.add_province("37").await;
    bed.spawn_hub("hub").await;
    bed.stop_broker();
    let adapter = bed.spawn_adapter("adapter", &a, &[]).await;
    let mut ids = Vec::new();
    for n in 0..20 {
        let env = index_upsert("37", vec![student("37", n)]);
        adapter.submit(&env).await;
        ids.push(env.message_id.to_string());
    }
    let status = adapter.get("/status").await;
    assert_eq!(status["connected"], false);
    assert!(status["lastError"].as_str().is_some_and(|e| !e.is_empty()), "{status}");
    let queued = sqlite_count(&adapter, "SELECT count(*) FROM outbox WHERE state = 'queued'").await;
    assert_eq!(queued, 20);
    assert_eq!(status["outbox"]["queued"], queued);
    assert_eq!(adapter.get(&format!("/messages/{}", ids[0])).await["state"], "queued");
    assert!(status["certificate"]["daysToExpiry"].as_i64().is_some_and(|d| d > 300));

    bed.start_broker();
    eventually("all answered", Duration::from_secs(90), || async {
        let s = adapter.get("/status").await;
        (s["outbox"]["queued"] == 0 && s["outbox"]["awaitingReply"] == 0 && s["connected"] == true).then_some(s)
    })
    .await;
    assert_eq!(sqlite_count(&adapter, "SELECT count(*) FROM outbox WHERE state = 'queued'").await, 0);
    let m = adapter.get(&format!("/messages/{}", ids[0])).await;
    assert_eq!(m["state"], "answered", "{m}");
    assert_eq!(m["reply"]["type"], "index.result");
    let status = adapter.get("/status").await;
    let pending = sqlite_count(&adapter, "SELECT count(*) FROM inbox WHERE acknowledged_at IS NULL").await;
    assert_eq!(pending, 20);
    assert_eq!(status["inbox"]["pending"], pending);
}

#[tokio::test(flavor = "multi_thread")]
async fn inbound_messages_are_pushed_to_the_webhook_until_it_accepts() {
    use std::sync::{Arc, Mutex};
    let bed = TestBed::new().await;
    let a = bed.add_province("37").await;
    bed.spawn_hub("hub").await;
    // The provincial system's webhook: refuses twice, then accepts.
    let seen = Arc::new(Mutex::new(Vec::<(String, String, String, String)>::new()));
    let bodies = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let app = axum::Router::new().route(
        "/inbox",
        axum::routing::post({
            let (seen, bodies) = (seen.clone(), bodies.clone());
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                bodies.lock().unwrap().push(body.to_vec());
                let seen = seen.clone();
                async move {
                    let mut s = seen.lock().unwrap();
                    let header = |name: &str| headers[name].to_str().unwrap().to_owned();
                    s.push((
                        header("x-message-id"),
                        header("x-message-type"),
                        header("x-xueji-timestamp"),
                        header("x-xueji-signature"),
                    ));
                    if s.len() <= 2 {
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        axum::http::StatusCode::OK
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let proc = bed.adapter_config("adapter", &a);
    let mut cfg = std::fs::read_to_string(&proc.config).unwrap();
    const SECRET: &str = "a webhook secret of the province 37";
    cfg.push_str(&format!("\n[webhook]\nurl = \"http://{hook}/inbox\"\nsecret = \"{SECRET}\"\n"));
    std::fs::write(&proc.config, cfg).unwrap();
    bed.start_adapter(&proc, &[]);
    eventually("adapter up", WAIT, || async { reqwest::get(proc.url("/healthz")).await.ok().map(|_| ()) }).await;

    let env = index_upsert("37", vec![student("37", 1)]);
    proc.submit(&env).await;
    eventually("accepted by the webhook", WAIT, || async {
        (sqlite_count(&proc, "SELECT count(*) FROM inbox WHERE acknowledged_at IS NOT NULL").await == 1).then_some(())
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 3 && seen.iter().all(|h| h.0 == seen[0].0), "{seen:?}");
    let bodies = bodies.lock().unwrap().clone();
    // Each push names its type and is signed over its timestamp and body with the shared secret.
    let secret = adapters::webhook::Secret::new(SECRET);
    for ((_, kind, timestamp, sig), body) in seen.iter().zip(&bodies) {
        assert_eq!(kind, "index.result");
        let t: i64 = timestamp.parse().unwrap();
        assert!((Utc::now().timestamp() - t).abs() < 300, "a current timestamp");
        assert_eq!(*sig, adapters::webhook::signature(&secret, t, body));
        assert_ne!(*sig, adapters::webhook::signature(&adapters::webhook::Secret::new("x".repeat(40)), t, body));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_adapter_refuses_a_bad_certificate_and_warns_before_expiry() {
    let bed = TestBed::new().await;
    let p = "37".parse().unwrap();
    let now = Utc::now();

    let mut expired = Profile::new(Role::Province(p), 30);
    expired.not_before = now - chrono::Duration::days(60);
    expired.not_after = now - chrono::Duration::days(1);
    let creds = bed.issue(&expired, "expired");
    let proc = bed.adapter_config("expired", &creds);
    bed.start_adapter(&proc, &[]);
    let status = bed.wait_exit("expired", WAIT).await;
    assert_eq!(status.code(), Some(1), "refuses to start");
    assert!(bed.log("expired").contains("expired on"), "{}", bed.log("expired"));
    assert!(!bed.log("expired").contains("Local API listening"), "never listened");

    let soon = bed.issue(&Profile::new(Role::Province(p), 30), "soon");
    hub::provision::add_province(&bed.settings, &soon.cert).await.unwrap();
    let proc = bed.spawn_adapter("soon", &soon, &[]).await;
    assert!(bed.log("soon").contains("The certificate expires in"), "{}", bed.log("soon"));
    let days = proc.get("/status").await["certificate"]["daysToExpiry"].as_i64().unwrap();
    assert!((28..=30).contains(&days), "{days}");
    // It runs and logs in as its province, with EXTERNAL.
    eventually("connected", WAIT, || async { (proc.get("/status").await["connected"] == true).then_some(()) }).await;
    let conns = eventually("listed", WAIT, || async {
        let c = bed.admin().connections(&bed.id).await.ok()?;
        c.into_iter().find(|c| c["user"] == "prov-37")
    })
    .await;
    assert_eq!(conns["auth_mechanism"], "EXTERNAL");

    // A configuration that claims another province is refused.
    let proc = bed.adapter_config("claims", &soon);
    let mut cfg = std::fs::read_to_string(&proc.config).unwrap();
    cfg.insert_str(0, "province = \"44\"\n");
    std::fs::write(&proc.config, cfg).unwrap();
    bed.start_adapter(&proc, &[]);
    assert_eq!(bed.wait_exit("claims", WAIT).await.code(), Some(1));
    assert!(bed.log("claims").contains("is prov-37 (province), but this needs province 44's"), "{}", bed.log("claims"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_in_the_queue_that_did_not_come_from_the_hub_or_is_not_signed_by_it_is_never_handed_over() {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    let bed = TestBed::new().await;
    let a = bed.add_province("37").await;
    let adapter = bed.spawn_adapter("adapter", &a, &[]).await;
    let conn = bed.env.connect(&bed.id, &bed.env.hub_cert, &bed.env.hub_key).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let hub_key = e2e::Creds { cert: bed.env.hub_cert.clone(), key: bed.env.hub_key.clone(), serial: String::new() };
    let envelope = || {
        let mut hub_said = schemas::samples::envelope(MessageType::CaseStatus);
        hub_said.sender = Party::Hub;
        hub_said.recipient = p37();
        hub_said.message_id = schemas::MessageId::new_v7();
        hub_said
    };
    let genuine = envelope();
    let body = |e: &schemas::Envelope| codec::to_xml(e).into_bytes();
    // What an attacker could put in the queue: a message without the broker's user_id; one with
    // it but unsigned; one signed by a province's own key and certificate; one whose bytes were
    // changed after the hub signed them. Only the genuine one is handed over.
    let mut changed = body(&envelope());
    let signed_before = e2e::signed_with_certificate(&hub_key.signer(), &changed);
    let at = changed.len() - 20;
    changed[at] ^= 0x01;
    let attempts: Vec<(&str, Option<&str>, Vec<u8>, lapin::types::FieldTable)> = vec![
        ("no user_id", None, body(&envelope()), e2e::signed_with_certificate(&hub_key.signer(), &body(&envelope()))),
        ("unsigned", Some("hub"), body(&envelope()), lapin::types::FieldTable::default()),
        ("a province's key", Some("hub"), body(&envelope()), {
            let b = body(&envelope());
            e2e::signed_with_certificate(&a.signer(), &b)
        }),
        ("changed after signing", Some("hub"), changed, signed_before),
        ("genuine", Some("hub"), body(&genuine), e2e::signed_with_certificate(&hub_key.signer(), &body(&genuine))),
    ];
    for (what, user, bytes, headers) in attempts {
        let mut props = lapin::BasicProperties::default()
            .with_message_id(uuid::Uuid::new_v4().to_string().into())
            .with_delivery_mode(2)
            .with_headers(headers);
        if let Some(u) = user {
            props = props.with_user_id(u.into());
        }
        let confirm = ch
            .basic_publish(
                hub::amqp::names::OUTBOUND_EXCHANGE.into(),
                "prov-37".into(),
                BasicPublishOptions::default(),
                &bytes,
                props,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirm.is_ack(), "{what}");
    }
    let inbox = eventually("the hub's message in the inbox", WAIT, || async {
        let list = adapter.get("/inbox").await;
        (!list.as_array()?.is_empty()).then_some(list)
    })
    .await;
    eventually("the others refused", WAIT, || async { (adapter.get("/status").await["refused"] == 4).then_some(()) })
        .await;
    let list = inbox.as_array().unwrap();
    assert_eq!(list.len(), 1, "{inbox}");
    assert_eq!(list[0]["messageId"], genuine.message_id.to_string());
    assert_eq!(sqlite_count(&adapter, "SELECT count(*) FROM inbox").await, 1, "never handed over as the hub's");
    assert_eq!(sqlite_count(&adapter, "SELECT count(*) FROM refused WHERE reason LIKE 'not from the hub%'").await, 1);
    assert_eq!(sqlite_count(&adapter, "SELECT count(*) FROM refused WHERE reason LIKE 'signature: %'").await, 3);
    // The log names the refusals without the content.
    let log = bed.log("adapter");
    assert!(log.contains("Message not from the hub refused"), "{log}");
    assert!(log.contains("Message without a valid hub signature refused"), "{log}");
}
