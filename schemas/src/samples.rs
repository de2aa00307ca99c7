//! One valid sample envelope for every message type, for examples, tests and documentation.
//! The students, schools and people are invented; identifiers are valid by construction.

use chrono::{DateTime, NaiveDate, Utc};

use crate::envelope::{CaseId, Envelope, MessageId, Party};
use crate::error::ErrorCode;
use crate::ids::{Grade, IdDocument, PersonName, ProvinceCode, ResidentId, SchoolCode, Sex, StudentId, Text};
use crate::messages::*;

fn parse<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("sample values are valid")
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("sample timestamp").with_timezone(&Utc)
}

fn day(s: &str) -> NaiveDate {
    s.parse().expect("sample date")
}

fn shandong() -> Party {
    Party::Province(parse::<ProvinceCode>("37"))
}

fn sichuan() -> Party {
    Party::Province(parse::<ProvinceCode>("51"))
}

fn case_id() -> CaseId {
    parse("0193a5c2-7b1e-7c3d-9f10-2a4b6c8d0e1f")
}

fn text(s: &str) -> Text {
    parse(s)
}

fn student() -> StudentId {
    parse("G510104201605120358")
}

fn name() -> PersonName {
    parse("李明")
}

fn evidence() -> Attachment {
    Attachment::new(parse("户籍证明.pdf"), parse("application/pdf"), b"%PDF-1.4 sample".to_vec())
}

fn record() -> StudentRecord {
    StudentRecord {
        student_id: student(),
        name: name(),
        sex: Sex::Male,
        birth_date: day("2016-05-12"),
        id_document: IdDocument::Resident(parse::<ResidentId>("510104201605120358")),
        ethnicity: Some(text("01")),
        enrolled: parse("2022-09"),
        school: parse::<SchoolCode>("3151000123"),
        grade: parse::<Grade>("14"),
        status: StudentStatus::Enrolled,
        family: vec![FamilyMember {
            relation: text("母亲"),
            name: parse("王芳"),
            id_document: Some(IdDocument::Resident(parse("44010620110819019X"))),
            phone: None,
        }],
        study: vec![StudyPeriod {
            from: day("2022-09-01"),
            to: None,
            school_name: text("成都市锦江区示范小学"),
            school: Some(parse("3151000123")),
        }],
        change: vec![RecordChange { on: day("2023-02-20"), kind: text("转班"), remark: None }],
    }
}

fn summary() -> StudentSummary {
    StudentSummary {
        student_id: student(),
        name: name(),
        sex: Sex::Male,
        birth_date: day("2016-05-12"),
        id_document: IdDocument::Resident(parse("510104201605120358")),
        school: parse("3151000123"),
        grade: parse("14"),
        status: StudentStatus::Enrolled,
        problem_record: false,
        open_business: false,
        changed_at: at("2026-11-20T08:30:00Z"),
        problem_kind: None,
        registered_at: Some(at("2022-09-05T02:00:00Z")),
        key_data_changed_at: None,
    }
}

fn members(states: [MemberState; 2]) -> UpTo<ProblemMember, MEMBERS_MAX> {
    let sichuan = ProblemMember {
        province: parse("51"),
        school: parse("3151000123"),
        student_id: student(),
        name: name(),
        registered_at: at("2022-09-05T02:00:00Z"),
        key_data_changed_at: None,
        state: states[0],
        comment: None,
    };
    let shandong = ProblemMember {
        province: parse("37"),
        school: parse("3137000456"),
        student_id: parse("G370202201605120354"),
        name: name(),
        registered_at: at("2023-03-01T02:00:00Z"),
        key_data_changed_at: Some(at("2024-05-06T07:00:00Z")),
        state: states[1],
        comment: None,
    };
    UpTo::new(vec![shandong, sichuan]).expect("two members")
}

