//! The demo: a hub and three simulated provinces — Shandong (37), Guangdong (44) and Sichuan
//! (51) — completing cross-province transfers (跨省转学) and post-graduation enrollments
//! (毕业后跨省就学) over mutual TLS. Each province's adapter is admitted with its own certificate;
//! each simulated provincial system keeps the national index current, permits its senior-high
//! schools to enroll graduates of other provinces, applies for transfers of the other provinces'
//! students and enrollments of their last-year junior-high students, and answers the hub:
//! verification, reviewers who take their time and sometimes refuse, archives that sometimes
//! fail to export or import. The demo prints progress and a final tally, and checks that every
//! student is in exactly one province.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use e2e::world::{World, WorldOptions};
use schemas::messages::Body;

/// The demo of the exchange: a hub and three simulated provinces (37, 44, 51) doing
/// cross-province transfers and post-graduation enrollments over mutual TLS, with a final
/// tally. Run `bash tests/demo.sh` (it provisions the services first).
#[derive(Parser)]
#[command(name = "demo", version)]
struct Args {
    /// Students in each province.
    #[arg(long, default_value_t = 300)]
    students: usize,
    /// Transfers each province applies for.
    #[arg(long, default_value_t = 12)]
    transfers: usize,
    /// Post-graduation enrollments each province applies for.
    #[arg(long, default_value_t = 6)]
    enrollments: usize,
    /// Seed of the simulated provinces' data.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    println!("== Setting up a fresh exchange on the provisioned services");
    println!("   (its own broker vhost and database; RabbitMQ with TLS and EXTERNAL authentication only)");
    let sim_args = [
        "--review-delay-min-ms",
        "200",
        "--review-delay-max-ms",
        "1500",
        "--reject-rate",
        "0.1",
        "--export-failure-rate",
        "0.05",
        "--import-failure-rate",
        "0.05",
        "--transfers",
        &args.transfers.to_string(),
        "--enrollments",
        &args.enrollments.to_string(),
        // Registrars confirm organization-code changes (确认变动) after a while.
        "--orgcode-confirm-min-ms",
        "300",
        "--orgcode-confirm-max-ms",
        "1500",
    ];
    // How each province's registrars answer problem-record tasks (跨省问题学籍).
    let policy = |mode: &str| vec!["--problem-mode".to_owned(), mode.to_owned()];
    let w = World::new(WorldOptions {
        provinces: vec!["37", "44", "51"],
        students: args.students,
        seed: args.seed,
        bed: e2e::Options { extra_toml: "[cases]\nresend_after_secs = 3\n".into(), ..Default::default() },
        sim_args: sim_args.iter().map(|s| s.to_string()).collect(),
        province_args: vec![("37", policy("attest")), ("44", policy("delete")), ("51", policy("attest"))],
        ..Default::default()
    })
    .await;
    for p in &w.provinces {
        let code: schemas::ids::ProvinceCode = p.code.parse()?;
        println!(
            "   province {} {} ({}): certificate serial {}, adapter http://{}, {} students, {} schools registered",
            code.code(),
            code.name_zh(),
            code.name_en(),
            p.creds.serial,
            p.adapter.api,
            p.students.len(),
            p.schools.len()
        );
    }
    println!(
        "   hub ready; operator API https://localhost:{}",
        w.bed.settings.ops.as_ref().map_or(0, |o| o.listen.port())
    );
    println!("   national index: {} students, every one from its own province's system", 3 * args.students);

