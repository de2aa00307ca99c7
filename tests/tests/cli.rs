//! The command-line tools as their users run them.

use std::process::Command;

use e2e::binary;

#[test]
fn demo_help_prints_its_options_instead_of_running() {
    let out = Command::new(binary("demo")).arg("--help").output().expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Usage") && text.contains("--transfers"), "{text}");
    assert!(!text.contains("Setting up"), "it must not start the demo: {text}");
}

/// The main job, small: every business end to end, then its own checks — each student in one
/// province, the index agreeing, and no student's name or identifier in the hub's or the
/// adapters' logs or metrics (it searches them for every student's and fails if it finds one).
#[test]
fn the_demo_runs_every_business_and_leaves_no_personal_data_in_the_logs() {
    let out = Command::new(binary("demo"))
        .args(["--students", "40", "--transfers", "2", "--enrollments", "1"])
        .output()
        .expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("in exactly one province: every one; index agrees: yes"), "{text}");
    let searched = text.lines().find(|l| l.contains("searched for every student's name")).expect("the log check");
    assert!(searched.ends_with("none found") && !searched.contains(" 0 logs"), "{searched}");
    assert!(text.contains("lookup audit: ") && !text.contains("lookup audit: 0 lookups"), "{text}");
}

use std::process::{Output, Stdio};
use std::time::Duration;

use certs::Role;
use e2e::{TestBed, eventually, publish_raw};

/// `hub ops …` as an operator runs it, with the options after the subcommand.
fn ops(bed: &TestBed, args: &[&str]) -> Output {
    ops_as(bed, "op-cli", args)
}

/// `hub ops …` with the certificate `stem` (as [`TestBed::operator`] issued it).
fn ops_as(bed: &TestBed, stem: &str, args: &[&str]) -> Output {
    let dir = bed.dir.path();
    let listen = bed.settings.ops.as_ref().expect("operator API").listen;
    Command::new(binary("hub"))
        .arg("ops")
        .args(args)
        .arg("--url")
        .arg(format!("https://localhost:{}", listen.port()))
        .arg("--cert")
        .arg(dir.join(format!("{stem}.pem")))
        .arg("--key")
        .arg(dir.join(format!("{stem}.key")))
        .arg("--ca")
        .arg(&bed.env.ca_cert)
        .output()
        .expect("run hub ops")
}