fn approvals() -> UpTo<Approval, APPROVALS_MAX> {
    let approval = |level, unit: &str, reviewer: &str, when: &str| Approval {
        level,
        unit: text(unit),
        reviewer: parse(reviewer),
        approved_at: at(when),
        opinion: Some(text("同意。")),
    };
    UpTo::new(vec![
        approval(Level::School, "青岛市市南区实验小学", "赵老师", "2026-11-24T09:00:00Z"),
        approval(Level::Bureau, "青岛市市南区教育局", "钱科长", "2026-11-25T09:00:00Z"),
    ])
    .expect("two approvals")
}

fn photo() -> Attachment {
    Attachment::new(parse("户口本.jpg"), parse("image/jpeg"), vec![0xFF, 0xD8, 0xFF, 0xE0])
}

fn group_id() -> CaseId {
    parse("0193a5c2-7b1e-7c3d-9f10-3a4b6c8d0e2f")
}

fn change_id() -> CaseId {
    parse("0193a5c2-7b1e-7c3d-9f10-4a4b6c8d0e3f")
}

/// 四川 revokes one of its schools (its students have moved, its business has ended).
fn revoked_school() -> OrgRecord {
    OrgRecord {
        action: ChangeAction::Revoke,
        department: None,
        school: Some(SchoolUnit {
            code: parse("3151000123"),
            name: text("成都市武侯区示范小学"),
            department: parse("510107000000"),
            stage: UpTo::new(vec![crate::ids::Stage::Primary]).expect("one stage"),
            code_usable_from: None,
        }),
        stage: None,
    }
}

fn step_record() -> StepRecord {
    StepRecord {
        step: parse("IN_SCHOOL"),
        decision: Decision::Approve,
        unit: text("青岛市市南区实验小学"),
        reviewer: parse("赵老师"),
        opinion: text("同意转入。"),
        decided_at: at("2026-11-21T09:00:00Z"),
    }
}

