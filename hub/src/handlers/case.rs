//! Case messages: applications, verification results, reviewers' decisions, cancellation,
//! release, the archive hand-over; the case timers, operators' actions and queries. Each runs in
//! the unit of work of its cause, with the case row locked: the handler gathers facts, the
//! workflow ([`crate::workflow::case`]) decides, the handler writes.

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use schemas::ids::ProvinceCode;
use schemas::messages::{
    Application, ArchiveDeliver, Attachment, Body, Business, CaseAccepted, CaseState, ReminderKind, ReviewRequest, UpTo,
};
use schemas::{CaseId, Envelope, ErrorCode, Party};
use sqlx::PgConnection;
use tracing::debug;
use uuid::Uuid;

use super::{Effects, refuse};
use crate::context::Context;
use crate::outgoing::Reply;
use crate::store::timers::Owner;
use crate::store::{self, cases, orgcodes, permissions, register, schools, timers};
use crate::workflow::case::{
    self as workflow, Admission, Case, CaseTimer, Effect, Event, OpenBusiness, OperatorAction, SchoolFact, Transition,
};

/// The owner name of case timers and of cases in the register of open business.
pub const OWNER: &str = "case";

/// Namespace of case ids derived from applications.
const CASE_NAMESPACE: Uuid = Uuid::from_u128(0x3c2b_91d4_5e6f_4a70_8b1c_2d3e_4f50_6172);

fn owner(case: CaseId) -> Owner<'static> {
    Owner { business: OWNER, id: case.uuid() }
}

/// A case timer's slot (one timer per slot) and stored kind.
fn slot_and_kind(t: CaseTimer) -> (&'static str, &'static str) {
    match t {
        CaseTimer::Resend => ("case.resend", "case.resend"),
        CaseTimer::Reminder(ReminderKind::Upcoming) => ("case.reminder", "case.reminder.upcoming"),
        CaseTimer::Reminder(ReminderKind::Due) => ("case.reminder", "case.reminder.due"),
        CaseTimer::Reminder(ReminderKind::Overdue) => ("case.reminder", "case.reminder.overdue"),
    }
}

/// A stored kind read back; `None` for one this build does not know.
pub fn timer_of(kind: &str) -> Option<CaseTimer> {
    [
        CaseTimer::Resend,
        CaseTimer::Reminder(ReminderKind::Upcoming),
        CaseTimer::Reminder(ReminderKind::Due),
        CaseTimer::Reminder(ReminderKind::Overdue),
    ]
    .into_iter()
    .find(|t| slot_and_kind(*t).1 == kind)
}

fn school_fact(s: schools::School) -> SchoolFact {
    SchoolFact::new(s.name, s.province, s.active, s.code_usable_from)
}

/// The applying school as admission judges it: with the revocations about it (G-7).
async fn receiving_school(conn: &mut PgConnection, code: &str) -> Result<Option<SchoolFact>> {
    let Some(s) = schools::get(conn, code).await? else { return Ok(None) };
    let (revoking, revoking_stages) = orgcodes::revoking(conn, code).await?;
    let revoked_stages = orgcodes::revoked_stages(conn, code).await?;
    Ok(Some(SchoolFact { revoking, revoking_stages, revoked_stages, ..school_fact(s) }))
}

