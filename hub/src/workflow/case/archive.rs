//! The archive hand-over (调档), two-phase: the out-province sends the package (record and
//! manifest) and each file; the hub checks them and, once the package is complete, delivers it;
//! the in-province confirms the import; only then is the out-province told to commit the
//! transfer-out (DESIGN §7). No student is ever missing from both provinces.

use chrono::{DateTime, Utc};

use super::*;

/// A problem with what the out-province sent: the case keeps waiting (the resend timer asks
/// again), the error is noted for operators, and the out-province is told.
fn noted(case: &Case, code: ErrorCode, detail: String) -> Transition {
    let mut c = case.clone();
    c.last_error = Some(format!("{}: {detail}", code.code()));
    Transition::Changed(Box::new(c), vec![Effect::Refuse { code, detail }])
}

/// Whether the package's record, manifest and every file it announces have arrived.
fn complete(arriving: &Arriving) -> Option<Package> {
    let (record, manifest) = (arriving.record.as_ref()?, arriving.manifest.as_ref()?);
    let all = manifest
        .iter()
        .all(|m| arriving.received.iter().any(|r| r.name == m.name && r.sha256 == m.sha256 && r.size == m.size));
    all.then(|| Package { record: record.clone(), manifest: manifest.clone() })
}

/// Moves on to the delivery when the package is complete; otherwise keeps what arrived.
fn progress(
    mut case: Case,
    student: &HeldStudent,
    arriving: Arriving,
    now: DateTime<Utc>,
    rules: &dyn Rules,
    effects: Vec<Effect>,
) -> Transition {
    match complete(&arriving) {
        Some(package) => {
            let mut effects = effects;
            effects.push(deliver(&case, &package));
            let stage = HeldStage::Delivering { package };
            enter_automated(case, Phase::Held { student: student.clone(), stage }, now, rules, effects)
        }
        None => {
            case.phase = Phase::Held { student: student.clone(), stage: HeldStage::ArchiveRequested { arriving } };
            Transition::Changed(Box::new(case), effects)
        }
    }
}

/// The held student and what arrived so far, while the archive is requested. Every other stage
/// is written out: a new stage is a compile error here until it decides whether it takes
/// archive files.
fn receiving(case: &Case) -> Option<(&HeldStudent, &Arriving)> {
    let Phase::Held { student, stage } = &case.phase else { return None };
    match stage {
        HeldStage::ArchiveRequested { arriving } => Some((student, arriving)),
        HeldStage::Reviewing { .. } => None,
        HeldStage::Releasing { .. } => None,
        HeldStage::Delivering { .. } => None,
        HeldStage::Committing => None,
    }
}

/// The held student and what arrived so far, when `what` may be taken in: it comes from the
/// out-province (or is refused) while the archive is requested (or is ignored as `ignored`).
fn intake<'c>(
    case: &'c Case,
    from: Party,
    what: &str,
    ignored: &'static str,
) -> Result<(&'c HeldStudent, &'c Arriving), Transition> {
    if from != Party::Province(case.facts.out_province) {
        return Err(Transition::Refused(ErrorCode::NotYourStep, format!("{what} comes from the out-province")));
    }
    receiving(case).ok_or(Transition::Ignored(ignored))
}

