//! The console (运维与国家平台控制台): server-rendered Chinese HTML on the operator API's
//! listener, behind the same client-certificate authentication and roles — the pages take the
//! same extractors as the JSON routes ([`super::ops::auth`]). Pages read; actions (resend,
//! replay, discard, arbitrate) are sent by a few lines of script to the JSON routes the CLI
//! uses, after a confirmation, so there is one implementation of each action and one audit.
//! Times are China Standard Time; deadlines are business dates counted in working days.

mod cases;
mod national;
mod operations;

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, NaiveDate, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::context::Context;
use crate::workflow::calendar::{business_date, cst};
use crate::workflow::case::Rules;

/// The console's paths.
pub mod paths {
    pub const HOME: &str = "/console";
    pub const CASES: &str = "/console/cases";
    pub const CASE: &str = "/console/cases/{id}";
    pub const STUCK: &str = "/console/stuck";
    pub const OVERDUE: &str = "/console/overdue";
    pub const DEAD_LETTERS: &str = "/console/dead-letters";
    pub const DEAD_LETTER: &str = "/console/dead-letters/{id}";
    pub const LINKS: &str = "/console/links";
    pub const AUDIT: &str = "/console/audit";
    pub const ARBITRATIONS: &str = "/console/arbitrations";
    pub const PROBLEM: &str = "/console/problems/{id}";
    pub const ORGCODES: &str = "/console/orgcodes";
    pub const NATIONAL: &str = "/console/national";
    pub const LOOKUPS: &str = "/console/lookups";

    pub fn case(id: impl std::fmt::Display) -> String {
        CASE.replace("{id}", &id.to_string())
    }

    pub fn dead_letter(id: i64) -> String {
        DEAD_LETTER.replace("{id}", &id.to_string())
    }

    pub fn problem(id: impl std::fmt::Display) -> String {
        PROBLEM.replace("{id}", &id.to_string())
    }
}

pub fn router(ctx: Context) -> Router {
    Router::new()
        .route(paths::HOME, get(operations::overview))
        .route(paths::CASES, get(cases::search))
        .route(paths::CASE, get(cases::timeline))
        .route(paths::STUCK, get(cases::stuck))
        .route(paths::OVERDUE, get(cases::overdue))
        .route(paths::AUDIT, get(cases::audit))
        .route(paths::DEAD_LETTERS, get(operations::dead_letters))
        .route(paths::DEAD_LETTER, get(operations::dead_letter))
        .route(paths::LINKS, get(operations::links))
        .route(paths::ARBITRATIONS, get(national::arbitrations))
        .route(paths::PROBLEM, get(national::problem))
        .route(paths::ORGCODES, get(national::orgcodes))
        .route(paths::NATIONAL, get(national::overview))
        .route(paths::LOOKUPS, get(national::lookups))
        .layer(axum::middleware::map_response(error_page))
        .layer(axum::middleware::map_response(protect))
        .with_state(ctx)
}

/// What every page says to the browser: not to be framed by another site (clickjacking on
/// the action buttons), not cached (minors' records on a shared office computer), no referrer
/// (the search's URL holds student IDs), scripts and styles only its own.
async fn protect(mut response: Response) -> Response {
    let h = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, axum::http::HeaderValue::from_static(value));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cache-control", "no-store");
    response
}

/// A refusal of a page (the typed JSON error of the extractors and routes) shown as a page,
/// with the same status and code.
async fn error_page(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.to_str().is_ok_and(|t| t.starts_with("application/json")));
    if !(status.is_client_error() || status.is_server_error()) || !is_json {
        return response;
    }
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 10).await.unwrap_or_default();
    let report: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let text = |k: &str| report.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    let body = html! {
        div.refusal {
            h2 { (status.as_u16()) " " (text("messageZh")) }
            p { (text("messageEn")) }
            p { code { (text("code")) } " " (text("detail")) }
        }
    };
    let mut page = page("无法显示 Not shown", body).into_response();
    *page.status_mut() = status;
    page
}

/// The navigation: every page an operator uses, and the national office's.
fn nav() -> Markup {
    let links = [
        (paths::HOME, "概览"),
        (paths::CASES, "业务查询"),
        (paths::STUCK, "卡滞环节"),
        (paths::OVERDUE, "超期核办"),
        (paths::DEAD_LETTERS, "死信"),
        (paths::LINKS, "链路状态"),
        (paths::AUDIT, "审计记录"),
        (paths::NATIONAL, "全国概况(国家平台)"),
        (paths::ARBITRATIONS, "仲裁(国家平台)"),
        (paths::ORGCODES, "机构代码(国家平台)"),
        (paths::LOOKUPS, "查询审计(国家平台)"),
    ];
    html! { nav { @for (href, label) in links { a href=(href) { (label) } } } }
}

