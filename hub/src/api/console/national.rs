//! The national office's pages (国家平台): the arbitration queue, one problem group with both
//! sides' evidence and approvals side by side, the decision form and the group's evidence
//! bundle from the message log, and the code batches with
//! each province's confirmation progress and the revocations waiting on their blockers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use maud::{Markup, html};
use schemas::ErrorCode;
use uuid::Uuid;

use super::{at, at_json, field, page, paths};
use crate::api::ops::auth::NationalOffice;
use crate::api::ops::{self, ApiError, error, internal};
use crate::context::Context;
use crate::store::{orgcodes, overview, problems};
use crate::workflow::calendar::business_date;

fn kind_zh(kind: &str) -> &'static str {
    match kind {
        "ID_DUPLICATE" => "身份证件号重复",
        "NAME_SEX_BIRTH_DUPLICATE" => "姓名性别出生日期重复",
        "ID_NOT_FOUND" => "身份证件号不存在",
        "ID_NAME_MISMATCH" => "身份证件号与姓名不符",
        "ID_CHANGED" => "身份证件号变更",
        _ => "",
    }
}

/// 仲裁队列: groups waiting for the national office, oldest first.
pub async fn arbitrations(State(ctx): State<Context>, _: NationalOffice) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let filter = problems::Filter { state: Some("arbitration".into()), limit: Some(1000), ..Default::default() };
    let rows = problems::list(&mut conn, &filter).await.map_err(internal)?;
    let now = Utc::now();
    let body = html! {
        table #arbitrations {
            tr { th { "问题学籍组" } th { "类型" } th { "等待自" } th { "已等待(天)" } }
            @for g in &rows {
                tr {
                    td { a href=(paths::problem(g.group_id)) { (g.group_id) } }
                    td { (kind_zh(&g.kind)) " " small { (g.kind) } }
                    td { (at(&g.waiting_since)) }
                    td { ((now - g.waiting_since).num_days()) }
                }
            }
        }
    };
    Ok(page("仲裁队列", body).into_response())
}

/// One member's column: the record, what its province reported (mode, approvals, evidence
/// shown inline when it is an image), and the national office's comment.
fn member(group: Uuid, m: &serde_json::Value, events: &[serde_json::Value]) -> Markup {
    let student = field(m, "/studentId");
    let results: Vec<&serde_json::Value> =
        events.iter().filter(|e| field(e, "/what") == "result" && field(e, "/detail/studentId") == student).collect();
    html! {
        div.member data-student=(student) {
            h3 { (field(m, "/province")) "省 " (field(m, "/name")) }
            table {
                tr { th { "全国学籍号" } td { (student) } }
                tr { th { "学校" } td { (field(m, "/school")) } }
                tr { th { "身份证件" } td { "类型" (field(m, "/idDocument/type")) " " (field(m, "/idDocument/number")) } }
                tr { th { "建籍时间" } td { (at_json(&m["registeredAt"])) } }
                tr { th { "状态" } td { (field(m, "/state")) } }
                tr { th { "国家意见" } td { (field(m, "/comment")) } }
            }
            @for r in results {
                h4 { "处理结果 " (at_json(&r["at"])) " " (field(r, "/detail/mode")) }
                table {
                    tr { th { "审核层级" } th { "单位" } th { "审核人" } th { "意见" } th { "时间" } }
                    @for a in r.pointer("/detail/approval").and_then(|a| a.as_array()).into_iter().flatten() {
                        tr { td { (field(a, "/level")) } td { (field(a, "/unit")) } td { (field(a, "/reviewer")) } td { (field(a, "/opinion")) } td { (at_json(&a["approvedAt"])) } }
                    }
                }
                @for f in r.pointer("/detail/evidence").and_then(|e| e.as_array()).into_iter().flatten() {
                    @let src = ops::paths::PROBLEM_EVIDENCE.replace("{id}", &group.to_string()).replace("{sha256}", &field(f, "/sha256"));
                    @if field(f, "/mediaType").starts_with("image/") {
                        figure { img src=(src) alt=(field(f, "/name")); figcaption { (field(f, "/name")) } }
                    } @else {
                        p { a href=(src) { (field(f, "/name")) } }
                    }
                }
            }
        }
    }
}