/// The sample body of `t`.
pub fn body(t: MessageType) -> Body {
    match t {
        MessageType::IndexUpsert => {
            Body::IndexUpsert(IndexUpsert { student: Batch::new(vec![summary()]).expect("one item") })
        }
        MessageType::IndexRemove => Body::IndexRemove(IndexRemove {
            entry: Batch::new(vec![IndexRemoval {
                student_id: parse("J440106201509170069"),
                changed_at: at("2026-11-20T08:31:00Z"),
            }])
            .expect("one item"),
        }),
        MessageType::IndexResult => Body::IndexResult(IndexResult { applied: 1, stale: 0, conflicting: 0 }),
        MessageType::IndexResync => Body::IndexResync(IndexResync {
            student_id: Batch::new(vec![student()]).expect("one"),
            reason: text("转出省份校验未找到该学生,与全国学籍索引不一致,请重新同步。"),
        }),
        MessageType::LookupRequest => Body::LookupRequest(LookupRequest {
            name: name(),
            key: LookupKey::StudentId(student()),
            requested_by: Some(parse("张老师")),
        }),
        MessageType::LookupResult => Body::LookupResult(LookupResult {
            student: Some(LookupMatch {
                student_id: student(),
                name: name(),
                province: parse("51"),
                school: parse("3151000123"),
                grade: parse("14"),
                status: StudentStatus::Suspended,
                problem_record: true,
                transfer_eligible: false,
                reason: vec![ErrorCode::StatusIneligible, ErrorCode::ProblemRecord],
                changed_at: at("2026-11-20T08:30:00Z"),
                problem_kind: Some(ProblemKind::IdDuplicate),
            }),
        }),
        MessageType::TransferApply => Body::TransferApply(Application {
            school: parse("3137000456"),
            student_name: name(),
            student_id: student(),
            target_grade: parse("14"),
            reason: text("随父母工作调动迁居青岛。"),
            evidence: UpTo::new(vec![evidence()]).expect("one item"),
        }),
        MessageType::EnrollmentApply => Body::EnrollmentApply(Application {
            school: parse("3137000789"),
            student_name: parse("陈静"),
            student_id: parse("G440106201011230028"),
            target_grade: parse("31"),
            reason: text("已被本校录取(中考成绩附后)。"),
            evidence: UpTo::new(vec![Attachment::new(
                parse("录取通知书.jpg"),
                parse("image/jpeg"),
                vec![0xff, 0xd8, 0xff, 0xe0],
            )])
            .expect("one item"),
        }),
        MessageType::EnrollmentPermit => Body::EnrollmentPermit(EnrollmentPermit {
            grant: vec![parse("3137000789"), parse("3137000790")],
            revoke: vec![parse("3137000791")],
        }),
        MessageType::EnrollmentPermitted => Body::EnrollmentPermitted(EnrollmentPermitted {
            granted: 2,
            revoked: 1,
            refused: vec![parse("3144000001")],
        }),
        MessageType::VerifyRequest => Body::VerifyRequest(VerifyRequest {
            business: Business::Transfer,
            student_name: name(),
            student_id: student(),
            requesting_province: parse("37"),
            requesting_school: parse("3137000456"),
            target_grade: parse("14"),
        }),
        MessageType::VerifyResult => Body::VerifyResult(VerifyResult::Held(HeldStudent {
            school: parse("3151000123"),
            grade: parse("14"),
            status: StudentStatus::Enrolled,
            sex: Sex::Male,
            birth_date: day("2016-05-12"),
            id_document: IdDocument::Resident(parse("510104201605120358")),
        })),
        MessageType::ReviewRequest => Body::ReviewRequest(ReviewRequest {
            step: parse("OUT_SCHOOL"),
            deadline: day("2026-12-07"),
            department: Some(parse("510104000000")),
            case: CaseSummary {
                business: Business::Transfer,
                student_name: name(),
                student_id: student(),
                status: StudentStatus::Enrolled,
                in_province: parse("37"),
                in_school: parse("3137000456"),
                out_province: parse("51"),
                out_school: parse("3151000123"),
                current_grade: parse("14"),
                target_grade: parse("14"),
                reason: text("随父母工作调动迁居青岛。"),
                evidence: UpTo::new(vec![evidence()]).expect("one item"),
                history: vec![step_record()],
            },
        }),
        MessageType::ReviewDecision => Body::ReviewDecision(ReviewDecision {
            step: parse("OUT_SCHOOL"),
            decision: Decision::Approve,
            unit: text("成都市锦江区示范小学"),
            reviewer: parse("孙老师"),
            opinion: text("情况属实,同意转出。"),
        }),
        MessageType::CaseAccepted => Body::CaseAccepted(CaseAccepted {
            business: Business::Transfer,
            state: CaseState::WaitingVerification,
            waiting: Some(Waiting { party: parse("prov-51"), step: None, since: at("2026-11-21T08:00:00Z") }),
        }),
        MessageType::CaseStatus => Body::CaseStatus(CaseStatus {
            business: Business::Transfer,
            state: CaseState::UnderReview,
            waiting: Some(Waiting {
                party: parse("prov-51"),
                step: Some(parse("OUT_SCHOOL")),
                since: at("2026-11-23T10:00:00Z"),
            }),
            changed_at: at("2026-11-23T10:00:00Z"),
        }),
        MessageType::CaseReminder => Body::CaseReminder(CaseReminder {
            step: parse("OUT_SCHOOL"),
            deadline: day("2026-12-07"),
            kind: ReminderKind::Upcoming,
        }),
        MessageType::CaseCancel => Body::CaseCancel(CaseCancel { reason: text("家长决定暂不转学。") }),
        MessageType::CaseRelease => Body::CaseRelease(CaseRelease { reason: ReleaseReason::Cancelled }),
        MessageType::CaseReleased => Body::CaseReleased(CaseReleased {}),
        MessageType::CaseClosed => Body::CaseClosed(CaseClosed {
            outcome: Outcome::Completed,
            code: None,
            remark: None,
            next: Some(NextStep::ClassAssignment),
        }),
        MessageType::CaseQuery => Body::CaseQuery(CaseQuery {}),
        MessageType::CaseDetail => Body::CaseDetail(CaseDetail {
            business: Business::Transfer,
            state: CaseState::UnderReview,
            waiting: Some(Waiting {
                party: parse("prov-51"),
                step: Some(parse("OUT_SCHOOL")),
                since: at("2026-11-23T10:00:00Z"),
            }),
            deadline: Some(day("2026-12-07")),
            student_name: name(),
            student_id: student(),
            in_province: parse("37"),
            in_school: parse("3137000456"),
            out_province: parse("51"),
            out_school: parse("3151000123"),
            target_grade: parse("14"),
            reason: text("随父母工作调动迁居青岛。"),
            opened_at: at("2026-11-21T08:00:00Z"),
            closed_at: None,
            attempts: 1,
            last_error: None,
            decision: vec![step_record()],
            change: vec![StageChange {
                at: at("2026-11-21T08:00:00Z"),
                from: None,
                to: text("verifying"),
                cause: text("transfer.apply"),
                detail: None,
            }],
        }),
        MessageType::ReplayRequest => Body::ReplayRequest(ReplayRequest { since: at("2026-11-21T08:00:00Z") }),
        MessageType::ReplayResult => Body::ReplayResult(ReplayResult {
            since: at("2026-11-21T08:00:00Z"),
            resent: 12,
            kept_since: Some(at("2026-11-16T00:00:00Z")),
        }),
        MessageType::ArchiveRequest => Body::ArchiveRequest(ArchiveRequest {}),
        MessageType::ArchivePackage => {
            Body::ArchivePackage(ArchivePackage { record: record(), attachment: vec![evidence().reference()] })
        }
        MessageType::ArchiveAttachment => Body::ArchiveAttachment(evidence()),
        MessageType::ArchiveDeliver => Body::ArchiveDeliver(ArchiveDeliver {
            record: record(),
            target_grade: parse("14"),
            in_school: parse("3137000456"),
            attachment: vec![evidence().reference()],
        }),
        MessageType::ArchiveImported => {
            Body::ArchiveImported(ArchiveImported::Imported(Imported { local_id: Some(text("SD2026-0001234")) }))
        }
        MessageType::ArchiveCommit => Body::ArchiveCommit(ArchiveCommit {}),
        MessageType::ArchiveCommitted => Body::ArchiveCommitted(ArchiveCommitted {}),
        MessageType::ProblemTask => Body::ProblemTask(ProblemTask {
            group_id: group_id(),
            kind: ProblemKind::IdDuplicate,
            student_id: parse("G370202201605120354"),
            reason: TaskReason::FirstTurn,
            attest_allowed: true,
            member: members([MemberState::Waiting, MemberState::Handling]),
        }),
        MessageType::ProblemResult => Body::ProblemResult(ProblemResult {
            group_id: group_id(),
            student_id: parse("G370202201605120354"),
            mode: HandlingMode::Delete,
            changed: None,
            approval: approvals(),
            evidence: UpTo::new(vec![photo()]).expect("one file"),
        }),
        MessageType::ProblemRelay => Body::ProblemRelay(ProblemRelay {
            group_id: group_id(),
            province: parse("37"),
            student_id: parse("G370202201605120354"),
            mode: HandlingMode::Delete,
            changed: None,
            approval: approvals(),
            evidence: UpTo::new(vec![photo().reference()]).expect("one file"),
        }),
        MessageType::ProblemStatus => Body::ProblemStatus(ProblemStatus {
            group_id: group_id(),
            kind: ProblemKind::IdDuplicate,
            state: GroupState::Closed,
            reprocesses: None,
            member: members([MemberState::AutoAttested, MemberState::Deleted]),
        }),
        MessageType::ProblemReprocess => Body::ProblemReprocess(ProblemReprocess {
            group_id: group_id(),
            student_id: student(),
            reason: text("佐证有误,该生已不在本校就读。"),
        }),
        MessageType::OrgcodeChange => Body::OrgcodeChange(OrgcodeChange {
            sequence: 42,
            change_id: change_id(),
            batch_id: parse("SCHOOL-2026Q4"),
            version: 1,
            kind: UnitKind::School,
            published_on: day("2026-10-08"),
            confirm_by: parse("510107000000"),
            record: revoked_school(),
        }),
        MessageType::OrgcodeConfirm => Body::OrgcodeConfirm(OrgcodeConfirm {
            change_id: change_id(),
            unit: parse("510107000000"),
            reviewer: parse("孙科长"),
        }),
        MessageType::OrgcodeStatus => Body::OrgcodeStatus(OrgcodeStatus {
            change_id: change_id(),
            sequence: 42,
            state: ChangeState::Confirmed,
            blockers: Some(Blockers { business: 1, students: 12, schools: 0, departments: 0 }),
        }),
        MessageType::OrgcodeRevoked => Body::OrgcodeRevoked(OrgcodeRevoked {
            change_id: change_id(),
            sequence: 42,
            record: revoked_school(),
            revoked_at: at("2026-11-30T10:00:00Z"),
            disable_accounts: true,
        }),
        MessageType::OrgcodeResend => Body::OrgcodeResend(OrgcodeResend { after: 40 }),
        MessageType::Error => Body::Error(ErrorReport::new(
            ErrorCode::StudentNotFound,
            Some(parse("0193a5c2-7b1e-7c3d-9f10-000000000001")),
            Some("姓名与全国学籍号不匹配 / name does not match the national student ID"),
        )),
    }
}

