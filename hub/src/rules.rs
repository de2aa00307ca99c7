//! The case rules of this deployment, from the settings (checked at start).

use anyhow::{Context, Result};
use chrono::Duration;
use schemas::ErrorCode;
use schemas::ids::ProvinceCode;
use schemas::messages::{AttachmentRef, Business, HandlingMode, HeldStudent, Level, StudentStatus};

use crate::config::{ProvinceRules, Settings};
use crate::workflow::calendar::Calendar;
use crate::workflow::case::{Chain, FileUse, Rules, chain_from_levels};
use crate::workflow::index::transfer_status;
use crate::workflow::problem::ProblemRules;

/// Rules built from [`Settings`].
#[derive(Debug, Clone)]
pub struct CaseRules {
    settings: Settings,
    calendar: Calendar,
    /// The rules of a province the settings do not name.
    default_province: ProvinceRules,
}

impl CaseRules {
    /// Loads the calendar file, if any.
    ///
    /// # Errors
    /// An unreadable or contradictory calendar.
    pub fn new(settings: &Settings) -> Result<CaseRules> {
        let calendar = match &settings.cases.calendar {
            Some(path) => Calendar::from_toml(
                &std::fs::read_to_string(path)
                    .with_context(|| format!("Failed to read the calendar {}", path.display()))?,
            )
            .with_context(|| format!("Invalid calendar {}", path.display()))?,
            None => Calendar::default(),
        };
        Ok(CaseRules { settings: settings.clone(), calendar, default_province: ProvinceRules::default() })
    }

    fn province(&self, p: ProvinceCode) -> &ProvinceRules {
        self.settings.provinces.get(&p).unwrap_or(&self.default_province)
    }

    /// The size limit and accepted media types of a file used so.
    pub fn file_limits(&self, used: FileUse) -> (u64, &[schemas::messages::MediaType]) {
        let c = &self.settings.cases;
        match used {
            FileUse::Evidence(Business::Transfer) => (c.transfer_attachment_max_bytes, &c.attachment_types),
            FileUse::Evidence(Business::Enrollment) => {
                (c.enrollment_attachment_max_bytes, &c.enrollment_attachment_types)
            }
            FileUse::Archive => (c.archive_attachment_max_bytes, &c.archive_attachment_types),
        }
    }

    /// The statuses that may transfer out of `province`: its own list, else the national one.
    pub fn transfer_statuses(&self, province: ProvinceCode) -> &[StudentStatus] {
        self.province(province).transfer_statuses.as_deref().unwrap_or(&self.settings.rules.transfer_statuses)
    }

    pub fn stuck_after(&self) -> Duration {
        Duration::seconds(i64::try_from(self.settings.cases.stuck_after_secs).unwrap_or(i64::MAX / 2))
    }
}

impl Rules for CaseRules {
    fn chain(&self, business: Business, in_province: ProvinceCode, out_province: ProvinceCode) -> Chain {
        let (inp, out) = (self.province(in_province), self.province(out_province));
        let chain = match business {
            Business::Transfer => chain_from_levels(&inp.transfer_in, &out.transfer_out),
            Business::Enrollment => chain_from_levels(&inp.enrollment_in, &out.enrollment_out),
        };
        chain.expect("the settings refuse an empty review chain at start")
    }

    fn file_problem(&self, used: FileUse, file: &AttachmentRef) -> Option<(ErrorCode, String)> {
        let (max, types) = self.file_limits(used);
        let name = &file.name;
        if file.size > max {
            Some((ErrorCode::AttachmentTooLarge, format!("{name}: {} bytes, limit {max}", file.size)))
        } else if !types.contains(&file.media_type) {
            Some((ErrorCode::AttachmentType, format!("{name}: type {} is not accepted", file.media_type)))
        } else {
            None
        }
    }

    fn eligible(&self, business: Business, out_province: ProvinceCode, held: &HeldStudent) -> Result<(), ErrorCode> {
        match business {
            Business::Transfer => transfer_status(self.transfer_statuses(out_province), held.status),
            // Only a junior-high graduate goes to senior high this way ([002 §19]; a primary
            // graduate transfers, [000 IV-1]).
            Business::Enrollment if held.status != StudentStatus::JuniorGraduate => Err(ErrorCode::WrongStage),
            Business::Enrollment => Ok(()),
        }
    }

    fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    fn review_days(&self) -> u32 {
        self.settings.cases.review_days
    }

    fn remind_before(&self) -> u32 {
        self.settings.cases.remind_before_days
    }

    fn resend_after(&self) -> Duration {
        Duration::seconds(i64::try_from(self.settings.cases.resend_after_secs).unwrap_or(i64::MAX / 2))
    }
}

impl ProblemRules for CaseRules {
    fn chain(&self, province: ProvinceCode, mode: HandlingMode) -> Vec<Level> {
        let p = self.province(province);
        match mode {
            HandlingMode::Attest => p.problem_attest.clone(),
            HandlingMode::Change => p.problem_change.clone(),
            HandlingMode::Delete => p.problem_delete.clone(),
        }
    }

    fn evidence_problem(&self, file: &AttachmentRef) -> Option<(ErrorCode, String)> {
        let p = &self.settings.problems;
        let name = &file.name;
        if file.size > p.evidence_max_bytes {
            Some((
                ErrorCode::AttachmentTooLarge,
                format!("{name}: {} bytes, limit {}", file.size, p.evidence_max_bytes),
            ))
        } else if !p.evidence_types.contains(&file.media_type) {
            Some((ErrorCode::AttachmentType, format!("{name}: type {} is not accepted as evidence", file.media_type)))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_files_have_their_own_limits_not_the_applicants() {
        let settings: Settings = toml::from_str(crate::config::tests::MINIMAL).unwrap();
        let rules = CaseRules::new(&settings).unwrap();
        let mb = 1024 * 1024;
        let transfer = FileUse::Evidence(Business::Transfer);
        let enrollment = FileUse::Evidence(Business::Enrollment);
        let code = |used, size: u64, media_type: &str| {
            let file = AttachmentRef {
                name: "f".parse().unwrap(),
                media_type: media_type.parse().unwrap(),
                size,
                sha256: "0".repeat(64).parse().unwrap(),
            };
            rules.file_problem(used, &file).map(|(c, _)| c)
        };
        // A 5 MB scan: too large as a transfer's evidence (1 MB) and an enrollment's (2 MB), fine
        // in an archive (8 MB).
        assert_eq!(code(transfer, 5 * mb, "application/pdf"), Some(ErrorCode::AttachmentTooLarge));
        assert_eq!(code(enrollment, 5 * mb, "image/jpeg"), Some(ErrorCode::AttachmentTooLarge));
        assert_eq!(code(FileUse::Archive, 5 * mb, "application/pdf"), None);
        assert_eq!(code(FileUse::Archive, 9 * mb, "application/pdf"), Some(ErrorCode::AttachmentTooLarge));
        // Enrollment evidence is an image ([002 §19]); an archive may hold PDFs.
        assert_eq!(code(enrollment, mb, "application/pdf"), Some(ErrorCode::AttachmentType));
        assert_eq!(code(FileUse::Archive, mb, "text/plain"), Some(ErrorCode::AttachmentType));
        assert_eq!(code(transfer, mb, "application/pdf"), None);
    }
}
