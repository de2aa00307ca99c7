//! `replay.request` both ways. A province's adapter, restored from a backup, asks for what the hub
//! sent it since a time; the hub, its database restored, asks the provinces (`hub replay`) for
//! what they sent it since a time, and they answer `replay.result`. The hub marks those outbox rows for publishing again (with their original
//! message ids, so the adapter keeps one copy of each) and answers how many, and from when it
//! still keeps what it sent ([retention] outbox_published_secs).

use anyhow::Result;
use schemas::Party;
use schemas::messages::{Body, ReplayRequest, ReplayResult};
use sqlx::PgConnection;

use super::Effects;
use crate::outgoing::Reply;
use crate::store;

/// At most this many messages go out again per request; a province asks again for the rest.
pub const REPLAY_MAX: i64 = 10_000;

pub async fn replay(conn: &mut PgConnection, sender: Party, req: &ReplayRequest) -> Result<Effects> {
    let (resent, kept_since) = store::outbox::replay(conn, &sender.to_string(), req.since, REPLAY_MAX).await?;
    tracing::info!(%sender, since = %req.since, resent, "Replaying what was sent since a restored backup.");
    let body = Body::ReplayResult(ReplayResult {
        since: req.since,
        resent: u32::try_from(resent).unwrap_or(u32::MAX),
        kept_since,
    });
    Ok(Effects { replies: vec![Reply { recipient: sender, case_id: None, body }], refused: None })
}

/// A province answered the hub's replay request: its messages are on their way again.
pub fn replayed(sender: Party, r: &ReplayResult) -> Effects {
    tracing::info!(%sender, since = %r.since, resent = r.resent, "A province sends again what it sent since a time.");
    Effects::default()
}

/// Asks provinces (all admitted ones, or `only`) for what they sent the hub since `since`: for
/// a hub whose database was restored from a backup. Audited; returns the provinces asked.
///
/// # Errors
/// Database errors.
pub async fn ask_replay(
    pool: &sqlx::PgPool,
    since: chrono::DateTime<chrono::Utc>,
    only: &[schemas::ids::ProvinceCode],
    actor: &str,
) -> Result<Vec<Party>> {
    let mut unit = crate::unit::UnitOfWork::begin(pool, chrono::Utc::now()).await?;
    let admitted = store::certs::admitted_provinces(unit.conn()).await?;
    let asked: Vec<Party> = admitted
        .into_iter()
        .filter_map(|p| Party::parse(&p).ok())
        .filter(|p| only.is_empty() || p.province().is_some_and(|c| only.contains(&c)))
        .collect();
    let names: Vec<String> = asked.iter().map(ToString::to_string).collect();
    let detail = format!("since {since}: {}", names.join(", "));
    let audit_id = store::cases::audit(unit.conn(), actor, "operator", "replay", None, &detail).await?;
    let replies = asked
        .iter()
        .map(|p| Reply { recipient: *p, case_id: None, body: Body::ReplayRequest(ReplayRequest { since }) })
        .collect();
    unit.finish(&crate::outgoing::Cause::Operator { audit_id }, replies, None).await?;
    Ok(asked)
}
