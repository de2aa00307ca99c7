//! Names and free text.

use serde::{Deserialize, Serialize};

use super::{IdError, IdKind, IdProblem, string_id};

/// Whether `c` may appear in an XML 1.0 document at all (surrogates cannot be in a `str`).
pub(crate) fn is_xml_char(c: char) -> bool {
    !matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

/// Checks length bounds (in characters), no control characters (except tab, line feed and
/// carriage return when `multiline`), only XML characters, and no leading or trailing white
/// space. The XSD patterns `PersonNameType` and `TextType` say the same.
fn check_text(s: &str, max: usize, multiline: bool, kind: IdKind, expected: &'static str) -> Result<(), IdError> {
    let len = s.chars().count();
    if len == 0 || len > max {
        return Err(IdError::new(kind, IdProblem::Length { expected, found: len }));
    }
    let bad = |c: char| (c.is_control() && !(multiline && matches!(c, '\n' | '\t' | '\r'))) || !is_xml_char(c);
    if let Some(pos) = s.chars().position(bad) {
        return Err(IdError::new(kind, IdProblem::Character { position: pos + 1 }));
    }
    if s.starts_with(char::is_whitespace) {
        return Err(IdError::new(kind, IdProblem::Character { position: 1 }));
    }
    if s.ends_with(char::is_whitespace) {
        return Err(IdError::new(kind, IdProblem::Character { position: len }));
    }
    Ok(())
}

/// A person's name (姓名): 1–50 characters, no control characters, no surrounding spaces.
/// Names are compared exactly: verification matches name *and* identifier (domain.md R17).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PersonName(String);

impl PersonName {
    /// # Errors
    /// Empty, longer than 50 characters, control characters or surrounding spaces.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        check_text(s, 50, false, IdKind::PersonName, "1-50")?;
        Ok(PersonName(s.to_owned()))
    }
}

impl AsRef<str> for PersonName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

string_id!(PersonName);

/// Free text written by a person: a reason, an opinion, a remark. 1–500 characters; line
/// breaks allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Text(String);

impl Text {
    /// # Errors
    /// Empty, longer than 500 characters, control characters or surrounding spaces.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        check_text(s, 500, true, IdKind::Text, "1-500")?;
        Ok(Text(s.to_owned()))
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

string_id!(Text);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert!(PersonName::parse("阿依古丽·买买提").is_ok());
        for bad in ["", " 张三", "张三 ", "张\u{0}三", &"长".repeat(51)] {
            assert!(PersonName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Text::parse("第一行\n第二行").is_ok());
        assert!(PersonName::parse("第一行\n第二行").is_err());
    }
}