/// Who sends a message of type `t` to whom, in the samples: Shandong (37) initiates, Sichuan
/// (51) is the other side.
fn route(t: MessageType) -> (Party, Party) {
    use MessageType::*;
    let (sd, sc, hub) = (shandong(), sichuan(), Party::Hub);
    match t {
        IndexUpsert | IndexRemove | LookupRequest | TransferApply | EnrollmentApply | EnrollmentPermit | CaseCancel
        | CaseQuery | ArchiveImported | ReplayRequest | ProblemResult => (sd, hub),
        VerifyResult | ReviewDecision | CaseReleased | ArchivePackage | ArchiveAttachment | ArchiveCommitted
        | ProblemReprocess | OrgcodeConfirm | OrgcodeResend => (sc, hub),
        IndexResult | LookupResult | EnrollmentPermitted | CaseAccepted | CaseStatus | CaseClosed | CaseDetail
        | ArchiveDeliver | Error | ReplayResult | ProblemTask => (hub, sd),
        IndexResync | VerifyRequest | ReviewRequest | CaseReminder | CaseRelease | ArchiveRequest | ArchiveCommit
        | ProblemRelay | ProblemStatus | OrgcodeChange | OrgcodeStatus | OrgcodeRevoked => (hub, sc),
    }
}

/// The sample envelope of `t`, addressed the way that type really travels.
pub fn envelope(t: MessageType) -> Envelope {
    let (sender, recipient) = route(t);
    let seq = MessageType::ALL.iter().position(|x| *x == t).expect("every type is listed") as u128;
    let about_a_case =
        !matches!(t.family(), "index" | "lookup" | "error" | "transfer" | "enrollment" | "problem" | "orgcode");
    Envelope {
        message_id: MessageId::from_uuid(uuid::Uuid::from_u128(0x0193a5c2_7b1e_7c3d_9f10_000000000100 + seq)),
        sender,
        recipient,
        case_id: about_a_case.then(case_id),
        correlation_id: None,
        sent_at: at("2026-11-23T10:00:00.000Z"),
        body: body(t),
    }
}

