//! The error catalogue (错误代码): stable codes with Chinese and English text.
//!
//! A code never changes meaning once published; provincial systems branch on it. New codes
//! are added at the end of a group, and `error.xsd` lists exactly these values (a test checks
//! it).

use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $zh:literal, $en:literal; )*) => {
        /// A stable error code with its bilingual text.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
        pub enum ErrorCode {
            $( $(#[$doc])* #[serde(rename = $code)] $variant, )*
        }

        impl ErrorCode {
            /// Every code, in catalogue order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The stable code, e.g. `E_SENDER`.
            pub fn code(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The Chinese text.
            pub fn zh(self) -> &'static str {
                match self { $(ErrorCode::$variant => $zh,)* }
            }

            /// The English text.
            pub fn en(self) -> &'static str {
                match self { $(ErrorCode::$variant => $en,)* }
            }

            /// Looks a code up by its stable name.
            pub fn from_code(code: &str) -> Option<ErrorCode> {
                match code { $($code => Some(ErrorCode::$variant),)* _ => None }
            }
        }
    };
}

error_codes! {
    // --- The message itself is unusable (poison): dead-lettered, never redelivered. ---
    /// Larger than the configured limit; refused before parsing.
    TooLarge = "E_TOO_LARGE", "报文超过大小上限", "message exceeds the size limit";
    /// Not well-formed XML/JSON, truncated, or not UTF-8.
    Malformed = "E_MALFORMED", "报文格式错误或不完整", "malformed or truncated document";
    /// A DOCTYPE, entity declaration or non-predefined entity reference.
    DtdForbidden = "E_DTD_FORBIDDEN", "报文不得包含DOCTYPE或实体声明", "DOCTYPE and entity declarations are not allowed";
    /// Root element not in the exchange namespace.
    Namespace = "E_NAMESPACE", "报文命名空间错误", "wrong XML namespace";
    /// `schemaVersion` not supported by this build.
    Version = "E_VERSION", "不支持的报文版本", "unsupported schema version";
    /// Structure or a value does not match the schema (including invalid identifiers).
    Schema = "E_SCHEMA", "报文不符合规范", "message does not match the schema";
    /// The envelope's declared sender is not the authenticated sender.
    Sender = "E_SENDER", "发送方与认证身份不符", "declared sender differs from the authenticated sender";
    /// No signature, or one that does not verify over the message's bytes with the sender's
    /// admitted certificate (`x-signature`, `x-signer`).
    Signature = "E_SIGNATURE", "报文未签名或签名验证不通过", "the message is unsigned or its signature does not verify";
    /// A message id seen before, with different content.
    Duplicate = "E_DUPLICATE", "消息编号重复且内容不同", "message id reused with different content";
    /// A message type that the recipient never accepts from this sender.
    Unexpected = "E_UNEXPECTED", "不接受该类型报文", "message type not accepted from this sender";
    /// The sender holds no registered, unrevoked certificate.
    Revoked = "E_REVOKED", "发送方证书已吊销或未登记", "the sender's certificate is revoked or not registered";
    /// The hub tried and failed to process the message (a fault of the hub, not of the sender);
    /// it is kept in the dead letters for operators to inspect and replay.
    Internal = "E_INTERNAL", "枢纽处理该报文失败,已转入死信待运维处理", "the hub failed to process this message; it is held for operators";

    // --- Business refusals: answered, never dead-lettered. ---
    /// 转出省份校验错误: no student with this name and national student ID.
    StudentNotFound = "E_STUDENT_NOT_FOUND", "转出省份校验错误:未找到该学生", "out-province verification failed: student not found";
    /// The student's record status does not allow this business (domain.md G-1).
    StatusIneligible = "E_STATUS_INELIGIBLE", "学籍状态不允许办理该业务", "the student's record status does not allow this business";
    /// An open problem record (问题学籍) blocks cross-province business.
    ProblemRecord = "E_PROBLEM_RECORD", "问题学籍,请先处理问题学籍(处理后同步约需2-3天)", "open problem record: resolve it first (sync takes 2-3 days)";
    /// The student has open business (在办业务).
    InFlight = "E_IN_FLIGHT", "该学生有在办业务", "the student has open business";
    /// A school without a school identification code.
    SchoolNoCode = "E_SCHOOL_NO_CODE", "学校无学校标识码,不能办理跨省业务", "school has no identification code";
    /// A school the registry does not know or that is not active.
    SchoolUnknown = "E_SCHOOL_UNKNOWN", "学校不存在或已撤销", "unknown or inactive school";
    /// In-province and out-province are the same.
    SameProvince = "E_SAME_PROVINCE", "转入省与转出省相同,请办理省内业务", "both sides are in the same province";
    /// A decision from a party that is not the current handler of the step.
    NotYourStep = "E_NOT_YOUR_STEP", "非当前处理单位,不能核办", "not the current handler of this step";
    /// The case is already closed.
    CaseClosed = "E_CASE_CLOSED", "业务已结束", "the case is closed";
    /// No such case.
    CaseNotFound = "E_CASE_NOT_FOUND", "业务不存在", "no such case";
    /// Cancellation is not allowed at this stage (domain.md G-3).
    CancelRefused = "E_CANCEL_REFUSED", "当前阶段不能撤销", "the case cannot be cancelled at this stage";
    /// An attachment over the size limit of its business (domain.md G-2).
    AttachmentTooLarge = "E_ATTACHMENT_TOO_LARGE", "附件超过大小上限", "attachment exceeds the size limit";
    /// An attachment of a type the business does not allow.
    AttachmentType = "E_ATTACHMENT_TYPE", "附件类型不允许", "attachment type not allowed";
    /// An attachment whose content does not match its declared SHA-256 or size.
    AttachmentDigest = "E_ATTACHMENT_DIGEST", "附件摘要或大小不符", "attachment digest or size mismatch";
    /// The school lacks the permission for post-graduation enrollment (domain.md R22).
    NotPermitted = "E_NOT_PERMITTED", "学校未获得毕业后跨省就学权限", "school not permitted for this business";
    /// The business does not fit the student's stage (domain.md R23).
    WrongStage = "E_WRONG_STAGE", "学段不符,请办理对应业务", "wrong business for the student's stage";
    /// The business requires evidence that the application lacks ([002 §19]: admission evidence).
    EvidenceMissing = "E_EVIDENCE_MISSING", "缺少必需的证明材料", "required evidence is missing";
    /// The requested party is not served by this hub (no such province connected).
    UnknownParty = "E_UNKNOWN_PARTY", "接收方不存在", "unknown recipient";

    // --- Problem records (domain.md §C). ---
    /// No such problem group, or the record named is not one of the sender's in it.
    GroupNotFound = "E_GROUP_NOT_FOUND", "问题学籍组不存在或不含本省该记录", "no such problem group, or the record is not the sender's in it";
    /// The group has finished; a finished group may only be re-processed.
    GroupClosed = "E_GROUP_CLOSED", "问题学籍组已结束", "the problem group has finished";
    /// Re-processing a group that has not finished (e.g. waiting for arbitration: C.8).
    GroupOpen = "E_GROUP_OPEN", "问题学籍组尚未结束,不能发起重新处理", "the problem group has not finished; it cannot be re-processed";
    /// An attestation from a record the national office did not uphold (C.7).
    ModeNotAllowed = "E_MODE_NOT_ALLOWED", "仲裁不通过的记录只能变更或删除", "a record not upheld by arbitration may only be changed or deleted";
    /// A change the rules forbid: name and ID number together, a formal ID to no ID (C.3).
    ChangeForbidden = "E_CHANGE_FORBIDDEN", "不允许的变更(不得同时变更姓名和身份证件号,正式身份证件不得变更为无证件)", "change not allowed (not name and ID number together; not a formal ID to no ID)";
    /// The approvals do not follow the province's configured chain for this mode.
    Approvals = "E_APPROVALS", "审核记录与本省该处理方式的审核层级不符", "the approvals do not match the province's chain for this mode";

    // --- Organization codes (domain.md §D). ---
    /// No such change record for the sender's province.
    ChangeNotFound = "E_CHANGE_NOT_FOUND", "机构代码变动记录不存在", "no such organization-code change for this province";
    /// An earlier change of the same unit has not been confirmed yet.
    ChangeOrder = "E_CHANGE_ORDER", "同一机构的前一条变动尚未确认,请按顺序确认", "an earlier change of this unit awaits confirmation; confirm in order";
    /// The school has a confirmed revocation (or of the target stage) waiting: no new business
    /// may name it as receiving school (domain.md G-7).
    SchoolRevoking = "E_SCHOOL_REVOKING", "学校(或该教育阶段)撤销已确认,不能作为转入学校发起新业务", "the school (or this stage) is being revoked; it cannot receive new business";
    /// A batch id and version loaded before with different content.
    BatchConflict = "E_BATCH_CONFLICT", "同一批次编号和版本已载入不同内容", "this batch id and version were loaded with different content";
    /// Lookups over the province's configured rate, or of one student more often than allowed
    /// (`[lookups]` of the hub): refused, not answered; retry later.
    RateLimited = "E_RATE_LIMITED", "查询过于频繁,请稍后再试", "too many lookups; retry later";

    // --- Local API of the adapter. ---
    /// No message with this id here.
    MessageNotFound = "E_MESSAGE_NOT_FOUND", "消息不存在", "no such message";
    /// The service could not complete the request now; the same request may be retried.
    Unavailable = "E_UNAVAILABLE", "服务暂不可用,请稍后重试", "temporarily unavailable; retry";
    /// The caller's certificate does not allow this (role, registration, revocation).
    Forbidden = "E_FORBIDDEN", "无权执行该操作", "not allowed for this certificate";
    /// No such resource (an unknown path of an HTTP API).
    NotFound = "E_NOT_FOUND", "请求的资源不存在", "no such resource";
    /// A dead letter an operator already replayed or discarded.
    DeadLetterSettled = "E_DEAD_LETTER_SETTLED", "该死信已重放或已丢弃", "this dead letter was already replayed or discarded";
    /// A dead letter that cannot be replayed: its body was not kept whole, or its sender is unknown.
    NotReplayable = "E_NOT_REPLAYABLE", "该死信不能重放(报文未完整保存或发送方不明)", "this dead letter cannot be replayed (body not kept whole, or sender unknown)";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_look_up_by_name() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.code()), "duplicate {}", code.code());
            assert!(code.code().starts_with("E_"));
            assert!(!code.zh().is_empty() && !code.en().is_empty());
            assert_eq!(ErrorCode::from_code(code.code()), Some(*code));
        }
    }
}