    println!(
        "\n== At work: each province applies for {} transfers of the other two provinces' students\n   \
         and {} enrollments of their last-year junior-high students (graduated or not)",
        args.transfers, args.enrollments
    );
    let db = w.bed.db().await;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        // What the provinces planned (a student planned twice by one province counts once).
        let mut total = 0;
        for p in &w.provinces {
            total += planned(&p.data).await?;
        }
        let (applied, refused, open, done): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM inbox WHERE message_type IN ('transfer.apply', 'enrollment.apply')),
                    (SELECT count(*) FROM inbox WHERE message_type IN ('transfer.apply', 'enrollment.apply')
                       AND outcome = 'refused'),
                    (SELECT count(*) FROM business_case WHERE closed_at IS NULL),
                    (SELECT count(*) FROM business_case WHERE closed_at IS NOT NULL)",
        )
        .fetch_one(&db)
        .await?;
        let stages: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, count(*) FROM business_case WHERE closed_at IS NULL GROUP BY state ORDER BY state",
        )
        .fetch_all(&db)
        .await?;
        let stages = stages.iter().map(|(s, n)| format!("{} {n}", s.to_lowercase())).collect::<Vec<_>>().join(", ");
        println!(
            "   {:>5.1} s  applied {applied:>3}/{total}, refused at application {refused}, open {open}{}, ended {done}",
            started.elapsed().as_secs_f64(),
            if stages.is_empty() { String::new() } else { format!(" ({stages})") }
        );
        if total > 0 && applied == total && open == 0 && refused + done == applied {
            break;
        }
        if Instant::now() > deadline {
            bail!("the cases did not finish within five minutes; logs in {}", w.bed.dir.path().display());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    println!("\n== One completed case, as the operator API shows it");
    let completed: Option<uuid::Uuid> = sqlx::query_scalar(
        "SELECT case_id FROM business_case WHERE state = 'COMPLETED' AND business = 'ENROLLMENT'
             ORDER BY created_at LIMIT 1",
    )
    .fetch_optional(&db)
    .await?;
    let op = w.bed.operator(certs::Role::Operator("demo".into())).await;
    if let Some(id) = completed {
        let (_, detail) = op.get(&format!("/cases/{id}")).await;
        let f = &detail["facts"];
        println!(
            "   case {id}, {}: {} {} from province {} ({}) to province {} ({})",
            f["business"].as_str().unwrap_or(""),
            f["studentName"].as_str().unwrap_or(""),
            f["studentId"].as_str().unwrap_or(""),
            f["outProvince"].as_str().unwrap_or(""),
            f["outSchool"].as_str().unwrap_or(""),
            f["inProvince"].as_str().unwrap_or(""),
            f["inSchool"].as_str().unwrap_or("")
        );
        for d in detail["decisions"].as_array().into_iter().flatten() {
            println!(
                "     {:<11} {:<8} by {} of {} at {}: {}",
                d["step"].as_str().unwrap_or(""),
                d["decision"].as_str().unwrap_or(""),
                d["reviewer"].as_str().unwrap_or(""),
                d["unit"].as_str().unwrap_or(""),
                d["decidedAt"].as_str().unwrap_or(""),
                d["opinion"].as_str().unwrap_or("")
            );
        }
        for e in detail["events"].as_array().into_iter().flatten() {
            println!(
                "     {} {:>17} → {:<17} ({})",
                e["at"].as_str().unwrap_or(""),
                e["fromStage"].as_str().unwrap_or("-"),
                e["toStage"].as_str().unwrap_or(""),
                e["cause"].as_str().unwrap_or("")
            );
        }
    }

    println!("\n== Final tally");
    for (business, apply) in [("TRANSFER", "transfer.apply"), ("ENROLLMENT", "enrollment.apply")] {
        let outcomes: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, count(*) FROM business_case WHERE business = $1 GROUP BY state ORDER BY state",
        )
        .bind(business)
        .fetch_all(&db)
        .await?;
        let codes: Vec<(String, i64)> = sqlx::query_as(
            "SELECT data->'phase'->>'code', count(*) FROM business_case WHERE state = 'REFUSED' AND business = $1
             GROUP BY 1 ORDER BY 1",
        )
        .bind(business)
        .fetch_all(&db)
        .await?;
        println!(
            "   {} cases: {}",
            business.to_lowercase(),
            outcomes.iter().map(|(s, n)| format!("{} {n}", s.to_lowercase())).collect::<Vec<_>>().join(", ")
        );
        if !codes.is_empty() {
            println!(
                "     refused after verification: {}",
                codes.iter().map(|(c, n)| format!("{c} {n}")).collect::<Vec<_>>().join(", ")
            );
        }
        let at_application: Vec<(Option<String>, i64)> = sqlx::query_as(
            "SELECT substring(convert_from(o.body, 'UTF8') from '<code>([A-Z_]+)</code>'), count(*)
             FROM outbox_message o JOIN inbox i ON o.correlation_id = i.message_id::text AND i.message_type = $1
             WHERE o.message_type = 'error' GROUP BY 1 ORDER BY 1",
        )
        .bind(apply)
        .fetch_all(&db)
        .await?;
        if !at_application.is_empty() {
            let list: Vec<String> =
                at_application.iter().map(|(c, n)| format!("{} {n}", c.as_deref().unwrap_or("?"))).collect();
            println!("     refused at application: {}", list.join(", "));
        }
    }
    let (span, p50, p99): (f64, f64, f64) = sqlx::query_as(
        "SELECT COALESCE(EXTRACT(EPOCH FROM max(closed_at) - min(created_at)), 0)::float8,
                COALESCE(percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM closed_at - created_at)), 0)::float8,
                COALESCE(percentile_cont(0.99) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM closed_at - created_at)), 0)::float8
         FROM business_case",
    )
    .fetch_one(&db)
    .await?;
    println!(
        "   case duration p50 {p50:.1} s, p99 {p99:.1} s (reviewers take 0.2–1.5 s a step here; 10 working days in life)"
    );
    // Counted where they happen: every request the hub sent again, over each case's life.
    let resends: i64 =
        sqlx::query_scalar("SELECT COALESCE(sum((data->>'resends')::int), 0)::bigint FROM business_case")
            .fetch_one(&db)
            .await?;
    println!("   requests resent by the hub after a province failed to answer: {resends}");
    let _ = span;

    // Every student in exactly one province, and the national index agrees.
    let mut present: HashMap<String, Vec<&str>> = HashMap::new();
    let mut moved = 0;
    for p in &w.provinces {
        let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&p.data).read_only(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await?;
        let rows: Vec<(String, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT student_id, transferred_out_case, transferred_in_case FROM student")
                .fetch_all(&pool)
                .await?;
        for (id, out, inn) in rows {
            moved += usize::from(inn.is_some());
            let e = present.entry(id).or_default();
            if out.is_none() {
                e.push(p.code);
            }
        }
    }
    let misplaced = present.values().filter(|ps| ps.len() != 1).count();
    let index: Vec<(String, String)> =
        sqlx::query_as("SELECT student_id, province FROM student_index").fetch_all(&db).await?;
    let disagree = index.iter().filter(|(id, p)| present.get(id).is_none_or(|ps| ps != &vec![p.as_str()])).count();
    println!(
        "   {} students in all; {moved} moved province; in exactly one province: {}; index agrees: {}",
        present.len(),
        if misplaced == 0 { "every one".to_owned() } else { format!("NO, {misplaced} misplaced") },
        if disagree == 0 { "yes".to_owned() } else { format!("NO, {disagree} entries") }
    );
    let (_, stuck) = op.get("/ops/stuck").await;
    let (_, overdue) = op.get("/ops/overdue").await;
    println!(
        "   operator view: {} stuck, {} overdue",
        stuck.as_array().map_or(0, Vec::len),
        overdue.as_array().map_or(0, Vec::len)
    );
    if misplaced != 0 || disagree != 0 {
        bail!("a student is not where he should be; logs in {}", w.bed.dir.path().display());
    }

    problems(&w, &db).await?;
    orgcodes(&w, &db).await?;
    privacy(&w).await?;
    println!("\nDemo finished in {:.1} s.", started.elapsed().as_secs_f64());
    Ok(())
}