fn out(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn hub_ops_prints_tables_or_json_pages_lists_and_shows_the_server_s_refusals() {
    let bed = TestBed::new().await;
    bed.spawn_hub("hub").await;
    bed.operator(Role::Operator("cli".into())).await;
    // Three dead letters, to list and page.
    let creds = bed.add_province("37").await;
    let conn = bed.connect(&creds).await;
    for _ in 0..3 {
        publish_raw(&conn, b"not xml", Some("prov-37"), &uuid::Uuid::new_v4().to_string(), &creds).await.unwrap();
    }
    let db = bed.db().await;
    eventually("three dead letters", Duration::from_secs(30), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letter").fetch_one(&db).await.ok()?;
        (n == 3).then_some(())
    })
    .await;

    // A table by default, with the options after the subcommand; one row per dead letter.
    let o = ops(&bed, &["dead-letters"]);
    let (stdout, stderr) = out(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.lines().next().is_some_and(|h| h.contains("SENDER") && h.contains("CODE")), "{stdout}");
    assert_eq!(stdout.lines().filter(|l| l.contains("E_MALFORMED")).count(), 3, "{stdout}");
    // JSON for scripts; a page of two, and where the next one starts.
    let o = ops(&bed, &["dead-letters", "--output", "json", "--limit", "2"]);
    let (stdout, stderr) = out(&o);
    let rows: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(rows.as_array().map(Vec::len), Some(2));
    assert!(stderr.contains("--offset 2"), "{stderr}");
    let o = ops(&bed, &["dead-letters", "--output", "json", "--limit", "2", "--offset", "2"]);
    let rows: serde_json::Value = serde_json::from_str(&out(&o).0).expect("JSON");
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "the rest");

    // The server's refusal is shown, once, and the exit status is 1.
    let o = ops(&bed, &["case", &uuid::Uuid::new_v4().to_string()]);
    let (_, stderr) = out(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr.contains("E_CASE_NOT_FOUND") && stderr.contains("业务不存在"), "{stderr}");
    assert_eq!(stderr.matches("hub:").count(), 1, "said once: {stderr}");
    // Usage errors exit 2 and list what is valid.
    let o = ops(&bed, &["cases", "--state", "bogus"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(out(&o).1.contains("UNDER_REVIEW"), "{}", out(&o).1);
    assert_eq!(ops(&bed, &["case", "not-a-uuid"]).status.code(), Some(2));
    // The API itself refuses an unknown state with the valid ones.
    let op = bed.operator(Role::Operator("api".into())).await;
    let (status, body) = op.get("/cases?state=bogus").await;
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("UNDER_REVIEW")), "{body}");
    // A message by its id, from the trace.
    let id: uuid::Uuid = sqlx::query_scalar("SELECT message_id FROM dead_letter LIMIT 1").fetch_one(&db).await.unwrap();
    let o = ops(&bed, &["message", &id.to_string()]);
    let (stdout, stderr) = out(&o);
    assert!(
        o.status.success() && stdout.contains("dead-lettered") && stdout.contains("E_MALFORMED"),
        "{stdout}{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_national_office_loads_lists_and_decides_problem_groups_from_the_command_line() {
    let bed = TestBed::new().await;
    bed.spawn_hub("hub").await;
    bed.operator(Role::National("cli".into())).await;
    bed.operator(Role::Operator("cli".into())).await;
    let a = e2e::student("51", 1);
    let mut b = e2e::student("44", 1);
    b.id_document = a.id_document.clone();
    b.name = a.name.clone();
    let member = |s: &schemas::messages::StudentSummary, p: &str| {
        serde_json::json!({
            "province": p, "school": s.school, "studentId": s.student_id, "name": s.name,
            "idDocument": s.id_document, "registeredAt": s.registered_at,
        })
    };
    let file = bed.dir.path().join("group.json");
    let group = serde_json::json!({ "kind": "ID_DUPLICATE", "member": [member(&a, "51"), member(&b, "44")] });
    std::fs::write(&file, group.to_string()).unwrap();
    let path = file.display().to_string();

    // An operator may not load; the national office may.
    let o = ops(&bed, &["load-group", &path]);
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).1.contains("E_FORBIDDEN"), "{}", out(&o).1);
    let o = ops_as(&bed, "moe-cli", &["load-group", &path]);
    let (stdout, stderr) = out(&o);
    assert!(o.status.success() && stdout.contains("loaded"), "{stdout}{stderr}");

    let o = ops(&bed, &["problems", "--state", "open"]);
    let (stdout, stderr) = out(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.lines().next().is_some_and(|h| h.contains("WAITING ON") && h.contains("KIND")), "{stdout}");
    let row = stdout.lines().find(|l| l.contains("ID_DUPLICATE")).unwrap_or_else(|| panic!("{stdout}"));
    let id = row.split_whitespace().find(|w| uuid::Uuid::parse_str(w.trim_matches('│')).is_ok()).expect("the id");
    let id = id.trim_matches('│').to_owned();
    let o = ops(&bed, &["problem", &id]);
    let (stdout, stderr) = out(&o);
    assert!(
        o.status.success() && stdout.contains("Records") && stdout.contains(b.student_id.as_ref()),
        "{stdout}{stderr}"
    );
    assert!(stdout.contains("loaded"), "its history: {stdout}");
    let o = ops(&bed, &["arbitrations", "--output", "json"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out(&o).0).unwrap(), serde_json::json!([]));
    // Deciding a group that does not wait for arbitration: the server's refusal, exit 1.
    let o = ops_as(&bed, "moe-cli", &["decide", &id, "--upheld", a.student_id.as_ref(), "--comment", "x=y"]);
    assert_eq!(o.status.code(), Some(1));
    let o = ops_as(&bed, "moe-cli", &["decide", &id, "--upheld", a.student_id.as_ref()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).1.contains("E_NOT_YOUR_STEP"), "{}", out(&o).1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_national_office_loads_organization_code_batches_and_operators_follow_them_from_the_command_line() {
    let bed = TestBed::new().await;
    bed.spawn_hub("hub").await;
    bed.operator(Role::National("cli".into())).await;
    bed.operator(Role::Operator("cli".into())).await;
    let batch = |name: &str| {
        serde_json::json!({
            "batchId": "SCHOOL-2026Q4", "version": 1, "kind": "SCHOOL", "publishedOn": "2026-10-08",
            "record": [{"action": "ADD", "school": {"code": "3151000777", "name": name, "department": "510107000000"}}],
        })
    };
    let write = |file: &str, v: serde_json::Value| {
        let path = bed.dir.path().join(file);
        std::fs::write(&path, v.to_string()).unwrap();
        path.display().to_string()
    };
    let (first, other) = (write("batch.json", batch("新学校")), write("other.json", batch("另一个名字")));
    let o = ops(&bed, &["load-batch", &first]);
    assert!(o.status.code() == Some(1) && out(&o).1.contains("E_FORBIDDEN"), "{}", out(&o).1);
    let o = ops_as(&bed, "moe-cli", &["load-batch", &first]);
    let (stdout, stderr) = out(&o);
    assert!(o.status.success() && stdout.contains("1 records sent"), "{stdout}{stderr}");
    let o = ops_as(&bed, "moe-cli", &["load-batch", &first]);
    assert!(o.status.success() && out(&o).0.contains("nothing changed"), "{}", out(&o).0);
    let o = ops_as(&bed, "moe-cli", &["load-batch", &other]);
    assert!(o.status.code() == Some(1) && out(&o).1.contains("E_BATCH_CONFLICT"), "{}", out(&o).1);

    let o = ops(&bed, &["batches"]);
    let (stdout, stderr) = out(&o);
    assert!(
        o.status.success() && stdout.contains("SCHOOL-2026Q4") && stdout.contains("UNCONFIRMED"),
        "{stdout}{stderr}"
    );
    let o = ops(&bed, &["batch", "SCHOOL-2026Q4"]);
    let (stdout, _) = out(&o);
    let row = stdout.lines().find(|l| l.contains("3151000777")).unwrap_or_else(|| panic!("{stdout}"));
    let id = row.split_whitespace().map(|w| w.trim_matches('│')).find(|w| uuid::Uuid::parse_str(w).is_ok()).unwrap();
    let o = ops(&bed, &["change", id]);
    let (stdout, stderr) = out(&o);
    assert!(o.status.success() && stdout.contains("510107000000") && stdout.contains("loaded"), "{stdout}{stderr}");
    let o = ops(&bed, &["revocations", "--output", "json"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out(&o).0).unwrap(), serde_json::json!([]));
}

#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    // The reader is gone before the command writes: a pipe closed early, as `| head` does.
    let env = e2e::DevEnv::load().expect("development services");
    let cert = env.hub_cert.display().to_string();
    for args in [vec!["certs", "inspect", cert.as_str()], vec!["--help"]] {
        let mut child = Command::new(binary("hub"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        drop(child.stdout.take());
        let o = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert_ne!(o.status.code(), Some(101), "{args:?}: no panic");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_school_registry_is_read_as_csv_and_a_bad_row_is_named() {
    let bed = TestBed::new().await;
    let file = bed.dir.path().join("schools.csv");
    std::fs::write(
        &file,
        "code,province,name\n3137000456,37,\"青岛市实验小学, 东校区\"\n3151000123,5,成都市示范小学\n",
    )
    .unwrap();
    let load = |file: &std::path::Path| {
        Command::new(binary("hub"))
            .arg("--config")
            .arg(&bed.settings_path)
            .args(["schools", "load"])
            .arg(file)
            .output()
            .expect("run")
    };
    let o = load(&file);
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).1.contains("line 3, field `province`"), "{}", out(&o).1);
    std::fs::write(&file, "code,province,name\n3137000456,37,\"青岛市实验小学, 东校区\"\n").unwrap();
    let o = load(&file);
    assert!(o.status.success(), "{}", out(&o).1);
    let name: String = sqlx::query_scalar("SELECT name FROM school WHERE code = '3137000456'")
        .fetch_one(&bed.db().await)
        .await
        .unwrap();
    assert_eq!(name, "青岛市实验小学, 东校区", "the quoted comma is part of the name");
}
