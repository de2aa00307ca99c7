//! Case messages: applications, verification results, reviewers' decisions, cancellation,
//! release, the archive hand-over; and the case timers and operators' actions. Each runs in
//! the transaction of its cause, with the case row locked.

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use schemas::ids::{ProvinceCode, SchoolCode};
use schemas::messages::{
    Application, ArchiveDeliver, ArchivePackage, Attachment, Body, Business, CaseAccepted, CaseStatus, CaseSummary,
    ReminderKind, ReviewRequest, UpTo,
};
use schemas::{CaseId, Envelope, ErrorCode, Party};
use sqlx::PgConnection;
use tracing::debug;
use uuid::Uuid;

use super::refuse;
use crate::rules::AttachmentUse;
use crate::service::{Context, Effects, Reply};
use crate::store::{self, cases, permissions, schools, timers};
use crate::workflow::case::{self as workflow, Case, Effect, Event, Facts, OperatorAction, Stage, Transition};

/// Timer kinds of cases.
pub const RESEND: &str = "case.resend";
pub const REMINDER: &str = "case.reminder";

/// Namespace of case ids derived from applications.
const CASE_NAMESPACE: Uuid = Uuid::from_u128(0x3c2b_91d4_5e6f_4a70_8b1c_2d3e_4f50_6172);

/// Whether `school` may take part in a case for `province` now.
async fn check_school(
    conn: &mut PgConnection,
    school: &SchoolCode,
    province: ProvinceCode,
    now: DateTime<Utc>,
) -> Result<Option<(ErrorCode, String)>> {
    Ok(match schools::get(conn, school.as_ref()).await? {
        None => Some((ErrorCode::SchoolUnknown, format!("school {school} is not in the school registry"))),
        Some(s) if !s.active => Some((ErrorCode::SchoolUnknown, format!("school {school} ({}) is revoked", s.name))),
        Some(s) if s.province != province.code() => Some((
            ErrorCode::SchoolUnknown,
            format!("school {school} belongs to province {}, not {}", s.province, province.code()),
        )),
        Some(s) if s.code_usable_from.is_some_and(|t| t > now) => Some((
            ErrorCode::SchoolNoCode,
            format!(
                "the identification code of school {school} is usable from {} (sync takes 1–2 days)",
                s.code_usable_from.unwrap_or(now)
            ),
        )),
        Some(_) => None,
    })
}

