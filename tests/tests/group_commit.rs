//! Group commit in batches (组提交), in process against a real PostgreSQL: a group ends exactly
//! as its messages would one by one, and a group whose batch fails is taken again message by
//! message, keeping what succeeds; a transition's timers, written in one statement, end as its
//! disarming and arming one by one would.

use std::collections::BTreeMap;

use e2e::inprocess::Hub;
use e2e::{index_upsert, student};
use hub::service::{self, Handled, Inbound};
use schemas::messages::{Body, LookupKey, LookupRequest, StudentSummary};
use schemas::{Envelope, MessageType, Party, codec};

/// Each envelope's bytes and signature, as its province's adapter publishes them.
fn wire(envs: &[Envelope]) -> Vec<(String, Vec<u8>, (String, String))> {
    envs.iter()
        .map(|e| {
            let body = codec::to_xml(e).into_bytes();
            let signature = e2e::inprocess::signature(&e.sender.to_string(), &body);
            (e.sender.to_string(), body, signature)
        })
        .collect()
}

fn inbounds(wire: &[(String, Vec<u8>, (String, String))]) -> Vec<Inbound<'_>> {
    wire.iter()
        .map(|(sender, body, (signature, signer))| {
            Inbound::new(body, Some(sender), (Some(signature.as_str()), Some(signer.as_str())))
        })
        .collect()
}

/// The same person registered in `province` as record `n` (another national student ID).
fn twin(of: &StudentSummary, province: &str, n: u32) -> StudentSummary {
    let mut s = student(province, n);
    s.id_document = of.id_document.clone();
    s.name = of.name.clone();
    s.sex = of.sex;
    s.birth_date = of.birth_date;
    s.registered_at = of.registered_at.map(|t| t + chrono::Duration::days(30));
    s
}

/// What a hub's database holds after the messages: the index, the inbox, each message's
/// answers (by the message they answer; `sentAt` aside), and the problem groups.
async fn state(hub: &Hub) -> (Vec<String>, Vec<String>, BTreeMap<String, Vec<String>>, Vec<String>) {
    let rows =
        |sql: &'static str| async move { sqlx::query_scalar::<_, String>(sql).fetch_all(&hub.pool).await.unwrap() };
    let index = rows(
        "SELECT concat_ws('|', student_id, province, name, school, changed_at, disputed_at) FROM student_index
         ORDER BY student_id",
    )
    .await;
    let inbox = rows("SELECT concat_ws('|', sender, message_id, outcome) FROM inbox ORDER BY sender, message_id").await;
    let mut answers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for body in rows("SELECT convert_from(body, 'UTF8') FROM outbox_message ORDER BY outbox_id").await {
        let env = codec::from_xml(body.as_bytes(), schemas::DEFAULT_MAX_BYTES).unwrap();
        let (key, what) = match (&env.body, env.correlation_id) {
            // A message's own result, by the message: the same, id included.
            (Body::IndexResult(r), Some(c)) => (c.to_string(), format!("{} {r:?} {}", env.message_id, env.recipient)),
            // What the batch as a whole caused (a problem group's tasks): by type and recipient.
            _ => ("caused".to_owned(), format!("{} {}", env.message_type(), env.recipient)),
        };
        answers.entry(key).or_default().push(what);
    }
    for v in answers.values_mut() {
        v.sort();
    }
    let groups = rows(
        "SELECT concat_ws('|', g.kind, g.state, string_agg(m.student_id || '@' || m.province, ',' ORDER BY m.student_id))
         FROM problem_group g JOIN problem_member m USING (group_id) GROUP BY g.group_id ORDER BY 1",
    )
    .await;
    (index, inbox, answers, groups)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_of_index_upserts_ends_exactly_as_its_messages_one_by_one() {
    let first = student("37", 1);
    let mut older = student("37", 2);
    older.changed_at -= chrono::Duration::days(1);
    let mut newer = student("37", 2);
    newer.changed_at += chrono::Duration::days(1);
    newer.grade = "15".parse().unwrap();
    let envs = vec![
        index_upsert("37", vec![first.clone(), student("37", 2)]),
        index_upsert("51", vec![student("51", 1)]),
        // Another province reports 37's student: a conflict.
        index_upsert("51", vec![first.clone()]),
        // An older report of a student the index holds: stale; then a newer one: applied.
        index_upsert("37", vec![older]),
        index_upsert("37", vec![newer, student("37", 3)]),
        // The same person registered in 51 too: a problem group.
        index_upsert("51", vec![twin(&student("37", 3), "51", 7)]),
        // One batch reporting a student twice: judged in order.
        index_upsert("37", vec![student("37", 4), student("37", 4)]),
    ];
    let wire = wire(&envs);
    let grouped = Hub::new(&["37", "51"], "").await;
    let alone = Hub::new(&["37", "51"], "").await;

    let together = service::handle_group(&grouped.ctx, &inbounds(&wire)).await;
    let mut one_by_one = Vec::new();
    for msg in inbounds(&wire) {
        one_by_one.push(service::handle(&alone.ctx, msg).await.unwrap());
    }

    assert_eq!(together.len(), envs.len(), "all committed together: {together:?}");
    assert_eq!(together, one_by_one);
    let got = state(&grouped).await;
    assert_eq!(got, state(&alone).await);
    let (index, inbox, answers, groups) = got;
    assert_eq!(index.len(), 6, "{index:?}");
    assert_eq!(inbox.len(), envs.len());
    assert_eq!(answers.len(), envs.len() + 1, "one result per message, and the problem group's tasks: {answers:?}");
    assert_eq!(groups.len(), 2, "the conflict and the twin: {groups:?}");

    // Taken again, as after a lost acknowledgement: every message a duplicate, nothing written.
    let again = service::handle_group(&grouped.ctx, &inbounds(&wire)).await;
    assert!(again.iter().all(|h| *h == Handled::Duplicate), "{again:?}");
    assert_eq!(state(&grouped).await.2, answers);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_whose_batch_fails_is_taken_again_one_by_one_and_keeps_what_succeeds() {
    let hub = Hub::new(&["37"], "").await;
    let known = student("37", 1);
    let lookup = Envelope::new(
        Party::Province("37".parse().unwrap()),
        Party::Hub,
        Body::LookupRequest(LookupRequest {
            name: known.name.clone(),
            key: LookupKey::StudentId(known.student_id.clone()),
            requested_by: None,
        }),
    );
    let envs = vec![index_upsert("37", vec![known]), lookup, index_upsert("37", vec![student("37", 2)])];
    let wire = wire(&envs);
    let count = |sql: &'static str| {
        let pool = hub.pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap() }
    };

    // The lookup's handler fails (a table it reads is gone), not as poison: an error.
    sqlx::query("ALTER TABLE open_business RENAME TO open_business_away").execute(&hub.pool).await.unwrap();
    let handled = service::handle_group(&hub.ctx, &inbounds(&wire)).await;
    assert_eq!(handled, vec![Handled::Processed(MessageType::IndexUpsert)], "what precedes the failure commits");
    assert_eq!(count("SELECT count(*) FROM inbox").await, 1);
    assert_eq!(count("SELECT count(*) FROM student_index").await, 1);
    assert_eq!(count("SELECT count(*) FROM outbox").await, 1, "only the first message's answer");

    // Mended, the rest of the group goes through; the first is not taken twice.
    sqlx::query("ALTER TABLE open_business_away RENAME TO open_business").execute(&hub.pool).await.unwrap();
    let handled = service::handle_group(&hub.ctx, &inbounds(&wire)).await;
    assert_eq!(
        handled,
        vec![
            Handled::Duplicate,
            Handled::Processed(MessageType::LookupRequest),
            Handled::Processed(MessageType::IndexUpsert)
        ]
    );
    assert_eq!(count("SELECT count(*) FROM inbox").await, 3);
    assert_eq!(count("SELECT count(*) FROM student_index").await, 2);
    assert_eq!(count("SELECT count(*) FROM outbox").await, 3);
}

