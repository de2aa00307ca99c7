//! The business settings: how cases run and what each province configures of its rules
//! (review chains, eligible statuses), validated at load: a chain is never empty and never
//! names a level twice; a status the sources never allow to transfer cannot be configured.

use std::path::PathBuf;

use anyhow::{Result, bail};
use schemas::ids::ProvinceCode;
use schemas::messages::{Level, MediaType, StudentStatus};
use serde::Deserialize;

/// How cases run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cases {
    /// Working days per review step ([003 Q33]: 10).
    #[serde(default = "default_review_days")]
    pub review_days: u32,
    /// Working days before a deadline for the first reminder.
    #[serde(default = "default_remind_before")]
    pub remind_before_days: u32,
    /// How long an automated stage waits before its request is sent again.
    #[serde(default = "default_resend")]
    pub resend_after_secs: u64,
    /// An automated stage that has not moved for this long is stuck (default 48 h: [003 Q48],
    /// domain.md G-5).
    #[serde(default = "default_stuck")]
    pub stuck_after_secs: u64,
    /// Holidays and make-up working days (TOML: `holidays = [...]`, `workdays = [...]`);
    /// without it, weekends only.
    pub calendar: Option<PathBuf>,
    /// Largest attachment of a transfer (domain.md G-2: 1 MB).
    #[serde(default = "default_transfer_attachment")]
    pub transfer_attachment_max_bytes: u64,
    /// Largest attachment of an enrollment (domain.md G-2: 2 MB).
    #[serde(default = "default_enrollment_attachment")]
    pub enrollment_attachment_max_bytes: u64,
    /// Media types accepted for the attachments of a transfer.
    #[serde(default = "default_attachment_types")]
    pub attachment_types: Vec<MediaType>,
    /// Media types accepted for the evidence of an enrollment ([002 §19]: JPG, PNG, JPEG).
    #[serde(default = "default_enrollment_types")]
    pub enrollment_attachment_types: Vec<MediaType>,
    /// Largest file of an archive hand-over (scans of the paper archive): the applicants' upload
    /// limits do not apply to it. One attachment travels in one message, base64-encoded, so it
    /// must stay well under `[limits] max_message_bytes` (default 8 MiB of 16).
    #[serde(default = "default_archive_attachment")]
    pub archive_attachment_max_bytes: u64,
    /// Media types accepted in an archive hand-over.
    #[serde(default = "default_attachment_types")]
    pub archive_attachment_types: Vec<MediaType>,
}

fn default_review_days() -> u32 {
    10
}
fn default_remind_before() -> u32 {
    2
}
fn default_resend() -> u64 {
    1800
}
fn default_stuck() -> u64 {
    48 * 3600
}
fn default_transfer_attachment() -> u64 {
    1024 * 1024
}
fn default_enrollment_attachment() -> u64 {
    2 * 1024 * 1024
}
fn default_archive_attachment() -> u64 {
    8 * 1024 * 1024
}
fn media(types: &[&str]) -> Vec<MediaType> {
    types.iter().map(|t| t.parse().expect("literal media types are valid")).collect()
}
fn default_attachment_types() -> Vec<MediaType> {
    media(&["application/pdf", "image/jpeg", "image/png"])
}
fn default_enrollment_types() -> Vec<MediaType> {
    media(&["image/jpeg", "image/png"])
}

impl Default for Cases {
    fn default() -> Self {
        Cases {
            review_days: default_review_days(),
            remind_before_days: default_remind_before(),
            resend_after_secs: default_resend(),
            stuck_after_secs: default_stuck(),
            calendar: None,
            transfer_attachment_max_bytes: default_transfer_attachment(),
            enrollment_attachment_max_bytes: default_enrollment_attachment(),
            attachment_types: default_attachment_types(),
            enrollment_attachment_types: default_enrollment_types(),
            archive_attachment_max_bytes: default_archive_attachment(),
            archive_attachment_types: default_attachment_types(),
        }
    }
}

/// How problem records are handled (domain.md C.10).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Problems {
    /// Largest evidence file of a handling result ([002 §2]: 2 MB).
    #[serde(default = "default_enrollment_attachment")]
    pub evidence_max_bytes: u64,
    /// Media types accepted as evidence ([002 §2]: JPG, PNG, JPEG).
    #[serde(default = "default_enrollment_types")]
    pub evidence_types: Vec<MediaType>,
}

impl Default for Problems {
    fn default() -> Self {
        Problems { evidence_max_bytes: default_enrollment_attachment(), evidence_types: default_enrollment_types() }
    }
}

/// Limits of the national lookup (全国学籍查询), per province: what protects minors' records from
/// a province that scans the index or guesses names.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lookups {
    /// Lookups answered per province in any minute (a sliding window); more are refused
    /// `E_RATE_LIMITED`. Refused ones do not count, so a province over the limit is answered
    /// at the limit's rate.
    #[serde(default = "default_lookups_per_minute")]
    pub per_minute: u32,
    /// Lookups one province may make of one student (one student ID or document number) in any
    /// hour, answered or not: a name is never guessed by trying names.
    #[serde(default = "default_same_student_per_hour")]
    pub same_student_per_hour: u32,
}

fn default_lookups_per_minute() -> u32 {
    600
}
fn default_same_student_per_hour() -> u32 {
    10
}

