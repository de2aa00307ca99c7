//! Case pages: the search, one case's timeline with its actions, the stuck and overdue lists,
//! and the audit trail.

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use maud::{Markup, html};
use schemas::ErrorCode;
use schemas::messages::CaseState;
use serde::Deserialize;
use uuid::Uuid;

use super::{at, at_json, business_zh, deadline, field, page, pager, paths, state_zh};
use crate::api::ops::auth::Staff;
use crate::api::ops::{self, ApiError, error, internal};
use crate::context::Context;
use crate::store::cases::{self, Summary};
use crate::workflow::calendar::business_date;
use crate::workflow::case::OperatorAction;

/// The search form as it arrives: every field optional, empty fields ignored.
#[derive(Debug, Deserialize, Default)]
pub struct SearchForm {
    pub student: Option<String>,
    pub school: Option<String>,
    pub province: Option<String>,
    pub business: Option<String>,
    pub state: Option<String>,
    pub waiting_on: Option<String>,
    pub open: Option<String>,
    pub offset: Option<i64>,
}

/// Rows shown per page of the search.
const PAGE: i64 = 50;

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// The cases table, shared by the search and the lists.
fn table(ctx: &Context, rows: &[Summary]) -> Markup {
    html! {
        table #cases {
            tr { th { "业务编号" } th { "业务" } th { "学生" } th { "全国学籍号" } th { "转出" } th { "转入" } th { "状态" } th { "等待" } th { "自" } th { "截止" } th { "尝试" } th { "最近错误" } }
            @for r in rows {
                tr {
                    td { a href=(paths::case(r.case_id)) { (r.case_id) } }
                    td { (business_zh(&r.business)) }
                    td { (r.student_name) }
                    td { (r.student_id) }
                    td { (r.out_province) " " (r.out_school) }
                    td { (r.in_province) " " (r.in_school) }
                    td { (state_zh(&r.state)) " " small { (r.state) } }
                    td { (r.waiting_party.as_deref().unwrap_or("")) " " (r.waiting_step.as_deref().unwrap_or("")) }
                    td { (at(&r.since)) }
                    td { @if let Some(d) = r.deadline { (deadline(ctx, d)) } }
                    td { (r.attempts) }
                    td { (r.last_error.as_deref().unwrap_or("")) }
                }
            }
        }
    }
}

/// 业务查询: by student, school, province, business, state, whom it waits on.
pub async fn search(
    State(ctx): State<Context>,
    _: Staff,
    Query(f): Query<SearchForm>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let state = match nonempty(&f.state) {
        None => None,
        Some(s) => match CaseState::ALL.iter().find(|c| c.as_str() == s) {
            Some(c) => Some(*c),
            None => return Err(error(StatusCode::BAD_REQUEST, ErrorCode::Schema, &format!("unknown state `{s}`"))),
        },
    };
    let offset = f.offset.unwrap_or(0).max(0);
    let filter = cases::Filter {
        business: nonempty(&f.business),
        student: nonempty(&f.student),
        school: nonempty(&f.school),
        province: nonempty(&f.province),
        state,
        waiting_on: nonempty(&f.waiting_on),
        open: nonempty(&f.open).and_then(|o| o.parse().ok()),
        limit: Some(PAGE),
        offset: Some(offset),
    };
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let rows = cases::list(&mut conn, &filter).await.map_err(internal)?;
    let query: Vec<(&str, String)> = url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .filter_map(|(k, v)| {
            let key = ["student", "school", "province", "business", "state", "waiting_on", "open"]
                .into_iter()
                .find(|n| *n == k)?;
            Some((key, v.into_owned()))
        })
        .collect();
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let body = html! {
        form.filters method="get" action=(paths::CASES) {
            label { "全国学籍号 " input name="student" value=(value(&f.student)); }
            label { "学校标识码 " input name="school" value=(value(&f.school)) size="10"; }
            label { "省份 " input name="province" value=(value(&f.province)) size="2"; }
            label { "业务 " select name="business" {
                option value="" { "全部" }
                option value="TRANSFER" selected[f.business.as_deref() == Some("TRANSFER")] { "跨省转学" }
                option value="ENROLLMENT" selected[f.business.as_deref() == Some("ENROLLMENT")] { "毕业后跨省就学" }
            } }
            label { "状态 " select name="state" {
                option value="" { "全部" }
                @for s in CaseState::ALL {
                    option value=(s.as_str()) selected[f.state.as_deref() == Some(s.as_str())] { (state_zh(s.as_str())) }
                }
            } }
            label { "等待方 " input name="waiting_on" value=(value(&f.waiting_on)) size="8" placeholder="prov-37"; }
            label { "仅在办 " select name="open" {
                option value="" { "全部" }
                option value="true" selected[f.open.as_deref() == Some("true")] { "在办" }
                option value="false" selected[f.open.as_deref() == Some("false")] { "已结束" }
            } }
            button type="submit" { "查询" }
        }
        (table(&ctx, &rows))
        (pager(paths::CASES, &query, offset, PAGE, rows.len()))
    };
    Ok(page("业务查询", body).into_response())
}

