//! Whole cases through the hub, every part a real process on this machine (release build): the
//! hub, a TLS broker node, PostgreSQL, one adapter and one simulated provincial system per
//! province, the simulated reviewers answering at once.
//!
//! - case workload: BENCH_CASES transfers (default 600) among three provinces; prints cases/s
//!   (first application to last case closed), hub messages per case (in and out, by the hub's
//!   message trace), case latency p50/p99 and the largest RSS of the hub and of each adapter;
//! - large archives: BENCH_ARCHIVES transfers (default 50) from one province to another, each
//!   archive 5 scanned files of 2 MiB (BENCH_ARCHIVE_BYTES), all in flight together; prints the
//!   bytes per second the hub moved them at (first file received to last file sent and
//!   confirmed), the raw broker's bytes per second for bodies of the same size through one
//!   quorum queue in the same run, their ratio, and the largest RSS of the hub and adapters.
//!
//! Run (release binaries first):
//!   cargo build --release --workspace --bins && cargo bench -p e2e --bench cases
//! BENCH_CASES=0 or BENCH_ARCHIVES=0 skips that part. Each part ends with the hub's stage figures
//! over the run (time in a worker's queue, group sizes, processing to commit by type, the
//! relay's stages). BENCH_LIMITS adds keys to the hub's `[limits]` table, `;` between them
//! (e.g. `BENCH_LIMITS='workers = 4'`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::measure::{RssSampler, Series, cpu_by_part, cpu_per_message, print_stages, stage_totals};
use e2e::world::{World, WorldOptions};
use e2e::{TestBed, eventually};
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Samples the RSS of the named processes four times a second, and what each part of the
/// machine spent of CPU meanwhile, and reads the hub's stage figures at both ends.
struct Peak {
    sampler: RssSampler,
    cpu: BTreeMap<&'static str, f64>,
    stages: BTreeMap<String, Series>,
    listen: std::net::SocketAddr,
    started: Instant,
}

impl Peak {
    async fn start(bed: &TestBed, names: &[String]) -> Peak {
        let pids: Vec<(String, u32)> = names.iter().filter_map(|n| Some((n.clone(), bed.pid(n)?))).collect();
        let listen = bed.settings.http.listen;
        Peak {
            stages: stage_totals(listen).await,
            sampler: RssSampler::start(&pids, Duration::from_millis(250)),
            cpu: cpu_by_part(),
            listen,
            started: Instant::now(),
        }
    }

    /// The largest RSS of each process, the CPU line for `units` (cases, files) in the run, and
    /// the hub's stage figures before and after it (for [`print_stages`]).
    async fn stop(self, units: usize) -> (String, String, [BTreeMap<String, Series>; 2]) {
        let cpu = cpu_per_message(&self.cpu, &cpu_by_part(), units, self.started.elapsed());
        let rss =
            self.sampler.stop().iter().map(|(n, s)| format!("{n} {:.0} MiB", s.max)).collect::<Vec<_>>().join(", ");
        let after = stage_totals(self.listen).await;
        (rss, cpu, [self.stages, after])
    }
}

fn processes(w: &World) -> Vec<String> {
    std::iter::once("hub".to_owned()).chain(w.provinces.iter().map(|p| format!("adapter-{}", p.code))).collect()
}

/// Waits until every application is answered and every case ended.
async fn all_ended(db: &sqlx::PgPool, applications: usize, timeout: Duration) {
    eventually("every application answered and every case ended", timeout, || async {
        let (applied, refused, cases, open): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM inbox WHERE message_type = 'transfer.apply'),
                    (SELECT count(*) FROM inbox WHERE message_type = 'transfer.apply' AND outcome = 'refused'),
                    (SELECT count(*) FROM business_case),
                    (SELECT count(*) FROM business_case WHERE closed_at IS NULL)",
        )
        .fetch_one(db)
        .await
        .ok()?;
        (applied as usize == applications && refused + cases == applied && open == 0).then_some(())
    })
    .await;
}

fn sim_args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

