//! The simulated system's handling of what its adapter hands it, on a real SQLite file.

use super::*;
use schemas::messages::{CaseAccepted, CaseClosed, CaseState, Outcome};

async fn province(dir: &tempfile::TempDir) -> Simulator {
    // As the adapter's main does: the simulator's HTTP client needs a crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let opts = Options::new("http://127.0.0.1:9".into(), dir.path().join("37.db"), "37".parse().expect("code"));
    Simulator::open(opts).await.expect("the province's database")
}

async fn applied(sim: &Simulator) -> MessageId {
    let app = MessageId::new_v7();
    sqlx::query("INSERT INTO application (message_id, student_id, applied_at) VALUES (?, 'G1', ?)")
        .bind(app.to_string())
        .bind(Utc::now().to_rfc3339())
        .execute(&sim.db)
        .await
        .expect("application");
    app
}

fn from_hub(case: CaseId, correlation: Option<MessageId>, body: Body) -> Envelope {
    let mut env = Envelope::new(Party::Hub, Party::Province("37".parse().expect("code")), body);
    env.case_id = Some(case);
    env.correlation_id = correlation;
    env
}

async fn outcome(sim: &Simulator, app: MessageId) -> (Option<String>, Option<String>) {
    sqlx::query_as("SELECT outcome, case_id FROM application WHERE message_id = ?")
        .bind(app.to_string())
        .fetch_one(&sim.db)
        .await
        .expect("application")
}

fn accepted() -> Body {
    Body::CaseAccepted(CaseAccepted {
        business: schemas::messages::Business::Transfer,
        state: CaseState::WaitingVerification,
        waiting: None,
    })
}

fn closed() -> Body {
    Body::CaseClosed(CaseClosed { outcome: Outcome::Rejected, code: None, remark: None, next: None })
}

#[tokio::test]
async fn a_closing_handed_over_before_the_acceptance_answers_the_application_when_the_acceptance_comes() {
    let dir = tempfile::tempdir().expect("dir");
    let sim = province(&dir).await;
    let (app, case) = (applied(&sim).await, CaseId::new_v7());
    sim.handle(from_hub(case, None, closed())).await.expect("closing");
    assert_eq!(outcome(&sim, app).await, (None, None), "no application knows the case yet");
    sim.handle(from_hub(case, Some(app), accepted())).await.expect("acceptance");
    assert_eq!(outcome(&sim, app).await, (Some("REJECTED".into()), Some(case.to_string())));
}

#[tokio::test]
async fn in_order_the_acceptance_links_and_the_closing_answers() {
    let dir = tempfile::tempdir().expect("dir");
    let sim = province(&dir).await;
    let (app, case) = (applied(&sim).await, CaseId::new_v7());
    sim.handle(from_hub(case, Some(app), accepted())).await.expect("acceptance");
    assert_eq!(outcome(&sim, app).await, (None, Some(case.to_string())));
    sim.handle(from_hub(case, None, closed())).await.expect("closing");
    assert_eq!(outcome(&sim, app).await, (Some("REJECTED".into()), Some(case.to_string())));
}
