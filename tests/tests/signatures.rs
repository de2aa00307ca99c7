//! Signed messages (报文签名), in process against a real PostgreSQL: the hub accepts a
//! province's message only when the province's registered, unrevoked certificate signed its
//! exact bytes. Everything an attacker with a province's broker account could forge — no
//! signature, a byte changed after signing, another province's key, a certificate the
//! registry does not hold or revoked — is refused with its code and changes nothing; an
//! operator's replay checks the signature again.

use certs::{Profile, Role};
use e2e::inprocess::{Hub, Sent, province, signature};
use e2e::{index_upsert, student};
use hub::service::Handled;
use schemas::messages::Body;
use schemas::{ErrorCode, codec};

async fn indexed(hub: &Hub) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM student_index").fetch_one(&hub.pool).await.unwrap()
}

/// The refusal the sender was told, with the message it names.
fn told(sent: &Sent) -> (ErrorCode, Option<String>) {
    let report = sent
        .replies
        .iter()
        .find_map(|e| match &e.body {
            Body::Error(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the sender is told: {sent:?}"));
    (report.code, report.offending_message_id.map(|m| m.to_string()))
}

#[tokio::test]
async fn a_genuine_message_passes_and_every_forgery_is_refused_with_its_code_and_changes_nothing() {
    let hub = Hub::new(&["37", "44"], "").await;
    let forgeries = [
        "unsigned",
        "a signature without its signer",
        "changed after signing",
        "another province's key",
        "another key naming the sender's certificate",
        "not base64",
        "a signer that is no fingerprint",
    ];
    for what in forgeries {
        let env = index_upsert("37", vec![student("37", 1)]);
        let body = codec::to_xml(&env).into_bytes();
        let (value, signer) = signature("prov-37", &body);
        // 44's key and certificate are genuine, but the broker says the sender is 37.
        let (theirs, their_signer) = signature("prov-44", &body);
        let (bytes, value, signer) = match what {
            "unsigned" => (body, None, None),
            "a signature without its signer" => (body, Some(value), None),
            "changed after signing" => {
                // The student's name, one character more: still a valid message.
                let name = student("37", 1).name.to_string();
                let text = String::from_utf8(body).unwrap().replacen(&name, &format!("{name}甲"), 1);
                (text.into_bytes(), Some(value), Some(signer))
            }
            "another province's key" => (body, Some(theirs), Some(their_signer)),
            // 44's signature, naming 37's certificate: the key decides.
            "another key naming the sender's certificate" => (body, Some(theirs), Some(signer)),
            "not base64" => (body, Some("%%%".to_owned()), Some(signer)),
            _ => (body, Some(value), Some("prov-37".to_owned())),
        };
        let sent = hub.deliver("prov-37", &bytes, (value.as_deref(), signer.as_deref())).await;
        assert_eq!(sent.handled, Handled::Poison(ErrorCode::Signature), "{what}: {sent:?}");
        assert_eq!(told(&sent), (ErrorCode::Signature, Some(env.message_id.to_string())), "{what}");
        assert_eq!(indexed(&hub).await, 0, "{what}: nothing changed");
    }
    let codes: Vec<String> = sqlx::query_scalar("SELECT code FROM dead_letter").fetch_all(&hub.pool).await.unwrap();
    assert_eq!(codes, vec!["E_SIGNATURE"; forgeries.len()], "each kept as a dead letter");

    let env = index_upsert("37", vec![student("37", 1)]);
    let sent = hub.send_envelope(&env).await;
    assert_eq!(sent.handled, Handled::Processed(schemas::MessageType::IndexUpsert), "{sent:?}");
    assert_eq!(indexed(&hub).await, 1);
}

#[tokio::test]
async fn a_certificate_not_registered_or_revoked_admits_nothing_even_when_the_province_holds_another() {
    let hub = Hub::new(&["37"], "").await;
    // 37 also holds a second certificate, registered and valid: signing with the first,
    // revoked, still admits nothing.
    let second = hub.ca.issue(&Profile::new(Role::Province("37".parse().unwrap()), 30)).unwrap();
    let mut conn = hub.pool.acquire().await.unwrap();
    hub::store::certs::register(&mut conn, &second.info).await.unwrap();
    hub::store::certs::revoke(&mut conn, &province("37").0.serial, "key lost").await.unwrap();
    drop(conn);
    let env = index_upsert("37", vec![student("37", 1)]);
    let sent = hub.send_envelope(&env).await;
    assert_eq!(sent.handled, Handled::Poison(ErrorCode::Revoked), "{sent:?}");
    assert_eq!(told(&sent).0, ErrorCode::Revoked);

    // Signed with the second certificate's key: accepted.
    let body = codec::to_xml(&index_upsert("37", vec![student("37", 2)])).into_bytes();
    let key = certs::signature::Signer::from_pem(second.cert_pem.as_bytes(), second.key_pem.as_bytes()).unwrap();
    let s = key.sign(&body);
    let sent = hub.deliver("prov-37", &body, (Some(&s.value_base64()), Some(&s.signer))).await;
    assert_eq!(sent.handled, Handled::Processed(schemas::MessageType::IndexUpsert), "{sent:?}");

    // A key and certificate the registry never saw, from a CA of the attacker's own.
    let rogue_ca = certs::Ca::create("Rogue CA", 30).unwrap();
    let rogue = rogue_ca.issue(&Profile::new(Role::Province("37".parse().unwrap()), 30)).unwrap();
    let key = certs::signature::Signer::from_pem(rogue.cert_pem.as_bytes(), rogue.key_pem.as_bytes()).unwrap();
    let body = codec::to_xml(&index_upsert("37", vec![student("37", 3)])).into_bytes();
    let s = key.sign(&body);
    let sent = hub.deliver("prov-37", &body, (Some(&s.value_base64()), Some(&s.signer))).await;
    assert_eq!(sent.handled, Handled::Poison(ErrorCode::Revoked), "{sent:?}");
    assert_eq!(indexed(&hub).await, 1, "only the message signed with the admitted certificate");
}

#[tokio::test]
async fn an_unsigned_dead_letter_replayed_by_an_operator_is_poison_still() {
    let hub = Hub::new(&["37"], "").await;
    let body = codec::to_xml(&index_upsert("37", vec![student("37", 1)])).into_bytes();
    let sent = hub.deliver("prov-37", &body, (None, None)).await;
    assert_eq!(sent.handled, Handled::Poison(ErrorCode::Signature));
    let id: i64 = sqlx::query_scalar("SELECT dead_letter_id FROM dead_letter").fetch_one(&hub.pool).await.unwrap();
    let (status, refused) = hub
        .ops(
            Role::Operator("wang".into()),
            "POST",
            &format!("/ops/dead-letters/{id}/replay"),
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!((status, refused["code"].as_str()), (409, Some("E_SIGNATURE")), "{refused}");
    assert_eq!(indexed(&hub).await, 0);

    // A signed message dead-lettered for another cause keeps its signature, and is accepted
    // when replayed after the cause is fixed.
    let hub = Hub::new(&[], "").await;
    let env = index_upsert("37", vec![student("37", 1)]);
    assert_eq!(hub.send_envelope(&env).await.handled, Handled::Poison(ErrorCode::Revoked));
    hub.admit("37").await;
    let id: i64 = sqlx::query_scalar("SELECT dead_letter_id FROM dead_letter").fetch_one(&hub.pool).await.unwrap();
    let (status, done) = hub
        .ops(
            Role::Operator("wang".into()),
            "POST",
            &format!("/ops/dead-letters/{id}/replay"),
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!((status, done["handled"].as_str()), (200, Some("processed")), "{done}");
    assert_eq!(indexed(&hub).await, 1);
}