async fn case_workload(total: usize) {
    let per = total.div_ceil(3);
    let opts = WorldOptions {
        provinces: vec!["37", "44", "51"],
        students: (per * 2).max(300),
        seed: 5,
        sim_args: sim_args(&["--review-delay-min-ms", "0", "--review-delay-max-ms", "0"]),
        province_args: ["37", "44", "51"].iter().map(|p| (*p, sim_args(&["--transfers", &per.to_string()]))).collect(),
        // Each province looks up every student it plans to apply for, all at once: the lookup
        // limit is not what this measures.
        bed: e2e::Options {
            extra_toml: "[lookups]\nper_minute = 1000000\n".into(),
            extra_limits: std::env::var("BENCH_LIMITS").unwrap_or_default().replace(';', "\n"),
            // The hub logs as in production: its DEBUG lines are not what is measured.
            hub_log: Some(hub::telemetry::DEFAULT_FILTER),
            ..Default::default()
        },
        ..Default::default()
    };
    let w = World::new(opts).await;
    let peak = Peak::start(&w.bed, &processes(&w)).await;
    let db = w.bed.db().await;
    all_ended(&db, per * 3, Duration::from_secs(900)).await;
    let (rss, cpu, [stages, stages_after]) = peak.stop(per * 3).await;

    let (cases, closed, span, p50, p99): (i64, i64, f64, f64, f64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE state = 'COMPLETED'),
                EXTRACT(EPOCH FROM max(closed_at) - min(created_at))::float8,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM closed_at - created_at))::float8,
                percentile_cont(0.99) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM closed_at - created_at))::float8
         FROM business_case",
    )
    .fetch_one(&db)
    .await
    .expect("case figures");
    let (inbound, outbound, lookups): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE direction = 'in' AND case_id IS NOT NULL),
                count(*) FILTER (WHERE direction = 'out' AND case_id IS NOT NULL),
                count(*) FILTER (WHERE message_type LIKE 'lookup.%')
         FROM message_trace",
    )
    .fetch_one(&db)
    .await
    .expect("message figures");
    let per_case = |n: i64| n as f64 / cases.max(1) as f64;
    println!("case workload: {} transfers applied among 3 provinces, reviewers answering at once", per * 3);
    println!(
        "  {cases} cases ({closed} completed) in {span:.1} s: {:.1} cases/s; case latency p50 {:.2} s, p99 {:.2} s",
        cases as f64 / span,
        p50,
        p99
    );
    println!(
        "  hub messages per case: {:.1} ({:.1} in, {:.1} out), and {:.1} lookup messages per application",
        per_case(inbound + outbound),
        per_case(inbound),
        per_case(outbound),
        lookups as f64 / (per * 3) as f64
    );
    let types: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT direction, message_type, count(*) FROM message_trace WHERE case_id IS NOT NULL
         GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2",
    )
    .fetch_all(&db)
    .await
    .expect("message types");
    let types: Vec<String> =
        types.iter().map(|(d, t, n)| format!("{d} {t} {:.1}", *n as f64 / cases.max(1) as f64)).collect();
    println!("  per case, by type: {}", types.join(", "));
    println!("  largest RSS: {rss}");
    println!("  {}", cpu.replace("/message", "/case"));
    println!("  the hub's stages over the run:");
    print_stages(&stages, &stages_after);
}