/// An application (转学申请 / 就学申请): checked, then a case opens and verification starts.
///
/// # Errors
/// Database errors.
pub async fn apply(
    conn: &mut PgConnection,
    ctx: &Context,
    env: &Envelope,
    sender: ProvinceCode,
    app: &Application,
    business: Business,
    now: DateTime<Utc>,
) -> Result<Effects> {
    let from = Party::Province(sender);
    let no = |code, detail: String| Ok(refuse(from, env, code, &detail));
    let items = app.evidence.items();
    // Reviewers receive the files by name: two of one name would lose one.
    if let Some(twice) = items.iter().enumerate().find(|(i, a)| items[..*i].iter().any(|b| b.name == a.name)) {
        return no(ErrorCode::Schema, format!("two evidence files are named {}", twice.1.name));
    }
    for a in items {
        if a.check().is_err() {
            return no(
                ErrorCode::AttachmentDigest,
                format!("evidence {}: content does not match its size or SHA-256", a.name),
            );
        }
        let used = AttachmentUse::Evidence(business);
        if let Some((code, detail)) = ctx.rules.attachment_problem(used, a.name.as_ref(), a.size, a.media_type.as_ref())
        {
            return no(code, format!("evidence {detail}"));
        }
    }
    if let Some((code, detail)) = check_school(conn, &app.school, sender, now).await? {
        return no(code, detail);
    }
    if business == Business::Enrollment {
        // The enrolling school shows it followed the local admission policy ([003 Q29]), and
        // only schools its province permitted may enroll graduates of other provinces ([003 Q37]).
        if app.evidence.is_empty() {
            return no(
                ErrorCode::EvidenceMissing,
                "an enrollment needs evidence: admission letter, exam results (录取通知书、中考成绩)".into(),
            );
        }
        if !permissions::is_permitted(conn, app.school.as_ref()).await? {
            return no(
                ErrorCode::NotPermitted,
                format!("school {} has no permission for post-graduation enrollment", app.school),
            );
        }
    }
    let Some(entry) = store::index::by_student_id(conn, app.student_id.as_ref()).await? else {
        return no(ErrorCode::StudentNotFound, format!("{} is not in the national student index", app.student_id));
    };
    if let Some(at) = entry.disputed_at {
        return no(
            ErrorCode::StudentNotFound,
            format!(
                "province {} reported on {at} that it holds no such student; it was asked to report him again",
                entry.province.code()
            ),
        );
    }
    if entry.province == sender {
        return no(
            ErrorCode::SameProvince,
            format!("{} is a student of province {} already", app.student_id, sender.code()),
        );
    }
    if let Some((code, detail)) = check_school(conn, &entry.summary.school, entry.province, now).await? {
        return no(code, format!("the student's current school: {detail}"));
    }
    if let Some((id, state)) = cases::open_case_of(conn, app.student_id.as_ref()).await? {
        let detail = match state {
            schemas::messages::CaseState::Cancelling => format!(
                "case {id} was cancelled, but the out-province has not closed its side yet; apply again once it has"
            ),
            _ => format!("the student has an open cross-province case {id} ({state:?})"),
        };
        return no(ErrorCode::InFlight, detail);
    }

    let case_id = CaseId::from_uuid(Uuid::new_v5(&CASE_NAMESPACE, env.message_id.uuid().as_bytes()));
    let facts = Facts {
        business,
        student_id: app.student_id.clone(),
        student_name: app.student_name.clone(),
        in_province: sender,
        in_school: app.school.clone(),
        out_province: entry.province,
        out_school: entry.summary.school.clone(),
        target_grade: app.target_grade,
        reason: app.reason.clone(),
        evidence: app.evidence.items().iter().map(Attachment::reference).collect(),
        held: None,
        chain: vec![],
    };
    let (case, effects) = workflow::open(case_id, facts, now, &*ctx.rules);
    match cases::insert(conn, &case, env.message_id.uuid()).await {
        Ok(()) => {}
        Err(cases::InsertError::StudentBusy) => {
            return no(ErrorCode::InFlight, "another application for this student was accepted just now".into());
        }
        Err(cases::InsertError::Other(e)) => return Err(e.into()),
    }
    cases::save_evidence(conn, case_id, app.evidence.items()).await?;
    cases::add_event(conn, case_id, now, None, case.stage.name(), env.message_type().as_str(), None).await?;
    let mut replies = vec![Reply {
        recipient: from,
        case_id: Some(case_id),
        body: Body::CaseAccepted(CaseAccepted { business, state: case.state(), waiting: case.waiting() }),
    }];
    replies.extend(materialize(conn, &case, effects, now).await?);
    Ok(Effects { replies, refused: None })
}

/// A message about an existing case, from a province.
///
/// # Errors
/// Database errors.
pub async fn on_message(
    conn: &mut PgConnection,
    ctx: &Context,
    env: &Envelope,
    sender: Party,
    now: DateTime<Utc>,
) -> Result<Effects> {
    let Some(case_id) = env.case_id else {
        return Ok(refuse(sender, env, ErrorCode::CaseNotFound, "a case message needs caseId"));
    };
    let Some(case) = cases::lock(conn, case_id).await? else {
        return Ok(refuse(sender, env, ErrorCode::CaseNotFound, &format!("no case {case_id}")));
    };
    let event = match &env.body {
        Body::VerifyResult(result) => Event::Verified { from: sender, result },
        Body::ReviewDecision(decision) => Event::Decided { from: sender, decision },
        Body::CaseCancel(_) => Event::CancelRequested { from: sender },
        Body::CaseReleased(_) => Event::Released { from: sender },
        Body::ArchiveImported(result) => Event::Imported { from: sender, result },
        Body::ArchiveCommitted(_) => Event::Committed { from: sender },
        Body::ArchivePackage(p) => return on_package(conn, ctx, env, case, sender, p, now).await,
        Body::ArchiveAttachment(a) => return on_attachment(conn, ctx, env, case, sender, a, now).await,
        other => bail!("{} is not a case message", other.message_type()),
    };
    let t = workflow::transition(&case, event, now, &*ctx.rules);
    settle(conn, &case, t, env.message_type().as_str(), Some((sender, env)), now).await
}