/// A transition's disarming and arming are written as one statement (`timers::set`): the
/// owner keeps exactly the timers armed since the disarm, re-armed ones from zero attempts, and
/// no other owner's timer is touched.
#[tokio::test]
async fn setting_a_case_s_timers_keeps_exactly_what_was_armed_since_the_disarm() {
    use hub::store::timers::{Owner, set};
    let hub = Hub::new(&["37"], "").await;
    let mut conn = hub.pool.acquire().await.unwrap();
    let owner = Owner { business: "case", id: uuid::Uuid::new_v4() };
    let other = Owner { business: "case", id: uuid::Uuid::new_v4() };
    let (t0, t1) = (chrono::Utc::now(), chrono::Utc::now() + chrono::Duration::hours(1));
    let round = |t: chrono::DateTime<chrono::Utc>| chrono::SubsecRound::trunc_subsecs(t, 6);

    set(&mut conn, owner, false, &[("a", "a", t0), ("b", "b", t0)]).await.unwrap();
    set(&mut conn, other, false, &[("a", "a", t0)]).await.unwrap();
    sqlx::query("UPDATE timer SET attempts = 3, last_error = 'failed' WHERE slot = 'a'")
        .execute(&mut *conn)
        .await
        .unwrap();

    // Disarmed, then `a` armed again (later, another kind) and `c` armed: `b` is gone.
    set(&mut conn, owner, true, &[("a", "a2", t1), ("c", "c", t1)]).await.unwrap();
    assert_eq!(
        timers(&mut conn, owner.id).await,
        vec![("a".into(), "a2".into(), round(t1), 0, None), ("c".into(), "c".into(), round(t1), 0, None)]
    );
    // Armed without a disarm: the others stay.
    set(&mut conn, owner, false, &[("b", "b", t0)]).await.unwrap();
    assert_eq!(timers(&mut conn, owner.id).await.len(), 3);
    // Disarmed alone: none left.
    set(&mut conn, owner, true, &[]).await.unwrap();
    assert!(timers(&mut conn, owner.id).await.is_empty());
    // The other owner's timer is as it was left.
    assert_eq!(timers(&mut conn, other.id).await, vec![("a".into(), "a".into(), round(t0), 3, Some("failed".into()))]);
}

/// An owner's timers: slot, kind, due time, attempts, last error.
async fn timers(
    conn: &mut sqlx::PgConnection,
    id: uuid::Uuid,
) -> Vec<(String, String, chrono::DateTime<chrono::Utc>, i32, Option<String>)> {
    sqlx::query_as("SELECT slot, kind, due_at, attempts, last_error FROM timer WHERE owner_id = $1 ORDER BY slot")
        .bind(id)
        .fetch_all(conn)
        .await
        .unwrap()
}