/// More envelopes covering the other branch of every choice and the optional shapes the main
/// samples leave out: other document types, temporary IDs, refusals, failed imports, empty
/// results.
pub fn variants() -> Vec<Envelope> {
    let mut out = Vec::new();
    let mut add = |t: MessageType, body: Body| {
        let mut env = envelope(t);
        env.message_id =
            MessageId::from_uuid(uuid::Uuid::from_u128(0x0193a5c2_7b1e_7c3d_9f10_000000000200 + out.len() as u128));
        env.correlation_id = Some(parse("0193a5c2-7b1e-7c3d-9f10-000000000001"));
        env.body = body;
        out.push(env);
    };
    let mut hk = summary();
    hk.student_id = parse("L44162320030616008X");
    hk.id_document =
        IdDocument::NonResident { kind: crate::ids::IdDocumentType::HongKong, number: parse("A123456(7)") };
    let mut none = summary();
    none.student_id = parse("J440106201509170069");
    none.id_document = IdDocument::NoDocument { number: None };
    none.status = StudentStatus::PrimaryGraduate;
    add(MessageType::IndexUpsert, Body::IndexUpsert(IndexUpsert { student: Batch::new(vec![hk, none]).expect("two") }));
    let key = LookupKey::ResidentId(parse("510104201605120358"));
    add(MessageType::LookupRequest, Body::LookupRequest(LookupRequest { name: name(), key, requested_by: None }));
    add(MessageType::LookupResult, Body::LookupResult(LookupResult { student: None }));
    add(
        MessageType::VerifyResult,
        Body::VerifyResult(VerifyResult::Refused(Refusal {
            code: ErrorCode::InFlight,
            remark: Some(text("该生有未完成的学籍异动。\n请先办结。")),
        })),
    );
    add(
        MessageType::ArchiveImported,
        Body::ArchiveImported(ArchiveImported::Failed(ImportFailed { reason: text("班级未设置,无法导入") })),
    );
    add(
        MessageType::CaseClosed,
        Body::CaseClosed(CaseClosed {
            outcome: Outcome::Refused,
            code: Some(ErrorCode::StudentNotFound),
            remark: Some(text("转出省份校验错误")),
            next: None,
        }),
    );
    add(
        MessageType::CaseStatus,
        Body::CaseStatus(CaseStatus {
            business: Business::Enrollment,
            state: CaseState::Completed,
            waiting: None,
            changed_at: at("2026-11-30T10:00:00.123Z"),
        }),
    );
    add(
        MessageType::ArchivePackage,
        Body::ArchivePackage(ArchivePackage {
            record: StudentRecord { family: vec![], study: vec![], change: vec![], ethnicity: None, ..record() },
            attachment: vec![],
        }),
    );
    add(
        MessageType::ProblemResult,
        Body::ProblemResult(ProblemResult {
            group_id: group_id(),
            student_id: student(),
            mode: HandlingMode::Change,
            changed: Some(ChangedIdentity {
                name: None,
                id_document: Some(IdDocument::Resident(parse("510104201605120374"))),
            }),
            approval: approvals(),
            evidence: UpTo::new(vec![photo(), photo()]).expect("two files"),
        }),
    );
    add(
        MessageType::OrgcodeChange,
        Body::OrgcodeChange(OrgcodeChange {
            sequence: 1,
            change_id: change_id(),
            batch_id: parse("DIVISION-2026"),
            version: 2,
            kind: UnitKind::Division,
            published_on: day("2026-09-15"),
            confirm_by: parse("370000000000"),
            record: OrgRecord {
                action: ChangeAction::Add,
                department: Some(Department {
                    code: parse("370215000000"),
                    name: text("青岛市新区教育和体育局"),
                    level: DepartmentLevel::County,
                    parent: Some(parse("370200000000")),
                }),
                school: None,
                stage: None,
            },
        }),
    );
    add(
        MessageType::OrgcodeRevoked,
        Body::OrgcodeRevoked(OrgcodeRevoked {
            change_id: change_id(),
            sequence: 43,
            record: OrgRecord {
                action: ChangeAction::RevokeStage,
                stage: Some(crate::ids::Stage::Primary),
                ..revoked_school()
            },
            revoked_at: at("2026-11-30T10:00:00Z"),
            disable_accounts: false,
        }),
    );
    add(MessageType::Error, Body::Error(ErrorReport::new(ErrorCode::Malformed, None, None)));
    out
}
