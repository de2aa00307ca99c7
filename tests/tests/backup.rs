//! Backups of both stores taken under load, restored, and the exchange resuming from them: the
//! adapter's SQLite store (`adapter backup` / `adapter restore`) and the hub's PostgreSQL
//! database (`pg_dump` / `pg_restore`). Nothing is lost and nothing arrives twice: the restored
//! side asks the other for what it sent since before the backup (`replay.request`, after
//! `adapter restore` by itself, after a hub restore with `hub replay`), and what is sent again
//! keeps its message id, so the receiver recognizes what it has.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use e2e::{AdapterProc, TestBed, binary, eventually, index_upsert, student};
use schemas::Envelope;

const WAIT: Duration = Duration::from_secs(120);
const MESSAGES: u32 = 200;

async fn sqlite_rows(adapter: &AdapterProc, sql: &str) -> Vec<String> {
    let pool = adapter.store().await;
    let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows
}

/// The index results the provincial system can take from its adapter: the message each answers.
async fn answered(adapter: &AdapterProc) -> Vec<String> {
    sqlite_rows(adapter, "SELECT correlation_id FROM inbox WHERE message_type = 'index.result'").await
}

fn messages() -> Vec<Envelope> {
    (0..MESSAGES).map(|n| index_upsert("37", vec![student("37", n)])).collect()
}

/// Submits every message, taking `backup` once `at` of them are in; returns when all are in.
async fn submit_under_load(adapter: &AdapterProc, envs: &[Envelope], at: usize, backup: impl FnOnce()) {
    let mut backup = Some(backup);
    for (n, env) in envs.iter().enumerate() {
        let (status, body) = adapter.submit(env).await;
        assert!(status == 200 || status == 202, "{status} {body}");
        if n == at {
            (backup.take().unwrap())();
        }
    }
}

async fn until_all_answered(adapter: &AdapterProc, envs: &[Envelope]) {
    let want: BTreeSet<String> = envs.iter().map(|e| e.message_id.to_string()).collect();
    eventually("every submission answered", WAIT, || async {
        let got: BTreeSet<String> = answered(adapter).await.into_iter().collect();
        (got == want).then_some(())
    })
    .await;
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?}: {text}");
    text
}

