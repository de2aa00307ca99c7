//! What operators watch: the overview, the dead letters (list, inspect, replay, discard) and
//! each province's link.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use maud::{Markup, html};
use schemas::ErrorCode;
use serde::Deserialize;

use super::{at, at_opt, page, pager, paths};
use crate::api::ops::auth::Staff;
use crate::api::ops::links::{self, CERT_ALERT_DAYS, CERT_WARN_DAYS, LinkHealth};
use crate::api::ops::{self, ApiError, error, internal};
use crate::context::Context;
use crate::store::{self, cases, dead_letters};
use crate::workflow::calendar::business_date;

fn health_zh(h: &str) -> &'static str {
    match h {
        "ok" => "正常",
        "warn" => "注意",
        _ => "告警",
    }
}

fn links_table(rows: &[LinkHealth]) -> Markup {
    let yes_no = |b: Option<bool>| match b {
        Some(true) => "已连接",
        Some(false) => "未连接",
        None => "未知",
    };
    html! {
        table #links {
            tr { th { "省份" } th { "状态" } th { "连接" } th { "最近来报" } th { "队列积压" } th { "消费者" } th { "待发(枢纽)" } th { "最早待发" } th { "证书剩余天数" } th { "原因" } }
            @for l in rows {
                tr data-province=(l.province) {
                    td { (l.province) }
                    td class=(l.health) { (health_zh(l.health)) }
                    td class=(if l.connected == Some(false) { "alert" } else { "" }) { (yes_no(l.connected)) }
                    td { (at_opt(l.db.last_message_at.as_ref())) }
                    td { (l.queue_depth.map(|d| d.to_string()).unwrap_or_default()) }
                    td { (l.queue_consumers.map(|d| d.to_string()).unwrap_or_default()) }
                    td { (l.db.outbox_backlog) }
                    td { (at_opt(l.db.oldest_unsent_at.as_ref())) }
                    td { (l.certificate_days_left.map(|d| d.to_string()).unwrap_or_else(|| "无".into())) }
                    td { (l.reasons.join(";")) }
                }
            }
        }
    }
}

/// 概览: the links, and the counts an operator starts the day with.
pub async fn overview(State(ctx): State<Context>, _: Staff) -> Result<Response, ApiError> {
    let now = Utc::now();
    let g = store::gauges(&ctx.pool, now - ctx.rules.stuck_after(), business_date(now)).await.map_err(internal)?;
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let open_letters = dead_letters::count_open(&mut conn).await.map_err(internal)?;
    drop(conn);
    let rows = links::health(&ctx).await.map_err(internal)?;
    let body = html! {
        table #counts {
            tr { th { "在办业务" } th { "卡滞环节" } th { "超期核办" } th { "待处理死信" } th { "待发报文" } th { "最久待发(秒)" } }
            tr {
                td { a href=(format!("{}?open=true", paths::CASES)) { (g.cases_open) } }
                td { a href=(paths::STUCK) { (g.cases_stuck) } }
                td { a href=(paths::OVERDUE) { (g.cases_overdue) } }
                td { a href=(format!("{}?state=open", paths::DEAD_LETTERS)) { (open_letters) } }
                td { (g.outbox_unsent) }
                td { (format!("{:.0}", g.outbox_lag_seconds)) }
            }
        }
        h3 { "链路状态" }
        (links_table(&rows))
    };
    Ok(page("概览", body).into_response())
}

/// 链路状态: per province, with the thresholds it is judged by.
pub async fn links(State(ctx): State<Context>, _: Staff) -> Result<Response, ApiError> {
    let rows = links::health(&ctx).await.map_err(internal)?;
    let body = html! {
        p { "证书剩余 " (CERT_WARN_DAYS) " 天内提示注意," (CERT_ALERT_DAYS) " 天内告警;未连接即告警。连接与队列取自消息中间件管理接口。" }
        (links_table(&rows))
    };
    Ok(page("链路状态", body).into_response())
}

#[derive(Debug, Deserialize, Default)]
pub struct LetterQuery {
    pub state: Option<String>,
    pub offset: Option<i64>,
}

const PAGE: i64 = 50;

fn state_zh(s: &str) -> &'static str {
    match s {
        "open" => "待处理",
        "replayed" => "已重放",
        "discarded" => "已丢弃",
        _ => "",
    }
}

