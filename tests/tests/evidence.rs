//! The message log's evidence after a transfer run by real processes (hub, adapters, simulated
//! provincial systems): the hub's command exports the case's bundle, the documented check with
//! standard tools passes, every message of the case is in it with its bytes, and tampering is
//! caught and named. In process: an export while the hub's own sealer holds the sealer's lock
//! waits for it instead of failing.

use e2e::world::{World, WorldOptions};

const CASE_TIME: std::time::Duration = std::time::Duration::from_secs(90);

/// A student whose transfer goes through (as the transfer tests choose him).
fn ordinary(s: &schemas::messages::StudentSummary) -> bool {
    s.status == schemas::messages::StudentStatus::Enrolled
        && !s.problem_record
        && !s.open_business
        && s.student_id.is_formal()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transfer_s_bundle_exported_by_the_hub_verifies_with_standard_tools_and_names_tampering() {
    let w = World::new(WorldOptions::default()).await;
    let s = w.student("51", ordinary);
    let app = w.apply("37", &s).await;
    let case = w.case_of(app).await;
    w.until_state(case, &["COMPLETED"], CASE_TIME).await;
    let db = w.bed.db().await;

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bundle");
    let export = std::process::Command::new(e2e::binary("hub"))
        .arg("--config")
        .arg(&w.bed.settings_path)
        .args(["log", "export", "--case", case.as_ref(), "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&export.stdout).into_owned() + &String::from_utf8_lossy(&export.stderr);
    assert!(export.status.success(), "{said}");
    let verify = e2e::evidence::verify;
    let (ok, checked) = verify(&out);
    assert!(ok && checked.starts_with("OK: "), "{checked}");
    // Every message of the case is in it with its bytes: what the provinces sent, signed by
    // them, and what the hub sent.
    let bodies = e2e::evidence::entries(&out).iter().filter(|e| e.with_body).count();
    let traced: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT message_id) FROM message_trace WHERE case_id = $1 AND outcome IN ('processed', 'queued')",
    )
    .bind(case.uuid())
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(bodies as i64 >= traced && traced > 10, "{bodies} bodies, {traced} traced");
    assert!(checked.contains("signatures verified"), "{checked}");
    // Two entries reordered: the check fails and names the entry.
    let mut metas: Vec<std::path::PathBuf> = std::fs::read_dir(out.join("entries"))
        .unwrap()
        .map(|f| f.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "meta"))
        .collect();
    metas.sort();
    let (a, b) = (metas[1].clone(), metas[2].clone());
    std::fs::rename(&a, out.join("x")).unwrap();
    std::fs::rename(&b, &a).unwrap();
    std::fs::rename(out.join("x"), &b).unwrap();
    let (ok, checked) = verify(&out);
    let named = a.file_stem().unwrap().to_string_lossy().trim_start_matches('0').to_owned();
    assert!(!ok && checked.contains(&format!("BROKEN at entry {named}: missing")), "{checked}");
}

/// An export needs a checkpoint over the entries it selects and makes one if none covers them;
/// while the hub's own sealer holds the sealer's lock that does nothing, and the export asks
/// again (it said "no checkpoint after sealing" and failed).
#[tokio::test]
async fn an_export_waits_for_the_sealer_s_lock_rather_than_failing_without_a_checkpoint() {
    let hub = e2e::inprocess::Hub::new(&["37"], "").await;
    let settings = &hub.ctx.settings.broker;
    let signer = certs::signature::Signer::load(&settings.cert, &settings.key).unwrap();
    hub.index("37", vec![e2e::student("37", 1)]).await;
    hub::message_log::seal(&hub.ctx, &signer, true).await.unwrap();
    // Chained since, with no checkpoint over them (the last one is recent).
    hub.index("37", vec![e2e::student("37", 2)]).await;
    assert!(hub::message_log::seal(&hub.ctx, &signer, false).await.unwrap() > 0);

    // The hub's sealer, as it were, holds the lock for a moment.
    let mut sealer = hub.pool.begin().await.unwrap();
    assert!(hub::store::message_log::lock_sealer(&mut sealer).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let range = hub::message_log::Selection::Logged(
        chrono::Utc::now() - chrono::Duration::hours(1),
        chrono::Utc::now() + chrono::Duration::hours(1),
    );
    let export = hub::message_log::export(&hub.ctx, &signer, range, dir.path());
    let release = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        sealer.commit().await.unwrap();
    };
    let (written, ()) = tokio::join!(export, release);
    let written = written.expect("the export waited for the lock");
    assert!(written.selected >= 4, "both upserts and both results: {written:?}");
    let (ok, said) = e2e::evidence::verify(dir.path());
    assert!(ok, "{said}");
}