/// A part of the archive package as it arrives.
pub(super) enum Part<'a> {
    /// `archive.package`: the record and the manifest of its attachments.
    Package(&'a ArchivePackage),
    /// `archive.attachment`: one file of the package.
    Attachment(&'a Attachment),
}

pub(super) fn on_part(case: &Case, from: Party, part: Part<'_>, now: DateTime<Utc>, rules: &dyn Rules) -> Transition {
    let (what, ignored) = match part {
        Part::Package(_) => ("the archive package", "archive package outside the archive request"),
        Part::Attachment(_) => ("an archive attachment", "archive attachment outside the archive request"),
    };
    let (student, arriving) = match intake(case, from, what, ignored) {
        Ok(receiving) => receiving,
        Err(refused) => return refused,
    };
    let mut arriving = arriving.clone();
    match part {
        Part::Package(package) => {
            if package.record.student_id != case.facts.student_id {
                let detail =
                    format!("the package is for {}, the case for {}", package.record.student_id, case.facts.student_id);
                return noted(case, ErrorCode::Unexpected, detail);
            }
            if let Some((code, detail)) =
                package.attachment.iter().find_map(|a| rules.file_problem(FileUse::Archive, a))
            {
                return noted(case, code, format!("attachment {detail}"));
            }
            arriving.record = Some(package.record.clone());
            arriving.manifest = Some(package.attachment.clone());
            progress(case.clone(), student, arriving, now, rules, vec![])
        }
        Part::Attachment(attachment) => {
            if attachment.check().is_err() {
                let detail = format!("attachment {}: content does not match its size or SHA-256", attachment.name);
                return noted(case, ErrorCode::AttachmentDigest, detail);
            }
            let reference = attachment.reference();
            if let Some((code, detail)) = rules.file_problem(FileUse::Archive, &reference) {
                return noted(case, code, format!("attachment {detail}"));
            }
            arriving.received.retain(|r| r.name != reference.name);
            arriving.received.push(reference);
            progress(case.clone(), student, arriving, now, rules, vec![Effect::KeepArchiveFile(attachment.clone())])
        }
    }
}

pub(super) fn on_imported(
    case: &Case,
    from: Party,
    result: &ArchiveImported,
    now: DateTime<Utc>,
    rules: &dyn Rules,
) -> Transition {
    const OUTSIDE: &str = "import result outside the delivery";
    let Some((student, stage)) = case.phase.held() else { return Transition::Ignored(OUTSIDE) };
    match stage {
        HeldStage::Delivering { .. } if from != Party::Province(case.facts.in_province) => not_your_step(case, from),
        HeldStage::Delivering { .. } => match result {
            ArchiveImported::Imported(_) => {
                // Only now may the out-province let the student go.
                let effects = vec![archive_commit(case)];
                let phase = Phase::Held { student: student.clone(), stage: HeldStage::Committing };
                enter_automated(case.clone(), phase, now, rules, effects)
            }
            ArchiveImported::Failed(failure) => {
                let mut c = case.clone();
                c.last_error = Some(format!("import failed: {}", failure.reason));
                // Delivered again when the resend timer fires, or by an operator.
                let at = resend_at(&c, now, rules);
                Transition::Changed(Box::new(c), vec![Effect::Arm { timer: CaseTimer::Resend, at }])
            }
        },
        HeldStage::Reviewing { .. } | HeldStage::Releasing { .. } => Transition::Ignored(OUTSIDE),
        HeldStage::ArchiveRequested { .. } | HeldStage::Committing => Transition::Ignored(OUTSIDE),
    }
}

pub(super) fn on_committed(case: &Case, from: Party, now: DateTime<Utc>) -> Transition {
    const OUTSIDE: &str = "commit confirmation outside the commit";
    let f = &case.facts;
    let Some((student, stage)) = case.phase.held() else { return Transition::Ignored(OUTSIDE) };
    match stage {
        HeldStage::Committing if from == Party::Province(f.out_province) => {
            let moved = Effect::MoveIndex {
                province: f.in_province,
                school: f.in_school.clone(),
                grade: f.target_grade,
                status: status_on_arrival(f.business, student.status),
            };
            close(case.clone(), Outcome::Completed, None, None, now, vec![moved])
        }
        HeldStage::Committing => not_your_step(case, from),
        HeldStage::Reviewing { .. } | HeldStage::Releasing { .. } => Transition::Ignored(OUTSIDE),
        HeldStage::ArchiveRequested { .. } | HeldStage::Delivering { .. } => Transition::Ignored(OUTSIDE),
    }
}