const STYLE: &str = "
body{font-family:'Noto Sans CJK SC','Microsoft YaHei',sans-serif;margin:0;color:#222;background:#f6f7f9}
header{background:#1f4e79;color:#fff;padding:.6em 1em}header h1{font-size:1.1em;margin:0}
nav{background:#e8edf3;padding:.4em 1em}nav a{margin-right:1.2em;color:#1f4e79;text-decoration:none}
main{padding:1em}table{border-collapse:collapse;background:#fff;margin:.5em 0;width:100%}
th,td{border:1px solid #d0d7de;padding:.3em .5em;text-align:left;vertical-align:top;font-size:.9em}
th{background:#eef2f6}.ok{color:#1a7f37}.warn{color:#9a6700}.alert{color:#cf222e;font-weight:bold}
form.filters input,form.filters select{margin-right:.6em}pre{background:#fff;border:1px solid #d0d7de;padding:.6em;overflow:auto}
.result{margin:.5em 0;font-weight:bold}.refusal{background:#fff0f0;border:1px solid #cf222e;padding:1em}
.side{display:flex;gap:1em}.side>div{flex:1;background:#fff;border:1px solid #d0d7de;padding:.6em}
.side img{max-width:100%;border:1px solid #ccc}
";

/// Actions: a form with `data-api` posts its note (and selected ids) as JSON to that route
/// after a confirmation, shows the answer, and reloads the page when it succeeded.
const SCRIPT: &str = r#"
document.querySelectorAll('form[data-api]').forEach(function (form) {
  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    if (!window.confirm(form.dataset.confirm || '确认执行该操作?')) { return; }
    var body = {};
    new FormData(form).forEach(function (v, k) {
      if (k === 'ids') { (body.ids = body.ids || []).push(Number(v)); }
      else if (k === 'comments') { if (v) { body.comments = JSON.parse(v); } }
      else { body[k] = v; }
    });
    var out = form.querySelector('.result');
    fetch(form.dataset.api, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
      .then(function (r) { return r.json().then(function (j) { return [r.ok, j]; }); })
      .then(function (a) {
        if (a[0]) { out.textContent = '已完成 ' + JSON.stringify(a[1]); setTimeout(function () { location.reload(); }, 600); }
        else { out.textContent = '未执行:' + (a[1].code || '') + ' ' + (a[1].messageZh || '') + ' ' + (a[1].detail || ''); }
      })
      .catch(function (e) { out.textContent = '请求失败:' + e; });
  });
});
"#;

/// A whole page: title, navigation, content, and the action script.
fn page(title: &str, content: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · 学籍跨省交换枢纽" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header { h1 { "学籍跨省业务交换枢纽 · 控制台" } }
                (nav())
                main { h2 { (title) } (content) }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    };
    Html(markup.into_string())
}

/// A time in China Standard Time.
fn at(t: &DateTime<Utc>) -> String {
    t.with_timezone(&cst()).format("%Y-%m-%d %H:%M:%S").to_string()
}

fn at_opt(t: Option<&DateTime<Utc>>) -> String {
    t.map(at).unwrap_or_default()
}

/// A time in a JSON answer (RFC 3339), in China Standard Time.
fn at_json(v: &serde_json::Value) -> String {
    v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| at(&t.to_utc())).unwrap_or_default()
}

/// A string field of a JSON object ("" when absent; numbers and booleans as text).
fn field(v: &serde_json::Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// A deadline (a business date) with the working days left, or how far past it is.
fn deadline(ctx: &Context, d: NaiveDate) -> Markup {
    let today = business_date(Utc::now());
    let calendar = ctx.rules.calendar();
    let (mut n, mut day) = (0, today.min(d));
    while day < today.max(d) {
        day += chrono::Duration::days(1);
        if calendar.is_working_day(day) {
            n += 1;
        }
    }
    html! {
        (d.format("%Y-%m-%d"))
        @if d < today { span.alert { "(已超期" (n) "个工作日)" } }
        @else { span { "(剩余" (n) "个工作日)" } }
    }
}

/// The Chinese name of a case state, as the provincial systems show it.
fn state_zh(state: &str) -> &'static str {
    match state {
        "WAITING_VERIFICATION" => "等待校验",
        "UNDER_REVIEW" => "正在核办",
        "ARCHIVE_REQUESTED" => "等待调档",
        "ARCHIVE_DELIVERING" => "电子档案生成",
        "COMMITTING" => "确认转出",
        "COMPLETED" => "调档完毕",
        "CANCELLING" => "撤销中",
        "CANCELLED" => "撤销完毕",
        "REJECTING" => "核办不通过(待释放)",
        "REJECTED" => "核办不通过",
        "REFUSED" => "校验错误",
        _ => "",
    }
}

fn business_zh(business: &str) -> &'static str {
    match business {
        "TRANSFER" => "跨省转学",
        "ENROLLMENT" => "毕业后跨省就学",
        _ => "",
    }
}

/// Pages of a list: previous and next, keeping the other query parameters.
fn pager(base: &str, query: &[(&str, String)], offset: i64, limit: i64, shown: usize) -> Markup {
    let link = |o: i64| {
        let mut q: Vec<(&str, String)> = query.iter().filter(|(k, _)| *k != "offset").cloned().collect();
        q.push(("offset", o.to_string()));
        let qs: Vec<String> = q
            .iter()
            .map(|(k, v)| format!("{k}={}", url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()))
            .collect();
        format!("{base}?{}", qs.join("&"))
    };
    html! {
        p {
            @if offset > 0 { a href=(link((offset - limit).max(0))) { "上一页" } " " }
            "第" (offset + 1) "–" (offset + shown as i64) "条 "
            @if shown as i64 == limit { a href=(link(offset + limit)) { "下一页" } }
        }
    }
}