/// 死信: newest first; the open ones can be selected and replayed together.
pub async fn dead_letters(
    State(ctx): State<Context>,
    _: Staff,
    Query(q): Query<LetterQuery>,
) -> Result<Response, ApiError> {
    let state = q.state.as_deref().filter(|s| !s.is_empty());
    if let Some(s) = state
        && !matches!(s, "open" | "replayed" | "discarded")
    {
        return Err(error(StatusCode::BAD_REQUEST, ErrorCode::Schema, &format!("unknown state `{s}`")));
    }
    let offset = q.offset.unwrap_or(0).max(0);
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let page_of = cases::Page { limit: Some(PAGE), offset: Some(offset) };
    let rows = dead_letters::list(&mut conn, state, page_of).await.map_err(internal)?;
    let query: Vec<(&str, String)> = state.map(|s| ("state", s.to_owned())).into_iter().collect();
    let body = html! {
        p {
            a href=(paths::DEAD_LETTERS) { "全部" } " · "
            a href=(format!("{}?state=open", paths::DEAD_LETTERS)) { "待处理" } " · "
            a href=(format!("{}?state=replayed", paths::DEAD_LETTERS)) { "已重放" } " · "
            a href=(format!("{}?state=discarded", paths::DEAD_LETTERS)) { "已丢弃" }
        }
        form #replay-selection data-api=(ops::paths::DEAD_LETTERS_REPLAY) data-confirm="确认重放所选死信?请先确认原因已排除。" {
            table #dead-letters {
                tr { th { "选择" } th { "编号" } th { "状态" } th { "首次" } th { "最近" } th { "次数" } th { "发送方" } th { "类型" } th { "代码" } th { "原因" } th { "业务" } }
                @for d in &rows {
                    tr {
                        td { @if d.state == "open" && !d.truncated { input type="checkbox" name="ids" value=(d.dead_letter_id); } }
                        td { a href=(paths::dead_letter(d.dead_letter_id)) { (d.dead_letter_id) } }
                        td { (state_zh(&d.state)) }
                        td { (at(&d.first_seen)) }
                        td { (at(&d.last_seen)) }
                        td { (d.seen) }
                        td { (d.sender) }
                        td { (d.message_type.as_deref().unwrap_or("")) }
                        td { (d.code) }
                        td { (d.reason) }
                        td { @if let Some(c) = d.case_id { a href=(super::paths::case(c)) { (c) } } }
                    }
                }
            }
            " 说明 " input name="note" size="40" required;
            button type="submit" { "重放所选" }
            span.result {}
        }
        (pager(paths::DEAD_LETTERS, &query, offset, PAGE, rows.len()))
    };
    Ok(page("死信", body).into_response())
}

/// Pretty-prints an XML document for reading (indentation only; the bytes replayed are the
/// kept ones, untouched). Text that is not well-formed XML is shown as it is.
fn pretty_xml(text: &str) -> String {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut writer = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => break,
            // A DOCTYPE is shown, never expanded.
            Ok(e) => {
                if writer.write_event(e).is_err() {
                    return text.to_owned();
                }
            }
            Err(_) => return text.to_owned(),
        }
    }
    String::from_utf8(writer.into_inner()).unwrap_or_else(|_| text.to_owned())
}

/// One dead letter: what is known of it, its message pretty-printed, and its settlement.
pub async fn dead_letter(State(ctx): State<Context>, _: Staff, Path(id): Path<i64>) -> Result<Response, ApiError> {
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    let Some(k) = dead_letters::get(&mut conn, id).await.map_err(internal)? else {
        return Err(error(StatusCode::NOT_FOUND, ErrorCode::NotFound, &format!("no dead letter {id}")));
    };
    let d = &k.listed;
    let text = std::str::from_utf8(&k.body).map(pretty_xml).unwrap_or_else(|_| "(非文本报文 not text)".to_owned());
    let body = html! {
        table #dead-letter {
            tr { th { "状态" } td #state { (state_zh(&d.state)) " " (d.settled_by.as_deref().unwrap_or("")) " " (at_opt(d.settled_at.as_ref())) } }
            tr { th { "发送方" } td { (d.sender) } }
            tr { th { "报文编号" } td { (d.message_id) } }
            tr { th { "类型" } td { (d.message_type.as_deref().unwrap_or("")) } }
            tr { th { "代码" } td { (d.code) } }
            tr { th { "原因" } td #reason { (d.reason) } }
            tr { th { "来源" } td { (if d.source == "broker" { "消息中间件" } else { "枢纽" }) } }
            tr { th { "首次 / 最近 / 次数" } td { (at(&d.first_seen)) " / " (at(&d.last_seen)) " / " (d.seen) } }
            tr { th { "大小" } td { (d.size) " 字节" @if d.truncated { span.alert { "(仅保存前 " (k.body.len()) " 字节,不能重放)" } } } }
            @if let Some(c) = d.case_id { tr { th { "业务" } td { a href=(super::paths::case(c)) { (c) } } } }
        }
        @if d.state == "open" {
            form #replay data-api=(ops::paths::dead_letter_replay(id)) data-confirm="确认重放该死信?请先确认原因已排除。" {
                " 说明 " input name="note" size="40" required;
                button type="submit" { "重放" }
                span.result {}
            }
            form #discard data-api=(ops::paths::dead_letter_discard(id)) data-confirm="确认丢弃该死信?丢弃后不能重放。" {
                " 说明 " input name="note" size="40" required;
                button type="submit" { "丢弃" }
                span.result {}
            }
        }
        h3 { "报文(按保存内容)" }
        pre #body { (text) }
    };
    Ok(page(&format!("死信 {id}"), body).into_response())
}
