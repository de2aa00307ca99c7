//! The national overview (全国概况): per province, its open cases, what waits on it and its
//! overdue steps; per reviewing unit, how long its review steps took over a recent window.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{FromRow, PgConnection};

/// One province's open business.
#[derive(Debug, Clone, FromRow)]
pub struct ProvinceLoad {
    pub province: String,
    /// Open cases with this province on either side.
    pub open: i64,
    /// Of them, waiting on this province.
    pub waiting: i64,
    /// Of those, review steps past their deadline.
    pub overdue: i64,
}

/// # Errors
/// Database errors.
pub async fn provinces(conn: &mut PgConnection, today: NaiveDate) -> sqlx::Result<Vec<ProvinceLoad>> {
    sqlx::query_as(
        "WITH sides AS (
             SELECT in_province AS province, waiting_party, stage, deadline FROM business_case WHERE closed_at IS NULL
             UNION ALL
             SELECT out_province, waiting_party, stage, deadline FROM business_case WHERE closed_at IS NULL)
         SELECT province, count(*) AS open,
                count(*) FILTER (WHERE waiting_party = 'prov-' || province) AS waiting,
                count(*) FILTER (WHERE waiting_party = 'prov-' || province AND stage = 'reviewing' AND deadline < $1) AS overdue
         FROM sides GROUP BY province ORDER BY province",
    )
    .bind(today)
    .fetch_all(conn)
    .await
}

/// How long one reviewing unit took over its steps: from the step's start (the previous
/// decision of the case, or the case entering review) to its decision.
#[derive(Debug, Clone, FromRow)]
pub struct UnitPace {
    pub province: String,
    pub unit: String,
    pub steps: i64,
    pub median_secs: f64,
    pub p90_secs: f64,
}

/// Review steps decided since `since`, by province and unit, slowest (90th percentile) first.
///
/// # Errors
/// Database errors.
pub async fn units(conn: &mut PgConnection, since: DateTime<Utc>) -> sqlx::Result<Vec<UnitPace>> {
    sqlx::query_as(
        "WITH s AS (
             SELECT st.province, st.unit, st.decided_at,
                    EXTRACT(EPOCH FROM st.decided_at - COALESCE(
                        lag(st.decided_at) OVER (PARTITION BY st.case_id ORDER BY st.seq),
                        (SELECT min(e.at) FROM case_event e WHERE e.case_id = st.case_id AND e.to_stage = 'reviewing'),
                        st.decided_at))::float8 AS secs
             FROM case_step st
             WHERE st.case_id IN (SELECT case_id FROM case_step WHERE decided_at >= $1))
         SELECT province, unit, count(*) AS steps,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY secs)::float8 AS median_secs,
                percentile_cont(0.9) WITHIN GROUP (ORDER BY secs)::float8 AS p90_secs
         FROM s WHERE decided_at >= $1 GROUP BY province, unit ORDER BY p90_secs DESC, province, unit LIMIT 1000",
    )
    .bind(since)
    .fetch_all(conn)
    .await
}