/// An application (转学申请 / 就学申请): the facts gathered, admitted or refused, then a case
/// opens (in the register of open business first: one at a time per student) and verification
/// starts.
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
    let in_school = receiving_school(conn, app.school.as_ref()).await?;
    let enrollment_permitted =
        business == Business::Enrollment && permissions::is_permitted(conn, app.school.as_ref()).await?;
    let entry = store::index::by_student_id(conn, app.student_id.as_ref()).await?;
    let out_school = match &entry {
        Some(e) => schools::get(conn, e.summary.school.as_ref()).await?.map(school_fact),
        None => None,
    };
    let open = match register::holder(conn, app.student_id.as_ref()).await? {
        Some(h) => {
            let state = cases::state_of(conn, h.business_id).await?;
            Some(OpenBusiness {
                business: h.business,
                id: h.business_id,
                cancelling: state == Some(CaseState::Cancelling),
            })
        }
        None => None,
    };
    let problem =
        store::problems::open_kinds(conn, &[app.student_id.to_string()]).await?.get(app.student_id.as_ref()).copied();
    let admission = Admission {
        business,
        sender,
        application: app,
        in_school,
        enrollment_permitted,
        entry: entry.as_ref(),
        out_school,
        open,
        problem,
        now,
    };
    let facts = match workflow::admit(&admission, &*ctx.rules) {
        Ok(facts) => facts,
        Err((code, detail)) => return Ok(refuse(from, env, code, &detail)),
    };

    let case_id = CaseId::from_uuid(Uuid::new_v5(&CASE_NAMESPACE, env.message_id.uuid().as_bytes()));
    let schools = vec![facts.in_school.to_string(), facts.out_school.to_string()];
    // A division's revocation waits for the business of its schools too.
    let divisions = orgcodes::departments_of(conn, &schools).await?;
    let held = register::Entry {
        student_id: facts.student_id.as_ref(),
        business: business_name(business),
        business_id: case_id.uuid(),
        schools,
        divisions,
    };
    if !register::open(conn, &held).await? {
        // A concurrent application for the same student committed since the facts were read.
        return Ok(refuse(
            from,
            env,
            ErrorCode::InFlight,
            "another application for this student was accepted just now",
        ));
    }
    let (case, effects) = workflow::open(case_id, facts, now, &*ctx.rules);
    cases::insert(conn, &case, env.message_id.uuid()).await?;
    cases::save_evidence(conn, case_id, app.evidence.items()).await?;
    cases::add_event(conn, case_id, now, None, case.phase.name(), env.message_type().as_str(), None).await?;
    let mut replies = vec![Reply {
        recipient: from,
        case_id: Some(case_id),
        body: Body::CaseAccepted(CaseAccepted { business, state: case.state(), waiting: case.waiting() }),
    }];
    let rest = materialize(conn, &case, effects, None, now).await?;
    replies.extend(rest.replies);
    Ok(Effects { replies, refused: None })
}

/// The register's name of a case's business.
fn business_name(b: Business) -> &'static str {
    match b {
        Business::Transfer => "transfer",
        Business::Enrollment => "enrollment",
    }
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
        Body::ArchivePackage(package) => Event::PackageReceived { from: sender, package },
        Body::ArchiveAttachment(attachment) => Event::AttachmentReceived { from: sender, attachment },
        Body::ArchiveImported(result) => Event::Imported { from: sender, result },
        Body::ArchiveCommitted(_) => Event::Committed { from: sender },
        other => anyhow::bail!("{} is not a case message", other.message_type()),
    };
    let t = workflow::transition(&case, event, now, &*ctx.rules);
    settle(conn, &case, t, env.message_type().as_str(), Some((sender, env)), now).await
}

/// Writes a transition: the case, its history, and its effects; returns the messages to send.
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
                metrics::counter!("hub_requests_resent_total", "stage" => case.phase.name()).increment(1);
            }
            let change = (case.phase.name() != before.phase.name()).then(|| cases::StageChange {
                at: now,
                from: Some(before.phase.name()),
                to: case.phase.name(),
                cause,
                detail: case.last_error.as_deref(),
            });
            cases::save(conn, &case, change).await?;
            materialize(conn, &case, effects, answer, now).await
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

/// What a transition's `Disarm`s and `Arm`s leave of a case's timers, written in one
/// statement: whether the timers it had go, and the ones armed since (one per slot, the last).
#[derive(Default)]
struct TimerPlan {
    disarm: bool,
    arms: Vec<(&'static str, &'static str, DateTime<Utc>)>,
}

