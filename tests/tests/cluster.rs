//! A three-node RabbitMQ cluster (集群): the hub and the adapters are given every node's URL.
//! While transfers go on, the first node is stopped (every connection moves to the other two,
//! and the cases go on), then each node in turn is SIGKILLed and started again. Every application
//! is answered, every case ends, each student is in exactly one province and nothing is handed
//! over twice. `hub check` and `adapter check` warn of a node that is down and pass while
//! another takes the login.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e::world::{World, WorldOptions, args};
use e2e::{Options, binary, eventually};
use schemas::messages::{StudentStatus, StudentSummary};

const WAIT: Duration = Duration::from_secs(240);

fn ordinary(s: &StudentSummary) -> bool {
    s.status == StudentStatus::Enrolled && !s.problem_record && !s.open_business && s.student_id.is_formal()
}

/// The nodes (as the broker names them) each user has connections on.
async fn connections(w: &World) -> HashMap<String, BTreeSet<String>> {
    let mut by_user: HashMap<String, BTreeSet<String>> = HashMap::new();
    for c in w.bed.admin().connections(&w.bed.id).await.unwrap_or_default() {
        if let (Some(user), Some(node)) = (c["user"].as_str(), c["node"].as_str()) {
            by_user.entry(user.to_owned()).or_default().insert(node.to_owned());
        }
    }
    by_user
}

/// Messages the hub has taken in (its inbox): grows while the exchange works.
async fn taken_in(db: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM inbox").fetch_one(db).await.unwrap_or(0)
}

/// Waits until the hub has taken in `more` messages than `since`.
async fn until_flowing(db: &sqlx::PgPool, since: i64, more: i64, what: &str) {
    eventually(&format!("{more} more messages taken in {what}"), WAIT, || async {
        (taken_in(db).await >= since + more).then_some(())
    })
    .await;
}

/// `hub check` or `adapter check` on `config`: (passed, output).
fn check(program: &str, config: &Path) -> (bool, String) {
    let mut cmd = Command::new(binary(program));
    match program {
        "hub" => cmd.arg("--config").arg(config).arg("check"),
        _ => cmd.arg("check").arg("--config").arg(config),
    };
    let out = cmd.output().expect("run the check");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_node_stopped_or_killed_moves_every_connection_to_the_others_and_loses_nothing() {
    let w = World::new(WorldOptions {
        bed: Options { dedicated_broker: true, cluster_nodes: Some(3), ..Default::default() },
        sim_args: args(&["--review-delay-min-ms", "200", "--review-delay-max-ms", "1500"]),
        ..Default::default()
    })
    .await;
    let names: Vec<String> = (1..=3).map(|i| format!("{}-{i}@localhost", w.bed.id)).collect();
    let db = w.bed.db().await;

    // Every queue of the exchange is replicated on the three nodes.
    let url = format!("{}/api/queues/{}?columns=name,type,members", w.bed.env.mgmt_url, w.bed.id);
    let queues: Vec<serde_json::Value> = reqwest::Client::new()
        .get(&url)
        .basic_auth(&w.bed.env.mgmt_user, Some(&w.bed.env.mgmt_password))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(queues.len() >= 3, "{queues:?}");
    for q in &queues {
        let members = q["members"].as_array().map_or(0, Vec::len);
        assert_eq!((q["type"].as_str(), members), (Some("quorum"), 3), "{q}");
    }

    // 37 applies for 51's students, one every 400 ms, for as long as the faults go on.
    let students: Vec<StudentSummary> = w.province("51").students.iter().filter(|s| ordinary(s)).cloned().collect();
    let faults_over = AtomicBool::new(false);
    let applying = async {
        let mut applications = vec![];
        for s in &students {
            if faults_over.load(Ordering::SeqCst) {
                break;
            }
            applications.push(w.apply("37", s).await);
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        applications
    };
    let faults = async {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        until_flowing(&db, 0, 10, "before the first fault").await;
        // Node 1, the first every setting names, stops: the hub and both adapters carry on
        // through nodes 2 and 3 (the test watches through node 2's management API).
        for nodes in connections(&w).await.into_values() {
            seen.extend(nodes);
        }
        w.bed.stop_broker_node(0);
        eventually("every connection on nodes 2 and 3, the hub's and both provinces'", WAIT, || async {
            let c = connections(&w).await;
            let all = ["hub", "prov-37", "prov-51"].iter().all(|u| c.contains_key(*u));
            (all && c.values().all(|nodes| !nodes.contains(&names[0]))).then_some(())
        })
        .await;
        until_flowing(&db, taken_in(&db).await, 10, "with node 1 down").await;
        // The checks: a node that is down is a warning, not a failure.
        let node1 = w.bed.broker_node_url(0);
        let (ok, out) = check("hub", &w.bed.settings_path);
        assert!(ok && out.contains(&node1) && out.contains("unreachable"), "hub check with node 1 down:\n{out}");
        let (ok, out) = check("adapter", &w.province("51").adapter.config);
        assert!(ok && out.contains(&node1) && out.contains("unreachable"), "adapter check with node 1 down:\n{out}");
        w.bed.start_broker_node(0);
        // Each node in turn crashes and comes back, while the cases go on.
        for node in 0..3 {
            for nodes in connections(&w).await.into_values() {
                seen.extend(nodes);
            }
            w.bed.kill_broker_node(node);
            until_flowing(&db, taken_in(&db).await, 10, &format!("after node {} was killed", node + 1)).await;
        }
        faults_over.store(true, Ordering::SeqCst);
        seen
    };
    let (applications, seen) = tokio::join!(applying, faults);
    assert!(seen.len() >= 2, "the connections spread over the nodes: {seen:?}");
    assert!(applications.len() >= 20, "applications went on during the faults: {}", applications.len());

    // Every application became a case, and every case ended.
    for app in &applications {
        w.case_of(*app).await;
    }
    eventually("every case ended", WAIT, || async {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM business_case WHERE closed_at IS NULL")
            .fetch_one(&db)
            .await
            .ok()?;
        (open == 0).then_some(())
    })
    .await;
    let cases: i64 = sqlx::query_scalar("SELECT count(*) FROM business_case").fetch_one(&db).await.unwrap();
    assert_eq!(cases, applications.len() as i64, "one case per application");

    let present = w.holders().await;
    let wrong: Vec<_> = present.iter().filter(|(_, ps)| ps.len() != 1).collect();
    assert!(wrong.is_empty(), "students not in exactly one province: {wrong:?}");
    assert_eq!(present.len(), 2 * WorldOptions::default().students, "nobody created, nobody lost");
    let index: Vec<(String, String)> =
        sqlx::query_as("SELECT student_id, province FROM student_index").fetch_all(&db).await.unwrap();
    let disagree: Vec<_> =
        index.iter().filter(|(id, p)| present.get(id).is_none_or(|ps| ps != &vec![p.as_str()])).collect();
    assert!(disagree.is_empty(), "the index and the provinces disagree: {disagree:?}");
    let twice = w.handed_over_twice().await;
    assert!(twice.is_empty(), "handed over twice (province, (type, case, times)): {twice:?}");
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letter").fetch_one(&db).await.unwrap();
    assert_eq!(dead, 0, "no dead letters");
}