/// Who did what on a case, in time order: stage changes, review decisions, messages both
/// ways (reminders among them), operators' actions.
fn events_of(view: &serde_json::Value) -> Vec<(String, &'static str, Markup)> {
    let list = |k: &str| view.get(k).and_then(|v| v.as_array()).cloned().unwrap_or_default();
    let mut out = Vec::new();
    for e in list("events") {
        let what = html! { (field(&e, "/fromStage")) " → " b { (field(&e, "/toStage")) } " " (field(&e, "/cause")) " " (field(&e, "/detail")) };
        out.push((field(&e, "/at"), "环节变更", what));
    }
    for d in list("decisions") {
        let what = html! {
            b { (field(&d, "/step")) " " (field(&d, "/decision")) } " "
            (field(&d, "/unit")) " " (field(&d, "/reviewer")) ":" (field(&d, "/opinion"))
        };
        out.push((field(&d, "/decidedAt"), "核办意见", what));
    }
    for m in list("messages") {
        let arrow = if field(&m, "/direction") == "in" { "收自" } else { "发往" };
        let what = html! {
            (arrow) " " (field(&m, "/party")) " " b { (field(&m, "/messageType")) } " "
            (field(&m, "/outcome")) " " (field(&m, "/code")) " " (field(&m, "/reason"))
        };
        out.push((field(&m, "/at"), "报文", what));
    }
    for a in list("audit") {
        let what = html! { b { (field(&a, "/action")) } " " (field(&a, "/actor")) "(" (field(&a, "/role")) "):" (field(&a, "/detail")) };
        out.push((field(&a, "/at"), "运维操作", what));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// One case: its facts, whom it waits on until when, its timeline, and the operators' actions.
pub async fn timeline_page(ctx: &Context, id: Uuid) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let Some(view) = ops::case_view(&mut conn, id).await.map_err(internal)? else {
        return Err(error(StatusCode::NOT_FOUND, ErrorCode::CaseNotFound, &format!("no case {id}")));
    };
    let s = &view["summary"];
    let state = field(s, "/state");
    let deadline_at = s.get("deadline").and_then(|d| d.as_str()).and_then(|d| d.parse().ok());
    let body = html! {
        table #facts {
            tr { th { "业务" } td { (business_zh(&field(s, "/business"))) } th { "状态" } td #state { (state_zh(&state)) " " small { (state) } } }
            tr { th { "学生" } td { (field(s, "/studentName")) " " (field(s, "/studentId")) } th { "环节" } td { (field(s, "/stage")) } }
            tr { th { "转出" } td { (field(s, "/outProvince")) " " (field(s, "/outSchool")) } th { "转入" } td { (field(s, "/inProvince")) " " (field(s, "/inSchool")) } }
            tr {
                th { "等待" } td #waiting { (field(s, "/waitingParty")) " " (field(s, "/waitingStep")) " 自 " (at_json(&s["since"])) }
                th { "截止" } td { @if let Some(d) = deadline_at { (deadline(ctx, d)) } }
            }
            tr { th { "尝试次数" } td { (field(&view, "/attempts")) } th { "最近错误" } td { (field(&view, "/lastError")) } }
            @if let Some(r) = view.get("lastRefusal").filter(|r| !r.is_null()) {
                tr { th { "卡住的报文" } td colspan="3" .alert { (field(r, "/messageType")) " " (field(r, "/code")) " " (field(r, "/reason")) } }
            }
        }
        h3 { "办理过程" }
        table #timeline {
            tr { th { "时间" } th { "类别" } th { "内容" } }
            @for (t, kind, what) in events_of(&view) {
                tr { td { (at_json(&serde_json::Value::String(t.clone()))) } td { (kind) } td { (what) } }
            }
        }
        @if field(s, "/closedAt").is_empty() {
            h3 { "运维操作" }
            @for action in OperatorAction::ALL {
                form.action data-api=(ops::paths::action(&id.to_string(), action)) data-confirm=(format!("确认对业务 {id} 执行「{}」?", action_zh(action))) {
                    button type="submit" name="action" value=(action.as_str()) { (action_zh(action)) }
                    " 说明 " input name="note" size="40" required;
                    span.result {}
                }
            }
        }
    };
    Ok(page(&format!("业务 {id}"), body).into_response())
}