/// Cross-province problem records: 44 and 51 each report a record of a student 37 holds (the
/// same resident ID under a new national student ID). 44's registrars delete theirs, so 37's is
/// attested automatically; 51's attest, as do 37's, and the national office decides.
async fn problems(w: &World, db: &sqlx::PgPool) -> Result<()> {
    println!("\n== Cross-province problem records (跨省问题学籍)");
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT student_id FROM student_index WHERE province = '37' AND document_type = '1' AND NOT problem_record
         AND NOT open_business ORDER BY student_id LIMIT 2",
    )
    .fetch_all(db)
    .await?;
    let originals: Vec<_> =
        ids.iter().filter_map(|id| w.province("37").students.iter().find(|s| s.student_id.as_ref() == id)).collect();
    anyhow::ensure!(originals.len() == 2, "two records of province 37 to duplicate");
    let moe = w.bed.operator(certs::Role::National("demo".into())).await;
    for (n, (province, original)) in [("44", originals[0]), ("51", originals[1])].into_iter().enumerate() {
        let mut copy = e2e::student(province, 9000 + u32::try_from(n)?);
        copy.name = original.name.clone();
        copy.id_document = original.id_document.clone();
        copy.registered_at = Some(chrono::Utc::now());
        let Body::IndexUpsert(batch) = e2e::index_upsert(province, vec![copy.clone()]).body else { unreachable!() };
        w.submit(province, Body::IndexUpsert(batch), None).await;
        println!(
            "   province {province} reports {} {} with the resident ID of 37's {}: an ID-duplicate group",
            copy.name, copy.student_id, original.student_id
        );
        let group = until_group(db, copy.student_id.as_ref(), &["closed", "arbitration"]).await?;
        if province == "51" {
            let (_, queue) = moe.get("/arbitrations").await;
            println!(
                "   both sides attested: {} group(s) in the national office's arbitration queue",
                queue.as_array().map_or(0, Vec::len)
            );
            let decision = serde_json::json!({
                "upheld": original.student_id,
                "comments": [{ "studentId": copy.student_id, "comment": "该生户籍与就读地均在山东,四川记录应删除或变更" }],
            });
            let (status, _) = moe.post(&format!("/problems/{group}/decision"), &decision).await;
            anyhow::ensure!(status == 200, "the national office's decision was refused ({status})");
            println!("   the national office upholds 37's record (仲裁通过); 51's may now only be changed or deleted");
            until_group(db, copy.student_id.as_ref(), &["closed"]).await?;
        }
        let (_, detail) = moe.get(&format!("/problems/{group}")).await;
        for e in detail["events"].as_array().into_iter().flatten() {
            let d = &e["detail"];
            let what = match e["what"].as_str().unwrap_or("") {
                "result" => format!(
                    "result {} of {} ({} approvals, {} evidence file(s))",
                    d["mode"].as_str().unwrap_or(""),
                    d["studentId"].as_str().unwrap_or(""),
                    d["approval"].as_array().map_or(0, Vec::len),
                    d["evidence"].as_array().map_or(0, Vec::len)
                ),
                "auto-attested" => {
                    format!("auto-attested {} (N-1 rule: no task sent)", d["studentId"].as_str().unwrap_or(""))
                }
                "decided" => format!("decided: upheld {}", d["upheld"].as_str().unwrap_or("")),
                other => other.to_owned(),
            };
            println!("     {} {:<10} {what}", e["at"].as_str().unwrap_or(""), e["actor"].as_str().unwrap_or(""));
        }
        let states: Vec<String> = detail["group"]["members"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                format!(
                    "{}:{} {}",
                    m["province"].as_str().unwrap_or(""),
                    m["studentId"].as_str().unwrap_or(""),
                    m["state"].as_str().unwrap_or("")
                )
            })
            .collect();
        println!("   group {group} {}: {}", detail["group"]["state"].as_str().unwrap_or(""), states.join(", "));
    }
    Ok(())
}