/// Records a problem with what the out-province sent, keeps waiting (the resend timer asks
/// again), and tells the out-province.
async fn package_problem(
    conn: &mut PgConnection,
    env: &Envelope,
    mut case: Case,
    to: Party,
    code: ErrorCode,
    detail: String,
) -> Result<Effects> {
    case.last_error = Some(format!("{}: {detail}", code.code()));
    cases::save(conn, &case).await?;
    Ok(refuse(to, env, code, &detail))
}

async fn on_package(
    conn: &mut PgConnection,
    ctx: &Context,
    env: &Envelope,
    case: Case,
    sender: Party,
    p: &ArchivePackage,
    now: DateTime<Utc>,
) -> Result<Effects> {
    if sender != Party::Province(case.facts.out_province) {
        return Ok(refuse(sender, env, ErrorCode::NotYourStep, "the archive package comes from the out-province"));
    }
    if case.stage != Stage::ArchiveRequested {
        debug!(stage = case.stage.name(), "Archive package outside the request ignored.");
        return Ok(Effects::default());
    }
    if p.record.student_id != case.facts.student_id {
        let detail = format!("the package is for {}, the case for {}", p.record.student_id, case.facts.student_id);
        return package_problem(conn, env, case, sender, ErrorCode::Unexpected, detail).await;
    }
    for a in &p.attachment {
        let problem =
            ctx.rules.attachment_problem(AttachmentUse::Archive, a.name.as_ref(), a.size, a.media_type.as_ref());
        if let Some((code, detail)) = problem {
            return package_problem(conn, env, case, sender, code, format!("attachment {detail}")).await;
        }
    }
    cases::save_package(conn, case.id, &p.record, &p.attachment).await?;
    complete_if_ready(conn, ctx, case, env, now).await
}

async fn on_attachment(
    conn: &mut PgConnection,
    ctx: &Context,
    env: &Envelope,
    case: Case,
    sender: Party,
    a: &Attachment,
    now: DateTime<Utc>,
) -> Result<Effects> {
    if sender != Party::Province(case.facts.out_province) {
        return Ok(refuse(sender, env, ErrorCode::NotYourStep, "archive attachments come from the out-province"));
    }
    if case.stage != Stage::ArchiveRequested {
        debug!(stage = case.stage.name(), "Archive attachment outside the request ignored.");
        return Ok(Effects::default());
    }
    if a.check().is_err() {
        let detail = format!("attachment {}: content does not match its size or SHA-256", a.name);
        return package_problem(conn, env, case, sender, ErrorCode::AttachmentDigest, detail).await;
    }
    let problem = ctx.rules.attachment_problem(AttachmentUse::Archive, a.name.as_ref(), a.size, a.media_type.as_ref());
    if let Some((code, detail)) = problem {
        return package_problem(conn, env, case, sender, code, format!("attachment {detail}")).await;
    }
    cases::save_attachment(conn, case.id, a).await?;
    complete_if_ready(conn, ctx, case, env, now).await
}

/// Moves on when the package and every attachment it announces are stored and match.
async fn complete_if_ready(
    conn: &mut PgConnection,
    ctx: &Context,
    case: Case,
    env: &Envelope,
    now: DateTime<Utc>,
) -> Result<Effects> {
    let Some((_, manifest)) = cases::package(conn, case.id.uuid()).await? else { return Ok(Effects::default()) };
    let stored = cases::attachments(conn, case.id.uuid()).await?;
    let complete =
        manifest.iter().all(|m| stored.iter().any(|a| a.name == m.name && a.sha256 == m.sha256 && a.size == m.size));
    if !complete {
        return Ok(Effects::default());
    }
    let t = workflow::transition(&case, Event::PackageComplete, now, &*ctx.rules);
    settle(conn, &case, t, env.message_type().as_str(), None, now).await
}

