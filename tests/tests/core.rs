//! The hub core: effectively-once processing over at-least-once delivery, proven against a real
//! broker and database with the hub as a real process that is killed at exact instants.

use std::time::Duration;

use e2e::{Options, Persistent, TestBed, collect, eventually, index_upsert, metric, publish, publish_raw, student};
use hub::amqp::names;
use hub::failpoint;
use hub::service::{self, Handled, Inbound};
use schemas::codec;
use schemas::messages::Body;
use schemas::{ErrorCode, MessageType};

const WAIT: Duration = Duration::from_secs(30);

async fn count(bed: &TestBed, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&bed.db().await).await.unwrap()
}

/// Waits until `sql` (a count) reaches `n`.
async fn until_count(bed: &TestBed, sql: &'static str, n: i64) {
    let pool = bed.db().await;
    e2e::eventually(&format!("{sql} = {n}"), Duration::from_secs(90), || {
        let pool = pool.clone();
        async move {
            let c: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.ok()?;
            (c == n).then_some(())
        }
    })
    .await;
}

/// The signature headers of `body` as the adapter of `creds`' province sets them.
fn signature(creds: &e2e::Creds, body: &[u8]) -> (String, String) {
    let s = creds.signer().sign(body);
    (s.value_base64(), s.signer)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_message_ten_times_concurrently_has_one_effect_and_one_reply() {
    let bed = TestBed::new().await;
    let a = bed.add_province("37").await;
    let ctx = hub::context::Context::new(bed.db().await, bed.settings.clone()).unwrap();
    let env = index_upsert("37", vec![student("37", 1)]);
    let body = codec::to_xml(&env).into_bytes();
    let id = env.message_id.to_string();
    let (sig, signer) = signature(&a, &body);
    let inbound =
        Inbound { amqp_message_id: Some(&id), ..Inbound::new(&body, Some("prov-37"), (Some(&sig), Some(&signer))) };
    let results = futures_util::future::join_all((0..10).map(|_| service::handle(&ctx, inbound))).await;
    let results: Vec<Handled> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        results.iter().filter(|h| **h == Handled::Processed(MessageType::IndexUpsert)).count(),
        1,
        "{results:?}"
    );
    assert_eq!(results.iter().filter(|h| **h == Handled::Duplicate).count(), 9, "{results:?}");
    assert_eq!(count(&bed, "SELECT count(*) FROM student_index").await, 1);
    assert_eq!(count(&bed, "SELECT count(*) FROM outbox").await, 1, "one reply");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_commits_each_message_as_if_alone_and_a_bad_one_spoils_none_of_the_others() {
    let bed = TestBed::new().await;
    let creds = bed.add_province("37").await;
    let ctx = hub::context::Context::new(bed.db().await, bed.settings.clone()).unwrap();
    let a = index_upsert("37", vec![student("37", 1)]);
    let b = index_upsert("37", vec![student("37", 2)]);
    let mut reused = index_upsert("37", vec![student("37", 3)]);
    reused.message_id = a.message_id;
    let bodies: Vec<Vec<u8>> = vec![
        codec::to_xml(&a).into_bytes(),
        b"<envelope>not a message".to_vec(),
        codec::to_xml(&b).into_bytes(),
        codec::to_xml(&a).into_bytes(),
        codec::to_xml(&reused).into_bytes(),
    ];
    let ids: Vec<String> = (0..bodies.len()).map(|i| format!("group-{i}")).collect();
    let signatures: Vec<(String, String)> = bodies.iter().map(|b| signature(&creds, b)).collect();
    let inbounds: Vec<Inbound<'_>> = bodies
        .iter()
        .zip(&ids)
        .zip(&signatures)
        .map(|((body, id), (sig, signer))| Inbound {
            amqp_message_id: Some(id),
            ..Inbound::new(body, Some("prov-37"), (Some(sig), Some(signer)))
        })
        .collect();
    let handled = service::handle_group(&ctx, &inbounds).await;
    assert_eq!(handled.len(), 5, "all committed together: {handled:?}");
    assert_eq!(handled[0], Handled::Processed(MessageType::IndexUpsert));
    assert!(matches!(handled[1], Handled::Poison(_)), "{:?}", handled[1]);
    assert_eq!(handled[2], Handled::Processed(MessageType::IndexUpsert));
    assert_eq!(handled[3], Handled::Duplicate, "the same message again in the same group");
    assert_eq!(handled[4], Handled::Poison(ErrorCode::Duplicate), "an id reused in the same group");
    assert_eq!(count(&bed, "SELECT count(*) FROM student_index").await, 2);
    assert_eq!(count(&bed, "SELECT count(*) FROM dead_letter").await, 2);
    assert_eq!(count(&bed, "SELECT count(*) FROM inbox").await, 3, "a, b and the unreadable one");
    // a and b answered, each dead letter's sender told.
    assert_eq!(count(&bed, "SELECT count(*) FROM outbox").await, 4);
    // Taken again (as after a lost acknowledgement): nothing more.
    let again = service::handle_group(&ctx, &inbounds).await;
    assert_eq!(again.len(), 5);
    assert_eq!(again.iter().filter(|h| **h == Handled::Duplicate).count(), 3, "{again:?}");
    assert_eq!(count(&bed, "SELECT count(*) FROM outbox").await, 4, "no second answer");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_message_delivered_twice_through_the_broker_has_one_effect_and_one_reply() {
    let bed = TestBed::new().await;
    let a = bed.add_province("37").await;
    bed.spawn_hub("hub").await;
    let conn = bed.connect(&a).await;
    let env = index_upsert("37", vec![student("37", 1)]);
    let id = env.message_id.to_string();
    for _ in 0..2 {
        publish_raw(&conn, codec::to_xml(&env).as_bytes(), Some("prov-37"), &id, &a).await.unwrap();
    }
    let listen = bed.settings.http.listen;
    e2e::eventually("the copy recognized", WAIT, || async {
        (metric(listen, "hub_messages_duplicate_total").await >= 1.0).then_some(())
    })
    .await;
    until_count(&bed, "SELECT count(*) FROM outbox WHERE sent_at IS NULL", 0).await;
    assert_eq!(count(&bed, "SELECT count(*) FROM outbox").await, 1, "one reply");
    // Everything is relayed: a second reply would be in the queue within this window.
    let got = collect(&conn, "37", 2, Duration::from_secs(3)).await;
    assert_eq!(got.envelopes.len() + got.duplicates, 1, "exactly one reply: {got:?}");
    assert_eq!(got.envelopes[0].correlation_id, Some(env.message_id));
    assert_eq!(metric(listen, "hub_messages_processed_total").await, 1.0, "processed once");
    assert_eq!(count(&bed, "SELECT count(*) FROM student_index").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hub_killed_between_commit_and_ack_redoes_nothing_and_sends_its_reply() {
    let bed = TestBed::new().await;
    let a = bed.add_province("37").await;
    bed.spawn_hub_with("hub", &bed.settings_path, &[("XJ_CRASH_AT", failpoint::CONSUMER_AFTER_COMMIT)]).await;
    let conn = bed.connect(&a).await;
    let env = index_upsert("37", vec![student("37", 7)]);
    publish(&conn, names::INBOUND_EXCHANGE, "index", codec::to_xml(&env).as_bytes(), "prov-37", &a).await.unwrap();
    let status = bed.wait_exit("hub", WAIT).await;
    assert!(!status.success(), "the hub died at the crash point");
    assert_eq!(count(&bed, "SELECT count(*) FROM inbox").await, 1, "committed before the crash");

    bed.spawn_hub("hub-again").await;
    let listen = bed.settings.http.listen;
    e2e::eventually("the redelivery recognized", WAIT, || async {
        (metric(listen, "hub_messages_duplicate_total").await >= 1.0).then_some(())
    })
    .await;
    let got = collect(&conn, "37", 1, WAIT).await;
    assert_eq!(got.envelopes.len(), 1, "the reply went out");
    assert!(matches!(got.envelopes[0].body, Body::IndexResult(ref r) if r.applied == 1));
    assert_eq!(count(&bed, "SELECT count(*) FROM student_index").await, 1);
    assert_eq!(metric(listen, "hub_messages_processed_total").await, 0.0, "nothing processed twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hub_killed_between_commit_and_publish_sends_the_reply_after_restart() {
    for point in [failpoint::RELAY_BEFORE_PUBLISH, failpoint::RELAY_AFTER_CONFIRM] {
        let bed = TestBed::new().await;
        let a = bed.add_province("37").await;
        bed.spawn_hub_with("hub", &bed.settings_path, &[("XJ_CRASH_AT", point)]).await;
        let conn = bed.connect(&a).await;
        let env = index_upsert("37", vec![student("37", 8)]);
        publish(&conn, names::INBOUND_EXCHANGE, "index", codec::to_xml(&env).as_bytes(), "prov-37", &a).await.unwrap();
        bed.wait_exit("hub", WAIT).await;
        assert_eq!(
            count(&bed, "SELECT count(*) FROM outbox WHERE sent_at IS NULL").await,
            1,
            "{point}: reply not marked sent"
        );

        bed.spawn_hub("hub-again").await;
        until_count(&bed, "SELECT count(*) FROM outbox WHERE sent_at IS NULL", 0).await;
        let got = collect(&conn, "37", 2, Duration::from_secs(3)).await;
        assert_eq!(got.envelopes.len(), 1, "{point}: one distinct reply");
        assert_eq!(got.envelopes[0].correlation_id, Some(env.message_id));
        // After a confirm the crash can resend the same message id; the receiver deduplicates.
        let expected_copies = usize::from(point == failpoint::RELAY_AFTER_CONFIRM);
        assert_eq!(got.duplicates, expected_copies, "{point}");
        assert_eq!(count(&bed, "SELECT count(*) FROM student_index").await, 1, "{point}: effect once");
        assert_eq!(count(&bed, "SELECT count(*) FROM inbox").await, 1, "{point}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hubs_on_one_queue_process_a_thousand_messages_exactly_once() {
    let bed = TestBed::new().await;
    let a = bed.add_province("37").await;
    let b = bed.add_province("44").await;
    bed.spawn_hub("hub-1").await;
    let (second, listen_2) = bed.settings_copy("hub-2");
    bed.spawn_hub_with("hub-2", &second, &[]).await;

    let (conn_a, conn_b) = (bed.connect(&a).await, bed.connect(&b).await);
    let mut pa = Persistent::new(&bed, &a, "37");
    let mut pb = Persistent::new(&bed, &b, "44");
    for n in 0..500 {
        pa.send(&index_upsert("37", vec![student("37", n)])).await;
        pb.send(&index_upsert("44", vec![student("44", n)])).await;
    }
    // And one message ten times: the copies land on both hubs.
    let twice = index_upsert("37", vec![student("37", 900)]);
    for _ in 0..10 {
        pa.send(&twice).await;
    }

    until_count(&bed, "SELECT count(*) FROM student_index", 1001).await;
    until_count(&bed, "SELECT count(*) FROM outbox WHERE sent_at IS NULL", 0).await;
    let got_a = collect(&conn_a, "37", 501, WAIT).await;
    let got_b = collect(&conn_b, "44", 500, WAIT).await;
    assert_eq!(got_a.envelopes.len(), 501);
    assert_eq!(got_b.envelopes.len(), 500);
    assert_eq!(count(&bed, "SELECT count(*) FROM inbox").await, 1001);
    assert_eq!(count(&bed, "SELECT count(*) FROM outbox").await, 1001, "one reply per message");

    let listen_1 = bed.settings.http.listen;
    let (p1, p2) = (
        metric(listen_1, "hub_messages_processed_total").await,
        metric(listen_2, "hub_messages_processed_total").await,
    );
    let (d1, d2) = (
        metric(listen_1, "hub_messages_duplicate_total").await,
        metric(listen_2, "hub_messages_duplicate_total").await,
    );
    assert_eq!(p1 + p2, 1001.0, "each message processed once: {p1} + {p2}");
    assert_eq!(d1 + d2, 9.0);
    assert!(p1 > 0.0 && p2 > 0.0, "both hubs took part: {p1} / {p2}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_poison_is_dead_lettered_with_its_reason_and_the_consumer_goes_on() {
    let bed = TestBed::with(Options { max_message_bytes: Some(16 * 1024), ..Default::default() }).await;
    let a = bed.add_province("37").await;
    bed.spawn_hub("hub").await;
    let conn = bed.connect(&a).await;

    let valid = index_upsert("37", vec![student("37", 1)]);
    let xml = codec::to_xml(&valid);
    let reused = {
        let mut other = index_upsert("37", vec![student("37", 2)]);
        other.message_id = valid.message_id;
        codec::to_xml(&other)
    };
    let mut to_other = valid.clone();
    to_other.message_id = schemas::MessageId::new_v7();
    to_other.recipient = schemas::Party::Province("44".parse().unwrap());
    let forged = {
        let mut f = index_upsert("37", vec![student("37", 3)]);
        f.sender = schemas::Party::Province("44".parse().unwrap());
        codec::to_xml(&f)
    };
    let many: Vec<_> = (10..200).map(|n| student("37", n)).collect();
    let oversize = codec::to_xml(&index_upsert("37", many));
    assert!(oversize.len() > 16 * 1024);
    let fresh = |x: &str| x.replace(valid.message_id.as_ref(), schemas::MessageId::new_v7().as_ref());
    // The same student ID with another last character: only the check digit is wrong.
    let good_id = student("37", 1).student_id.to_string();
    let bad_id = {
        let (head, last) = good_id.split_at(good_id.len() - 1);
        format!("{head}{}", if last == "0" { "1" } else { "0" })
    };
    assert!(xml.contains(good_id.as_str()));
    // Truncated after its messageId: the refusal names the message.
    let truncated_id = schemas::MessageId::new_v7();
    let truncated = xml.replace(valid.message_id.as_ref(), truncated_id.as_ref())[..xml.len() / 2].to_owned();
    assert!(truncated.contains(truncated_id.as_ref()));
    let cases: Vec<(&str, String, Option<&str>, ErrorCode)> = vec![
        ("garbage", "\u{1}\u{2} not xml".to_owned(), Some("prov-37"), ErrorCode::Malformed),
        ("truncated", truncated, Some("prov-37"), ErrorCode::Malformed),
        (
            "DOCTYPE with an entity",
            r#"<!DOCTYPE x [<!ENTITY a "aaaa">]><envelope xmlns="urn:xueji:exchange:1">&a;</envelope>"#.to_owned(),
            Some("prov-37"),
            ErrorCode::DtdForbidden,
        ),
        (
            "wrong namespace",
            fresh(&xml).replace("urn:xueji:exchange:1", "urn:other"),
            Some("prov-37"),
            ErrorCode::Namespace,
        ),
        ("bad check digit", fresh(&xml).replace(good_id.as_str(), &bad_id), Some("prov-37"), ErrorCode::Schema),
        ("oversize", oversize, Some("prov-37"), ErrorCode::TooLarge),
        ("forged sender", forged, Some("prov-37"), ErrorCode::Sender),
        ("addressed elsewhere", codec::to_xml(&to_other), Some("prov-37"), ErrorCode::Unexpected),
        ("no user_id", fresh(&xml), None, ErrorCode::Sender),
    ];
    // First the valid message, so that the reused id below refers to something.
    publish_raw(&conn, xml.as_bytes(), Some("prov-37"), valid.message_id.as_ref(), &a).await.unwrap();
    let first = e2e::next_envelope(&conn, "37", WAIT).await.expect("valid message answered");
    assert_eq!(first.message_type(), MessageType::IndexResult);

    let mut all = cases;
    all.push(("reused id", reused, Some("prov-37"), ErrorCode::Duplicate));
    let mut last = 0;
    for (what, body, user, code) in all {
        publish_raw(&conn, body.as_bytes(), user, &uuid::Uuid::new_v4().to_string(), &a).await.unwrap();
        let dead = bed.next_dead_letter(last, WAIT).await.unwrap_or_else(|| panic!("{what}: not dead-lettered"));
        last = dead.id;
        assert_eq!(dead.code, code.code(), "{what}");
        assert!(!dead.reason.is_empty(), "{what}: reason");
        assert_eq!(dead.sender, user.unwrap_or("unknown"), "{what}");
        assert_eq!((dead.size, dead.sha256.clone()), (body.len() as i64, e2e::sha256(body.as_bytes())), "{what}");
        // Kept whole when small, its first bytes when over the kept size.
        let kept = bed.settings.limits.dead_letter_body_bytes;
        assert_eq!(dead.body, body.as_bytes()[..body.len().min(kept)], "{what}: the original bytes");
        assert_eq!(dead.truncated, body.len() > kept, "{what}");
        if user.is_some() {
            let reply =
                e2e::next_envelope(&conn, "37", WAIT).await.unwrap_or_else(|| panic!("{what}: sender not told"));
            let Body::Error(report) = reply.body else { panic!("{what}: {:?}", reply.body) };
            assert_eq!(report.code, code, "{what}");
            if what == "truncated" {
                assert_eq!(report.offending_message_id, Some(truncated_id), "{what}: the id read before the fault");
            }
        }
    }
    // The consumer goes on.
    let after = index_upsert("37", vec![student("37", 500)]);
    publish(&conn, names::INBOUND_EXCHANGE, "index", codec::to_xml(&after).as_bytes(), "prov-37", &a).await.unwrap();
    let reply = e2e::next_envelope(&conn, "37", WAIT).await.expect("still serving");
    assert_eq!(reply.correlation_id, Some(after.message_id));
    assert_eq!(count(&bed, "SELECT count(*) FROM student_index").await, 2);
}

/// Group commit under a crash: `n` messages queued before a one-worker hub starts (so that it
/// takes them in full groups), the hub killed at `crash`, then a hub that finishes. Returns
/// how many messages the first hub had committed when it died.
async fn group_commit_crash(crash: &str) -> i64 {
    const N: u32 = 100;
    let bed = TestBed::new().await;
    let a = bed.add_province("37").await;
    let conn = bed.connect(&a).await;
    let sent: Vec<_> = (0..N).map(|i| index_upsert("37", vec![student("37", i)])).collect();
    for env in &sent {
        publish(&conn, names::INBOUND_EXCHANGE, "index", codec::to_xml(env).as_bytes(), "prov-37", &a).await.unwrap();
    }
    // One worker: without group commit it would commit one message per crash-point pass.
    let (path, _) = bed.settings_copy("one-worker");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("[limits]\n") && !text.contains("workers ="), "the test bed's limits moved");
    // A window as wide as the prefetch from the start (the intake opens it only after a few
    // deliveries of known size otherwise): the first group is as large as the group limit.
    let limits = "[limits]\nworkers = 1\nheld_bytes = 17179869184\n";
    std::fs::write(&path, text.replace("[limits]\n", limits)).unwrap();
    bed.start_hub("hub", &path, &[("XJ_CRASH_AT", crash)]);
    assert!(!bed.wait_exit("hub", WAIT).await.success(), "the hub died at the crash point");
    let committed = count(&bed, "SELECT count(*) FROM inbox").await;

    bed.spawn_hub("hub-again").await;
    until_count(&bed, "SELECT count(*) FROM student_index", i64::from(N)).await;
    until_count(&bed, "SELECT count(*) FROM outbox WHERE sent_at IS NULL", 0).await;
    assert_eq!(count(&bed, "SELECT count(*) FROM inbox").await, i64::from(N), "each message claimed once");
    assert_eq!(count(&bed, "SELECT count(*) FROM outbox").await, i64::from(N), "one reply each");
    let listen = bed.settings.http.listen;
    assert_eq!(
        metric(listen, "hub_messages_processed_total").await,
        f64::from(N) - committed as f64,
        "the second hub processed exactly what the first had not committed"
    );
    // Every message answered exactly once (copies of one reply share its id).
    let got = collect(&conn, "37", N as usize, Duration::from_secs(60)).await;
    let mut answered: Vec<_> = got.envelopes.iter().filter_map(|e| e.correlation_id).collect();
    answered.sort();
    answered.dedup();
    assert_eq!((got.envelopes.len(), answered.len()), (N as usize, N as usize), "one reply per message");
    let mut asked: Vec<_> = sent.iter().map(|e| e.message_id).collect();
    asked.sort();
    assert_eq!(answered, asked, "every message answered");
    committed
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hub_killed_while_acknowledging_a_committed_group_redoes_none_of_it() {
    // Killed at the second acknowledgement: the whole first group had committed with it.
    let committed = group_commit_crash(&format!("{}:2", failpoint::CONSUMER_AFTER_COMMIT)).await;
    assert!(committed > 2, "{committed} committed: the group was larger than the acknowledged messages");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hub_killed_before_a_group_commits_keeps_none_of_it() {
    let committed = group_commit_crash(failpoint::CONSUMER_BEFORE_COMMIT).await;
    assert_eq!(committed, 0, "nothing of an uncommitted group is kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_that_keeps_crashing_the_hub_is_dead_lettered_by_the_delivery_limit() {
    let bed = TestBed::new().await;
    let a = bed.add_province("37").await;
    let conn = bed.connect(&a).await;
    let env = index_upsert("37", vec![student("37", 1)]);
    publish(&conn, names::INBOUND_EXCHANGE, "index", codec::to_xml(&env).as_bytes(), "prov-37", &a).await.unwrap();
    let crash = [("XJ_CRASH_AT", failpoint::CONSUMER_BEFORE_COMMIT)];
    // The hub takes what the broker dead-letters into its own dead letters.
    let dead_letters = || async { count(&bed, "SELECT count(*) FROM dead_letter WHERE source = 'broker'").await };
    let mut crashes = 0;
    loop {
        bed.start_hub("hub", &bed.settings_path, &crash);
        // Either the redelivered message crashes it again, or the broker has given up on it.
        let crashed = e2e::eventually("the hub to crash or the message to be dead-lettered", WAIT, || async {
            if bed.exited("hub").is_some() {
                return Some(true);
            }
            (dead_letters().await > 0).then_some(false)
        })
        .await;
        if !crashed {
            break;
        }
        crashes += 1;
        assert!(crashes <= 8, "redelivered without end");
    }
    // Nothing left to crash on: it stays up and serves.
    let listen = bed.settings.http.listen;
    e2e::eventually("the hub ready", WAIT, || async {
        reqwest::get(format!("http://{listen}/readyz")).await.ok().filter(|r| r.status().is_success()).map(|_| ())
    })
    .await;
    assert!(bed.exited("hub").is_none(), "still running");
    let limit = bed.settings.broker.delivery_limit;
    assert!(crashes > limit as usize && crashes <= limit as usize + 2, "{crashes} deliveries for limit {limit}");
    let dead = bed.next_dead_letter(0, WAIT).await.expect("dead-lettered by the broker");
    assert_eq!((dead.source.as_str(), dead.code.as_str()), ("broker", "E_INTERNAL"));
    assert!(dead.reason.contains("delivery_limit"), "{}", dead.reason);
    assert_eq!(dead.body, codec::to_xml(&env).into_bytes(), "the message itself is kept");
    assert_eq!(count(&bed, "SELECT count(*) FROM inbox").await, 0, "never committed");
}

/// Sends `n` messages through a persistent publisher, running `fault` after the first third.
async fn load_with_fault(bed: &TestBed, n: u32, fault: impl FnOnce()) {
    let a = bed.add_province("37").await;
    bed.spawn_hub("hub").await;
    let mut p = Persistent::new(bed, &a, "37");
    let mut fault = Some(fault);
    for i in 0..n {
        if i == n / 3 {
            (fault.take().expect("once"))();
        }
        p.send(&index_upsert("37", vec![student("37", i)])).await;
    }
    until_count(bed, "SELECT count(*) FROM student_index", i64::from(n)).await;
    until_count(bed, "SELECT count(*) FROM outbox WHERE sent_at IS NULL", 0).await;
    let conn = bed.connect(&a).await;
    let got = collect(&conn, "37", n as usize, Duration::from_secs(60)).await;
    assert_eq!(got.envelopes.len(), n as usize, "every reply arrived");
    assert_eq!(count(bed, "SELECT count(*) FROM inbox").await, i64::from(n), "every message recorded");
    // A commit whose answer was lost in the outage counts as a redelivery later, never twice.
    let processed = metric(bed.settings.http.listen, "hub_messages_processed_total").await;
    assert!(processed <= f64::from(n), "none processed twice: {processed} for {n}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_rides_out_a_broker_restart_and_loses_nothing() {
    let bed = TestBed::with(Options { dedicated_broker: true, ..Default::default() }).await;
    load_with_fault(&bed, 300, || bed.restart_broker()).await;
    assert!(bed.log("hub").contains("reconnecting"), "the hub noticed the outage and reconnected by itself");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_rides_out_a_database_restart_and_loses_nothing() {
    let bed = TestBed::with(Options { dedicated_database: true, ..Default::default() }).await;
    load_with_fault(&bed, 300, || bed.restart_database()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_work_and_flushes_the_outbox() {
    const N: i64 = 2000;
    let bed = TestBed::new().await;
    let a = bed.add_province("37").await;
    // Queued before any hub runs, so the hub is stopped in the middle of the backlog.
    let mut p = Persistent::new(&bed, &a, "37");
    for i in 0..N {
        p.send(&index_upsert("37", vec![student("37", i as u32)])).await;
    }
    bed.spawn_hub("hub").await;
    let pool = bed.db().await;
    e2e::eventually("the hub at work", WAIT, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox").fetch_one(&pool).await.ok()?;
        (n > 0).then_some(())
    })
    .await;
    let status = bed.stop("hub").expect("the hub was running");
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    assert!(bed.log("hub").contains("Stopped."));
    // Whatever it took in, it finished and answered; the rest waits in the queue.
    let processed = count(&bed, "SELECT count(*) FROM inbox").await;
    assert!(processed < N, "stopped in the middle of the backlog ({processed} of {N})");
    assert_eq!(count(&bed, "SELECT count(*) FROM outbox WHERE sent_at IS NULL").await, 0, "outbox flushed");
    assert_eq!(count(&bed, "SELECT count(*) FROM outbox").await, processed, "every message taken in was answered");
    bed.spawn_hub("hub-again").await;
    until_count(&bed, "SELECT count(*) FROM inbox", N).await;
    until_count(&bed, "SELECT count(*) FROM outbox WHERE sent_at IS NULL", 0).await;
    let conn = bed.connect(&a).await;
    assert_eq!(
        collect(&conn, "37", N as usize, WAIT).await.envelopes.len(),
        N as usize,
        "{processed} before the stop, the rest after"
    );
}

/// Two businesses taking one student in concurrent transactions: the second waits for the
/// first, is told the student is busy, and its transaction stays usable for the refusal it must
/// write (an error there once aborted it and lost the application).
#[tokio::test(flavor = "multi_thread")]
async fn a_second_business_for_the_same_student_is_refused_and_its_transaction_goes_on() {
    use hub::store::register::{Entry, open};

    let bed = TestBed::new().await;
    let pool = bed.db().await;
    hub::store::migrate(&pool).await.unwrap();
    let student = "G510104201605120358";
    let entry = |id: uuid::Uuid| Entry {
        student_id: student,
        business: "transfer",
        business_id: id,
        schools: vec!["3137000456".into(), "3151000123".into()],
        divisions: vec![],
    };

    let mut first = pool.begin().await.unwrap();
    assert!(open(&mut first, &entry(uuid::Uuid::now_v7())).await.unwrap(), "the first business");
    let second = tokio::spawn({
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            let outcome = open(&mut tx, &entry(uuid::Uuid::now_v7())).await.unwrap();
            // The refusal is written in the same transaction: it must still accept statements.
            let usable = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut *tx).await.is_ok();
            tx.commit().await.unwrap();
            (outcome, usable)
        }
    });
    // The second insert waits on the first one's uncommitted row before it can decide.
    eventually("the second insert waits for the first", WAIT, || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
        )
        .fetch_one(&pool)
        .await
        .ok()?;
        (waiting > 0).then_some(())
    })
    .await;
    first.commit().await.unwrap();
    let (outcome, usable) = second.await.unwrap();
    assert!(!outcome, "the second business is told the student is busy");
    assert!(usable, "the transaction survives the refusal");
    assert_eq!(count(&bed, "SELECT count(*) FROM open_business").await, 1, "one open business for the student");
}
