//! Certificate authentication and per-province isolation on a real broker with TLS. Each test
//! observes the refusal itself (and a control that succeeds), so it fails if the protection is
//! removed.

use std::time::Duration;

use certs::{Ca, Profile, Role};
use chrono::Utc;
use e2e::{Creds, TestBed, header, next_envelope, next_message, publish};
use hub::amqp::names;
use lapin::options::{BasicConsumeOptions, BasicGetOptions, ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use schemas::codec;
use schemas::ids::ProvinceCode;
use schemas::messages::Body;
use schemas::{Envelope, ErrorCode, MessageType, Party, samples};

const SHORT: Duration = Duration::from_secs(10);

fn p(code: &str) -> ProvinceCode {
    ProvinceCode::parse(code).unwrap()
}

/// A sample index.upsert from `from`, claiming `claimed` as its sender.
fn upsert(claimed: Party) -> Envelope {
    let mut env = Envelope::new(claimed, Party::Hub, samples::body(MessageType::IndexUpsert));
    env.case_id = None;
    env
}

async fn refused(bed: &TestBed, creds: &Creds) -> bool {
    matches!(tokio::time::timeout(SHORT, bed.env.connect(&bed.id, &creds.cert, &creds.key)).await, Ok(Err(_)) | Err(_))
}

async fn index_rows(bed: &TestBed) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM student_index").fetch_one(&bed.db().await).await.unwrap()
}

#[tokio::test]
async fn a_foreign_ca_an_expired_certificate_and_no_certificate_are_refused_at_connection() {
    let bed = TestBed::new().await;
    let good = bed.add_province("37").await;
    bed.connect(&good).await; // control: an admitted certificate gets in

    // Another CA: the hub refuses to admit its certificate (the protection: the broker's trust
    // store holds only admitted certificates), so the broker refuses the connection.
    let rogue_ca = Ca::create("Rogue CA", 30).unwrap();
    let rogue = rogue_ca.issue(&Profile::new(Role::Province(p("37")), 30)).unwrap();
    rogue.write(bed.dir.path(), "rogue").unwrap();
    let rogue = Creds {
        cert: bed.dir.path().join("rogue.pem"),
        key: bed.dir.path().join("rogue.key"),
        serial: rogue.info.serial,
    };
    let admitted = hub::provision::add_province(&bed.settings, &rogue.cert).await;
    assert!(admitted.is_err(), "a certificate of another CA must not be admitted");
    assert!(refused(&bed, &rogue).await, "a certificate of another CA must not connect");

    // Expired: refused by the hub's admission and, even when present in the broker's trust
    // store (expired while admitted), by the broker at TLS.
    let now = Utc::now();
    let mut profile = Profile::new(Role::Province(p("37")), 30);
    profile.not_before = now - chrono::Duration::days(30);
    profile.not_after = now - chrono::Duration::days(1);
    let expired = bed.issue(&profile, "expired");
    assert!(hub::provision::add_province(&bed.settings, &expired.cert).await.is_err());
    let fresh = bed.issue(&Profile::new(Role::Province(p("37")), 30), "fresh");
    for c in [&expired, &fresh] {
        std::fs::copy(&c.cert, bed.env.trust_dir.join(format!("{}.pem", c.serial))).unwrap();
    }
    bed.connect(&fresh).await; // the trust store has picked both up
    assert!(refused(&bed, &expired).await, "an expired certificate must not connect");
    for c in [&expired, &fresh] {
        let _ = std::fs::remove_file(bed.env.trust_dir.join(format!("{}.pem", c.serial)));
    }

    // No certificate at all.
    let tls = lapin::tcp::OwnedTLSConfig {
        identity: None,
        cert_chain: Some(std::fs::read_to_string(&bed.env.ca_cert).unwrap()),
    };
    let uri = certs::amqp::uri(&bed.env.amqps_url, &bed.id).unwrap();
    let none = tokio::time::timeout(
        SHORT,
        lapin::Connection::connect_with_config(
            &uri,
            Default::default(),
            tls,
            lapin::runtime::default_runtime().unwrap(),
        ),
    )
    .await;
    assert!(matches!(none, Ok(Err(_)) | Err(_)), "a client without a certificate must not connect");
}