/// Writes a transition: the case, its history, its timers, and the messages it sends.
async fn settle(
    conn: &mut PgConnection,
    before: &Case,
    t: Transition,
    cause: &str,
    answer: Option<(Party, &Envelope)>,
    now: DateTime<Utc>,
) -> Result<Effects> {
    match t {
        Transition::Changed(case, effects) => {
            if case.resends > before.resends {
                metrics::counter!("hub_requests_resent_total", "stage" => case.stage.name()).increment(1);
            }
            cases::save(conn, &case).await?;
            if case.stage != before.stage {
                cases::add_event(
                    conn,
                    case.id,
                    now,
                    Some(before.stage.name()),
                    case.stage.name(),
                    cause,
                    case.last_error.as_deref(),
                )
                .await?;
            }
            let replies = materialize(conn, &case, effects, now).await?;
            Ok(Effects { replies, refused: None })
        }
        Transition::Ignored(why) => {
            debug!(case_id = %before.id, why, "Event ignored.");
            Ok(Effects::default())
        }
        Transition::Refused(code, detail) => match answer {
            Some((to, env)) => Ok(refuse(to, env, code, &detail)),
            None => Ok(Effects { replies: vec![], refused: Some(code) }),
        },
    }
}

/// Turns effects into writes and messages.
async fn materialize(
    conn: &mut PgConnection,
    case: &Case,
    effects: Vec<Effect>,
    now: DateTime<Utc>,
) -> Result<Vec<Reply>> {
    let f = &case.facts;
    let to = |p: ProvinceCode, body: Body| Reply { recipient: Party::Province(p), case_id: Some(case.id), body };
    let mut replies = Vec::new();
    for effect in effects {
        match effect {
            Effect::Send { to: recipient, body } => replies.push(Reply { recipient, case_id: Some(case.id), body }),
            Effect::RequestReview => {
                let Stage::Reviewing { step, deadline } = case.stage else {
                    bail!("review requested outside a review")
                };
                let held = f.held.as_ref().context("a reviewed case is verified")?;
                let evidence = cases::evidence(conn, case.id.uuid()).await?;
                let summary = CaseSummary {
                    business: f.business,
                    student_name: f.student_name.clone(),
                    student_id: f.student_id.clone(),
                    status: held.status,
                    in_province: f.in_province,
                    in_school: f.in_school.clone(),
                    out_province: f.out_province,
                    out_school: f.out_school.clone(),
                    current_grade: held.grade,
                    target_grade: f.target_grade,
                    reason: f.reason.clone(),
                    evidence: UpTo::new(evidence).map_err(anyhow::Error::msg)?,
                    history: cases::history(conn, case.id.uuid()).await?,
                };
                let s = f.chain[step];
                replies.push(to(
                    f.province(s.side),
                    Body::ReviewRequest(ReviewRequest { step: s, deadline, case: summary }),
                ));
            }
            Effect::DeliverArchive => {
                let (record, manifest) =
                    cases::package(conn, case.id.uuid()).await?.context("delivery without a package")?;
                let deliver = ArchiveDeliver {
                    record,
                    target_grade: f.target_grade,
                    in_school: f.in_school.clone(),
                    attachment: manifest,
                };
                replies.push(to(f.in_province, Body::ArchiveDeliver(deliver)));
                for a in cases::attachments(conn, case.id.uuid()).await? {
                    replies.push(to(f.in_province, Body::ArchiveAttachment(a)));
                }
            }
            Effect::DropPackage => cases::drop_package(conn, case.id).await?,
            Effect::MoveIndex { status } => {
                let placed = store::index::Placement {
                    province: f.in_province.code(),
                    school: f.in_school.as_ref(),
                    grade: f.target_grade.as_ref(),
                    status,
                };
                store::index::move_student(conn, f.student_id.as_ref(), &placed, now).await?;
            }
            Effect::Record(r) => cases::add_step(conn, case.id, f.province(r.step.side).code(), &r).await?,
            Effect::Status => {
                let body = Body::CaseStatus(CaseStatus {
                    business: f.business,
                    state: case.state(),
                    waiting: case.waiting(),
                    changed_at: now,
                });
                replies.push(to(f.in_province, body.clone()));
                replies.push(to(f.out_province, body));
            }
            Effect::ArmResend(at) => {
                timers::schedule(conn, RESEND, Some(case.id.uuid()), at, &serde_json::json!({})).await?
            }
            Effect::ArmReminder(at, kind) => {
                timers::schedule(conn, REMINDER, Some(case.id.uuid()), at, &serde_json::json!({ "kind": kind }))
                    .await?;
            }
            Effect::Disarm => {
                timers::cancel(conn, RESEND, case.id.uuid()).await?;
                timers::cancel(conn, REMINDER, case.id.uuid()).await?;
            }
            Effect::IndexDisputed { province, student } => {
                if store::index::dispute(conn, province.code(), student.as_ref(), case.id.uuid(), now).await? {
                    tracing::warn!(case_id = %case.id, province = province.code(), "The province contradicts the national index; re-sync requested.");
                    metrics::counter!("hub_index_disputes_total").increment(1);
                    let resync = schemas::messages::IndexResync {
                        student_id: schemas::messages::Batch::new(vec![student]).map_err(anyhow::Error::msg)?,
                        reason: "转出省份校验未找到该学生,与全国学籍索引不一致,请重新上报(index.upsert 或 index.remove) / verification found no such student although the national index lists him here: report him again"
                            .parse()
                            .map_err(anyhow::Error::msg)?,
                    };
                    replies.push(Reply {
                        recipient: Party::Province(province),
                        case_id: Some(case.id),
                        body: Body::IndexResync(resync),
                    });
                }
            }
        }
    }
    Ok(replies)
}

