//! The 18-character resident ID (公民身份号码), GB 11643-1999.
//!
//! 6-digit address code + 8-digit birth date + 3-digit sequence code + check character
//! (domain.md §A.3.2, [001 Q44]). The check character is ISO 7064 MOD 11-2 (external).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{IdError, IdKind, IdProblem, ProvinceCode, string_id};

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK_CHARS: &[u8; 11] = b"10X98765432";

/// Region prefixes of residence permits for Hong Kong, Macao and Taiwan residents
/// (港澳台居民居住证), which follow the same numbering: 81/82 are provinces already, 83 is not.
const PERMIT_PREFIXES: [&str; 1] = ["83"];

/// Sex (性别), GB/T 2261.1 codes: `1` male, `2` female.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Sex {
    #[serde(rename = "1")]
    Male,
    #[serde(rename = "2")]
    Female,
}

/// The ISO 7064 MOD 11-2 check character for 17 leading digits.
///
/// # Panics
/// If `body` is not 17 ASCII digits; callers check that first.
pub fn check_char(body: &[u8]) -> u8 {
    assert!(body.len() == 17 && body.iter().all(u8::is_ascii_digit), "17 digits");
    let sum: u32 = body.iter().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    CHECK_CHARS[(sum % 11) as usize]
}

/// Validates the 18-character "ID number shape" shared by resident IDs and the bodies of
/// G and J national student IDs: digits, check character, real birth date, known region.
pub(crate) fn validate_id_number(s: &str, kind: IdKind) -> Result<(), IdError> {
    let len = s.chars().count();
    if len != 18 {
        return Err(IdError::new(kind, IdProblem::Length { expected: "18", found: len }));
    }
    let b = s.as_bytes();
    if let Some(pos) = b[..17].iter().position(|c| !c.is_ascii_digit()) {
        return Err(IdError::new(kind, IdProblem::Character { position: pos + 1 }));
    }
    if !(b[17].is_ascii_digit() || b[17] == b'X') {
        // Lower-case x is refused: the national system requires upper case ([001 Q68]).
        return Err(IdError::new(kind, IdProblem::Character { position: 18 }));
    }
    if check_char(&b[..17]) != b[17] {
        return Err(IdError::new(kind, IdProblem::CheckDigit));
    }
    if birth_date_of(s).is_none() {
        return Err(IdError::new(kind, IdProblem::BirthDate));
    }
    let region = &s[..2];
    if !(ProvinceCode::is_known(region) || PERMIT_PREFIXES.contains(&region)) {
        return Err(IdError::new(kind, IdProblem::Region));
    }
    Ok(())
}

/// The birth date at positions 7–14, if it is a real date between 1900 and 2099.
fn birth_date_of(s: &str) -> Option<NaiveDate> {
    let year: i32 = s.get(6..10)?.parse().ok()?;
    let month: u32 = s.get(10..12)?.parse().ok()?;
    let day: u32 = s.get(12..14)?.parse().ok()?;
    if !(1900..=2099).contains(&year) {
        return None;
    }
    NaiveDate::from_ymd_opt(year, month, day)
}

/// An 18-character resident ID number (公民身份号码) with a valid check character,
/// a real birth date and a known region prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct ResidentId(String);

impl ResidentId {
    /// # Errors
    /// Wrong length, a non-digit, a wrong check character, an impossible birth date or an
    /// unknown region prefix.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        validate_id_number(s, IdKind::ResidentId)?;
        Ok(ResidentId(s.to_owned()))
    }

    /// Completes 17 leading digits with their check character.
    ///
    /// # Errors
    /// When `body` is not 17 digits, or the result is not a valid resident ID (date, region).
    pub fn from_body(body: &str) -> Result<Self, IdError> {
        if body.len() != 17 || !body.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError::new(
                IdKind::ResidentId,
                IdProblem::Length { expected: "17 digits", found: body.chars().count() },
            ));
        }
        Self::parse(&format!("{body}{}", check_char(body.as_bytes()) as char))
    }

    pub fn birth_date(&self) -> NaiveDate {
        birth_date_of(&self.0).expect("validated at construction")
    }

    /// Sex from the sequence code: odd male, even female (GB 11643, external).
    pub fn sex(&self) -> Sex {
        if (self.0.as_bytes()[16] - b'0') % 2 == 1 { Sex::Male } else { Sex::Female }
    }

    /// The first two digits: a province code, or `83` for a Taiwan residents' permit.
    pub fn region_prefix(&self) -> &str {
        &self.0[..2]
    }
}

impl AsRef<str> for ResidentId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

string_id!(ResidentId);

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Strategy: valid resident IDs (any province, any real date 1950–2025, any sequence).
    pub fn valid_resident_id() -> impl Strategy<Value = String> {
        let provinces: Vec<&'static str> = ProvinceCode::all().map(|p| p.code()).collect();
        (prop::sample::select(provinces), 0u32..10_000, 0i64..(75 * 365), 0u32..1000).prop_map(
            |(prov, area, days, seq)| {
                let date = NaiveDate::from_ymd_opt(1950, 1, 1).unwrap() + chrono::Duration::days(days);
                let body = format!("{prov}{area:04}{}{seq:03}", date.format("%Y%m%d"));
                let check = check_char(body.as_bytes()) as char;
                format!("{body}{check}")
            },
        )
    }

    #[test]
    fn worked_examples_from_the_domain_notes_parse() {
        let a = ResidentId::parse("510104201605120358").unwrap();
        assert_eq!(a.birth_date(), NaiveDate::from_ymd_opt(2016, 5, 12).unwrap());
        assert_eq!(a.sex(), Sex::Male);
        let b = ResidentId::parse("44010620110819019X").unwrap();
        assert_eq!(b.region_prefix(), "44");
        assert_eq!(ResidentId::from_body("44010620110819019").unwrap(), b);
    }

    #[test]
    fn each_rule_is_enforced() {
        let cases = [
            ("51010420160512035", IdProblem::Length { expected: "18", found: 17 }),
            ("510104201605120359", IdProblem::CheckDigit),
            ("44010620110819019x", IdProblem::Character { position: 18 }),
            ("5101042016051203A8", IdProblem::Character { position: 17 }),
        ];
        for (s, problem) in cases {
            assert_eq!(ResidentId::parse(s).unwrap_err().problem, problem, "{s}");
        }
        // 2015-02-29 does not exist; fix the check digit so only the date is wrong.
        let body = "510104201502290351";
        let fixed = format!("{}{}", &body[..17], check_char(&body.as_bytes()[..17]) as char);
        assert_eq!(ResidentId::parse(&fixed).unwrap_err().problem, IdProblem::BirthDate);
        // Region 99 is not a province.
        let body = "990104201605120351";
        let fixed = format!("{}{}", &body[..17], check_char(&body.as_bytes()[..17]) as char);
        assert_eq!(ResidentId::parse(&fixed).unwrap_err().problem, IdProblem::Region);
    }

    proptest! {
        #[test]
        fn every_generated_valid_id_parses(s in valid_resident_id()) {
            let id = ResidentId::parse(&s).unwrap();
            prop_assert_eq!(id.as_ref(), s.as_str());
        }

        #[test]
        fn every_single_character_change_is_refused(
            s in valid_resident_id(),
            pos in 0usize..18,
            replacement in prop::sample::select(b"0123456789Xx ".to_vec()),
        ) {
            let mut bytes = s.clone().into_bytes();
            prop_assume!(bytes[pos] != replacement);
            bytes[pos] = replacement;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(ResidentId::parse(&changed).is_err(), "{} accepted", changed);
        }
    }
}
