//! Link health (链路状态) per province, for operators: connected to the broker or not, the last
//! message from it, its queue's depth, the hub's outbox backlog to it, and its certificate's
//! days to expiry — warned at 60 days, alerted at 14.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::auth::Staff;
use super::{ApiError, internal};
use crate::broker_admin::Admin;
use crate::context::Context;
use crate::store::links;

/// Certificate days left under which the link is warned of, and alerted.
pub const CERT_WARN_DAYS: i64 = 60;
pub const CERT_ALERT_DAYS: i64 = 14;
/// An outbox backlog older than this is worth a warning: the relay or the broker is behind.
pub const BACKLOG_WARN_SECS: i64 = 300;
/// How long the broker's management API may take before the page shows its side as unknown.
const BROKER_TIMEOUT: Duration = Duration::from_secs(3);

/// One province's link.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinkHealth {
    pub province: String,
    #[serde(flatten)]
    pub db: links::Link,
    /// Connected to the broker now; none when the broker could not be asked.
    pub connected: Option<bool>,
    pub connections: Option<u64>,
    /// Messages in its queue (ready and unacknowledged), and its consumers.
    pub queue_depth: Option<u64>,
    pub queue_consumers: Option<u64>,
    pub certificate_days_left: Option<i64>,
    /// `ok`, `warn` or `alert`, with why.
    pub health: &'static str,
    pub reasons: Vec<String>,
}

/// What the broker says: connections by user, and (depth, consumers) by queue.
type BrokerView = (HashMap<String, u64>, HashMap<String, (u64, u64)>);

async fn broker_view(ctx: &Context) -> Option<BrokerView> {
    let cfg = ctx.settings.broker.admin.as_ref()?;
    let admin = Admin::new(cfg).ok()?;
    let vhost = &ctx.settings.broker.vhost;
    let asked = async { tokio::try_join!(admin.connections(vhost), admin.queues(vhost)) };
    let (conns, queues) = match tokio::time::timeout(BROKER_TIMEOUT, asked).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "Link health: the broker's management API failed.");
            return None;
        }
        Err(_) => {
            tracing::warn!("Link health: the broker's management API did not answer in time.");
            return None;
        }
    };
    let mut by_user = HashMap::new();
    for c in conns {
        if let Some(u) = c.get("user").and_then(|u| u.as_str()) {
            *by_user.entry(u.to_owned()).or_insert(0) += 1;
        }
    }
    let by_queue = queues
        .iter()
        .filter_map(|q| {
            let name = q.get("name")?.as_str()?.to_owned();
            let n = |k: &str| q.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
            Some((name, (n("messages"), n("consumers"))))
        })
        .collect();
    Some((by_user, by_queue))
}

/// The health of one link, and why.
fn judge(l: &LinkHealth, now: DateTime<Utc>) -> (&'static str, Vec<String>) {
    let mut alert = Vec::new();
    let mut warn = Vec::new();
    if l.connected == Some(false) {
        alert.push("未连接 not connected".to_owned());
    }
    match l.certificate_days_left {
        None => alert.push("无有效证书 no valid certificate".to_owned()),
        Some(d) if d <= CERT_ALERT_DAYS => alert.push(format!("证书{d}天后到期 certificate expires in {d} days")),
        Some(d) if d <= CERT_WARN_DAYS => warn.push(format!("证书{d}天后到期 certificate expires in {d} days")),
        Some(_) => {}
    }
    if let Some(oldest) = l.db.oldest_unsent_at
        && (now - oldest).num_seconds() > BACKLOG_WARN_SECS
    {
        warn.push(format!("待发{}条 outbox backlog of {}", l.db.outbox_backlog, l.db.outbox_backlog));
    }
    let health = if !alert.is_empty() {
        "alert"
    } else if !warn.is_empty() {
        "warn"
    } else {
        "ok"
    };
    alert.extend(warn);
    (health, alert)
}

/// Every province's link, by code.
///
/// # Errors
/// The database unreachable.
pub async fn health(ctx: &Context) -> anyhow::Result<Vec<LinkHealth>> {
    let mut conn = ctx.pool.acquire().await?;
    let rows = links::list(&mut conn).await?;
    drop(conn);
    let broker = broker_view(ctx).await;
    let now = Utc::now();
    Ok(rows
        .into_iter()
        .map(|db| {
            let province = db.principal.strip_prefix("prov-").unwrap_or(&db.principal).to_owned();
            let queue = province.parse().ok().map(schemas::topology::province_queue);
            let (connections, depth) = match &broker {
                Some((users, queues)) => {
                    (Some(users.get(&db.principal).copied().unwrap_or(0)), queue.and_then(|q| queues.get(&q).copied()))
                }
                None => (None, None),
            };
            let mut l = LinkHealth {
                province,
                certificate_days_left: db.certificate_not_after.map(|t| (t - now).num_days()),
                db,
                connected: connections.map(|n| n > 0),
                connections,
                queue_depth: depth.map(|d| d.0),
                queue_consumers: depth.map(|d| d.1),
                health: "ok",
                reasons: vec![],
            };
            (l.health, l.reasons) = judge(&l, now);
            l
        })
        .collect())
}

pub async fn list(State(ctx): State<Context>, _: Staff) -> Result<Response, ApiError> {
    Ok(Json(health(&ctx).await.map_err(internal)?).into_response())
}
