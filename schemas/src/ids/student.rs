//! National student ID (全国学籍号 / 个人标识码): a type letter plus 18 characters.
//!
//! - `G` + the resident ID the student had when the ID was assigned (formal);
//! - `J` + an 18-character self-code built "by the ID-number rules" (formal);
//! - `L` + 18 system-matched characters (temporary; domain.md §A.3.3).
//!
//! G and J bodies carry a MOD 11-2 check character and are validated like resident IDs.
//! An L body is only checked for shape: domain.md G-11 says never to read meaning out of it,
//! and eligibility is judged by the problem-record flag, not by the prefix.

use serde::{Deserialize, Serialize};

use super::{IdError, IdKind, IdProblem, resident::validate_id_number, string_id};

/// The three kinds of national student ID, by prefix letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StudentIdKind {
    /// `G`: formal, from an authenticated resident ID.
    Resident,
    /// `J`: formal, from a self-code assigned by the ministry.
    SelfCode,
    /// `L`: temporary, pending authentication.
    Temporary,
}

/// A national student ID. Immutable business key of a student (domain.md R31): never assume
/// the G body equals the student's *current* ID number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct StudentId(String);

impl StudentId {
    /// # Errors
    /// Wrong length or prefix; for G/J a body that is not a valid ID number; for L a body
    /// with characters other than digits and upper-case letters.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let len = s.chars().count();
        if len != 19 {
            return Err(IdError::new(IdKind::StudentId, IdProblem::Length { expected: "19", found: len }));
        }
        let prefix = s.as_bytes()[0];
        if !matches!(prefix, b'G' | b'J' | b'L') {
            return Err(IdError::new(IdKind::StudentId, IdProblem::Prefix));
        }
        // The prefix is one ASCII byte, so byte 1 is a character boundary.
        let body = &s[1..];
        match prefix {
            b'G' | b'J' => validate_id_number(body, IdKind::StudentId).map_err(|e| shift(e, 1))?,
            _ => {
                if let Some(pos) = body.bytes().position(|b| !(b.is_ascii_digit() || b.is_ascii_uppercase())) {
                    return Err(IdError::new(IdKind::StudentId, IdProblem::Character { position: pos + 2 }));
                }
            }
        }
        Ok(StudentId(s.to_owned()))
    }

    pub fn kind(&self) -> StudentIdKind {
        match self.0.as_bytes()[0] {
            b'G' => StudentIdKind::Resident,
            b'J' => StudentIdKind::SelfCode,
            _ => StudentIdKind::Temporary,
        }
    }

    /// Formal (G or J) rather than temporary (L).
    pub fn is_formal(&self) -> bool {
        self.kind() != StudentIdKind::Temporary
    }
}

/// Positions in body errors are reported relative to the whole 19-character ID.
fn shift(mut e: IdError, by: usize) -> IdError {
    if let IdProblem::Character { position } = &mut e.problem {
        *position += by;
    }
    IdError::new(IdKind::StudentId, e.problem)
}

impl AsRef<str> for StudentId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

string_id!(StudentId);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ids::resident::tests::valid_resident_id;

    #[test]
    fn examples_from_the_seeds_parse() {
        assert_eq!(StudentId::parse("G510104201605120358").unwrap().kind(), StudentIdKind::Resident);
        assert_eq!(StudentId::parse("J440106201509170069").unwrap().kind(), StudentIdKind::SelfCode);
        let l = StudentId::parse("L44162320030616008X").unwrap();
        assert!(!l.is_formal());
    }

    #[test]
    fn wrong_prefix_length_and_check_digit_are_refused() {
        assert_eq!(StudentId::parse("X510104201605120358").unwrap_err().problem, IdProblem::Prefix);
        assert_eq!(StudentId::parse("g510104201605120358").unwrap_err().problem, IdProblem::Prefix);
        assert_eq!(StudentId::parse("G510104201605120359").unwrap_err().problem, IdProblem::CheckDigit);
        assert!(matches!(StudentId::parse("G51010420160512035").unwrap_err().problem, IdProblem::Length { .. }));
        assert_eq!(StudentId::parse("L44162320030616008x").unwrap_err().problem, IdProblem::Character { position: 19 });
    }

    proptest! {
        #[test]
        fn every_generated_formal_id_parses(body in valid_resident_id(), prefix in prop::sample::select(vec!['G', 'J'])) {
            let s = format!("{prefix}{body}");
            let id = StudentId::parse(&s).unwrap();
            prop_assert_eq!(id.as_ref(), s.as_str());
        }

        #[test]
        fn every_generated_temporary_id_parses(body in "[0-9A-Z]{18}") {
            let s = format!("L{body}");
            prop_assert!(StudentId::parse(&s).is_ok());
        }

        /// Any single change inside the check-protected body of a formal ID is refused. (The
        /// prefix letter itself is not protected: G and J share the body rules, so a G→J
        /// swap of a valid ID yields another well-formed ID; the business check catches it.)
        #[test]
        fn every_single_character_change_in_a_formal_body_is_refused(
            body in valid_resident_id(),
            prefix in prop::sample::select(vec!['G', 'J']),
            pos in 1usize..19,
            replacement in prop::sample::select(b"0123456789Xx -".to_vec()),
        ) {
            let mut bytes = format!("{prefix}{body}").into_bytes();
            prop_assume!(bytes[pos] != replacement);
            bytes[pos] = replacement;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(StudentId::parse(&changed).is_err(), "{} accepted", changed);
        }

        #[test]
        fn a_prefix_other_than_g_j_l_is_refused(body in valid_resident_id(), prefix in "[A-Za-z0-9]") {
            prop_assume!(!["G", "J", "L"].contains(&prefix.as_str()));
            let s = format!("{prefix}{body}");
            prop_assert!(StudentId::parse(&s).is_err());
        }
    }
}
