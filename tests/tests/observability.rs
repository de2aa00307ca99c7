//! What operators watch: both processes' Prometheus metrics pass `promtool check metrics` after
//! real traffic, the shipped alerting rules pass `promtool check rules`, and readiness answers
//! at once, also when what it depends on is down.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use certs::{Profile, Role};
use e2e::world::{World, WorldOptions};
use e2e::{Options, TestBed, eventually};
use schemas::messages::StudentStatus;

const CASE_TIME: Duration = Duration::from_secs(120);

/// Runs `promtool check metrics` on an exposition; returns its complaints, if any.
fn promtool_check_metrics(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; tests/services.sh installs it)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() && said.trim().is_empty() { Ok(()) } else { Err(said) }
}

async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

#[test]
fn the_shipped_alerting_rules_pass_promtool() {
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../hub/deploy/alerts.yml");
    let out = Command::new("promtool").args(["check", "rules"]).arg(&rules).output().expect("promtool");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn promtool_refuses_an_exposition_without_help_text() {
    // The check below is only worth something if promtool does complain.
    assert!(promtool_check_metrics("# TYPE x_total counter\nx_total 1\n").is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_and_adapter_metrics_pass_promtool_after_a_transfer() {
    let w = World::new(WorldOptions::default()).await;
    let s = w.student("51", |s| {
        s.status == StudentStatus::Enrolled && !s.problem_record && !s.open_business && s.student_id.is_formal()
    });
    let case = w.case_of(w.apply("37", &s).await).await;
    w.until_state(case, &["COMPLETED"], CASE_TIME).await;

    let hub = get_text(&format!("http://{}/metrics", w.bed.settings.http.listen)).await;
    promtool_check_metrics(&hub).unwrap_or_else(|e| panic!("hub /metrics: {e}\n{hub}"));
    for expected in [
        "hub_handler_seconds_bucket{",     // a histogram, which aggregates across hub processes
        "hub_messages_suppressed_total 0", // counters start at zero
        "hub_cases_stuck 0",
        "hub_cases_overdue 0",
        "hub_dead_letters 0",
        "hub_outbox_lag_seconds",
        "hub_message_log_lag_seconds",
        "hub_build_info{version=",
    ] {
        assert!(hub.contains(expected), "hub /metrics lacks {expected}:\n{hub}");
    }
    let adapter = get_text(&w.province("37").adapter.url("/metrics")).await;
    promtool_check_metrics(&adapter).unwrap_or_else(|e| panic!("adapter /metrics: {e}\n{adapter}"));
    for expected in [
        "adapter_link_up 1",
        "adapter_outbox_queued",
        "adapter_inbox_pending",
        "adapter_outbox_oldest_unsent_seconds",
        "adapter_certificate_expiry_seconds",
        "adapter_messages_refused_total 0",
    ] {
        assert!(adapter.contains(expected), "adapter /metrics lacks {expected}:\n{adapter}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_answers_at_once_when_the_database_or_the_broker_link_is_down() {
    let bed = TestBed::with(Options { dedicated_database: true, ..Default::default() }).await;
    bed.spawn_hub("hub").await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();

    // An adapter that cannot reach the broker (nothing listens where it points) has no link:
    // not ready, at once, and why. (One whose certificate the broker refuses stops instead:
    // tests/check.rs.)
    let creds = bed.issue(&Profile::new(Role::Province("44".parse().unwrap()), 30), "prov-44");
    let adapter = bed.adapter_config("adapter", &creds);
    let config = std::fs::read_to_string(&adapter.config).unwrap();
    let nowhere = format!("amqps://localhost:{}", e2e::free_port());
    std::fs::write(&adapter.config, config.replace(&bed.env.amqps_url, &nowhere)).unwrap();
    bed.start_adapter(&adapter, &[]);
    eventually("the adapter listening", Duration::from_secs(30), || async {
        reqwest::get(adapter.url("/healthz")).await.ok().filter(|r| r.status().is_success()).map(|_| ())
    })
    .await;
    let r = client.get(adapter.url("/readyz")).send().await.expect("answered");
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!((body["link"].as_bool(), body["store"].as_bool()), (Some(false), Some(true)), "{body}");
    // Control: an admitted province's adapter becomes ready.
    let admitted = bed.add_province("37").await;
    let ready = bed.spawn_adapter("adapter-37", &admitted, &[]).await;
    eventually("the admitted adapter ready", Duration::from_secs(30), || async {
        let r = client.get(ready.url("/readyz")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;

    // The hub's database stops: within the client's 3 s (the pool would wait 5 s for a
    // connection), not ready, and why.
    let readyz = format!("http://{}/readyz", bed.settings.http.listen);
    assert_eq!(client.get(&readyz).send().await.unwrap().status(), 200, "control: ready first");
    tokio::task::block_in_place(|| {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("services.sh");
        let out = Command::new("bash").arg(script).args(["pg", "stop", &bed.id]).output().unwrap();
        assert!(out.status.success());
    });
    let r = client.get(&readyz).send().await.expect("answered before the client gave up");
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["database"], false, "{body}");
}