/// 问题学籍组: both sides side by side, the history, and (waiting for arbitration) the decision.
pub async fn problem(
    State(ctx): State<Context>,
    _: NationalOffice,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let Some(g) = problems::get(&mut conn, id).await.map_err(internal)? else {
        return Err(error(StatusCode::NOT_FOUND, ErrorCode::GroupNotFound, &format!("no problem group {id}")));
    };
    let events = problems::events(&mut conn, id).await.map_err(internal)?;
    let group = serde_json::to_value(&g).map_err(internal)?;
    let events: Vec<serde_json::Value> = events.iter().filter_map(|e| serde_json::to_value(e).ok()).collect();
    let members = group.get("members").and_then(|m| m.as_array()).cloned().unwrap_or_default();
    let state = field(&group, "/state").to_ascii_lowercase();
    let body = html! {
        p { "类型 " (kind_zh(&field(&group, "/kind"))) " · 状态 " b #group-state { (state) } " · 等待自 " (at(&g.waiting_since)) }
        p {
            a #bundle href=(ops::paths::bundle(&id.to_string())) download { "下载本组证据包" }
            " — 报文日志中本组的全部报文(原文与签名)、哈希链、签名证书与平台签名的检查点;"
            "解包后运行 " code { "sh verify.sh" } " 即以标准工具(openssl、sha256sum)核验。"
        }
        div.side { @for m in &members { (member(id, m, &events)) } }
        @if state == "arbitration" {
            h3 { "仲裁" }
            form #decide data-api=(ops::paths::decision(&id.to_string())) data-confirm="确认提交仲裁结果?" {
                "仲裁通过的记录 "
                select name="upheld" { @for m in &members { option value=(field(m, "/studentId")) { (field(m, "/province")) "省 " (field(m, "/studentId")) } } }
                " "
                button type="submit" { "提交仲裁" }
                span.result {}
            }
        }
        h3 { "处理过程" }
        table #events {
            tr { th { "时间" } th { "操作方" } th { "事项" } th { "内容" } }
            @for e in &events {
                tr { td { (at_json(&e["at"])) } td { (field(e, "/actor")) } td { (field(e, "/what")) } td { small { (field(e, "/detail")) } } }
            }
        }
    };
    Ok(page(&format!("问题学籍组 {id}"), body).into_response())
}

/// 机构代码: batches with each province's confirmation progress, and revocations waiting.
pub async fn orgcodes(State(ctx): State<Context>, _: NationalOffice) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let batches = orgcodes::batches(&mut conn, 100, 0).await.map_err(internal)?;
    let waiting = ops::orgcodes::revocations_view(&mut conn).await?;
    let body = html! {
        table #batches {
            tr { th { "批次" } th { "版本" } th { "类型" } th { "发布日期" } th { "记录数" } th { "载入" } th { "各省确认进度" } }
            @for b in &batches {
                tr {
                    td { (b.batch_id) } td { (b.version) } td { (b.kind) } td { (b.published_on) } td { (b.records) }
                    td { (b.loaded_by) " " (at(&b.loaded_at)) }
                    td { @for (p, states) in b.progress.as_object().into_iter().flatten() { (p) ":" (states.to_string()) " " } }
                }
            }
        }
        h3 { "待撤销(等待在办业务结束)" }
        table #revocations {
            tr { th { "变动" } th { "省份" } th { "机构" } th { "学段" } th { "已等待(秒)" } th { "阻塞" } }
            @for r in &waiting {
                tr {
                    td { (field(r, "/change/changeId")) } td { (field(r, "/change/province")) } td { (field(r, "/change/unit")) }
                    td { (field(r, "/change/stage")) } td { (field(r, "/waitingSeconds")) } td { (field(r, "/blockers")) }
                }
            }
        }
    };
    Ok(page("机构代码", body).into_response())
}