/// Organization codes: the national office revokes a Sichuan school whose last student is
/// transferring to Shandong. Sichuan's registrars confirm; the revocation waits for the
/// transfer, whose reviewers go on, and executes the moment it completes.
async fn orgcodes(w: &World, db: &sqlx::PgPool) -> Result<()> {
    println!("\n== Organization codes (机构代码): a school revocation deferred by an open transfer");
    // This transfer must complete: its reviewers approve and its archive goes through.
    let sure = ["--reject-rate", "0", "--export-failure-rate", "0", "--import-failure-rate", "0"].map(String::from);
    for p in ["37", "51"] {
        w.stop_province(p);
        w.start_province_with(p, &sure);
    }
    let free: Vec<String> = sqlx::query_scalar(
        "SELECT student_id FROM student_index i WHERE province = '51' AND status = 'ENROLLED' AND NOT problem_record
         AND NOT EXISTS (SELECT 1 FROM open_business o WHERE o.student_id = i.student_id)
         AND NOT EXISTS (SELECT 1 FROM problem_member m JOIN problem_group g USING (group_id)
                         WHERE m.student_id = i.student_id AND g.state <> 'closed')
         ORDER BY student_id",
    )
    .fetch_all(db)
    .await?;
    let mut conn = db.acquire().await?;
    let mut chosen = None;
    for id in &free {
        if let Some(e) = hub::store::index::by_student_id(&mut conn, id).await?
            && e.summary.student_id.is_formal()
            && w.province("51").schools.contains(&e.summary.school)
            && w.province("51").students.iter().any(|g| g.student_id == e.summary.student_id)
        {
            chosen = Some(e.summary);
            break;
        }
    }
    drop(conn);
    let s = chosen.ok_or_else(|| anyhow::anyhow!("a free student of 51"))?;
    let school = s.school.clone();
    let elsewhere = w.province("51").schools.iter().find(|c| **c != school).cloned().expect("another school");
    // 学生学籍转移: Sichuan moves the school's other students elsewhere (its own business; the
    // hub sees it in the index).
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT student_id FROM student_index WHERE school = $1 AND student_id <> $2")
            .bind(school.as_ref())
            .bind(s.student_id.as_ref())
            .fetch_all(db)
            .await?;
    let mut conn = db.acquire().await?;
    let mut others = Vec::new();
    for id in ids {
        // As the index has him (he may have come from another province).
        if let Some(e) = hub::store::index::by_student_id(&mut conn, &id).await? {
            others.push(schemas::messages::StudentSummary {
                school: elsewhere.clone(),
                changed_at: chrono::Utc::now(),
                ..e.summary
            });
        }
    }
    drop(conn);
    for chunk in others.chunks(schemas::messages::INDEX_BATCH_MAX) {
        let batch = schemas::messages::Batch::new(chunk.to_vec()).map_err(anyhow::Error::msg)?;
        w.submit("51", Body::IndexUpsert(schemas::messages::IndexUpsert { student: batch }), None).await;
    }
    println!(
        "   Sichuan moved {} students of school {school} to {elsewhere}; one is left: {} {}",
        others.len(),
        s.name,
        s.student_id
    );
    let case = w.case_of(w.apply("37", &s).await).await;
    println!("   Shandong applies for his transfer: case {case}");
    let i = w.province("51").schools.iter().position(|c| *c == school).expect("a school of 51");
    let department = format!("51010{}000000", 1 + i % 2);
    let batch = serde_json::json!({
        "batchId": "SCHOOL-2026Q4", "version": 1, "kind": "SCHOOL", "publishedOn": "2026-10-08",
        "record": [{ "action": "REVOKE", "school": { "code": school, "name": format!("学校{school}"), "department": department } }],
    });
    let moe = w.bed.operator(certs::Role::National("demo-orgcode".into())).await;
    let (status, body) = moe.post("/orgcodes/batches", &batch).await;
    anyhow::ensure!(status == 201, "the batch was not loaded: {status} {body}");
    println!(
        "   the national office loads batch SCHOOL-2026Q4: revoke school {school} (to {department} for confirmation)"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut shown = false;
    loop {
        let (state, case_state): (String, String) = sqlx::query_as(
            "SELECT state, (SELECT state FROM business_case WHERE case_id = $2) FROM orgcode_change WHERE unit = $1",
        )
        .bind(school.as_ref())
        .bind(case.uuid())
        .fetch_one(db)
        .await?;
        if state == "CONFIRMED" && !shown {
            let (_, list) = moe.get("/orgcodes/revocations").await;
            let r = &list[0];
            println!(
                "   Sichuan confirmed it (已确认); it waits: blockers {}, blocking business {} {}; the case is {}",
                r["blockers"],
                r["business"][0]["business"],
                r["business"][0]["businessId"],
                case_state.to_lowercase()
            );
            shown = true;
        }
        if state == "DONE" {
            let (closed, done): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
                "SELECT (SELECT closed_at FROM business_case WHERE case_id = $2), done_at FROM orgcode_change WHERE unit = $1",
            )
            .bind(school.as_ref())
            .bind(case.uuid())
            .fetch_one(db)
            .await?;
            println!(
                "   the transfer {}; the revocation executed (处理完毕) at {done}, the case closed at {closed}",
                case_state.to_lowercase()
            );
            anyhow::ensure!(
                case_state == "COMPLETED" && done == closed,
                "the revocation executes with the transfer's end"
            );
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the revocation of {school} did not execute; logs in {}",
            w.bed.dir.path().display()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let store = w.province("51").adapter.store().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM inbox WHERE message_type = 'orgcode.revoked'")
        .fetch_one(&store)
        .await?
        == 0
    {
        anyhow::ensure!(Instant::now() < deadline, "Sichuan was not told of the revocation");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "   Sichuan is told (orgcode.revoked: disable the school's accounts now); the student is in {:?}",
        w.present_in(s.student_id.as_ref()).await
    );
    Ok(())
}

/// Waits until the group holding `student_id` reaches one of `states`; returns its id.
async fn until_group(db: &sqlx::PgPool, student_id: &str, states: &[&str]) -> Result<uuid::Uuid> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found: Option<(uuid::Uuid, String)> = sqlx::query_as(
            "SELECT g.group_id, g.state FROM problem_group g JOIN problem_member m USING (group_id)
             WHERE m.student_id = $1 ORDER BY g.opened_at DESC LIMIT 1",
        )
        .bind(student_id)
        .fetch_optional(db)
        .await?;
        if let Some((id, state)) = found
            && states.contains(&state.as_str())
        {
            return Ok(id);
        }
        anyhow::ensure!(Instant::now() < deadline, "the problem group of {student_id} did not reach {states:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The cases a simulated province planned, from its database.
async fn planned(data: &std::path::Path) -> Result<i64> {
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(data).read_only(true);
    let Ok(pool) = sqlx::SqlitePool::connect_with(opts).await else { return Ok(0) };
    let n = sqlx::query_scalar("SELECT count(*) FROM planned_transfer").fetch_one(&pool).await.unwrap_or(0);
    pool.close().await;
    Ok(n)
}

/// Minors' records: the national office reads who looked up whom (the audit keeps a keyed
/// digest of the identifier, never the identifier); no student's name or identifier is in the
/// hub's or the adapters' logs or metrics.
async fn privacy(w: &World) -> Result<()> {
    println!("\n== Personal data (个人信息): the lookup audit and the logs");
    let moe = w.bed.operator(certs::Role::National("demo-audit".into())).await;
    let (_, audit) = moe.get("/ops/lookups?limit=1000").await;
    let entries = audit.as_array().map_or(&[][..], Vec::as_slice);
    let mut by_province: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for e in entries {
        let key = (e["province"].as_str().unwrap_or("?").to_owned(), e["outcome"].as_str().unwrap_or("?").to_owned());
        *by_province.entry(key).or_default() += 1;
    }
    let summary: Vec<String> = by_province.iter().map(|((p, o), n)| format!("{p} {o} {n}")).collect();
    println!("   lookup audit: {} lookups ({})", entries.len(), summary.join(", "));
    if let Some(e) = entries.last() {
        println!(
            "   e.g. at {} province {} ({}) looked up by {}: {}",
            e["at"].as_str().unwrap_or("?"),
            e["province"].as_str().unwrap_or("?"),
            e["requestedBy"].as_str().unwrap_or("no user named"),
            e["keyKind"].as_str().unwrap_or("?"),
            e["outcome"].as_str().unwrap_or("?")
        );
    }
    let (found, logs, bytes) = w.personal_data_in_logs_and_metrics().await;
    println!(
        "   {logs} logs and metrics of the hub and adapters ({:.1} MB) searched for every student's name, national \
         student ID and ID-document number: {}",
        bytes as f64 / 1e6,
        if found.is_empty() { "none found".to_owned() } else { format!("FOUND {}", found.len()) }
    );
    if !found.is_empty() {
        for (log, what) in found.iter().take(10) {
            println!("   {log}: {what}");
        }
        bail!("personal data in the logs; logs in {}", w.bed.dir.path().display());
    }
    Ok(())
}