/// A case timer fired. `Ok(None)`: the case is busy (or gone); the timer stays due.
///
/// # Errors
/// A malformed timer, or database errors.
pub async fn on_timer(
    conn: &mut PgConnection,
    ctx: &Context,
    due: &timers::Due,
    now: DateTime<Utc>,
) -> Result<Option<Vec<Reply>>> {
    let case_id = CaseId::from_uuid(due.case_id.context("a case timer names its case")?);
    let Some(case) = cases::try_lock(conn, case_id).await? else {
        // Busy: later. Gone: nothing to do, and the timer is consumed.
        return Ok(if cases::get(conn, case_id.uuid()).await?.is_some() { None } else { Some(vec![]) });
    };
    let event = match due.kind.as_str() {
        RESEND => Event::ResendDue,
        REMINDER => {
            let kind: ReminderKind = serde_json::from_value(due.payload["kind"].clone()).context("reminder kind")?;
            Event::ReminderDue(kind)
        }
        other => bail!("unknown case timer kind `{other}`"),
    };
    let t = workflow::transition(&case, event, now, &*ctx.rules);
    Ok(Some(settle(conn, &case, t, &due.kind, None, now).await?.replies))
}

/// Who acts, and why.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// The certificate's CN.
    pub name: &'a str,
    pub role: &'a str,
    pub note: &'a str,
}

/// What an operator's action did.
#[derive(Debug)]
pub enum Operated {
    Done { audit_id: i64, replies: Vec<Reply> },
    Refused(ErrorCode, String),
    NotFound,
}

/// An operator's action on a case, audited with who did it.
///
/// # Errors
/// Database errors.
pub async fn operate(
    conn: &mut PgConnection,
    ctx: &Context,
    case_id: Uuid,
    action: OperatorAction,
    by: &Actor<'_>,
    now: DateTime<Utc>,
) -> Result<Operated> {
    let Some(case) = cases::lock(conn, CaseId::from_uuid(case_id)).await? else { return Ok(Operated::NotFound) };
    let name = match action {
        OperatorAction::Resend => "resend",
        OperatorAction::Rerequest => "rerequest",
        OperatorAction::Resolve => "resolve",
    };
    match workflow::transition(&case, Event::Operator(action), now, &*ctx.rules) {
        Transition::Refused(code, detail) => Ok(Operated::Refused(code, detail)),
        Transition::Ignored(why) => Ok(Operated::Refused(ErrorCode::Unexpected, why.to_owned())),
        t => {
            let audit_id = cases::audit(conn, by.name, by.role, name, Some(case_id), by.note).await?;
            let cause = format!("operator {}: {name}", by.name);
            // In the case's history too, whether or not the stage changes.
            let stage = case.stage.name();
            cases::add_event(conn, case.id, now, Some(stage), stage, &cause, Some(by.note).filter(|n| !n.is_empty()))
                .await?;
            let replies = settle(conn, &case, t, &cause, None, now).await?.replies;
            Ok(Operated::Done { audit_id, replies })
        }
    }
}

