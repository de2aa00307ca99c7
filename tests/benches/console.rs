//! The console's case search with 100,000 cases in the database: each kind of search (by
//! student, school, province, state, whom it waits on, or none: the newest page), and the
//! overview, stuck, overdue, audit and national-overview pages, timed over
//! HTTPS with an operator's certificate, as a browser asks for the page; p50, p99 and max of
//! BENCH_REQUESTS requests each (default 30). BENCH_CASES changes the number of cases.
//!   cargo bench -p e2e --bench console

use std::time::{Duration, Instant};

use certs::Role;
use e2e::browser::{Console, staff};
use e2e::inprocess::Hub;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let cases = env_or("BENCH_CASES", 100_000);
    let requests = env_or("BENCH_REQUESTS", 30);
    let hub = Hub::new(&["37", "44", "51"], "").await;
    // Cases over a year among 31 provinces, 2,000 schools each side, nine in ten closed.
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO business_case (case_id, business, student_id, student_name, in_province, in_school, out_province,
                                    out_school, application_id, data, stage, state, waiting_party, waiting_step, since,
                                    deadline, created_at, closed_at)
         SELECT gen_random_uuid(), CASE WHEN n % 5 = 0 THEN 'ENROLLMENT' ELSE 'TRANSFER' END,
                'G' || lpad(n::text, 18, '0'), '学生' || n,
                lpad((11 + n % 31)::text, 2, '0'), '31' || lpad((11 + n % 31)::text, 2, '0') || lpad((n % 2000)::text, 6, '0'),
                lpad((11 + (n / 31) % 31)::text, 2, '0'), '31' || lpad((11 + (n / 31) % 31)::text, 2, '0') || lpad((n / 7 % 2000)::text, 6, '0'),
                gen_random_uuid(), '{}',
                CASE WHEN n % 10 = 0 THEN 'reviewing' ELSE 'closed' END,
                CASE WHEN n % 10 = 0 THEN 'UNDER_REVIEW' ELSE 'COMPLETED' END,
                CASE WHEN n % 10 = 0 THEN 'prov-' || lpad((11 + n % 31)::text, 2, '0') END,
                CASE WHEN n % 10 = 0 THEN 'IN_SCHOOL' END,
                now() - (n % 365) * interval '1 day', CASE WHEN n % 10 = 0 THEN current_date + 5 END,
                now() - (n % 365) * interval '1 day' - interval '1 hour',
                CASE WHEN n % 10 = 0 THEN NULL ELSE now() - (n % 365) * interval '1 day' END
         FROM generate_series(1, $1) AS n",
    )
    .bind(i64::try_from(cases).expect("a count"))
    .execute(&hub.pool)
    .await
    .expect("cases loaded");
    sqlx::query("ANALYZE business_case").execute(&hub.pool).await.expect("analyze");
    println!("{cases} cases loaded in {:.1} s", started.elapsed().as_secs_f64());

    let console = Console::serve(&hub).await;
    let operator = staff(&hub, Role::Operator("bench".into())).await;
    let client = console.client(&operator);
    let searches = [
        ("newest page, no filter", "/console/cases"),
        ("by student", "/console/cases?student=G000000000000054321"),
        ("by school", "/console/cases?school=3137000026"),
        ("by province", "/console/cases?province=37"),
        ("by state", "/console/cases?state=UNDER_REVIEW"),
        ("by whom it waits on", "/console/cases?waiting_on=prov-37&open=true"),
        ("province and business, page 3", "/console/cases?province=44&business=ENROLLMENT&offset=100"),
        ("the JSON route, by province", "/cases?province=37&limit=50"),
    ];
    let national = staff(&hub, Role::National("bench".into())).await;
    let national = console.client(&national);
    let pages = [
        ("overview", "/console"),
        ("stuck", "/console/stuck"),
        ("overdue", "/console/overdue"),
        ("audit trail", "/console/audit"),
        ("national overview", "/console/national"),
    ];
    println!("case search and pages over HTTPS with {cases} cases, {requests} requests each:");
    let all = searches.iter().map(|s| (s, &client)).chain(pages.iter().map(|p| (p, &national)));
    for ((what, path), client) in all {
        let url = console.url(path);
        let mut times = Vec::with_capacity(requests);
        let mut bytes = 0;
        for _ in 0..requests {
            let t = Instant::now();
            let r = client.get(&url).send().await.expect("an answer");
            assert!(r.status().is_success(), "{path}: {}", r.status());
            bytes = r.bytes().await.expect("a body").len();
            times.push(t.elapsed());
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let p = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
        println!(
            "  {what:<32} p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms  ({} KiB)",
            ms(p(0.5)),
            ms(p(0.99)),
            ms(*times.last().expect("timed")),
            bytes / 1024
        );
    }
}