/// Days of review decisions the overview's pace covers.
const PACE_DAYS: i64 = 30;

fn duration_zh(secs: f64) -> String {
    let h = secs / 3600.0;
    if h >= 24.0 { format!("{:.1}天", h / 24.0) } else { format!("{h:.1}小时") }
}

/// 全国概况: per province its open cases, what waits on it and its overdue steps; per
/// reviewing unit the median and 90th percentile of its steps over the last 30 days — who is
/// slow, without asking each province.
pub async fn overview(State(ctx): State<Context>, _: NationalOffice) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let now = Utc::now();
    let provinces = overview::provinces(&mut conn, business_date(now)).await.map_err(internal)?;
    let units = overview::units(&mut conn, now - chrono::Duration::days(PACE_DAYS)).await.map_err(internal)?;
    let body = html! {
        table #provinces {
            tr { th { "省份" } th { "在办业务" } th { "等待本省" } th { "超期核办" } }
            @for p in &provinces {
                tr { td { (p.province) } td { (p.open) } td { (p.waiting) } td class=(if p.overdue > 0 { "alert" } else { "" }) { (p.overdue) } }
            }
        }
        h3 { "核办用时(近" (PACE_DAYS) "天,最慢的在前)" }
        table #units {
            tr { th { "省份" } th { "核办单位" } th { "环节数" } th { "中位用时" } th { "90%用时" } }
            @for u in &units {
                tr { td { (u.province) } td { (u.unit) } td { (u.steps) } td { (duration_zh(u.median_secs)) } td { (duration_zh(u.p90_secs)) } }
            }
        }
    };
    Ok(page("全国概况", body).into_response())
}

/// The lookup form as it arrives: empty fields ignored.
#[derive(Debug, serde::Deserialize, Default)]
pub struct LookupForm {
    pub province: Option<String>,
    pub student: Option<String>,
}

fn outcome_zh(outcome: &str) -> &'static str {
    match outcome {
        "found" => "查到",
        "not_found" => "未查到",
        "limited_province" => "超过本省频次上限,拒绝",
        "limited_student" => "同一学生查询过多,拒绝",
        _ => "",
    }
}

/// 查询审计: who looked up whom, when, and what was answered — the newest 200, by province or
/// by a student the office names (digested, as the audit keeps him).
pub async fn lookups(
    State(ctx): State<Context>,
    _: NationalOffice,
    axum::extract::Query(f): axum::extract::Query<LookupForm>,
) -> Result<Response, ApiError> {
    let nonempty = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    let (province, student) = (nonempty(&f.province), nonempty(&f.student));
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let filter =
        crate::api::ops::lookups::filter(&ctx, &mut conn, province.as_deref(), student.as_deref(), None, Some(200))
            .await?;
    let rows = crate::store::lookups::search(&mut conn, &filter).await.map_err(internal)?;
    let body = html! {
        form.filters method="get" action=(paths::LOOKUPS) {
            label { "学生(全国学籍号或身份证件号) " input name="student" value=(student.clone().unwrap_or_default()); }
            label { "查询省份 " input name="province" value=(province.clone().unwrap_or_default()) size="2"; }
            button type="submit" { "查询" }
        }
        p { small { "审计不保存证件号码,只保存其密钥摘要;按学生查询时在此计算摘要比对。" } }
        table #lookups {
            tr { th { "时间" } th { "查询省份" } th { "查询人" } th { "查询依据" } th { "结果" } th { "学籍所在省" } th { "消息编号" } }
            @for r in &rows {
                tr {
                    td { (at(&r.at)) }
                    td { (r.province) }
                    td { (r.requested_by.clone().unwrap_or_else(|| "(未填写)".into())) }
                    td { @if r.key_kind == "student_id" { "全国学籍号" } @else { "身份证件号" } }
                    td.outcome { (outcome_zh(&r.outcome)) " " small { (r.outcome) } }
                    td { (r.found_province.clone().unwrap_or_default()) }
                    td { small { (r.message_id) } }
                }
            }
        }
    };
    Ok(page("查询审计(国家平台)", body).into_response())
}