/// `case.query`: a party asks for its case in full; anyone else is told there is no such case
/// among its own (so case ids reveal nothing to other provinces).
///
/// # Errors
/// Database errors.
pub async fn query(conn: &mut PgConnection, env: &Envelope, sender: Party) -> Result<Effects> {
    let Some(case_id) = env.case_id else {
        return Ok(refuse(sender, env, ErrorCode::CaseNotFound, "a case query needs caseId"));
    };
    let case = match cases::get(conn, case_id.uuid()).await? {
        Some(c) if [c.facts.in_province, c.facts.out_province].iter().any(|p| Party::Province(*p) == sender) => c,
        _ => return Ok(refuse(sender, env, ErrorCode::CaseNotFound, &format!("no case {case_id} of {sender}"))),
    };
    let row = cases::summary(conn, case_id.uuid()).await?.context("a case has its row")?;
    let text = |s: &str| schemas::ids::Text::parse(&s.chars().take(500).collect::<String>()).ok();
    let change = cases::events(conn, case_id.uuid())
        .await?
        .into_iter()
        .filter_map(|e| {
            Some(schemas::messages::StageChange {
                at: e.at,
                from: e.from_stage.as_deref().and_then(text),
                to: text(&e.to_stage)?,
                cause: text(&e.cause)?,
                detail: e.detail.as_deref().and_then(text),
            })
        })
        .collect();
    let f = &case.facts;
    let detail = schemas::messages::CaseDetail {
        business: f.business,
        state: case.state(),
        waiting: case.waiting(),
        deadline: row.deadline,
        student_name: f.student_name.clone(),
        student_id: f.student_id.clone(),
        in_province: f.in_province,
        in_school: f.in_school.clone(),
        out_province: f.out_province,
        out_school: f.out_school.clone(),
        target_grade: f.target_grade,
        reason: f.reason.clone(),
        opened_at: row.created_at,
        closed_at: row.closed_at,
        attempts: case.attempts,
        last_error: case.last_error.as_deref().and_then(text),
        decision: cases::history(conn, case_id.uuid()).await?,
        change,
    };
    Ok(Effects {
        replies: vec![Reply { recipient: sender, case_id: Some(case_id), body: Body::CaseDetail(detail) }],
        refused: None,
    })
}

/// `enrollment.permit`: a province grants or revokes its schools' enrollment permission.
///
/// # Errors
/// Database errors.
pub async fn permit(
    conn: &mut PgConnection,
    sender: ProvinceCode,
    p: &schemas::messages::EnrollmentPermit,
) -> Result<Effects> {
    let (mut granted, mut revoked, mut refused) = (0, 0, Vec::new());
    for school in &p.grant {
        match schools::get(conn, school.as_ref()).await? {
            Some(s) if s.active && s.province == sender.code() => {
                permissions::grant(conn, school.as_ref(), sender.code()).await?;
                granted += 1;
            }
            _ => refused.push(school.clone()),
        }
    }
    for school in &p.revoke {
        if permissions::revoke(conn, school.as_ref(), sender.code()).await? {
            revoked += 1;
        }
    }
    Ok(Effects {
        replies: vec![Reply {
            recipient: Party::Province(sender),
            case_id: None,
            body: Body::EnrollmentPermitted(schemas::messages::EnrollmentPermitted { granted, revoked, refused }),
        }],
        refused: None,
    })
}
