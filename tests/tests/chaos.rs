//! The chaos run: transfers and enrollments among three simulated provinces while, on a seeded
//! schedule, two hub processes are SIGKILLed and started again every 5–15 s, a node of the
//! three-node broker cluster is SIGKILLed and started again (the hubs and the adapters, given
//! every node, move to the others by themselves), PostgreSQL crashes and recovers, an adapter is SIGKILLed, a
//! province is offline for a minute, reviewers refuse and archives fail at their rates, and a
//! trickle of poison is mixed in. Mid-run the national office loads an organization-code batch
//! (a school added and a school moved to another department in each province), which the
//! provinces' registrars confirm while the faults go on; and provinces report duplicates of other
//! provinces' students, whose problem groups close by deletion or by the national office's
//! arbitration (see `groups`). After quiescence it checks, against the provinces' own
//! databases and the hub's: every case ended and every application answered; each student in
//! exactly one province; the national index agrees with them; nothing handed over twice; the
//! dead letters are the poison and nothing else; every problem group ended as its rules say.
//! It prints what it did, what it checked and the counts.
//!
//! Scale and schedule: `CHAOS_CASES` (applications, default 240), `CHAOS_GROUPS` (duplicates
//! reported, default one per 100 applications, at least 4), `CHAOS_SEED` (default 18) and
//! `CHAOS_BROKER_NODES` (default 3; 1 runs on a single node); the seed of a failing run
//! reproduces its schedule.

#[path = "chaos/groups.rs"]
mod groups;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use e2e::world::{World, WorldOptions};
use groups::Problems;

const PROVINCES: [&str; 3] = ["37", "44", "51"];

/// A small seeded generator (xorshift): the schedule is the seed's, nothing else's.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Broker,
    Database,
    Adapter,
    Offline,
}

const FAULTS: [Fault; 4] = [Fault::Broker, Fault::Database, Fault::Adapter, Fault::Offline];

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What the run did, with the time of each since its start.
#[derive(Default)]
struct Journal {
    lines: Vec<String>,
    counts: BTreeMap<&'static str, usize>,
}

impl Journal {
    fn note(&mut self, start: Instant, kind: &'static str, what: String) {
        let line = format!("{:>7.1} s  {what}", start.elapsed().as_secs_f64());
        println!("chaos: {line}");
        self.lines.push(line);
        *self.counts.entry(kind).or_default() += 1;
    }
}

/// Rows of a province's own database.
async fn sqlite(w: &World, code: &str) -> sqlx::SqlitePool {
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&w.province(code).data).read_only(true);
    sqlx::SqlitePool::connect_with(opts).await.expect("the province's database")
}

/// What is still unfinished: open cases and code changes at the hub (id, state, waiting on),
/// and applications or planned ones the provinces have no answer to (province, student).
async fn unfinished(
    w: &World,
    db: &sqlx::PgPool,
    groups: &Problems,
) -> Option<(Vec<(String, String, String)>, Vec<(String, String)>)> {
    let mut open: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT case_id::text, state, coalesce(waiting_party, '-') FROM business_case WHERE closed_at IS NULL
         UNION ALL SELECT 'orgcode ' || unit, state, confirm_by FROM orgcode_change WHERE state <> 'DONE'",
    )
    .fetch_all(db)
    .await
    .ok()?;
    open.extend(groups.unfinished(db).await?);
    let mut waiting = vec![];
    for code in PROVINCES {
        let pool = sqlite(w, code).await;
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT student_id FROM planned_transfer WHERE applied_at IS NULL AND attempts < 30
             UNION ALL SELECT student_id FROM application WHERE outcome IS NULL",
        )
        .fetch_all(&pool)
        .await
        .ok()?;
        pool.close().await;
        waiting.extend(rows.into_iter().map(|s| (code.to_owned(), s)));
    }
    Some((open, waiting))
}

/// Publishes one poison message as `code`'s province (bytes that are no envelope); returns its
/// id and whether the broker confirmed it.
async fn poison(w: &World, code: &str, n: usize) -> (String, bool) {
    let id = uuid::Uuid::new_v4().to_string();
    let body = format!("<envelope>chaos poison {n}: not a message</envelope").into_bytes();
    let creds = &w.province(code).creds;
    let confirmed = match tokio::time::timeout(Duration::from_secs(20), w.bed.connect(creds)).await {
        Ok(conn) => e2e::publish_raw(&conn, &body, Some(&format!("prov-{code}")), &id, creds).await.is_ok(),
        Err(_) => false,
    };
    (id, confirmed)
}