/// The raw broker's bytes per second for `count` bodies of `size` bytes through one quorum
/// queue (publish with confirms, consume, ack), on the same node and vhost as the hub's.
async fn raw_bytes_per_second(conn: &Connection, size: usize, count: usize) -> f64 {
    let ch = conn.create_channel().await.expect("channel");
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
    ch.queue_declare("bench.raw.large".into(), QueueDeclareOptions { durable: true, ..Default::default() }, args)
        .await
        .expect("declare");
    ch.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
    let rx = conn.create_channel().await.expect("channel");
    rx.basic_qos(32, Default::default()).await.expect("qos");
    let mut consumer = rx
        .basic_consume("bench.raw.large".into(), "raw".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .expect("consume");
    let body = vec![b'A'; size];
    let started = Instant::now();
    let consume = e2e::ack_n(&mut consumer, count);
    let publish = async {
        let mut pending = std::collections::VecDeque::new();
        for _ in 0..count {
            let props = BasicProperties::default().with_user_id("hub".into()).with_delivery_mode(2);
            let c = ch
                .basic_publish("".into(), "bench.raw.large".into(), BasicPublishOptions::default(), &body, props)
                .await
                .expect("publish");
            pending.push_back(c);
            // As many in flight as the hub's relay may have: two batches of up to 16 MiB.
            if pending.len() * size > 32 << 20 {
                assert!(pending.pop_front().expect("one").await.expect("confirm").is_ack());
            }
        }
        for c in pending {
            assert!(c.await.expect("confirm").is_ack());
        }
    };
    tokio::join!(consume, publish);
    (size * count) as f64 / started.elapsed().as_secs_f64()
}

async fn large_archives(archives: usize, bytes: usize) {
    let files = 5;
    let opts = WorldOptions {
        provinces: vec!["37", "44"],
        students: archives.max(100),
        seed: 9,
        sim_args: sim_args(&[
            "--review-delay-min-ms",
            "0",
            "--review-delay-max-ms",
            "0",
            "--archive-attachments",
            &files.to_string(),
            "--archive-attachment-bytes",
            &bytes.to_string(),
        ]),
        province_args: vec![("37", sim_args(&["--transfers", &archives.to_string()]))],
        ..Default::default()
    };
    let w = World::new(opts).await;
    let peak = Peak::start(&w.bed, &processes(&w)).await;
    let db = w.bed.db().await;
    all_ended(&db, archives, Duration::from_secs(900)).await;
    let (rss, cpu, [stages, stages_after]) = peak.stop(archives * files).await;
    let (files_sent, moved, span): (i64, i64, f64) = sqlx::query_as(
        "SELECT count(*), sum(octet_length(body))::int8,
                EXTRACT(EPOCH FROM max(sent_at) - (SELECT min(received_at) FROM inbox
                                                   WHERE message_type = 'archive.attachment'))::float8
         FROM outbox_message WHERE message_type = 'archive.attachment'",
    )
    .fetch_one(&db)
    .await
    .expect("archive figures");
    // Whether the hub or its supply set the pace: when files came in, and when they went out.
    let (received_span, sent_span): (f64, f64) = sqlx::query_as(
        "SELECT (SELECT EXTRACT(EPOCH FROM max(received_at) - min(received_at))::float8 FROM inbox
                 WHERE message_type = 'archive.attachment'),
                (SELECT EXTRACT(EPOCH FROM max(sent_at) - min(sent_at))::float8 FROM outbox
                 WHERE message_type = 'archive.attachment')",
    )
    .fetch_one(&db)
    .await
    .expect("archive spans");
    let size = (moved / files_sent.max(1)) as usize;
    let hub_conn = w.bed.env.connect(&w.bed.id, &w.bed.env.hub_cert, &w.bed.env.hub_key).await.expect("connection");
    let raw = raw_bytes_per_second(&hub_conn, size, 100).await;
    let hub = moved as f64 / span;
    let mib = |b: f64| b / f64::from(1 << 20);
    println!(
        "large archives: {archives} transfers, each archive {files} files of {:.1} MiB, all in flight together",
        mib(bytes as f64)
    );
    println!(
        "  hub moved {files_sent} files ({:.0} MiB as messages of {:.2} MiB) in {span:.1} s: {:.1} MiB/s",
        mib(moved as f64),
        mib(size as f64),
        mib(hub)
    );
    println!("  files received by the hub over {received_span:.1} s, sent by it over {sent_span:.1} s");
    println!("  raw broker, same body size, one quorum queue: {:.1} MiB/s", mib(raw));
    println!("  ratio hub / raw: {:.2}", hub / raw);
    println!("  largest RSS: {rss}");
    println!("  {}", cpu.replace("/message", "/file"));
    println!("  the hub's stages over the run:");
    print_stages(&stages, &stages_after);
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // Either part is skipped when its count is 0.
    let cases = env_or("BENCH_CASES", 600);
    if cases > 0 {
        case_workload(cases).await;
    }
    let archives = env_or("BENCH_ARCHIVES", 50);
    if archives > 0 {
        large_archives(archives, env_or("BENCH_ARCHIVE_BYTES", 2 << 20)).await;
    }
}