/// Carries out the workflow's effects: writes, and the messages to send. Binary content kept
/// beside the case (evidence, archive files) is copied in here, by name and checked digest.
async fn materialize(
    conn: &mut PgConnection,
    case: &Case,
    effects: Vec<Effect>,
    answer: Option<(Party, &Envelope)>,
    now: DateTime<Utc>,
) -> Result<Effects> {
    let to = |p: ProvinceCode, body: Body| Reply { recipient: Party::Province(p), case_id: Some(case.id), body };
    let mut out = Effects::default();
    let mut released = false;
    let mut timer_plan = TimerPlan::default();
    for effect in effects {
        match effect {
            Effect::Send { to: recipient, body } => out.replies.push(to(recipient, body)),
            Effect::RequestReview { to: recipient, request } => {
                let stored = cases::evidence(conn, case.id.uuid()).await?;
                let mut evidence = Vec::with_capacity(request.evidence.len());
                for r in &request.evidence {
                    let file = stored.iter().find(|a| a.reference() == *r).cloned();
                    evidence.push(file.with_context(|| format!("evidence {} of case {} is missing", r.name, case.id))?);
                }
                let mut summary = request.case;
                summary.evidence = UpTo::new(evidence).map_err(anyhow::Error::msg)?;
                // Routed by the school's supervising department as it is now, when the step
                // starts (domain.md D.6).
                let school = match request.step.side {
                    schemas::messages::Side::In => &case.facts.in_school,
                    schemas::messages::Side::Out => &case.facts.out_school,
                };
                let department = orgcodes::department_of(conn, school.as_ref()).await?;
                let body = ReviewRequest { step: request.step, deadline: request.deadline, department, case: summary };
                out.replies.push(to(recipient, Body::ReviewRequest(body)));
            }
            Effect::DeliverArchive { to: recipient, package, target_grade, in_school } => {
                let files = package.manifest.clone();
                let deliver =
                    ArchiveDeliver { record: package.record, target_grade, in_school, attachment: package.manifest };
                out.replies.push(to(recipient, Body::ArchiveDeliver(deliver)));
                for r in files {
                    let file: Attachment = cases::archive_file(conn, case.id.uuid(), r.name.as_ref())
                        .await?
                        .filter(|a| a.reference() == r)
                        .with_context(|| format!("archive file {} of case {} is missing", r.name, case.id))?;
                    out.replies.push(to(recipient, Body::ArchiveAttachment(file)));
                }
            }
            Effect::KeepArchiveFile(a) => cases::save_attachment(conn, case.id, &a).await?,
            Effect::ForgetArchiveFiles => cases::drop_attachments(conn, case.id).await?,
            Effect::MoveIndex { province, school, grade, status } => {
                let placed = store::index::Placement {
                    province: province.code(),
                    school: school.as_ref(),
                    grade: grade.as_ref(),
                    status,
                };
                store::index::move_student(conn, case.facts.student_id.as_ref(), &placed, now).await?;
            }
            Effect::Record { province, record } => cases::add_step(conn, case.id, province.code(), &record).await?,
            Effect::Refuse { code, detail } => {
                if let Some((sender, env)) = answer {
                    let refused = refuse(sender, env, code, &detail);
                    out.replies.extend(refused.replies);
                }
                out.refused = Some(code);
            }
            // Timers touch nothing the other effects read: set once, after them.
            Effect::Arm { timer, at } => {
                let (slot, kind) = slot_and_kind(timer);
                timer_plan.arms.retain(|a| a.0 != slot);
                timer_plan.arms.push((slot, kind, at));
            }
            Effect::Disarm => {
                timer_plan.disarm = true;
                timer_plan.arms.clear();
            }
            Effect::EndOpenBusiness => {
                register::close(conn, business_name(case.facts.business), case.id.uuid()).await?;
                released = true;
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
                    out.replies.push(to(province, Body::IndexResync(resync)));
                }
            }
        }
    }
    if timer_plan.disarm || !timer_plan.arms.is_empty() {
        timers::set(conn, owner(case.id), timer_plan.disarm, &timer_plan.arms).await?;
    }
    if released {
        // After every effect (the index move included): a revocation this case blocked last
        // executes in this transaction.
        let provinces = [case.facts.in_province, case.facts.out_province];
        out.replies.extend(super::orgcode::settle(conn, &provinces, now).await?);
    }
    Ok(out)
}

/// A case timer fired. `Ok(None)`: the case is busy; the timer stays due.
///
/// # Errors
/// Database errors.
pub async fn on_timer(
    conn: &mut PgConnection,
    ctx: &Context,
    case_id: CaseId,
    timer: CaseTimer,
    now: DateTime<Utc>,
) -> Result<Option<Vec<Reply>>> {
    let Some(case) = cases::try_lock(conn, case_id).await? else {
        // Busy: later. Gone: nothing to do, and the timer is consumed.
        return Ok(if cases::get(conn, case_id.uuid()).await?.is_some() { None } else { Some(vec![]) });
    };
    let event = match timer {
        CaseTimer::Resend => Event::ResendDue,
        CaseTimer::Reminder(kind) => Event::ReminderDue(kind),
    };
    let t = workflow::transition(&case, event, now, &*ctx.rules);
    Ok(Some(settle(conn, &case, t, slot_and_kind(timer).1, None, now).await?.replies))
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
    match workflow::transition(&case, Event::Operator(action), now, &*ctx.rules) {
        Transition::Refused(code, detail) => Ok(Operated::Refused(code, detail)),
        Transition::Ignored(why) => Ok(Operated::Refused(ErrorCode::Unexpected, why.to_owned())),
        t => {
            let name = action.as_str();
            let audit_id = cases::audit(conn, by.name, by.role, name, Some(case_id), by.note).await?;
            let cause = format!("operator {}: {name}", by.name);
            // In the case's history too, whether or not the stage changes.
            let stage = case.phase.name();
            let note = Some(by.note).filter(|n| !n.is_empty());
            cases::add_event(conn, case.id, now, Some(stage), stage, &cause, note).await?;
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
        deadline: case.phase.deadline(),
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
        decision: case.decisions.clone(),
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