impl Default for Lookups {
    fn default() -> Self {
        Lookups { per_minute: default_lookups_per_minute(), same_student_per_hour: default_same_student_per_hour() }
    }
}

/// One province's own rules ([002 §22]: chains are configured per province and business).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvinceRules {
    /// Review levels when this province receives a transfer (default school, bureau).
    #[serde(default = "default_levels")]
    pub transfer_in: Vec<Level>,
    /// Review levels when this province sends a student away (default school, bureau).
    #[serde(default = "default_levels")]
    pub transfer_out: Vec<Level>,
    /// Statuses that may transfer out of this province (default: `[rules] transfer_statuses`).
    pub transfer_statuses: Option<Vec<StudentStatus>>,
    /// Review levels when one of this province's schools enrolls a graduate of another
    /// province (default school, bureau: [002 §19]).
    #[serde(default = "default_levels")]
    pub enrollment_in: Vec<Level>,
    /// Review levels when a graduate of this province is enrolled elsewhere: the graduation
    /// side's chain (default: the graduating school's bureau, [002 §19]; Shandong's city
    /// bureau, [003 Q29]; domain.md G-4).
    #[serde(default = "default_graduation_levels")]
    pub enrollment_out: Vec<Level>,
    /// Approval levels of a problem record's attestation (佐证) in this province (default
    /// school, bureau: [002 §2]).
    #[serde(default = "default_levels")]
    pub problem_attest: Vec<Level>,
    /// … of a change (变更).
    #[serde(default = "default_levels")]
    pub problem_change: Vec<Level>,
    /// … of a deletion (删除); Shandong escalates to the province ([003 Q21], domain.md G-10).
    #[serde(default = "default_levels")]
    pub problem_delete: Vec<Level>,
}

/// 毕业学校所属教育局.
pub fn default_graduation_levels() -> Vec<Level> {
    vec![Level::Bureau]
}

/// 学校 → 主管教育局.
pub fn default_levels() -> Vec<Level> {
    vec![Level::School, Level::Bureau]
}

impl Default for ProvinceRules {
    fn default() -> Self {
        ProvinceRules {
            transfer_in: default_levels(),
            transfer_out: default_levels(),
            transfer_statuses: None,
            enrollment_in: default_levels(),
            enrollment_out: default_graduation_levels(),
            problem_attest: default_levels(),
            problem_change: default_levels(),
            problem_delete: default_levels(),
        }
    }
}

/// Business rules that the sources leave to configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Record statuses that may transfer cross-province (domain.md G-1; default from [002 §18]).
    #[serde(default = "default_transfer_statuses")]
    pub transfer_statuses: Vec<StudentStatus>,
}

/// [002 §18]: 在校, 其他离校, 出国(出境), 退学, 开除, 小学毕业.
pub fn default_transfer_statuses() -> Vec<StudentStatus> {
    use StudentStatus::*;
    vec![Enrolled, OtherDeparture, Abroad, Withdrawn, Expelled, PrimaryGraduate]
}

impl Default for Rules {
    fn default() -> Self {
        Rules { transfer_statuses: default_transfer_statuses() }
    }
}

/// Checks the business settings: the national rules and every province's.
pub(super) fn check(
    rules: &Rules,
    cases: &Cases,
    provinces: &std::collections::BTreeMap<ProvinceCode, ProvinceRules>,
) -> Result<()> {
    check_transfer_statuses("[rules] transfer_statuses", &rules.transfer_statuses)?;
    for (code, rules) in provinces {
        let code = code.code();
        if let Some(statuses) = &rules.transfer_statuses {
            check_transfer_statuses(&format!("[provinces.\"{code}\"] transfer_statuses"), statuses)?;
        }
        let chains = [
            ("transfer_in", &rules.transfer_in),
            ("transfer_out", &rules.transfer_out),
            ("enrollment_in", &rules.enrollment_in),
            ("enrollment_out", &rules.enrollment_out),
            ("problem_attest", &rules.problem_attest),
            ("problem_change", &rules.problem_change),
            ("problem_delete", &rules.problem_delete),
        ];
        for (name, chain) in chains {
            if chain.is_empty() {
                bail!("[provinces.\"{code}\"] {name}: a review chain needs at least one level");
            }
            // A step is named by side and level: a repeated level could not be told apart.
            if chain.iter().enumerate().any(|(i, l)| chain[..i].contains(l)) {
                bail!("[provinces.\"{code}\"] {name}: a level appears twice in {chain:?}");
            }
        }
    }
    if cases.review_days == 0 || cases.resend_after_secs == 0 {
        bail!("cases.review_days and cases.resend_after_secs must be at least 1");
    }
    Ok(())
}

/// 休学, 死亡, 失踪 and 辍学 are never eligible, whatever a province configures (domain.md G-1);
/// nor is 初中毕业, which goes on through post-graduation enrollment.
fn check_transfer_statuses(what: &str, statuses: &[StudentStatus]) -> Result<()> {
    use StudentStatus::*;
    let never = [Suspended, Deceased, Missing, DroppedOut, JuniorGraduate];
    if let Some(s) = statuses.iter().find(|s| never.contains(s)) {
        bail!("{what}: {s:?} may never transfer (domain.md G-1)");
    }
    Ok(())
}
