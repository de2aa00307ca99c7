//! A thousand transfers among three simulated provinces, with reviewers who take a random time
//! and sometimes refuse, and archives that sometimes fail to export or import: every case must
//! end, and every student must be in exactly one province. Prints cases/s and latency.

use std::time::Duration;

use e2e::world::{World, WorldOptions};

const TRANSFERS: [(&str, usize); 3] = [("37", 334), ("44", 333), ("51", 333)];
const STUDENTS: usize = 1000;

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_transfers_among_three_provinces_all_end_with_every_student_in_one_province() {
    let common = [
        "--review-delay-min-ms",
        "0",
        "--review-delay-max-ms",
        "300",
        "--reject-rate",
        "0.05",
        "--export-failure-rate",
        "0.02",
        "--import-failure-rate",
        "0.02",
    ];
    let opts = WorldOptions {
        provinces: vec!["37", "44", "51"],
        students: STUDENTS,
        seed: 11,
        bed: e2e::Options { extra_toml: "[cases]\nresend_after_secs = 20\n".into(), ..Default::default() },
        sim_args: common.iter().map(|s| s.to_string()).collect(),
        province_args: TRANSFERS.iter().map(|(p, n)| (*p, vec!["--transfers".to_owned(), n.to_string()])).collect(),
        silent: vec![],
    };
    let w = World::new(opts).await;
    let total: usize = TRANSFERS.iter().map(|(_, n)| n).sum();
    let db = w.bed.db().await;

    // Every application answered: refused at once, or a case that has ended. Progress is printed
    // every half minute, so a run that does not end shows where its cases wait.
    let last_report = std::sync::Mutex::new(std::time::Instant::now());
    e2e::eventually("every application answered and every case ended", Duration::from_secs(600), || async {
        if last_report.lock().unwrap().elapsed() > Duration::from_secs(30) {
            *last_report.lock().unwrap() = std::time::Instant::now();
            let open: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT state, coalesce(waiting_party, '-'), count(*) FROM business_case
                 WHERE closed_at IS NULL GROUP BY 1, 2 ORDER BY 3 DESC",
            )
            .fetch_all(&db)
            .await
            .unwrap_or_default();
            let answered: Option<(i64, i64)> = sqlx::query_as(
                "SELECT count(*), count(*) FILTER (WHERE outcome = 'refused') FROM inbox
                 WHERE message_type = 'transfer.apply'",
            )
            .fetch_one(&db)
            .await
            .ok();
            println!("applications (received, refused): {answered:?}; open cases by state and party: {open:?}");
        }
        let (applied, refused, cases, open): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM inbox WHERE message_type = 'transfer.apply'),
                    (SELECT count(*) FROM inbox WHERE message_type = 'transfer.apply' AND outcome = 'refused'),
                    (SELECT count(*) FROM business_case),
                    (SELECT count(*) FROM business_case WHERE closed_at IS NULL)",
        )
        .fetch_one(&db)
        .await
        .ok()?;
        (applied as usize == total && refused + cases == applied && open == 0).then_some(())
    })
    .await;

    // Every student in exactly one province.
    let present = w.holders().await;
    assert_eq!(present.len(), 3 * STUDENTS, "nobody created, nobody lost");
    let wrong: Vec<_> = present.iter().filter(|(_, ps)| ps.len() != 1).collect();
    assert!(wrong.is_empty(), "students not in exactly one province: {wrong:?}");
    // The national index agrees with the provinces.
    let index: Vec<(String, String)> =
        sqlx::query_as("SELECT student_id, province FROM student_index").fetch_all(&db).await.unwrap();
    for (id, province) in &index {
        assert_eq!(present[id], vec![province.as_str()], "index and provinces agree on {id}");
    }

    // Throughput and latency.
    let outcomes: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM business_case GROUP BY state ORDER BY state")
            .fetch_all(&db)
            .await
            .unwrap();
    let (span, p50, p99): (f64, f64, f64) = sqlx::query_as(
        "SELECT EXTRACT(EPOCH FROM max(closed_at) - min(created_at))::float8,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM closed_at - created_at))::float8,
                percentile_cont(0.99) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM closed_at - created_at))::float8
         FROM business_case",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let cases: i64 = outcomes.iter().map(|(_, n)| n).sum();
    let report = format!(
        "transfers applied: {total}; cases: {cases} ({}); refused at application: {}\n\
         {:.1} cases/s over {span:.1} s; case latency p50 {p50:.2} s, p99 {p99:.2} s\n",
        outcomes.iter().map(|(s, n)| format!("{s} {n}")).collect::<Vec<_>>().join(", "),
        total as i64 - cases,
        cases as f64 / span,
    );
    println!("{report}");
    let _ = std::fs::write(e2e::bin_dir().join("load-report.txt"), &report);
}