pub async fn timeline(State(ctx): State<Context>, _: Staff, Path(id): Path<Uuid>) -> Result<Response, ApiError> {
    timeline_page(&ctx, id).await
}

fn action_zh(a: OperatorAction) -> &'static str {
    match a {
        OperatorAction::Resend => "重发当前环节请求",
        OperatorAction::Rerequest => "重新调档",
        OperatorAction::Resolve => "标记已线下处理",
    }
}

/// 卡滞环节: machine-driven stages that have not moved (verification, release, the archive
/// hand-over): who waits on whom since when, attempts, last error.
pub async fn stuck(State(ctx): State<Context>, _: Staff) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let rows = cases::stuck(&mut conn, Utc::now() - ctx.rules.stuck_after()).await.map_err(internal)?;
    let body = html! {
        p { "超过 " (ctx.rules.stuck_after().num_minutes()) " 分钟未推进的自动环节(校验、释放、调档、确认转出),最久的在前。" }
        (table(&ctx, &rows))
    };
    Ok(page("卡滞环节", body).into_response())
}

/// 超期核办: review steps past their deadline (working days).
pub async fn overdue(State(ctx): State<Context>, _: Staff) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let rows = cases::overdue(&mut conn, business_date(Utc::now())).await.map_err(internal)?;
    let body = html! { p { "已过核办期限(按工作日计)的环节,截止最早的在前。" } (table(&ctx, &rows)) };
    Ok(page("超期核办", body).into_response())
}

#[derive(Debug, Deserialize, Default)]
pub struct AuditForm {
    pub case: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub offset: Option<i64>,
}

/// 审计记录: every operator's and the national office's action, filterable.
pub async fn audit(State(ctx): State<Context>, _: Staff, Query(f): Query<AuditForm>) -> Result<Response, ApiError> {
    let case = match nonempty(&f.case) {
        None => None,
        Some(c) => Some(
            c.parse::<Uuid>()
                .map_err(|_| error(StatusCode::BAD_REQUEST, ErrorCode::Schema, &format!("`{c}` is not a case id")))?,
        ),
    };
    let offset = f.offset.unwrap_or(0).max(0);
    let filter = cases::AuditFilter { case, actor: nonempty(&f.actor), action: nonempty(&f.action) };
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let page_of = cases::Page { limit: Some(PAGE), offset: Some(offset) };
    let rows = cases::audit_search(&mut conn, &filter, page_of).await.map_err(internal)?;
    let mut query = Vec::new();
    for (k, v) in [("case", &f.case), ("actor", &f.actor), ("action", &f.action)] {
        if let Some(v) = nonempty(v) {
            query.push((k, v));
        }
    }
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let body = html! {
        form.filters method="get" action=(paths::AUDIT) {
            label { "业务编号 " input name="case" value=(value(&f.case)) size="36"; }
            label { "操作人 " input name="actor" value=(value(&f.actor)); }
            label { "操作 " input name="action" value=(value(&f.action)); }
            button type="submit" { "筛选" }
        }
        table #audit {
            tr { th { "时间" } th { "操作人" } th { "角色" } th { "操作" } th { "业务" } th { "说明" } }
            @for a in &rows {
                tr {
                    td { (at(&a.at)) } td { (a.actor) } td { (a.role) } td { (a.action) }
                    td { @if let Some(c) = a.case_id { a href=(paths::case(c)) { (c) } } }
                    td { (a.detail) }
                }
            }
        }
        (pager(paths::AUDIT, &query, offset, PAGE, rows.len()))
    };
    Ok(page("审计记录", body).into_response())
}