async fn hub_count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_adapter_restored_from_a_backup_taken_under_load_resumes_without_loss_or_duplicate() {
    let bed = TestBed::new().await;
    let a = bed.add_province("37").await;
    bed.spawn_hub("hub").await;
    let adapter = bed.spawn_adapter("adapter", &a, &[]).await;
    let envs = messages();
    let copy = bed.dir.path().join("adapter-backup.db");
    submit_under_load(&adapter, &envs, 80, || {
        run(Command::new(binary("adapter")).args(["backup", "--config"]).arg(&adapter.config).arg("--out").arg(&copy));
    })
    .await;
    until_all_answered(&adapter, &envs).await;
    let (outbox, inbox, _) = adapters::store::check_backup(&copy).await.unwrap();
    assert!(outbox > 0 && outbox < i64::from(MESSAGES), "taken under load: {outbox} of {MESSAGES} submitted");
    assert!(inbox < i64::from(MESSAGES), "{inbox} answers in the copy");

    // The store is lost; the backup goes back in place, and the adapter starts from it.
    bed.kill("adapter");
    let said = run(Command::new(binary("adapter"))
        .args(["restore", "--config"])
        .arg(&adapter.config)
        .arg("--from")
        .arg(&copy));
    assert!(said.contains("asks the hub to send again"), "{said}");
    bed.start_adapter(&adapter, &[]);
    eventually("adapter up", WAIT, || async { reqwest::get(adapter.url("/healthz")).await.ok().map(|_| ()) }).await;
    // The provincial system submits again what it is not sure of: everything (harmless).
    for env in &envs {
        let (status, body) = adapter.submit(env).await;
        assert!(status == 200 || status == 202, "{status} {body}");
    }
    until_all_answered(&adapter, &envs).await;
    eventually("the replay answered", WAIT, || async {
        (!sqlite_rows(&adapter, "SELECT message_id FROM inbox WHERE message_type = 'replay.result'").await.is_empty())
            .then_some(())
    })
    .await;
    // Every answer once, none twice; the hub processed each submission once.
    let got = answered(&adapter).await;
    let distinct: BTreeSet<&String> = got.iter().collect();
    assert_eq!((got.len(), distinct.len()), (MESSAGES as usize, MESSAGES as usize), "once each");
    let db = bed.db().await;
    assert_eq!(
        hub_count(&db, "SELECT count(*) FROM inbox WHERE message_type = 'index.upsert'").await,
        i64::from(MESSAGES)
    );
    assert_eq!(hub_count(&db, "SELECT count(*) FROM student_index").await, i64::from(MESSAGES));
    assert_eq!(hub_count(&db, "SELECT count(*) FROM dead_letter").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hub_database_restored_from_a_dump_taken_under_load_resumes_without_loss_or_duplicate() {
    let bed = TestBed::new().await;
    let a = bed.add_province("37").await;
    bed.spawn_hub("hub").await;
    let adapter = bed.spawn_adapter("adapter", &a, &[]).await;
    let envs = messages();
    let dumped_at = chrono::Utc::now();
    let dump = bed.dir.path().join("hub.dump");
    let source = format!("{}/{}", bed.env.pg_url.rsplit_once('/').unwrap().0, bed.id);
    submit_under_load(&adapter, &envs, 80, || {
        run(Command::new("pg_dump").args(["--format=custom", "--file"]).arg(&dump).arg(&source));
    })
    .await;
    until_all_answered(&adapter, &envs).await;

    // The database is lost: a new one from the dump, and a hub on it.
    bed.kill("hub");
    let restored = format!("{}r", bed.id);
    let admin = sqlx::PgPool::connect(&bed.env.pg_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{restored}\""))).execute(&admin).await.unwrap();
    let target = format!("{}/{restored}", bed.env.pg_url.rsplit_once('/').unwrap().0);
    run(Command::new("pg_restore").args(["--no-owner", "--dbname"]).arg(&target).arg(&dump));
    // As the README says: the planner's statistics, which a restore does not bring.
    run(Command::new("vacuumdb").args(["--analyze-only", "--quiet", "--dbname"]).arg(&target));
    let db = sqlx::PgPool::connect(&target).await.unwrap();
    let processed = hub_count(&db, "SELECT count(*) FROM inbox WHERE message_type = 'index.upsert'").await;
    assert!(processed > 0 && processed < i64::from(MESSAGES), "taken under load: {processed} processed");
    // One moment's state: every message processed in it has its answer in it.
    let unanswered = hub_count(
        &db,
        "SELECT count(*) FROM inbox i WHERE message_type = 'index.upsert'
           AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.correlation_id = i.message_id::text)",
    )
    .await;
    assert_eq!(unanswered, 0);
    let (settings, _) = bed.settings_copy("restored");
    let text =
        std::fs::read_to_string(&settings).unwrap().replace(&format!("/{}\"", bed.id), &format!("/{restored}\""));
    std::fs::write(&settings, text).unwrap();
    bed.spawn_hub_with("hub-restored", &settings, &[]).await;

    // The provinces are asked for what they sent since before the dump: what the restored
    // database holds is recognized, the rest is processed again and answered with the same
    // message ids, so the adapter keeps one copy of each answer.
    let since = (dumped_at - chrono::Duration::hours(1)).to_rfc3339();
    let said = run(Command::new(binary("hub")).arg("--config").arg(&settings).args(["replay", "--since", &since]));
    assert!(said.contains("prov-37"), "{said}");
    eventually("the restored hub caught up", WAIT, || async {
        let n = hub_count(&db, "SELECT count(*) FROM inbox WHERE message_type = 'index.upsert'").await;
        let sent = hub_count(&db, "SELECT count(*) FROM outbox WHERE sent_at IS NULL").await;
        (n == i64::from(MESSAGES) && sent == 0).then_some(())
    })
    .await;
    let got = answered(&adapter).await;
    let distinct: BTreeSet<&String> = got.iter().collect();
    assert_eq!((got.len(), distinct.len()), (MESSAGES as usize, MESSAGES as usize), "once each");
    assert_eq!(hub_count(&db, "SELECT count(*) FROM student_index").await, i64::from(MESSAGES));
    bed.kill("hub-restored");
    db.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{restored}\" WITH (FORCE)")))
        .execute(&admin)
        .await
        .unwrap();
}