/// The code batch of the run: in each province a school added (`PP99990001`) and its first
/// school moved to its other county department.
fn code_batch(w: &World, seed: u64) -> (serde_json::Value, Vec<String>) {
    let school = |code: &str, department: &str| serde_json::json!({ "code": code, "name": format!("学校{code}"), "department": department, "stage": ["PRIMARY", "JUNIOR", "SENIOR"] });
    let (mut records, mut added) = (vec![], vec![]);
    for code in PROVINCES {
        let new = format!("{code}99990001");
        records.push(serde_json::json!({ "action": "ADD", "school": school(&new, &format!("{code}0101000000")) }));
        let first = w.province(code).schools[0].to_string();
        records.push(serde_json::json!({ "action": "CHANGE", "school": school(&first, &format!("{code}0102000000")) }));
        added.push(new);
    }
    let batch = serde_json::json!({ "batchId": format!("CHAOS-{seed}"), "version": 1, "kind": "SCHOOL", "publishedOn": "2026-12-01", "record": records });
    (batch, added)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chaos_run_loses_nothing_and_doubles_nothing() {
    let cases = env("CHAOS_CASES", 240) as usize;
    let seed = env("CHAOS_SEED", 18);
    let duplicates = env("CHAOS_GROUPS", (cases as u64 / 100).max(4)) as usize;
    let nodes = env("CHAOS_BROKER_NODES", 3).max(1) as usize;
    let mut dice = Dice(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let per_province = cases.div_ceil(PROVINCES.len());
    let (transfers, enrollments) = (per_province - per_province / 4, per_province / 4);
    let students = (per_province * 2).max(200);
    let common = [
        "--review-delay-min-ms",
        "0",
        "--review-delay-max-ms",
        "500",
        "--reject-rate",
        "0.05",
        "--export-failure-rate",
        "0.03",
        "--import-failure-rate",
        "0.03",
        "--orgcode-confirm-min-ms",
        "0",
        "--orgcode-confirm-max-ms",
        "3000",
    ];
    let own = |p: &str| {
        let n = [transfers.to_string(), enrollments.to_string()];
        e2e::world::args(&["--transfers", &n[0], "--enrollments", &n[1], "--problem-mode", groups::mode(p)])
    };
    let opts = WorldOptions {
        provinces: PROVINCES.to_vec(),
        students,
        seed,
        bed: e2e::Options {
            dedicated_broker: true,
            cluster_nodes: (nodes > 1).then_some(nodes),
            dedicated_database: true,
            // The lookup limits (tested on their own) are lifted: thousands of applications, each
            // looked up first and again while the answer is slow to come, must not be throttled
            // into giving up.
            extra_toml:
                "[cases]\nresend_after_secs = 15\n\n[lookups]\nper_minute = 1000000\nsame_student_per_hour = 1000000\n"
                    .into(),
            hub_log: Some("info,sqlx=warn,lapin=warn"),
            ..Default::default()
        },
        sim_args: common.iter().map(|s| s.to_string()).collect(),
        province_args: PROVINCES.iter().map(|p| (*p, own(p))).collect(),
        silent: vec![],
    };
    println!(
        "chaos: seed {seed}, {cases} applications ({transfers} transfers and {enrollments} enrollments per province), {students} students each, {duplicates} duplicates, {nodes} broker node(s)"
    );
    let w = World::new(opts).await;
    let db = w.bed.db().await;
    let (second, _) = w.bed.settings_copy("hub-b");
    w.bed.spawn_hub_with("hub-b", &second, &[]).await;
    let hubs = [("hub", w.bed.settings_path.clone()), ("hub-b", second)];
    let moe = w.bed.operator(certs::Role::National("moe".into())).await;
    let (batch, added) = code_batch(&w, seed);
    let mut groups = Problems::default();

    // The schedule: a hub killed at every tick, the two in turn; the other faults each once in
    // a seeded order, then now and then; poison at every tick.
    let start = Instant::now();
    let mut journal = Journal::default();
    let mut order = FAULTS.to_vec();
    for i in (1..order.len()).rev() {
        order.swap(i, dice.below(i as u64 + 1) as usize);
    }
    let mut pending = order.into_iter();
    let mut offline: Option<(&str, Instant)> = None;
    let mut poisons: Vec<(String, bool)> = vec![];
    let window = Duration::from_secs(env("CHAOS_FAULT_SECS", 240));
    let mut tick = 0usize;
    loop {
        let done = pending.len() == 0 && offline.is_none() && !groups.duplicates.is_empty();
        if done
            && (start.elapsed() > window
                || unfinished(&w, &db, &groups).await.is_some_and(|(o, a)| o.is_empty() && a.is_empty()))
        {
            break;
        }
        tokio::time::sleep(dice.millis(5_000, 15_000)).await;
        let (name, settings) = &hubs[tick % 2];
        w.bed.kill(name);
        journal.note(start, "hub SIGKILLed", format!("{name} SIGKILLed"));
        tokio::time::sleep(dice.millis(0, 2_000)).await;
        w.bed.spawn_hub_with(name, settings, &[]).await;
        journal.note(start, "hub restarted", format!("{name} started again and ready"));
        if tick == 2 {
            // Both hubs are up: the national office loads its batch through the first.
            let (status, body) = moe.post("/orgcodes/batches", &batch).await;
            assert_eq!(status, 201, "seed {seed}: the code batch refused: {body}");
            journal.note(start, "code batch loaded", format!("code batch {} loaded", batch["batchId"]));
        }
        if let Some((code, until)) = offline
            && Instant::now() >= until
        {
            w.bring_online(code).await;
            journal.note(start, "province back", format!("province {code} back online"));
            offline = None;
        }
        if tick >= 3 && groups.duplicates.is_empty() && offline.is_none() {
            for line in groups.report(&w, &PROVINCES, duplicates).await {
                journal.note(start, "duplicate reported", line);
            }
        }
        for line in groups.arbitrate(&moe).await {
            journal.note(start, "arbitration decided", line);
        }
        let reachable = |c: &str| offline.is_none_or(|(o, _)| o != c);
        for line in groups.remove_copies(&w, &db, reachable).await {
            journal.note(start, "copy removed", line);
        }
        let next = pending.next().or_else(|| (dice.below(3) == 0).then(|| FAULTS[dice.below(4) as usize]));
        match next {
            Some(Fault::Broker) => {
                let node = dice.below(nodes as u64) as usize;
                w.bed.kill_broker_node(node);
                journal.note(
                    start,
                    "broker SIGKILLed",
                    format!("broker node {} of {nodes} SIGKILLed and started again", node + 1),
                );
            }
            Some(Fault::Database) => {
                w.bed.restart_database();
                journal.note(start, "database crashed", "PostgreSQL crashed (immediate stop) and started again".into());
            }
            Some(Fault::Adapter) => {
                // One of the provinces that are online.
                let online: Vec<&str> =
                    PROVINCES.iter().copied().filter(|c| offline.is_none_or(|(o, _)| o != *c)).collect();
                let code = online[dice.below(online.len() as u64) as usize];
                w.take_offline(code);
                w.bring_online(code).await;
                journal.note(start, "adapter SIGKILLed", format!("adapter of {code} SIGKILLed and started again"));
            }
            Some(Fault::Offline) if offline.is_none() => {
                let code = PROVINCES[dice.below(3) as usize];
                w.take_offline(code);
                offline = Some((code, Instant::now() + Duration::from_secs(60)));
                journal.note(start, "province offline", format!("province {code} offline for 60 s"));
            }
            Some(Fault::Offline) | None => {}
        }
        let code = PROVINCES[dice.below(3) as usize];
        let (id, confirmed) = poison(&w, code, poisons.len()).await;
        journal.note(
            start,
            "poison",
            format!("poison {id} from {code} ({})", if confirmed { "confirmed" } else { "not confirmed" }),
        );
        poisons.push((id, confirmed));
        tick += 1;
    }
    let faults_over = start.elapsed();

    // Quiescence: every case ends, every application is answered, nothing waits to be sent or
    // handed over. A run that does not get there names what is unfinished.
    let last_report = std::sync::Mutex::new(Instant::now());
    let finished = tokio::time::timeout(Duration::from_secs(env("CHAOS_QUIET_SECS", 600)), async {
        loop {
            // The national office and the copies' registrars go on doing their part.
            for line in groups.arbitrate(&moe).await {
                journal.note(start, "arbitration decided", line);
            }
            for line in groups.remove_copies(&w, &db, |_| true).await {
                journal.note(start, "copy removed", line);
            }
            if let Some((open, waiting)) = unfinished(&w, &db, &groups).await {
                if open.is_empty() && waiting.is_empty() {
                    return;
                }
                if last_report.lock().unwrap().elapsed() > Duration::from_secs(30) {
                    *last_report.lock().unwrap() = Instant::now();
                    println!("chaos: {} cases open, {} applications unanswered", open.len(), waiting.len());
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    if finished.is_err() {
        let (open, waiting) = unfinished(&w, &db, &groups).await.unwrap_or_default();
        panic!(
            "seed {seed}: not quiescent.\nopen cases (id, state, waiting on): {open:?}\n\
             applications unanswered (province, student): {waiting:?}\nfaults:\n{}",
            journal.lines.join("\n")
        );
    }
    let confirmed: Vec<uuid::Uuid> = poisons.iter().filter(|(_, c)| *c).map(|(id, _)| id.parse().unwrap()).collect();
    let what = "the outbox sent, every adapter's inbox handed over, every confirmed poison dead-lettered";
    e2e::eventually(what, Duration::from_secs(120), || async {
        let unsent: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetch_one(&db).await.ok()?;
        let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letter WHERE message_id = ANY($1)")
            .bind(&confirmed)
            .fetch_one(&db)
            .await
            .ok()?;
        if dead < confirmed.len() as i64 {
            return None;
        }
        let mut pending = 0i64;
        for p in &w.provinces {
            let store = p.adapter.store().await;
            pending += sqlx::query_scalar::<_, i64>("SELECT count(*) FROM inbox WHERE acknowledged_at IS NULL")
                .fetch_one(&store)
                .await
                .ok()?;
        }
        (unsent == 0 && pending == 0).then_some(())
    })
    .await;

    // Each student in exactly one province, and the national index agrees.
    let present = w.holders().await;
    let wrong: Vec<_> = present.iter().filter(|(_, ps)| ps.len() != 1).collect();
    assert!(wrong.is_empty(), "seed {seed}: students not in exactly one province: {wrong:?}");
    assert_eq!(present.len(), PROVINCES.len() * students, "seed {seed}: nobody created, nobody lost");
    let index: Vec<(String, String)> =
        sqlx::query_as("SELECT student_id, province FROM student_index").fetch_all(&db).await.unwrap();
    let disagree: Vec<_> =
        index.iter().filter(|(id, p)| present.get(id).is_none_or(|ps| ps != &vec![p.as_str()])).collect();
    assert!(disagree.is_empty(), "seed {seed}: the index and the provinces disagree: {disagree:?}");

    // What the provinces planned, applied for, and gave up looking up (none may: the index
    // answers every lookup of a student it holds, faults or not).
    let (mut planned, mut applied, mut gave_up) = (0i64, 0i64, vec![]);
    for code in PROVINCES {
        let pool = sqlite(&w, code).await;
        let (p, a): (i64, i64) =
            sqlx::query_as("SELECT count(*), count(applied_at) FROM planned_transfer").fetch_one(&pool).await.unwrap();
        let given: Vec<String> = sqlx::query_scalar("SELECT student_id FROM planned_transfer WHERE applied_at IS NULL")
            .fetch_all(&pool)
            .await
            .unwrap();
        (planned, applied) = (planned + p, applied + a);
        gave_up.extend(given.into_iter().map(|s| (code, s)));
    }
    assert!(gave_up.is_empty(), "seed {seed}: planned applications never made (province, student): {gave_up:?}");

    // Nothing handed over twice: one closing per case and party, one acceptance per application.
    let doubled = w.handed_over_twice().await;
    assert!(doubled.is_empty(), "seed {seed}: handed over twice (province, (type, case, times)): {doubled:?}");

    // The dead letters are the poison, each with its reason, and nothing else.
    let dead: Vec<(String, String, String)> =
        sqlx::query_as("SELECT message_id::text, code, reason FROM dead_letter").fetch_all(&db).await.unwrap();
    let sent: HashMap<&str, bool> = poisons.iter().map(|(id, c)| (id.as_str(), *c)).collect();
    let strangers: Vec<_> = dead.iter().filter(|(id, _, _)| !sent.contains_key(id.as_str())).collect();
    assert!(strangers.is_empty(), "seed {seed}: dead letters that are no poison: {strangers:?}");
    let kept: Vec<&str> = dead.iter().map(|(id, _, _)| id.as_str()).collect();
    let lost: Vec<_> = poisons.iter().filter(|(id, c)| *c && !kept.contains(&id.as_str())).collect();
    assert!(lost.is_empty(), "seed {seed}: confirmed poison not in the dead letters: {lost:?}");
    assert!(dead.iter().all(|(_, code, reason)| code.starts_with("E_") && !reason.is_empty()), "{dead:?}");

    // The problem groups: each closed, the copy deleted, the original attested automatically or
    // upheld by the one decision of the national office.
    let wrong = groups.check(&db).await;
    assert!(wrong.is_empty(), "seed {seed}: problem groups that did not end as their rules say: {wrong:#?}");
    let arbitrated = groups.duplicates.iter().filter(|d| d.arbitrated()).count();

    // The code batch: every change confirmed and done, the registry as the batch says.
    let changes: Vec<(String, String, String)> =
        sqlx::query_as("SELECT action, unit, state FROM orgcode_change WHERE batch_id = $1")
            .bind(format!("CHAOS-{seed}"))
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(changes.len(), 2 * PROVINCES.len(), "seed {seed}: one change per record: {changes:?}");
    assert!(changes.iter().all(|(_, _, state)| state == "DONE"), "seed {seed}: code changes not done: {changes:?}");
    let registry: Vec<(String, Option<String>, bool)> =
        sqlx::query_as("SELECT code, department, active FROM school WHERE code = ANY($1) OR code = ANY($2)")
            .bind(&added)
            .bind(PROVINCES.iter().map(|p| w.province(p).schools[0].to_string()).collect::<Vec<_>>())
            .fetch_all(&db)
            .await
            .unwrap();
    let wrong: Vec<_> = registry
        .iter()
        .filter(|(code, dept, active)| {
            let want = if added.contains(code) { "0101000000" } else { "0102000000" };
            !active || dept.as_deref() != Some(&format!("{}{want}", &code[..2]))
        })
        .collect();
    assert!(registry.len() == 2 * PROVINCES.len() && wrong.is_empty(), "seed {seed}: the registry: {registry:?}");

    // The report.
    let outcomes: Vec<(String, i64)> =
        sqlx::query_as("SELECT business || ' ' || state, count(*) FROM business_case GROUP BY 1 ORDER BY 1")
            .fetch_all(&db)
            .await
            .unwrap();
    let refused: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM inbox WHERE message_type IN ('transfer.apply', 'enrollment.apply') AND outcome = 'refused'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let total: i64 = outcomes.iter().map(|(_, n)| n).sum();
    assert_eq!(total + refused, applied, "seed {seed}: every application made is a case or a refusal at the hub");
    let report = format!(
        "chaos run: seed {seed}, {} provinces, {students} students each, {nodes} broker node(s)\n\
         faults for {:.0} s, quiescent after {:.0} s\n\
         faults injected: {}\n\
         applications planned {planned}, made {applied}; cases: {} ({}); refused at once: {refused}\n\
         poison: {} sent ({} confirmed), {} dead letters, each with its code and reason\n\
         code batch: {} changes (a school added and a school moved per province), every one confirmed and done\n\
         problem groups: {} duplicates reported, {} closed by the copy's deletion, {} by the national office's \
         decision ({} decisions), every copy deleted and removed from the index\n\
         checked: every case ended and every application answered; each of {} students in exactly one \
         province; the national index agrees ({} entries); no closing or acceptance handed over twice; \
         the dead letters are the poison and nothing else; the registry holds the batch's schools; every \
         problem group closed with its original kept\n\
         schedule:\n{}\n",
        PROVINCES.len(),
        faults_over.as_secs_f64(),
        start.elapsed().as_secs_f64(),
        journal.counts.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", "),
        total,
        outcomes.iter().map(|(s, n)| format!("{s} {n}")).collect::<Vec<_>>().join(", "),
        poisons.len(),
        poisons.iter().filter(|(_, c)| *c).count(),
        dead.len(),
        changes.len(),
        groups.duplicates.len(),
        groups.duplicates.len() - arbitrated,
        arbitrated,
        groups.decided,
        present.len(),
        index.len(),
        journal.lines.join("\n"),
    );
    println!("{report}");
    let _ = std::fs::write(e2e::bin_dir().join("chaos-report.txt"), &report);
    for kind in [
        "hub SIGKILLed",
        "broker SIGKILLed",
        "database crashed",
        "adapter SIGKILLed",
        "province offline",
        "poison",
        "code batch loaded",
        "duplicate reported",
        "arbitration decided",
        "copy removed",
    ] {
        assert!(journal.counts.contains_key(kind), "seed {seed}: the run never did: {kind}");
    }
}