#[tokio::test]
async fn a_forged_user_id_is_refused_by_the_broker() {
    let bed = TestBed::new().await;
    let a = bed.add_province("37").await;
    bed.add_province("44").await;
    let conn = bed.connect(&a).await;
    let body = codec::to_xml(&upsert(Party::Province(p("37"))));
    publish(&conn, names::INBOUND_EXCHANGE, "index", body.as_bytes(), "prov-37").await.expect("control: own user_id");
    let forged = publish(&conn, names::INBOUND_EXCHANGE, "index", body.as_bytes(), "prov-44").await;
    let err = forged.expect_err("a forged user_id must be refused");
    assert!(format!("{err:#}").contains("PRECONDITION_FAILED"), "{err:#}");
}

#[tokio::test]
async fn a_province_can_use_only_its_own_queue_and_configure_nothing() {
    let bed = TestBed::new().await;
    let a = bed.add_province("37").await;
    bed.add_province("44").await;
    let conn = bed.connect(&a).await;
    let own = names::province_queue(p("37"));
    let other = names::province_queue(p("44"));
    let denied = |r: Result<(), lapin::Error>| match r {
        Err(e) => format!("{e}").contains("ACCESS_REFUSED"),
        Ok(()) => false,
    };

    // Controls: its own queue and the hub's inbound exchange.
    let ch = conn.create_channel().await.unwrap();
    ch.basic_consume(own.as_str().into(), "own".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    publish(&conn, names::INBOUND_EXCHANGE, "x", b"<x/>", "prov-37").await.unwrap();

    let ch = conn.create_channel().await.unwrap();
    let r = ch
        .basic_consume(other.as_str().into(), "t".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await;
    assert!(denied(r.map(|_| ())), "consuming another province's queue");
    let ch = conn.create_channel().await.unwrap();
    let r = ch.basic_get(other.as_str().into(), BasicGetOptions::default()).await;
    assert!(denied(r.map(|_| ())), "basic.get on another province's queue");
    for (exchange, key) in [("", other.as_str()), (names::OUTBOUND_EXCHANGE, "prov-44")] {
        let r = publish(&conn, exchange, key, b"<x/>", "prov-37").await;
        assert!(
            r.is_err_and(|e| format!("{e:#}").contains("ACCESS_REFUSED")),
            "publishing into {other} via `{exchange}`"
        );
    }
    let ch = conn.create_channel().await.unwrap();
    let r = ch.queue_declare("mine".into(), QueueDeclareOptions::default(), FieldTable::default()).await;
    assert!(denied(r.map(|_| ())), "declaring a queue");
    let ch = conn.create_channel().await.unwrap();
    let r = ch
        .exchange_declare(
            "mine".into(),
            lapin::ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert!(denied(r), "declaring an exchange");
}

#[tokio::test]
async fn an_envelope_claiming_another_sender_gets_e_sender_and_changes_nothing() {
    let bed = TestBed::new().await;
    let a = bed.add_province("37").await;
    bed.add_province("44").await;
    bed.spawn_hub("hub").await;
    let conn = bed.connect(&a).await;

    let forged = upsert(Party::Province(p("44")));
    publish(&conn, names::INBOUND_EXCHANGE, "index", codec::to_xml(&forged).as_bytes(), "prov-37").await.unwrap();
    let reply = next_envelope(&conn, "37", SHORT).await.expect("the real sender is told");
    let Body::Error(report) = reply.body else { panic!("expected an error, got {:?}", reply.body) };
    assert_eq!(report.code, ErrorCode::Sender);
    assert_eq!(report.offending_message_id, Some(forged.message_id));
    assert_eq!(index_rows(&bed).await, 0, "a forged message changes nothing");

    let hub = bed.env.connect(&bed.id, &bed.env.hub_cert, &bed.env.hub_key).await.unwrap();
    let dead = next_message(&hub, names::DEAD_LETTER_QUEUE, SHORT).await.expect("dead-lettered");
    assert_eq!(header(&dead.delivery.properties, "x-xj-code").as_deref(), Some("E_SENDER"));
    assert_eq!(dead.delivery.data, codec::to_xml(&forged).into_bytes());

    // Control: the same message with the true sender is applied.
    let honest = upsert(Party::Province(p("37")));
    publish(&conn, names::INBOUND_EXCHANGE, "index", codec::to_xml(&honest).as_bytes(), "prov-37").await.unwrap();
    let reply = next_envelope(&conn, "37", SHORT).await.expect("index.result");
    assert!(matches!(reply.body, Body::IndexResult(ref r) if r.applied == 1), "{:?}", reply.body);
    assert_eq!(index_rows(&bed).await, 1);
}

#[tokio::test]
async fn after_revocation_a_province_can_neither_connect_nor_publish_and_others_are_unaffected() {
    let bed = TestBed::new().await;
    let a = bed.add_province("37").await;
    let b = bed.add_province("44").await;
    let conn_a = bed.connect(&a).await;
    let conn_b = bed.connect(&b).await;

    // Sent before the revocation, processed after: the hub refuses it.
    let early = upsert(Party::Province(p("37")));
    publish(&conn_a, names::INBOUND_EXCHANGE, "index", codec::to_xml(&early).as_bytes(), "prov-37").await.unwrap();
    // The management API lists connections from periodic statistics; wait until A's is listed,
    // so that the count below is about revocation, not about statistics latency.
    e2e::eventually("A's connection listed", SHORT, || async {
        let list = bed.admin().connections(&bed.id).await.ok()?;
        list.iter().any(|c| c["user"] == "prov-37").then_some(())
    })
    .await;

    let r = hub::provision::revoke(&bed.settings, &a.serial, "key compromised").await.unwrap();
    assert!(r.access_removed);
    assert!(r.connections_closed >= 1);
    e2e::eventually("A's connection closed", SHORT, || async { (!conn_a.status().connected()).then_some(()) }).await;
    assert!(publish(&conn_a, names::INBOUND_EXCHANGE, "index", b"<x/>", "prov-37").await.is_err());
    assert!(refused(&bed, &a).await, "a revoked certificate must not connect");

    bed.spawn_hub("hub").await;
    let hub = bed.env.connect(&bed.id, &bed.env.hub_cert, &bed.env.hub_key).await.unwrap();
    let dead = next_message(&hub, names::DEAD_LETTER_QUEUE, SHORT).await.expect("A's message dead-lettered");
    assert_eq!(header(&dead.delivery.properties, "x-xj-code").as_deref(), Some("E_REVOKED"));
    assert_eq!(index_rows(&bed).await, 0);

    // B is unaffected: same connection, still served.
    let honest = upsert(Party::Province(p("44")));
    publish(&conn_b, names::INBOUND_EXCHANGE, "index", codec::to_xml(&honest).as_bytes(), "prov-44").await.unwrap();
    let reply = next_envelope(&conn_b, "44", SHORT).await.expect("B served");
    assert_eq!(reply.message_type(), MessageType::IndexResult);
    assert!(conn_b.status().connected());

    // A new certificate readmits the province; the revoked one stays out.
    let renewed = bed.add_province("37").await;
    bed.connect(&renewed).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // past the trust store's refresh
    assert!(refused(&bed, &a).await, "the revoked certificate stays out after renewal");
}

#[tokio::test]
async fn a_province_logs_in_with_external_as_the_user_its_certificate_names() {
    let bed = TestBed::new().await;
    let a = bed.add_province("37").await;
    let _conn = bed.connect(&a).await;
    let conns = e2e::eventually("connection listed", SHORT, || async {
        let list = bed.admin().connections(&bed.id).await.ok()?;
        (!list.is_empty()).then_some(list)
    })
    .await;
    let c = &conns[0];
    assert_eq!(c["user"], "prov-37");
    assert_eq!(c["auth_mechanism"], "EXTERNAL");
    assert_eq!(c["ssl"], true);
}
